"""The quickstart's secret files: generated once with a CSPRNG, kept across runs, never shown.

Layout: `<stack>/.secrets/` (mode 0700) holds one file per secret. Compose mounts each
file into the containers that list it (at /run/secrets/<target>). Compose (without
swarm) bind-mounts the file with its host owner and mode and ignores `uid`/`gid`/`mode`,
so the file itself must be readable by the container user: when every consumer runs as
one uid, the file is owned by that uid with mode 0400; when they share only a gid, it is
group-readable (0440); the directory stays 0700 so no other host user can reach it.
"""

from __future__ import annotations

import os
import secrets as _random
import string
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReleaserError
from ..fs import atomic_write

SECRETS_DIR = ".secrets"
ALPHABET = string.ascii_letters + string.digits
TCPAO_KEY_LENGTH = 32  # characters; TCP-AO keys may be up to 80 bytes (RFC 5925 / Linux TCP_AO_MAXKEYLEN)


@dataclass(frozen=True, kw_only=True)
class SecretSpec:
    name: str
    length: int  # characters to generate when the file is missing
    consumers: tuple[tuple[str, int, int], ...]  # (compose service, uid, gid)
    provided: bool = False  # the user is expected to provide it (quickstart generates one for a lab)


@dataclass
class SecretReport:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _owner(spec: SecretSpec) -> tuple[int, int, int]:
    """(uid, gid, mode) so that every consumer, and nobody else in the container, can read it."""
    uids = {u for _, u, _ in spec.consumers}
    gids = {g for _, _, g in spec.consumers}
    if len(uids) <= 1:
        uid = next(iter(uids), 0)
        gid = next(iter(gids)) if len(gids) == 1 else uid
        return uid, gid, 0o400
    if len(gids) == 1:
        return 0, next(iter(gids)), 0o440
    who = ", ".join(f"{s} ({u}:{g})" for s, u, g in spec.consumers)
    raise ReleaserError(
        f"secret {spec.name} is read by services running as different users and groups: {who}",
        fix="give the services that share this secret one user or one group (services.<name>.user)",
    )


def ensure(stack: Path, specs: list[SecretSpec]) -> SecretReport:
    """Create missing secret files (CSPRNG), keep existing ones, fix owners and modes."""
    report = SecretReport()
    directory = stack / SECRETS_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    can_chown = os.geteuid() == 0
    for spec in specs:
        path = directory / spec.name
        uid, gid, mode = _owner(spec)
        if path.exists():
            report.kept.append(spec.name)
        else:
            value = "".join(_random.choice(ALPHABET) for _ in range(spec.length))
            atomic_write(path, value.encode(), mode=0o600)
            report.created.append(spec.name)
        if can_chown:
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        elif os.stat(path).st_uid != uid:
            # Without root the file cannot be given to the container user: make it readable inside
            # the container; the 0700 directory still keeps other host users out.
            os.chmod(path, 0o444)
            report.warnings.append(
                f"{path}: not running as root, so it cannot be owned by uid {uid}; made it "
                f"readable (mode 0444) inside {directory} (mode 0700)"
            )
        else:
            os.chmod(path, mode)
    return report


def values(stack: Path) -> list[str]:
    """Every secret value of the stack (for redaction only; never printed)."""
    directory = stack / SECRETS_DIR
    out = []
    if directory.is_dir():
        for p in sorted(directory.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                v = p.read_text(errors="replace").strip()
                if len(v) >= 6:
                    out.append(v)
    return out


def redact(text: str, stack: Path) -> str:
    """Replace any secret value that appears in `text` (a log excerpt we are about to show)."""
    for v in values(stack):
        text = text.replace(v, "[redacted: a value from .secrets/]")
    return text
