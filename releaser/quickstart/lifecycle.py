"""`quickstart status`, `logs`, `down` and `reset`: the stack's life after `up` (backup and restore:
backup.py; what holds before `up`: preflight.py; the stack's record: state.py)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfirmationRequired, UsageError
from . import localregistry, revisions
from . import secrets as sec
from .preflight import other_stack
from .stack import ServiceState
from .state import DEFAULT_DIR, State, compose_for, compose_spec


@dataclass(frozen=True, kw_only=True)
class StatusResult:
    release: str
    version: str
    stack: str
    engine: str
    services: tuple[ServiceState, ...]
    other_stack: str | None = None  # the stack directory that holds the release's containers instead
    killed: tuple[str, ...] = ()  # stopped by SIGKILL at the end of their grace period (down)

    @property
    def healthy(self) -> bool:
        return bool(self.services) and all(s.ready for s in self.services)

    @property
    def stopped(self) -> bool:
        return all(s.state == "stopped" for s in self.services)

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "version": self.version,
            "stack": self.stack,
            "engine": self.engine,
            "healthy": self.healthy,
            "services": [s.to_json() for s in self.services],
            "stopped": self.stopped,
            "otherStack": self.other_stack,
            "killedOnStop": list(self.killed),
        }


def status(stack: Path = DEFAULT_DIR) -> StatusResult:
    state = State.load(stack)
    compose = compose_for(stack, state)
    spec = compose_spec(stack, state)
    other = other_stack(compose.engine.kind, state.release, stack)
    # the project's containers are another stack's: nothing of them is this stack's state
    states = [ServiceState(service=n) for n in spec.shown] if other else compose.states(spec)
    compose.run_healthchecks(states)
    if not any(s.container for s in states):  # after down or reset, or never started here
        states = [dataclasses.replace(s, state="stopped") for s in states]
    return StatusResult(
        release=state.release,
        version=state.version,
        stack=str(stack.absolute()),
        engine=compose.engine.kind,
        services=tuple(states),
        other_stack=other,
    )


def logs(
    stack: Path = DEFAULT_DIR,
    service: str | None = None,
    *,
    follow: bool = False,
    tail: int | None = None,
    write: Callable[[str], None] = print,
) -> None:
    """Stream logs, one line at a time, with every secret value of the stack redacted."""
    state = State.load(stack)
    spec = compose_spec(stack, state)
    if service is not None and service not in spec.services:
        raise UsageError(
            f"no service {service!r} in {state.release}", fix=f"pick one of {', '.join(spec.services)}"
        )
    compose = compose_for(stack, state)
    args = ["logs", "--no-color"] + (["--follow"] if follow else []) + (["--tail", str(tail)] if tail else [])
    proc = subprocess.Popen(
        compose.argv(*args, *([service] if service else [])),
        cwd=stack,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            write(sec.redact(line.rstrip("\n"), stack))
    finally:
        proc.terminate()
        proc.wait()


def killed_on_stop(killed: tuple[str, ...]) -> str:
    """The advice when a stop had to kill services (Compose.stop): what their PID 1 does, the fix."""
    return (
        f"{', '.join(killed)} did not stop on {'its' if len(killed) == 1 else 'their'} stop signal and "
        f"{'was' if len(killed) == 1 else 'were'} killed after the grace period, so every stop waits "
        "for it: PID 1 of the image ignores the signal (a shell, or a server without a handler). In "
        "release.yaml give the service `init: true` (an init process forwards the signal) or the "
        "`stopSignal` its process stops on (docs/quickstart.md#stopping)"
    )


def down(stack: Path = DEFAULT_DIR) -> StatusResult:
    state = State.load(stack)
    compose = compose_for(stack, state)
    killed = compose.stop(compose_spec(stack, state))
    compose.run("down", "--remove-orphans")
    if state.local_registry:
        localregistry.stop(stack)
    return StatusResult(
        release=state.release,
        version=state.version,
        stack=str(stack.absolute()),
        engine=compose.engine.kind,
        services=tuple(compose.states(compose_spec(stack, state))),
        killed=killed,
    )


@dataclass(frozen=True, kw_only=True)
class ResetResult:
    stack: str
    removed: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "removed": list(self.removed)}


REVISION_BACKUP = "backup.tar.zst"


def reset_targets(stack: Path, state: State) -> list[str]:
    spec = compose_spec(stack, state)
    out = [f"containers of {state.release}: {', '.join(spec.services)}", f"network {state.release}_release"]
    out += [f"volume {state.release}_{v} (its data)" for v in sorted(spec.volumes)]
    if state.local_registry:
        out.append(f"the stack's own registry {state.registry} and its storage {stack / localregistry.DIR}")
    secret_dir = stack / sec.SECRETS_DIR
    if secret_dir.is_dir():
        out += [f"secret file {p}" for p in sorted(secret_dir.iterdir()) if not p.name.startswith(".")]
    out += [f"upgrade backup {p} (volume data and secrets)" for p in revision_backups(stack)]
    return out


def revision_backups(stack: Path) -> list[Path]:
    """The backups upgrades took (.revisions/N/backup.tar.zst): they hold volume data and secrets."""
    return sorted((stack / revisions.DIR).glob(f"*/{REVISION_BACKUP}"))


def reset(stack: Path = DEFAULT_DIR, *, yes: bool = False) -> ResetResult:
    state = State.load(stack)
    targets = reset_targets(stack, state)
    if not yes:
        raise ConfirmationRequired(
            "reset deletes data and needs --yes. It would remove:\n" + "\n".join(f"  - {t}" for t in targets),
            fix="take a backup first (releaser quickstart backup --out-file backup.tar.zst), then "
            "releaser quickstart reset --yes",
        )
    compose = compose_for(stack, state)
    compose.run("down", "--volumes", "--remove-orphans")
    left = compose.leftovers()
    if left:  # a container `down` left behind, and the volumes it held: nothing may stay
        compose.remove_containers(left)
        compose.run("down", "--volumes", "--remove-orphans")
    shutil.rmtree(stack / sec.SECRETS_DIR, ignore_errors=True)
    for path in revision_backups(stack):
        path.unlink(missing_ok=True)
    if state.local_registry:
        localregistry.stop(stack)
        shutil.rmtree(stack / localregistry.DIR, ignore_errors=True)
    return ResetResult(stack=str(stack.absolute()), removed=tuple(targets))
