"""The stack directory's record (quickstart.json: where the stack came from, its engine, its files)
and how to reach its Compose project from it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, PreflightError, ReleaserError
from ..names import SIDECAR_SUFFIX
from ..plan import Plan
from . import secrets as sec
from .doctor import Check, Engine, detect_engine, engine_order
from .files import write_file
from .stack import Compose, ComposeFile

STATE_FILE = "quickstart.json"


DEFAULT_DIR = Path("quickstart")


Say = Callable[[str], None]


def quiet(_: str) -> None:
    pass


@dataclass(frozen=True, kw_only=True)
class State:
    release: str
    version: str
    source: str
    source_kind: str  # release | bundle
    engine: str
    files: tuple[str, ...]  # compose files, in -f order
    registry: str | None = None
    local_registry: bool = False  # the registry is the stack's own (--to local)
    plain_tcp_wire: bool = False  # TCP-AO sidecars run without TCP-AO (the check was skipped)
    keys: tuple[tuple[str, str], ...] = ()  # (TCP-AO key secret, sha256 of its file) at the last start
    revision: int = 1  # the revision running (quickstart history; revisions.py)

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "version": self.version,
            "source": self.source,
            "sourceKind": self.source_kind,
            "engine": self.engine,
            "files": list(self.files),
            "registry": self.registry,
            "localRegistry": self.local_registry,
            "plainTcpWire": self.plain_tcp_wire,
            "keys": dict(self.keys),
            "revision": self.revision,
        }

    @property
    def registry_port(self) -> int | None:
        return int(self.registry.rsplit(":", 1)[1]) if self.local_registry and self.registry else None

    @classmethod
    def load(cls, stack: Path) -> State:
        path = stack / STATE_FILE
        if not path.is_file():
            where = "does not exist" if not stack.exists() else f"has no {STATE_FILE}"
            raise InputError(
                f"no quickstart stack at {stack} (the directory {where})",
                fix="start one with `releaser quickstart RELEASE_DIR`, or point --stack (or "
                "$RELEASER_QUICKSTART_DIR) at the directory it was started in",
            )
        try:
            d = json.loads(path.read_text())
            return cls(
                release=d["release"],
                version=d["version"],
                source=d["source"],
                source_kind=d["sourceKind"],
                engine=d["engine"],
                files=tuple(d["files"]),
                registry=d.get("registry"),
                local_registry=bool(d.get("localRegistry")),
                plain_tcp_wire=bool(d.get("plainTcpWire")),
                keys=tuple(sorted((str(k), str(v)) for k, v in (d.get("keys") or {}).items())),
                revision=int(d.get("revision") or 1),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ReleaserError(
                f"{path}: unreadable quickstart state ({exc})",
                fix="run `releaser quickstart RELEASE_DIR` again to rewrite it",
            ) from exc

    def save(self, stack: Path) -> None:
        write_file(stack / STATE_FILE, (json.dumps(self.to_json(), indent=2) + "\n").encode())


def key_digests(stack: Path, plan: Plan) -> tuple[tuple[str, str], ...]:
    """(secret, sha256) of every TCP-AO key file the sidecars read, as it is now."""
    names = sorted({s.sidecar.key_secret for s in plan.services if s.sidecar})
    out = []
    for name in names:
        path = stack / sec.SECRETS_DIR / name
        if path.is_file():
            out.append((name, hashlib.sha256(path.read_bytes()[: 1 << 16]).hexdigest()))
    return tuple(out)


def changed_key_sidecars(
    before: tuple[tuple[str, str], ...], now: tuple[tuple[str, str], ...], plan: Plan
) -> list[str]:
    """The sidecar services whose TCP-AO key file changed since the last start (they read it once,
    when they start: a changed key takes effect only when they restart)."""
    old = dict(before)
    changed = {name for name, digest in now if name in old and old[name] != digest}
    return sorted(
        f"{s.name}-{SIDECAR_SUFFIX}" for s in plan.services if s.sidecar and s.sidecar.key_secret in changed
    )


def find_engine(kind: str | None) -> Engine:
    found, seen = detect_engine(kind)
    if found is None:
        looked = ", ".join(seen) if seen else "none of " + ", ".join(engine_order(kind)[0])
        check = Check(
            name="engine",
            status="fail",
            detail=f"no container engine with Compose found (found: {looked})",
            fix="install podman with podman-compose, or Docker with the Compose v2 plugin; --engine (or "
            "$RELEASER_ENGINE) picks one; `releaser doctor` checks everything",
        )
        raise PreflightError([check], [check])
    return found


def compose_for(stack: Path, state: State, engine: Engine | None = None) -> Compose:
    return Compose(
        engine=engine or find_engine(state.engine),
        directory=stack,
        files=list(state.files),
        project=state.release,
    )


def compose_spec(stack: Path, state: State) -> ComposeFile:
    return ComposeFile.read([stack / f for f in state.files])
