"""TCP-MD5 (RFC 2385) on a socket, to see whether a TCP signature option set inside a container
reaches the wire: this kernel has TCP-MD5 and not TCP-AO, and both are options the kernel adds to
the segments of the socket they are set on. Imported by the tests; run by a container as

    python3 tcpsig.py HOST PORT KEY     # connect with the key set for HOST, send one line

and prints `connected` or `connect failed: ...`. Standard library only (the host's Python runs it)."""

from __future__ import annotations

import socket
import struct
import sys

TCP_MD5SIG = 14  # linux/tcp.h


def set_md5(sock: socket.socket, peer: str, key: bytes) -> None:
    """The key the kernel signs and checks every segment to and from `peer` with (struct tcp_md5sig)."""
    addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + socket.inet_aton(peer)
    sock.setsockopt(
        socket.IPPROTO_TCP,
        TCP_MD5SIG,
        addr.ljust(128, b"\0") + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(80, b"\0"),
    )


def main() -> None:
    host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    s = socket.socket()
    s.settimeout(8)
    set_md5(s, host, key)
    try:
        s.connect((host, port))
        s.sendall(b"hello\n")
        print("connected", flush=True)
    except OSError as exc:
        print(f"connect failed: {exc}", flush=True)


if __name__ == "__main__":
    main()
