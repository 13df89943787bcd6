// probe: the readiness checks of a release, run from outside the service's image.
//
// One static binary, no libc, no shell: it runs in the image releaser builds for it
// (releaser/probe/image) as a non-root user on a read-only root with no capabilities.
//
//	probe wait                    PID 1 of a Compose probe container: waits, exits 0 at once on SIGTERM/SIGINT
//	probe chown UID:GID DIR...    gives each directory (not its content) to UID:GID: a Compose volume
//	                              the service's image has no directory for is created root-owned
//	probe jobs NAME...            a Kubernetes init container: waits until each Job of the pod's namespace
//	                              has completed; exit 1 at once when one has failed (jobs.go)
//	probe CHECK [CHECK...]        every CHECK must hold; exit 0, else 1 (2: a CHECK that cannot be read)
//
// CHECK is one of
//
//	http://HOST:PORT/PATH         GET answers 200-399 (the kubelet's rule for an httpGet probe)
//	tcp://HOST:PORT               a TCP connection opens
//	!tcp://HOST:PORT              no TCP connection opens (refused, reset or no answer): a denied flow
//	leg://PEER:PORT               a TCP-AO sidecar's wire leg is up: an established connection with PEER on
//	                              PORT, with good TCP-AO segments where the kernel has TCP-AO (leg.go)
//
// Options before the checks: --timeout SECONDS for each attempt (default 3), --attempts N
// (default 1) with one second between attempts, --quiet (no line per check).
package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `usage: probe wait
       probe chown UID:GID DIR...
       probe jobs NAME...
       probe [--timeout SECONDS] [--attempts N] [--quiet] CHECK [CHECK...]
CHECK: http://HOST:PORT/PATH | tcp://HOST:PORT | !tcp://HOST:PORT | leg://PEER:PORT
`

type check struct {
	text string
	kind string // http | tcp | refused | leg
	addr string
	path string
	host string
}

func parse(arg string) (check, error) {
	c := check{text: arg}
	rest := arg
	switch {
	case strings.HasPrefix(arg, "http://"):
		c.kind, rest = "http", arg[len("http://"):]
	case strings.HasPrefix(arg, "tcp://"):
		c.kind, rest = "tcp", arg[len("tcp://"):]
	case strings.HasPrefix(arg, "!tcp://"):
		c.kind, rest = "refused", arg[len("!tcp://"):]
	case strings.HasPrefix(arg, "leg://"):
		c.kind, rest = "leg", arg[len("leg://"):]
	default:
		return c, fmt.Errorf("%q: a check starts with http://, tcp://, !tcp:// or leg://", arg)
	}
	c.addr, c.path = rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		if c.kind != "http" {
			return c, fmt.Errorf("%q: only an http check has a path", arg)
		}
		c.addr, c.path = rest[:i], rest[i:]
	}
	host, port, err := net.SplitHostPort(c.addr)
	if err != nil || host == "" {
		return c, fmt.Errorf("%q: HOST:PORT expected", arg)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return c, fmt.Errorf("%q: the port must be 1-65535", arg)
	}
	for _, r := range c.path {
		if r <= ' ' || r == 0x7f {
			return c, fmt.Errorf("%q: the path has a space or control character", arg)
		}
	}
	if c.kind == "leg" && net.ParseIP(host) == nil {
		return c, fmt.Errorf("%q: a leg's PEER is an IP address (the one its TCP-AO key is bound to)", arg)
	}
	c.host = host
	return c, nil
}

func (c check) run(timeout time.Duration) error {
	if c.kind == "leg" {
		_, err := c.leg()
		return err
	}
	conn, err := net.DialTimeout("tcp", c.addr, timeout)
	if c.kind == "refused" {
		if err != nil {
			return nil
		}
		conn.Close()
		return errors.New("connected, where the flow must be refused")
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	if c.kind == "tcp" {
		return nil
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	hostHeader := c.addr
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: releaser-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n", c.path, hostHeader); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(conn, 512).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no HTTP status line: %v", err)
	}
	fields := strings.Fields(line)
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") {
		return fmt.Errorf("not an HTTP answer: %q", strings.TrimSpace(line))
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil {
		return fmt.Errorf("not an HTTP status: %q", fields[1])
	}
	if code < 200 || code > 399 {
		return fmt.Errorf("HTTP %d", code)
	}
	return nil
}

func wait() int {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	return 0
}

func chown(args []string) int {
	if len(args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	u, g, ok := strings.Cut(args[0], ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		fmt.Fprintf(os.Stderr, "probe: chown %q: UID:GID expected, two numbers\n", args[0])
		return 2
	}
	failed := 0
	for _, dir := range args[1:] {
		info, err := os.Lstat(dir)
		if err == nil && !info.IsDir() {
			err = errors.New("not a directory")
		}
		if err == nil {
			err = os.Lchown(dir, uid, gid)
		}
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "FAIL chown %s %s: %v\n", args[0], dir, err)
			continue
		}
		fmt.Printf("ok   chown %s %s\n", args[0], dir)
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) == 1 && args[0] == "wait" {
		return wait()
	}
	if len(args) > 0 && args[0] == "chown" {
		return chown(args[1:])
	}
	if len(args) > 0 && args[0] == "jobs" {
		return jobs(args[1:])
	}
	timeout, attempts, quiet := 3*time.Second, 1, false
	for len(args) > 0 && strings.HasPrefix(args[0], "--") {
		opt := args[0]
		if opt == "--quiet" {
			quiet, args = true, args[1:]
			continue
		}
		if len(args) < 2 {
			fmt.Fprintf(os.Stderr, "probe: %s needs a value\n%s", opt, usage)
			return 2
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 || n > 3600 {
			fmt.Fprintf(os.Stderr, "probe: %s %q: a whole number from 1 to 3600\n", opt, args[1])
			return 2
		}
		switch opt {
		case "--timeout":
			timeout = time.Duration(n) * time.Second
		case "--attempts":
			attempts = n
		default:
			fmt.Fprintf(os.Stderr, "probe: unknown option %s\n%s", opt, usage)
			return 2
		}
		args = args[2:]
	}
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	checks := make([]check, 0, len(args))
	for _, a := range args {
		c, err := parse(a)
		if err != nil {
			fmt.Fprintf(os.Stderr, "probe: %v\n", err)
			return 2
		}
		checks = append(checks, c)
	}
	failed := 0
	for _, c := range checks {
		var err error
		for i := 0; i < attempts; i++ {
			if i > 0 {
				time.Sleep(time.Second)
			}
			if err = c.run(timeout); err == nil {
				break
			}
		}
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", c.text, err)
		} else if !quiet {
			if c.kind == "leg" {
				said, _ := c.leg()
				fmt.Printf("ok   %s: %s\n", c.text, said)
			} else {
				fmt.Printf("ok   %s\n", c.text)
			}
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}
