package main

// The TCP-AO wire leg of a sidecar, judged from the kernel of the network namespace the probe shares
// with it (a Compose probe container in the service's namespace, a container of the service's pod):
// no tool in the proxy's image and nothing the proxy must expose.
//
//	leg://PEER:PORT   an ESTABLISHED TCP connection with PEER whose port on either end is PORT (the
//	                  initiator's to the terminator's port, or the one the terminator accepted there);
//	                  and, on a kernel with TCP-AO, good TCP-AO segments counted in this namespace
//	                  (TcpExt TCPAOGood in /proc/net/netstat). On a kernel without TCP-AO (setsockopt
//	                  TCP_AO_INFO: ENOPROTOOPT, as releaser doctor probes) the leg can only be plain TCP:
//	                  the check says so and holds.

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

const (
	tcpAOInfo     = 40 // TCP_AO_INFO, include/uapi/linux/tcp.h
	tcpAOInfoSize = 48 // sizeof(struct tcp_ao_info_opt)
)

// kernelHasAO: setsockopt(TCP_AO_INFO) with an all-zero struct on a fresh socket, which a TCP-AO
// kernel accepts and any other refuses with ENOPROTOOPT.
func kernelHasAO() bool {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	var opt [tcpAOInfoSize]byte
	_, _, errno := syscall.Syscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, tcpAOInfo,
		uintptr(unsafe.Pointer(&opt[0])), tcpAOInfoSize, 0)
	return !errors.Is(errno, syscall.ENOPROTOOPT)
}

var procRoot = "/proc"

const established = "01"

// legUp reports whether /proc/net/tcp{,6} hold an established connection with peer on port.
func legUp(peer net.IP, port int) (bool, error) {
	found := false
	read := 0
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(procRoot + "/net/" + name)
		if err != nil {
			continue // no IPv6 in this kernel
		}
		read++
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 4096), 4096)
		first := true
		for sc.Scan() {
			if first {
				first = false
				continue
			}
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != established {
				continue
			}
			_, lport, ok1 := endpoint(fields[1])
			raddr, rport, ok2 := endpoint(fields[2])
			if ok1 && ok2 && raddr.Equal(peer) && (lport == port || rport == port) {
				found = true
			}
		}
		f.Close()
	}
	if read == 0 {
		return false, fmt.Errorf("cannot read %s/net/tcp", procRoot)
	}
	return found, nil
}

// endpoint decodes /proc/net/tcp's ADDR:PORT: the address in the kernel's byte order by 32-bit word.
func endpoint(s string) (net.IP, int, bool) {
	a, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(a)
	port, err2 := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || err2 != nil || (len(raw) != 4 && len(raw) != 16) {
		return nil, 0, false
	}
	ip := make(net.IP, len(raw))
	for w := 0; w < len(raw); w += 4 {
		ip[w], ip[w+1], ip[w+2], ip[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	return ip, int(port), true
}

// aoCounters reads TcpExt's TCPAO* counters; nil on a kernel without TCP-AO (whose counters, when
// it lists them, stay 0).
func aoCounters() map[string]uint64 {
	if !kernelHasAO() {
		return nil
	}
	f, err := os.Open(procRoot + "/net/netstat")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	var names []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = fields[1:]
			continue
		}
		out := map[string]uint64{}
		for i, v := range fields[1:] {
			if i < len(names) && strings.HasPrefix(names[i], "TCPAO") {
				n, _ := strconv.ParseUint(v, 10, 64)
				out[names[i]] = n
			}
		}
		if _, ok := out["TCPAOGood"]; !ok {
			return nil
		}
		return out
	}
	return nil
}

func (c check) leg() (string, error) {
	host, port, _ := net.SplitHostPort(c.addr)
	peer := net.ParseIP(host)
	n, _ := strconv.Atoi(port)
	up, err := legUp(peer, n)
	if err != nil {
		return "", err
	}
	ao := aoCounters()
	said := ""
	if ao != nil {
		said = fmt.Sprintf("TCP-AO segments in this namespace: good %d, bad MAC %d, no key %d, unsigned where required %d",
			ao["TCPAOGood"], ao["TCPAOBad"], ao["TCPAOKeyNotFound"], ao["TCPAORequired"])
	}
	if !up {
		if said != "" {
			return "", fmt.Errorf("no established connection with %s on port %d (%s)", host, n, said)
		}
		return "", fmt.Errorf("no established connection with %s on port %d", host, n)
	}
	if ao == nil {
		return "plain TCP: this kernel has no TCP-AO", nil
	}
	if ao["TCPAOGood"] == 0 {
		return "", fmt.Errorf("connected to %s on port %d, but no good TCP-AO segment was counted: the leg is plain TCP (%s)", host, n, said)
	}
	return said, nil
}
