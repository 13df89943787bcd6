"""TCP-MD5 (RFC 2385) on a socket, to see whether a TCP signature option set inside a container
reaches the wire: this kernel has TCP-MD5 and not TCP-AO, and both are options the kernel adds to
the segments of the socket they are set on. Imported by the tests; run by a container as

    python3 tcpsig.py HOST PORT KEY     # connect with the key set for HOST, send one line

and prints `connected` or `connect failed: ...`; or, on the other end, as

    python3 tcpsig.py --listen PEER PORT KEY REQUIRE   # REQUIRE 1: the key for PEER is required

which waits 15 s for one connection and prints `accepted ADDRESS` or `timeout`. Standard library only (the host's Python runs it)."""

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


def listen(peer: str, port: int, key: bytes, require: bool) -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if require:
            set_md5(listener, peer, key)
        listener.bind(("0.0.0.0", port))
        listener.listen(1)
        listener.settimeout(15)
        try:
            _, addr = listener.accept()
            print(f"accepted {addr[0]}", flush=True)
        except TimeoutError:
            print("timeout", flush=True)


def main() -> None:
    if sys.argv[1] == "--listen":
        listen(sys.argv[2], int(sys.argv[3]), sys.argv[4].encode(), sys.argv[5] == "1")
        return
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
