module releaser.dev/probe

go 1.26
