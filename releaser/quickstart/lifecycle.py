"""`releaser quickstart`: the Compose stack of a release on this host, from start to reset.

    up       preflight -> compose files -> secrets -> `compose up -d` -> wait until ready
    status   every service's state and health
    logs     a service's logs (secret values redacted)
    down     stop and remove containers and the network; volumes and secrets stay
    backup   stop, copy volumes + config + secrets into one .tar.zst, start again
    restore  put a backup's volumes, config and secrets back, then up
    reset    remove containers, volumes and generated secrets (only with --yes)

The stack directory (default ./quickstart) holds compose.yaml and its files, .secrets/,
an optional .env the user writes, and quickstart.json, which records where the stack came
from so the other commands need no arguments. Its format is in docs/quickstart.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from ..budgets import MAX_JSON_BYTES, MAX_MEMBERS, MAX_NAME_BYTES, MAX_WINDOW, loads
from ..bundle.archive import iter_members
from ..bundle.verify import verify_bundle, verify_head
from ..errors import ConfirmationRequired, EngineError, InputError, PreflightError, ReleaserError, UsageError
from ..fs import UnreadableInput, atomic_file, atomic_write, regular_file
from ..plan import SIDECAR_SUFFIX, Plan, PlanPort
from . import localregistry, revisions
from . import secrets as sec
from .doctor import Check, Engine, detect_engine, engine_cli, is_podman, run_checks
from .stack import Compose, ComposeFile, ServiceState, up_and_wait

STATE_FILE = "quickstart.json"
BACKUP_FORMAT = "releaser.dev/quickstart-backup/v1"
DEFAULT_DIR = Path("quickstart")
Say = Callable[[str], None]


def quiet(_: str) -> None:
    pass


# ------------------------------------------------------------------ state


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


def write_file(path: Path, content: bytes, mode: int = 0o644) -> None:
    atomic_write(path, content, mode=mode)


def find_engine(kind: str | None) -> Engine:
    found, seen = detect_engine(kind)
    if found is None:
        looked = (
            ", ".join(seen)
            if seen
            else (f"no {kind}" if kind else "none of docker, podman, podman-compose, docker-compose")
        )
        check = Check(
            name="engine",
            status="fail",
            detail=f"no container engine with Compose found (found: {looked})",
            fix="install Docker with the Compose v2 plugin, or podman with podman-compose; --engine picks "
            "one; `releaser doctor` checks everything",
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


def secret_specs(plan: Plan, spec: ComposeFile) -> list[sec.SecretSpec]:
    lengths = {s.name: s.length for s in plan.generated_secrets}
    out = []
    for name, services in sorted(spec.secret_consumers.items()):
        consumers = tuple((svc, *spec.users.get(svc, (0, 0))) for svc in services)
        provided = name not in lengths
        out.append(
            sec.SecretSpec(
                name=name,
                length=lengths.get(name) or sec.TCPAO_KEY_LENGTH,
                consumers=consumers,
                provided=provided,
            )
        )
    return out


def host_ports(
    services: Sequence[tuple[str, Sequence[PlanPort]]], stack: Path, held_ports: frozenset[int] = frozenset()
) -> list[tuple[str, int, str, str | None]]:
    """(service.port, host port, protocol, address) of every port the stack takes on this host:
    each port Compose publishes, with the host port Compose will really use (shell env first,
    then the stack's .env, then the default) on BIND_ADDRESS (address None), and each port a
    host-network service binds itself (address 0.0.0.0: it may listen on any address, so
    whatever holds the port on any address is in the way). `services`: (name, plan.plan_ports)
    of each service; `held_ports`: the stack's own."""
    knobs = {**dotenv(stack / ".env"), **os.environ}
    ports: list[tuple[str, int, str, str | None]] = []
    for name, service_ports in services:
        for p in service_ports:
            if p.compose_host_bound and p.port not in held_ports:
                ports.append((f"{name}.{p.name} (host network)", p.port, p.protocol, "0.0.0.0"))
            port = int(knobs.get(p.knob) or p.host_port or p.port)
            if p.compose_published and port not in held_ports:
                ports.append((f"{name}.{p.name}", port, p.protocol, None))
    return ports


def service_ports(plan: Plan) -> list[tuple[str, Sequence[PlanPort]]]:
    return [(s.name, s.ports) for s in plan.services]


def registries_to_pull(plan: Plan, engine: Engine) -> list[str]:
    """Registry hosts of the locked images this engine does not have yet."""
    return sorted(
        {r.split("/", 1)[0] for r in _images_missing_locally(engine, sorted(i.pinned for i in plan.images))}
    )


def preflight(
    plan: Plan,
    *,
    engine: str | None,
    skip: tuple[str, ...],
    held_ports: set[int],
    registries: list[str],
    stack: Path,
) -> list[Check]:
    knobs = {**dotenv(stack / ".env"), **os.environ}
    sidecars = [s.sidecar for s in plan.services if s.sidecar]
    checks = run_checks(
        ports=host_ports(service_ports(plan), stack, frozenset(held_ports)),
        tcpao=bool(sidecars),
        tcpao_root=any(sc.run_as_root for sc in sidecars),
        tcpao_keys=sorted({stack / sec.SECRETS_DIR / sc.key_secret for sc in sidecars}),
        engine=engine,
        skip=frozenset(skip),
        disk_path=stack,
        registries=registries,
        bind_address=knobs.get("BIND_ADDRESS") or "127.0.0.1",
        subnet=plan.subnet,
        own_interfaces=own_bridges(engine, plan.name) if plan.subnet else frozenset(),
    )
    other = other_stack(engine, plan.name, stack)
    if other is not None:
        checks.append(
            Check(
                name="stack",
                status="fail",
                detail=f"{plan.name} already runs as a quickstart stack in {other} (Compose project "
                f"{plan.name}): a second stack of it would recreate that stack's containers and share its volumes",
                fix=f"use that stack (--stack {other}), or stop it first: releaser quickstart down --stack {other}",
            )
        )
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise PreflightError(failed, checks)
    return checks


def other_stack(engine: str | None, project: str, stack: Path) -> str | None:
    """The stack directory whose containers hold the Compose project `project`, when it is not
    `stack`: one stack of a release per host and engine (the project is the release's name)."""
    if engine is None:
        return None
    label = "com.docker.compose.project"
    # docker ps: .Labels is one string, .Label reads one; podman ps: .Labels is a map
    fmt = (
        f'{{{{index .Labels "{label}.working_dir"}}}}'
        if is_podman(engine)
        else f'{{{{.Label "{label}.working_dir"}}}}'
    )
    try:
        proc = subprocess.run(
            [engine_cli(engine), "ps", "-a", "--filter", f"label={label}={project}", "--format", fmt],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    here = os.path.realpath(stack)
    dirs = {d.strip() for d in proc.stdout.splitlines() if d.strip()} if proc.returncode == 0 else set()
    others = sorted(d for d in dirs if os.path.realpath(d) != here)
    return others[0] if others else None


def own_bridges(engine: str | None, project: str) -> frozenset[str]:
    """The host interface of this stack's own network, if it exists (a re-run must not trip on it)."""
    if engine is None:  # no engine: no network of ours either (the preflight says what is missing)
        return frozenset()
    podman, cli = is_podman(engine), engine_cli(engine)
    fmt = "{{.NetworkInterface}}" if podman else "{{.Id}}"
    try:
        proc = subprocess.run(
            [cli, "network", "inspect", "-f", fmt, f"{project}_release"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    if proc.returncode != 0 or not proc.stdout.strip():
        return frozenset()
    value = proc.stdout.strip().splitlines()[0]
    return frozenset({value if podman else f"br-{value[:12]}"})


def dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose .env file (comments and blanks skipped)."""
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                out[key.strip()] = value.strip().strip("'\"")
    return out


def held_ports(stack: Path, plan: Plan, engine: str | None) -> set[int]:
    """Host ports this stack's own running containers hold (a re-run must not trip on them):
    the ports they publish, and the ports of its host-network services that are running."""
    if not (stack / STATE_FILE).is_file():
        return set()
    try:
        state = State.load(stack)
        compose = compose_for(stack, state)
        found = compose.states(compose_spec(stack, state))
    except ReleaserError:
        return set()
    host_bound = {s.name: [p.port for p in s.ports if p.compose_host_bound] for s in plan.services}
    held = set()
    for s in found:
        for p in s.ports:
            held.add(int(p.split("->")[0].rsplit(":", 1)[1]))
        if s.state in ("running", "restarting", "paused"):
            held.update(host_bound.get(s.service, ()))
    return held


def _images_missing_locally(engine: Engine, images: list[str]) -> list[str]:
    cli = engine.cli
    missing = []
    for ref in images:
        proc = subprocess.run([cli, "image", "inspect", ref], capture_output=True, check=False)
        if proc.returncode != 0:
            missing.append(ref)
    return missing


def urls(plan: Plan, states: list[ServiceState]) -> list[tuple[str, str]]:
    out = []
    by_service = {s.service: s for s in states}
    for svc in plan.services:
        st = by_service.get(svc.name)
        for p in (p for p in svc.ports if p.compose_published):
            published = [
                x for x in (st.ports if st else ()) if x.endswith(f"->{p.port}/{p.protocol.lower()}")
            ]
            for x in published:
                host = x.split("->")[0]
                host = host.replace("0.0.0.0", "127.0.0.1")
                scheme = "http://" if "http" in p.name or p.port in (80, 8080) else ""
                out.append((f"{svc.name}.{p.name}", f"{scheme}{host}"))
    return out


def bundle_files(bundle: Path, key: Path, tmp: Path) -> tuple[dict[str, bytes], Path]:
    """The compose files and the release (release.yaml + lock) out of a bundle whose signed
    head verifies; each member's sha256 is checked against the signed checksums.txt."""
    meta = verify_head(bundle, key)
    if meta is None:
        verify_bundle(bundle, key)  # raises with every problem listed
        meta = verify_head(bundle, key)
    assert meta is not None
    name = meta.name
    compose_prefix = f"compose/{name}/"
    wanted: dict[str, bytes] = {}
    sums: dict[str, str] = {}
    for info, reader in iter_members(bundle):
        if reader is None:
            continue
        # small files, checked against the signed checksums below; one over the budget cannot match
        if info.name == "checksums.txt":
            for line in reader.read(MAX_JSON_BYTES + 1).decode("utf-8", "replace").splitlines():
                digest, _, member = line.partition("  ")
                sums[member] = digest
        elif info.name.startswith((compose_prefix, "release/")):
            wanted[info.name] = reader.read(MAX_JSON_BYTES + 1)
    problems = [m for m, data in wanted.items() if sums.get(m) != hashlib.sha256(data).hexdigest()]
    if problems or not any(m.startswith(compose_prefix) for m in wanted):
        raise ReleaserError(
            f"{bundle}: {', '.join(problems) or 'compose files'} do not match the signed checksums",
            fix=f"run `releaser airgap verify {bundle} --key {key}` for the full report",
        )
    release_dir = tmp / "release"
    release_dir.mkdir()
    for m, data in wanted.items():
        if m.startswith("release/"):  # release.yaml, the lock and the config files it names
            dest = (release_dir / m.split("/", 1)[1]).resolve()
            if dest.is_relative_to(release_dir.resolve()):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
    files = {m[len(compose_prefix) :]: data for m, data in wanted.items() if m.startswith(compose_prefix)}
    return files, release_dir


# ------------------------------------------------------------------ status / logs / down


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


# ------------------------------------------------------------------ reset


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


# ------------------------------------------------------------------ backup / restore


@dataclass(frozen=True, kw_only=True)
class BackupResult:
    path: str
    release: str
    version: str
    volumes: tuple[str, ...]
    files: tuple[str, ...]
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "release": self.release,
            "version": self.version,
            "volumes": list(self.volumes),
            "files": list(self.files),
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


CONFIG_NAMES = (
    "compose.yaml",
    "compose.podman.yaml",
    "compose.airgap.yaml",
    ".env",
    ".env.example",
    STATE_FILE,
)


def _config_files(stack: Path) -> list[str]:
    out = [n for n in CONFIG_NAMES if (stack / n).is_file()]
    if (stack / "tcpao").is_dir():
        out += [f"tcpao/{p.name}" for p in sorted((stack / "tcpao").iterdir()) if p.is_file()]
    if (stack / sec.SECRETS_DIR).is_dir():
        out += [
            f"{sec.SECRETS_DIR}/{p.name}"
            for p in sorted((stack / sec.SECRETS_DIR).iterdir())
            if p.is_file() and not p.name.startswith(".")
        ]
    return out


def backup(stack: Path = DEFAULT_DIR, *, out: Path, say: Say = quiet, restart: bool = True) -> BackupResult:
    """Stop the stack, copy every volume, the config and the secrets into one .tar.zst, start again
    (`restart` False: leave it stopped, as an upgrade does, which replaces it next)."""
    state = State.load(stack)
    spec = compose_spec(stack, state)
    compose = compose_for(stack, state)
    before = {s.service: s for s in compose.states(spec)}
    holders: dict[str, tuple[str | None, str]] = {}  # volume -> (the container it is read from, path)
    for vol, (svc, path) in spec.volumes.items():
        st = before.get(svc)
        holders[vol] = (st.container if st is not None and st.container else None, path)
    running = [s for s, st in before.items() if st.state in ("running", "restarting")]
    running += [spec.probes[s] for s in running if s in spec.probes]  # each with its probe container
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": BACKUP_FORMAT,
        "release": state.release,
        "version": state.version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "volumes": {},
        "files": {},
        "modes": {},
    }
    with tempfile.TemporaryDirectory(prefix="releaser-backup-") as work:
        say(f"stopping {state.release} for a consistent copy ({len(running)} running)")
        killed = compose.stop(spec)
        if killed:
            say(f"warning: {killed_on_stop(killed)}")
        copied = False
        try:
            staged: list[tuple[str, Path]] = []
            for vol, (container, path) in sorted(holders.items()):
                say(f"copying volume {vol} ({path})")
                target = Path(work) / f"{vol}.tar"
                with target.open("wb") as f:
                    if container is not None:
                        compose.export_volume(container, path, f)
                    else:  # after down: no container of the service, the volume is still there
                        svc = spec.volumes[vol][0]
                        try:
                            with compose.volume_helper(vol, path, spec.images[svc]) as (helper, inside):
                                compose.export_volume(helper, inside, f)
                        except EngineError as exc:
                            raise UsageError(
                                f"volume {vol} of {svc} cannot be read: {exc}",
                                fix="start the stack with `releaser quickstart SOURCE`, then back up",
                            ) from None
                h = hashlib.sha256()
                with target.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                manifest["volumes"][vol] = {
                    "service": spec.volumes[vol][0],
                    "path": path,
                    "sha256": h.hexdigest(),
                    "size": target.stat().st_size,
                }
                staged.append((f"volumes/{vol}.tar", target))
            copied = True
        finally:
            if running and (restart or not copied):  # a failed copy changes nothing: it runs again
                say(f"starting {', '.join(running)} again")
                compose.run("start", *running, check=False)
        for rel in _config_files(stack):
            p = stack / rel
            data = p.read_bytes()
            manifest["files"][rel] = hashlib.sha256(data).hexdigest()
            owner = p.stat()
            manifest["modes"][rel] = {"mode": owner.st_mode & 0o777, "uid": owner.st_uid, "gid": owner.st_gid}
            staged.append((f"files/{rel}", p))
        with (
            atomic_file(out, mode=0o600) as raw,
            zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as zw,
            tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):  # 0600: it holds the secrets
            body = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo("backup.json")
            info.size, info.mode = len(body), 0o600
            tar.addfile(info, io.BytesIO(body))
            for name, staged_path in staged:
                info = tarfile.TarInfo(name)
                info.size, info.mode = staged_path.stat().st_size, 0o600
                with staged_path.open("rb") as f:
                    tar.addfile(info, f)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    return BackupResult(
        path=str(out),
        release=state.release,
        version=state.version,
        volumes=tuple(sorted(manifest["volumes"])),
        files=tuple(manifest["files"]),
        bytes=out.stat().st_size,
        sha256=digest,
    )


@dataclass(frozen=True, kw_only=True)
class RestoreResult:
    path: str
    release: str
    volumes: tuple[str, ...]
    files: tuple[str, ...]
    services: tuple[ServiceState, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "release": self.release,
            "volumes": list(self.volumes),
            "files": list(self.files),
            "services": [s.to_json() for s in self.services],
        }


def _read_backup(path: Path, work: Path) -> dict[str, Any]:
    """Unpack into `work`, checking names and every sha256 before anything is changed."""
    try:
        regular_file(path)  # a FIFO or a device would block or never end
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such backup", fix="pass the file `releaser quickstart backup --out-file` wrote"
        ) from None
    except UnreadableInput as exc:
        raise InputError(f"backup {exc}", fix=exc.fix) from None
    members: dict[str, Path] = {}
    try:
        with (
            path.open("rb") as raw,
            zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(raw) as zr,
            tarfile.open(fileobj=zr, mode="r|") as tar,
        ):
            for info in tar:
                name = info.name
                unsafe = not info.isfile() or name.startswith("/") or ".." in name.split("/")
                if unsafe or len(name) > MAX_NAME_BYTES or len(members) >= MAX_MEMBERS:
                    raise ReleaserError(
                        f"{path}: {'unsafe member' if unsafe else 'too many or too long members, at'} "
                        f"{name[:200]!r}; this is not a quickstart backup",
                        fix="use a backup written by `releaser quickstart backup`",
                    )
                src = tar.extractfile(info)
                assert src is not None
                dest = work / f"m{len(members)}"
                with dest.open("wb") as f:
                    shutil.copyfileobj(src, f)
                members[name] = dest
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise ReleaserError(
            f"{path}: not a readable .tar.zst ({exc})",
            fix="the file is damaged or truncated; use another backup",
        ) from exc
    if "backup.json" not in members:
        raise ReleaserError(
            f"{path}: no backup.json inside; this is not a quickstart backup",
            fix="use a backup written by `releaser quickstart backup`",
        )
    manifest = _backup_manifest(path, members["backup.json"])
    bad = []
    for vol, meta in manifest["volumes"].items():
        m = members.get(f"volumes/{vol}.tar")
        if m is None or _sha256(m) != meta["sha256"]:
            bad.append(f"volumes/{vol}.tar")
    for rel, digest in manifest["files"].items():
        m = members.get(f"files/{rel}")
        if m is None or _sha256(m) != digest:
            bad.append(f"files/{rel}")
    if bad:
        raise ReleaserError(
            f"{path}: {', '.join(bad)} missing or not matching backup.json; nothing was restored",
            fix="the backup is damaged; use another one",
        )
    manifest["_members"] = members
    return manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _backup_manifest(path: Path, member: Path) -> dict[str, Any]:
    """backup.json, checked to have the shape `backup` writes (within budgets.loads)."""
    not_ours = ReleaserError(
        f"{path}: backup.json is not a quickstart backup's",
        fix="use a backup written by `releaser quickstart backup`",
    )
    try:
        doc = loads(member.read_bytes()[: MAX_JSON_BYTES + 1])
    except ValueError:
        raise not_ours from None
    if not isinstance(doc, dict):
        raise not_ours
    if doc.get("format") != BACKUP_FORMAT:
        raise ReleaserError(
            f"{path}: format {str(doc.get('format'))[:40]!r}, expected {BACKUP_FORMAT}",
            fix="restore it with the releaser version that wrote it",
        )
    volumes, files, modes = doc.get("volumes"), doc.get("files"), doc.get("modes")
    if not (
        isinstance(doc.get("release"), str)
        and isinstance(volumes, dict)
        and all(
            isinstance(v, dict) and all(isinstance(v.get(k), str) for k in ("sha256", "service", "path"))
            for v in volumes.values()
        )
        and isinstance(files, dict)
        and all(isinstance(v, str) and _inside(rel) for rel, v in files.items())
        and isinstance(modes, dict)
        and all(
            rel in files
            and isinstance(m, dict)
            and all(type(m.get(k)) is int for k in ("mode", "uid", "gid"))
            for rel, m in modes.items()
        )
    ):
        raise not_ours
    return doc


def _inside(rel: str) -> bool:
    """A relative path that stays inside the stack directory."""
    return bool(rel) and not rel.startswith("/") and ".." not in rel.split("/")


def restore(
    archive: Path, stack: Path = DEFAULT_DIR, *, timeout: float = 180, say: Say = quiet, on_update: Any = None
) -> RestoreResult:
    """Put a backup back: config and secrets files, then each volume's exact content, then up."""
    stack = stack.absolute()
    with tempfile.TemporaryDirectory(prefix="releaser-restore-") as work:
        manifest = _read_backup(archive, Path(work))
        members: dict[str, Path] = manifest["_members"]
        if (stack / STATE_FILE).is_file():
            current = State.load(stack)
            if current.release != manifest["release"]:
                raise UsageError(
                    f"{archive} is a backup of {manifest['release']}, but {stack} runs "
                    f"{current.release}; nothing was restored",
                    fix="restore into another --stack, or reset this one first",
                )
            say(f"stopping {current.release}")
            compose_for(stack, current).run("down", "--remove-orphans")
        for rel, meta in sorted(manifest["modes"].items()):
            dest = stack / rel
            if rel.startswith(sec.SECRETS_DIR + "/"):
                (stack / sec.SECRETS_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(stack / sec.SECRETS_DIR, 0o700)
            write_file(dest, members[f"files/{rel}"].read_bytes(), mode=meta["mode"])
            if os.geteuid() == 0:
                os.chown(dest, meta["uid"], meta["gid"])
        state = State.load(stack)
        compose = compose_for(stack, state)
        spec = compose_spec(stack, state)
        for vol in manifest["volumes"]:
            subprocess.run(
                [compose.engine_cli(), "volume", "rm", "-f", f"{state.release}_{vol}"],
                capture_output=True,
                check=False,
            )
        if state.local_registry:
            localregistry.start(stack, state.registry_port)
        say("creating empty volumes (and pulling images)")
        compose.run("up", "--no-start")
        for vol, meta in sorted(manifest["volumes"].items()):
            svc = meta["service"]
            if svc not in spec.images:
                raise ReleaserError(
                    f"{archive}: volume {vol} belongs to service {svc!r}, which {state.release} does not have",
                    fix="restore a backup of this release",
                )
            say(f"restoring volume {vol} ({meta['path']})")
            with members[f"volumes/{vol}.tar"].open("rb") as f:
                compose.import_volume(vol, meta["path"], spec.images[svc], f)
        # the containers `up --no-start` made are removed (the volumes stay): podman-compose's `up`
        # leaves some of them in `created` instead of starting them; fresh ones start everywhere
        compose.run("down", "--remove-orphans")
        say(f"starting {state.release}")
        states = up_and_wait(
            compose, spec, timeout=timeout, on_update=on_update, redact=lambda text: sec.redact(text, stack)
        )
    return RestoreResult(
        path=str(archive),
        release=state.release,
        volumes=tuple(sorted(manifest["volumes"])),
        files=tuple(sorted(manifest["files"])),
        services=tuple(states),
    )
