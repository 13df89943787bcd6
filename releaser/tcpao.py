"""What tcpao-proxy and the kernel accept, in one place: the sidecar config's rules and the key's.

From the proxy's own code (asadarafat/rust-tcpao-proxy): `src/config.rs` (`Config::validate`,
`AoPolicyConfig`, `KeySource`) and `src/tcpao/linux.rs` (`install_key`, `normalize_mac_alg`); and
from the kernel's `net/ipv4/tcp_ao.c` (`tcp_ao_add_cmd`: `TCP_AO_MAXKEYLEN`, and no port in a key's
address). Every rendered sidecar config is checked against these rules before it is written, and
every TCP-AO key file before the quickstart starts anything (docs/release-yaml.md#tcpao).
"""

from __future__ import annotations

import ipaddress
import tomllib
from typing import Any

MAX_KEY_BYTES = 80  # TCP_AO_MAXKEYLEN: the proxy refuses longer keys, the kernel too
CMAC_KEY_BYTES = (16, 24, 32)  # cmac-aes: the proxy names `cmac(aes)`, whose key is an AES key
CMAC = "cmac-aes"
# the names normalize_mac_alg maps to the kernel's crypto names; any other string goes to the
# kernel unchanged (which knows `cmac(aes)` and RFC 5926's `cmac(aes128)`, never `cmac-aes128`).
# The one list of the names release.yaml accepts: the schema's enum and the chart's are these, in this order.
MAC_ALGORITHMS = {"hmac-sha256": "hmac(sha256)", "hmac-sha1": "hmac(sha1)", "cmac-aes": "cmac(aes)"}


def split_hostport(value: str) -> tuple[str, int]:
    """A sidecar address HOST:PORT (listen, forward, remote; the schema's pattern) as (host, port):
    the one place these are read, by the checks and by the plan."""
    host, _, port = value.rpartition(":")
    return host, int(port)


def config_problems(text: str) -> list[str]:
    """What the proxy would refuse in a rendered sidecar config (empty: it loads and validates)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"not TOML: {exc}"]
    out: list[str] = []
    modes = [m for m in ("initiator", "terminator") if isinstance(doc.get(m), dict)]
    if len(modes) != 1:
        out.append("needs exactly one of [initiator] and [terminator]")
    policies = doc.get("ao_policy")
    if not isinstance(policies, list) or not policies:
        return [*out, "at least one [[ao_policy]] entry is required"]
    names: set[str] = set()
    peers: set[tuple[str, int | None]] = set()
    for i, p in enumerate(policies):
        out += [f"ao_policy[{i}]: {problem}" for problem in _policy_problems(p, modes, names, peers)]
    return out


def _policy_problems(
    p: Any, modes: list[str], names: set[str], peers: set[tuple[str, int | None]]
) -> list[str]:
    if not isinstance(p, dict):
        return ["not a table"]
    out = []
    name = p.get("name")
    if not isinstance(name, str) or not name:
        out.append("needs a name")
    elif name in names:
        out.append(f"duplicate name {name!r}")
    else:
        names.add(name)
    try:
        ip = str(ipaddress.ip_address(p.get("peer_ip", "")))
    except ValueError:
        out.append(f"peer_ip {p.get('peer_ip')!r} is not an IP address")
        ip = ""
    port = p.get("peer_port")
    if port is not None and not (type(port) is int and 1 <= port <= 65535):
        out.append(f"peer_port {port!r}: leave it out where no port applies, else 1-65535")
    if port is not None and modes == ["terminator"]:
        out.append("a terminator's policy names no peer_port (the kernel refuses a port in a key's address)")
    if (ip, port) in peers:
        out.append(f"duplicate peer {ip}:{port if port is not None else '*'}")
    peers.add((ip, port))
    for key in ("keyid", "rnextkeyid"):
        v = p.get(key)
        if (key == "keyid" or v is not None) and not (type(v) is int and 0 <= v <= 255):
            out.append(f"{key} {v!r} is not 0-255")
    if p.get("mac_alg") not in MAC_ALGORITHMS:
        out.append(f"mac_alg {p.get('mac_alg')!r} is not one of {', '.join(MAC_ALGORITHMS)}")
    source = p.get("key_source")
    kind, _, rest = source.partition(":") if isinstance(source, str) else ("", "", "")
    if kind not in ("file", "env") or not rest:
        out.append(f"key_source {source!r} is not file:PATH or env:VAR")
    return out


def key_problems(key: bytes, size: int | None = None, *, cmac: bool = False) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a TCP-AO key as the proxy reads it: the raw bytes of the file
    (`size` bytes of it, when only its head was read). `cmac`: a key used with `cmac-aes`, which the
    proxy hands the kernel as `cmac(aes)`, an AES key: 16, 24 or 32 bytes, nothing else (the
    kernel answers EINVAL; seen on a TCP-AO kernel, tests/test_tcpao_kernel.py)."""
    size = len(key) if size is None else size
    problems = []
    warnings = []
    if not size:
        problems.append("is empty (the proxy refuses an empty key)")
    elif size > MAX_KEY_BYTES:
        problems.append(f"is {size} bytes; TCP-AO keys are at most {MAX_KEY_BYTES} (TCP_AO_MAXKEYLEN)")
    elif cmac and size not in CMAC_KEY_BYTES:
        problems.append(
            f"is {size} bytes; with cmac-aes the kernel takes an AES key of 16, 24 or 32 bytes (16 for "
            "RFC 5926's AES-128-CMAC-96, which routers speak)"
        )
    elif cmac and size != 16:
        warnings.append(
            f"is {size} bytes: AES-{size * 8}-CMAC, which Linux peers agree on but an RFC 5926 router "
            "(AES-128-CMAC-96, 16-byte keys) does not"
        )
    if key.endswith((b"\n", b"\r")):
        warnings.append(
            "ends with a line break, which the proxy uses as part of the key (a router configured with "
            "the same text without it will not agree); write it with `printf %s KEY > FILE`"
        )
    return problems, warnings
