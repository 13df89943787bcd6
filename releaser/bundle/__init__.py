"""The airgap bundle's stages: the tar.zst archive, assembling and writing, signing, verification,
loading into a registry, split parts and joining them, deltas and merging them back, attachment merges, the blob cache, the offline installer.
The format's names and typed records are one layer down, in releaser.format; the customer's files
(INSTALL.md, load.sh, the airgap overrides) are renderers, in releaser.render."""
