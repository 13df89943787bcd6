"""Whom the client trusts and how it speaks to a host: loopback registries (plain HTTP allowed),
per-registry CAs and client certificates where Docker and podman keep them (certs.d), the
system's CA bundle.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from pathlib import Path

from ..errors import RegistryError


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def certs_d_dirs() -> list[Path]:
    """Where Docker and podman/skopeo keep per-registry CAs (HOST[:PORT]/*.crt), in that order;
    $RELEASER_CERTS_D (colon-separated) replaces the list."""
    env = os.environ.get("RELEASER_CERTS_D")
    if env is not None:
        return [Path(d) for d in env.split(":") if d]
    return [
        Path("/etc/docker/certs.d"),
        Path("/etc/containers/certs.d"),
        Path.home() / ".config/containers/certs.d",
    ]


def system_trust() -> str | None:
    """The system's CA bundle as OpenSSL finds it (honours $SSL_CERT_FILE / $SSL_CERT_DIR):
    what Docker, Helm and skopeo trust. None when the system has none."""
    import ssl

    paths = ssl.get_default_verify_paths()
    if paths.cafile and os.path.isfile(paths.cafile):
        return paths.cafile
    if paths.capath and os.path.isdir(paths.capath) and any(Path(paths.capath).glob("*.[0-9]")):
        return paths.capath
    return None


_bundles: dict[tuple[str, ...], str] = {}
_bundles_lock = threading.Lock()


def trust_for(host: str, ca_file: str | None = None) -> str | bool:
    """What requests should verify `host` against: the system's CAs, plus the CAs filed for
    the host under certs.d (as Docker and skopeo read them), plus --ca-file. One file or
    directory when nothing is added; else a combined bundle written once per process."""
    extra = [str(c) for d in certs_d_dirs() for c in sorted((d / host).glob("*.crt")) if c.is_file()]
    if ca_file:
        if not os.path.isfile(ca_file):
            raise RegistryError(
                f"--ca-file {ca_file}: no such file", fix="pass a PEM file of CA certificates"
            )
        extra.append(ca_file)
    system = system_trust()
    if not extra:
        return system or True  # True: requests' own bundle (certifi) on a system without one
    base = system if system and os.path.isfile(system) else None
    if base is None:
        import certifi

        base = certifi.where()
    key = (base, *extra)
    with _bundles_lock:
        if key not in _bundles:
            import atexit
            import tempfile

            fd, path = tempfile.mkstemp(prefix="releaser-ca-", suffix=".pem")
            with os.fdopen(fd, "wb") as out:
                for f in key:
                    out.write(Path(f).read_bytes().rstrip(b"\n") + b"\n")
            atexit.register(lambda: Path(path).unlink(missing_ok=True))
            _bundles[key] = path
        return _bundles[key]


def client_cert_for(host: str) -> tuple[str, str] | None:
    """A client certificate filed for `host` under certs.d, as Docker reads it: NAME.cert with
    NAME.key beside it (the first pair found). A .cert without its .key is an error."""
    for d in certs_d_dirs():
        for cert in sorted((d / host).glob("*.cert")):
            key = cert.with_suffix(".key")
            if not key.is_file():
                raise RegistryError(
                    f"{cert}: a client certificate without its key ({key.name})",
                    fix=f"put the key beside it as {key}, or remove {cert}",
                )
            return str(cert), str(key)
    return None
