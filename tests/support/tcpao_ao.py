"""The TCP-AO stand-in proxy's real mode: what tcpao-proxy does with the same rendered TOML and key
file (docs/release-yaml.md#tcpao), on a kernel with TCP-AO. An initiator listens on `listen_plain`
and, for each connection, opens a socket to `remote_ao` with the key of the `[[ao_policy]]` whose
peer is that address installed first (TCP_AO_ADD_KEY); a terminator installs each policy's key on
its listening socket at `listen_ao` (accepted sockets inherit them) and forwards each connection to
`forward_plain`. Bytes are relayed both ways; when either side closes, both do.

The key's address never carries a port (the kernel refuses one: `tcp_ao_verify_ipv4`); the real
proxy's initiator passes the remote's port there (docs/release-yaml.md#tcpao), which `--as-proxy`
reproduces, to show what the kernel answers.

    python3 tcpao_ao.py --mode initiator|terminator --config FILE [--as-proxy]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import socket
import struct
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

TCP_AO_ADD_KEY = 38
TCP_AO_INFO = 40
MAX_KEY = 80
# the proxy's names -> the kernel's crypto names and MAC lengths (docs/release-yaml.md#tcpao)
ALGORITHMS = {
    "hmac-sha1": ("hmac(sha1)", 12),
    "hmac-sha256": ("hmac(sha256)", 16),
    "cmac-aes": ("cmac(aes)", 12),
}


def _sockaddr_in(ip: str, port: int) -> bytes:
    raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(ip)
    return raw.ljust(128, b"\0")  # struct __kernel_sockaddr_storage


def add_key(
    sock: socket.socket, peer_ip: str, key: bytes, *, keyid: int, rnextkeyid: int, alg: str, port: int = 0
) -> None:
    """setsockopt(TCP_AO_ADD_KEY): struct tcp_ao_add of include/uapi/linux/tcp.h (Linux 6.7+)."""
    name, maclen = ALGORITHMS.get(alg, (alg, 0))
    if not 0 < len(key) <= MAX_KEY:
        raise ValueError(f"a TCP-AO key is 1 to {MAX_KEY} bytes, not {len(key)}")
    buf = (
        _sockaddr_in(peer_ip, port)
        + name.encode().ljust(64, b"\0")
        + struct.pack("=i", 0)  # ifindex
        + struct.pack("=I", 0b11)  # set_current, set_rnext
        + struct.pack("=H", 0)  # reserved2
        + bytes(
            [32, keyid, rnextkeyid, maclen, 0, len(key)]
        )  # prefix, sndid, rcvid, maclen, keyflags, keylen
        + key.ljust(MAX_KEY, b"\0")
    )
    sock.setsockopt(socket.IPPROTO_TCP, TCP_AO_ADD_KEY, buf)


_libc = ctypes.CDLL(None, use_errno=True)


def info(sock: socket.socket) -> dict[str, int]:
    """getsockopt(TCP_AO_INFO): the socket's TCP-AO counters (struct tcp_ao_info_opt), asked with a
    zeroed buffer (the kernel reads it first and refuses non-zero reserved fields)."""
    buf = ctypes.create_string_buffer(48)
    size = ctypes.c_int(48)
    if _libc.getsockopt(sock.fileno(), socket.IPPROTO_TCP, TCP_AO_INFO, buf, ctypes.byref(size)) != 0:
        raise OSError(ctypes.get_errno(), "getsockopt(TCP_AO_INFO)")
    flags, _, current, _rnext, good, bad, not_found, required, icmp = struct.unpack(
        "=IHBBQQQQQ", buf.raw[:48]
    )
    return {
        "current_key": current if flags & 1 else -1,
        "pkt_good": good,
        "pkt_bad": bad,
        "pkt_key_not_found": not_found,
        "pkt_ao_required": required,
        "pkt_dropped_icmp": icmp,
    }


def _key(source: str) -> bytes:
    kind, _, where = source.partition(":")
    if kind == "file":
        return Path(where).read_bytes()  # the raw bytes: no decoding, a line break is part of it
    import os

    return os.environ[where].encode()


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def _relay(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join()


def serve(config_path: Path, mode: str, *, as_proxy: bool = False, retry_for: float = 30.0) -> None:
    config = tomllib.loads(config_path.read_text())
    policies = config.get("ao_policy") or []
    log = lambda **kw: print(json.dumps(kw), flush=True)  # noqa: E731 (one line of JSON per event)
    if mode == "initiator":
        listen, remote = (
            _hostport(config["initiator"]["listen_plain"]),
            _hostport(config["initiator"]["remote_ao"]),
        )
        policy = next(p for p in policies if p["peer_ip"] == remote[0])
        key = _key(policy["key_source"])
        server = socket.create_server(listen, reuse_port=False)
        log(event="listening", mode=mode, on=f"{listen[0]}:{listen[1]}")
        while True:
            plain, _ = server.accept()
            out = _connect(remote, policy, key, as_proxy=as_proxy, retry_for=retry_for, log=log)
            if out is None:
                plain.close()
                continue
            log(event="connected", to=f"{remote[0]}:{remote[1]}", ao=info(out))
            threading.Thread(target=_finish, args=(plain, out, log), daemon=True).start()
    else:
        listen, forward = (
            _hostport(config["terminator"]["listen_ao"]),
            _hostport(config["terminator"]["forward_plain"]),
        )
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for p in policies:
            add_key(server, p["peer_ip"], _key(p["key_source"]), keyid=p["keyid"],
                    rnextkeyid=p.get("rnextkeyid", p["keyid"]), alg=p["mac_alg"])  # fmt: skip
        server.bind(listen)
        server.listen(16)
        log(event="listening", mode=mode, on=f"{listen[0]}:{listen[1]}", policies=len(policies))
        while True:
            ao_side, peer = server.accept()
            try:
                plain = socket.create_connection(forward, timeout=10)
            except OSError as exc:
                log(event="error", step="forward", error=str(exc))
                ao_side.close()
                continue
            log(event="accepted", peer=f"{peer[0]}:{peer[1]}", ao=info(ao_side))
            threading.Thread(target=_finish, args=(ao_side, plain, log), daemon=True).start()


def _connect(
    remote: tuple[str, int], policy: dict[str, Any], key: bytes, *, as_proxy: bool, retry_for: float, log: Any
) -> socket.socket | None:
    """A TCP-AO connection to the terminator, tried again with backoff (0.5 s, doubling, at most 4 s)
    for `retry_for` seconds, each retry logged with its reason; None when it never answered. The
    key is never logged."""
    deadline = time.monotonic() + retry_for
    delay = 0.5
    while True:
        out = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            add_key(out, remote[0], key, keyid=policy["keyid"], rnextkeyid=policy.get("rnextkeyid", policy["keyid"]),
                    alg=policy["mac_alg"], port=remote[1] if as_proxy else 0)  # fmt: skip
        except OSError as exc:
            log(
                event="error",
                step="TCP_AO_ADD_KEY",
                error=f"{exc.strerror} (errno {exc.errno})",
                policy=policy["name"],
            )
            out.close()
            return None
        try:
            out.settimeout(3)
            out.connect(remote)
            out.settimeout(None)
            return out
        except OSError as exc:
            why = (
                "no answer: the terminator is down, or it drops our segments because it cannot verify their "
                f"MAC (its key for us differs from ours, keyid {policy['keyid']}, {policy['mac_alg']})"
                if isinstance(exc, TimeoutError)
                else f"{exc.strerror or exc} (errno {exc.errno})"
            )
            out.close()
            if time.monotonic() + delay > deadline:
                log(
                    event="error",
                    step="connect",
                    to=f"{remote[0]}:{remote[1]}",
                    why=why,
                    gave_up_after=retry_for,
                )
                return None
            log(event="retry", to=f"{remote[0]}:{remote[1]}", why=why, retry_in=delay)
            time.sleep(delay)
            delay = min(delay * 2, 4.0)


def _finish(a: socket.socket, b: socket.socket, log: object) -> None:
    ao = a if _has_ao(a) else b
    _relay(a, b)
    try:
        counters = info(ao)
    except OSError:
        counters = {}
    log(event="closed", ao=counters)  # type: ignore[operator]
    a.close()
    b.close()


def _has_ao(s: socket.socket) -> bool:
    try:
        info(s)
        return True
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("initiator", "terminator"), required=True)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument(
        "--as-proxy", action="store_true", help="the key's address with the remote's port, as tcpao-proxy"
    )
    ap.add_argument(
        "--retry-for", type=float, default=30.0, help="seconds an initiator tries to reach its terminator"
    )
    args = ap.parse_args()
    try:
        serve(args.config, args.mode, as_proxy=args.as_proxy, retry_for=args.retry_for)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
