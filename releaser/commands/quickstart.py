"""`releaser quickstart up|status|logs|down|backup|restore|reset`: the release's Compose stack on
this host. `up` is composed here (it may load a bundle first, through the airgap command); the
stack's own steps live in releaser/quickstart/ (state, preflight, files, backup, lifecycle, doctor,
secrets, stack)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..bundle.parts import is_bundle as bundle_path
from ..errors import InputError, Interrupted, ReleaserError, RollbackFailed, UpgradeFailed, UsageError
from ..pipeline import load_plan
from ..plan import Plan
from ..progress import Progress
from ..quickstart import localregistry, revisions
from ..quickstart import secrets as sec
from ..quickstart.backup import BackupResult, RestoreResult, backup, restore
from ..quickstart.doctor import Check, Engine, detect_engine
from ..quickstart.files import bundle_files, secret_specs, urls, write_file
from ..quickstart.lifecycle import (
    REVISION_BACKUP,
    ResetResult,
    StatusResult,
    down,
    killed_on_stop,
    logs,
    reset,
    status,
)
from ..quickstart.preflight import held_ports, preflight, registries_to_pull
from ..quickstart.stack import ComposeFile, ServiceState, Update, up_and_wait
from ..quickstart.state import (
    DEFAULT_DIR,
    STATE_FILE,
    Say,
    State,
    changed_key_sidecars,
    compose_for,
    compose_spec,
    find_engine,
    key_digests,
    quiet,
)
from ..registry import RegistryOptions
from ..render.compose import PODMAN_COMPOSE, podman_variant, render_compose
from .load import load_bundle

__all__ = [
    "BackupResult",
    "LogLines",
    "QuickstartResult",
    "ResetResult",
    "RestoreResult",
    "StatusResult",
    "backup",
    "collect_logs",
    "down",
    "killed_on_stop",
    "logs",
    "reset",
    "restore",
    "status",
    "up",
]


@dataclass(frozen=True, kw_only=True)
class QuickstartResult:
    """What `quickstart up` (or upgrade) brought up: the stack, its services and their readiness."""

    release: str
    version: str
    stack: str
    engine: str
    source: str
    services: tuple[ServiceState, ...]
    urls: tuple[tuple[str, str], ...]  # (service.port, URL)
    secrets_dir: str
    secrets_created: tuple[str, ...]
    secrets_kept: tuple[str, ...]
    warnings: tuple[str, ...]
    seconds: float
    registry: str | None = None  # bundles: where the images were loaded and are pulled from
    local_registry: bool = False

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "release": self.release,
            "version": self.version,
            "stack": self.stack,
            "engine": self.engine,
            "source": self.source,
            "services": [s.to_json() for s in self.services],
            "urls": [{"name": n, "url": u} for n, u in self.urls],
            "secretsDir": self.secrets_dir,
            "secretsCreated": list(self.secrets_created),
            "secretsKept": list(self.secrets_kept),
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 1),
            "registry": self.registry,
            "localRegistry": self.local_registry,
        }


@dataclass(frozen=True, kw_only=True)
class _Source:
    """What `up` was given: a release directory, or a bundle with its key and target registry."""

    path: Path
    key: Path | None = None
    registry: str | None = None  # bundles: HOST[:PORT], or "local"

    @property
    def is_bundle(self) -> bool:
        return self.key is not None

    @property
    def local(self) -> bool:
        return self.registry == "local"

    @classmethod
    def check(cls, source: Path, key: Path | None, registry: str | None) -> _Source:
        is_bundle = bundle_path(source)
        if source.is_file() and not is_bundle:
            raise UsageError(
                f"{source} is neither a release directory nor a bundle (*.tar.zst, or its parts *.tar.zst.001 ...)",
                fix="pass the directory holding release.yaml, or a bundle made by `releaser bundle`",
            )
        if is_bundle and (key is None or registry is None):
            raise UsageError(
                "a bundle needs --key (the publisher's public key) and --to (the registry to load it into)",
                fix=f"add --key {key or 'PUBLISHER.pub'} --to {registry or 'REGISTRY[:PORT]'} (the registry the stack "
                "runs it from; --to local starts one of the stack's own)",
            )
        if not is_bundle and registry is not None:
            raise UsageError(
                "--to is for bundles: a release directory runs from the registries its lock names",
                fix="drop --to, or pass a bundle",
            )
        return cls(path=source, key=key if is_bundle else None, registry=registry)

    def pull_from(self, plan: Plan, engine: Engine) -> list[str]:
        """The registries the preflight checks can be reached."""
        if self.local:
            return []  # started after the preflight
        if self.registry is not None:
            return [self.registry.split("/", 1)[0]]
        return registries_to_pull(plan, engine)


@dataclass(frozen=True, kw_only=True)
class LogLines:
    """`quickstart logs --json`: the lines, secret values redacted."""

    lines: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {"lines": list(self.lines)}


def collect_logs(stack: Path, service: str | None = None, *, tail: int | None = None) -> LogLines:
    """The stack's logs as one list of lines (for --json; `logs` streams them otherwise)."""
    lines: list[str] = []
    logs(stack, service, tail=tail, write=lines.append)
    return LogLines(lines=tuple(lines))


def _preflight_warnings(checks: Sequence[Check], plan: Plan, skip: tuple[str, ...]) -> tuple[list[str], bool]:
    """Warnings for what was skipped, and whether the TCP-AO wire leg runs over plain TCP."""
    warnings = [f"{c.name} check {c.detail}" for c in checks if c.status == "skipped"]
    plain_tcp = bool({"tcp-ao", "tcp-ao-rootless"} & set(skip)) and any(s.sidecar for s in plan.services)
    if plain_tcp:
        warnings.append(
            "TCP-AO is not available, not checked, or cannot reach the wire (rootless podman): the sidecars' "
            "wire leg runs over PLAIN TCP, without authentication; use this for a lab only"
        )
    return warnings, plain_tcp


def _load_into_registry(
    src: _Source,
    plan: Plan,
    stack: Path,
    *,
    registries: RegistryOptions | None,
    say: Say,
    progress: Progress | None,
) -> tuple[str, str]:
    """Verify the bundle and load it (into the stack's own registry with `local`); (registry,
    the compose override file name)."""
    assert src.key is not None and src.registry is not None
    registry = src.registry
    if src.local:
        previous = State.load(stack) if (stack / STATE_FILE).is_file() else None
        port = previous.registry_port if previous and previous.release == plan.name else None
        registry = localregistry.start(stack, port)
        say(f"started a registry for this stack on {registry} (storage: {stack / localregistry.DIR})")
    say(f"verifying {src.path.name} and loading it into {registry}")
    loaded = load_bundle(
        src.path, to=registry, key=src.key, out=stack, registries=registries, progress=progress
    )
    return registry, Path(loaded.compose_override).name


def _secret_warnings(report: sec.SecretReport, plan: Plan, stack: Path) -> list[str]:
    generated = {s.name for s in plan.generated_secrets}
    return [*report.warnings] + [
        f"{name}: generated a random value for this lab; in production you provide it "
        f"(replace {stack / sec.SECRETS_DIR / name} and run the quickstart again)"
        for name in report.created
        if name not in generated
    ]


def _previous_state(stack: Path) -> State | None:
    """The state of the stack's last start (None for a new stack)."""
    try:
        return State.load(stack)
    except ReleaserError:
        return None


def up(
    source: Path,
    *,
    stack: Path = DEFAULT_DIR,
    engine: str | None = None,
    skip: tuple[str, ...] = (),
    timeout: float = 180,
    key: Path | None = None,
    registry: str | None = None,
    registries: RegistryOptions | None = None,
    say: Say = quiet,
    on_update: Update | None = None,
    progress: Progress | None = None,
) -> QuickstartResult:
    """Bring the release (a release directory, or a signed bundle) up on this host and wait until
    ready: preflight -> (bundle: verify and load) -> compose files -> secrets -> up -> readiness."""
    started = time.monotonic()
    stack = stack.absolute()
    ready = _prepare(source, stack=stack, engine=engine, skip=skip, key=key, registry=registry, say=say)
    installed = _install(ready, stack, registries=registries, say=say, progress=progress)
    return _start(installed, stack, timeout=timeout, say=say, on_update=on_update, started=started)


@dataclass(frozen=True, kw_only=True)
class _Prepared:
    """A release read and its host checked: nothing in the stack has changed yet."""

    src: _Source
    plan: Plan
    files: dict[str, bytes]
    engine: Engine
    warnings: tuple[str, ...]
    plain_tcp: bool


@dataclass(frozen=True, kw_only=True)
class _Installed:
    """The release's files, secrets and state written into the stack (not started yet)."""

    ready: _Prepared
    state: State
    spec: ComposeFile
    report: sec.SecretReport
    warnings: tuple[str, ...]
    rekeyed: tuple[str, ...]


def _prepare(
    source: Path,
    *,
    stack: Path,
    engine: str | None,
    skip: tuple[str, ...],
    key: Path | None,
    registry: str | None,
    say: Say,
) -> _Prepared:
    """Read the release (a bundle: verified) and run the preflight; writes nothing."""
    src = _Source.check(source, key, registry)
    with tempfile.TemporaryDirectory(prefix="releaser-quickstart-") as tmp:
        if src.key is not None:
            say(f"reading the signed release of {source}")
            files, release_dir = bundle_files(source, src.key, Path(tmp))
            plan, _ = load_plan(release_dir)
        else:
            plan, _ = load_plan(source)
            files = render_compose(plan)
    if detect_engine(engine)[0] is None:  # every host check is reported, as doctor does, not only this one
        preflight(plan, engine=engine, skip=skip, held_ports=set(), registries=[], stack=stack)
    found = find_engine(engine)
    say(f"preflight ({found.kind}, Compose {found.compose_version})")
    checks = preflight(
        plan,
        engine=found.kind,
        skip=skip,
        held_ports=held_ports(stack, plan, found.kind),
        registries=src.pull_from(plan, found),
        stack=stack,
    )
    warnings, plain_tcp = _preflight_warnings(checks, plan, skip)
    return _Prepared(
        src=src, plan=plan, files=files, engine=found, warnings=tuple(warnings), plain_tcp=plain_tcp
    )


def _install(
    ready: _Prepared,
    stack: Path,
    *,
    registries: RegistryOptions | None,
    say: Say,
    progress: Progress | None,
    revision: int | None = None,
) -> _Installed:
    """(A bundle: load it into its registry,) write the compose files, make the secrets, save the state."""
    plan, found, src = ready.plan, ready.engine, ready.src
    compose_files = ["compose.yaml"]
    target = None
    if src.is_bundle:
        target, override = _load_into_registry(
            src, plan, stack, registries=registries, say=say, progress=progress
        )
        compose_files.append(override)
    for rel, content in ready.files.items():
        write_file(stack / rel, content)
    if found.podman:
        if PODMAN_COMPOSE not in ready.files:  # a bundle made before compose.podman.yaml was rendered
            write_file(stack / PODMAN_COMPOSE, podman_variant(ready.files["compose.yaml"]))
        compose_files[0] = PODMAN_COMPOSE
    previous = _previous_state(stack)
    state = State(
        release=plan.name,
        version=plan.version,
        source=str(src.path.absolute()),
        source_kind="bundle" if src.is_bundle else "release",
        engine=found.kind,
        files=tuple(compose_files),
        registry=target,
        local_registry=src.local,
        plain_tcp_wire=ready.plain_tcp,
        revision=revision if revision is not None else (previous.revision if previous else 1),
    )
    spec = compose_spec(stack, state)
    report = sec.ensure(stack, secret_specs(plan, spec))
    warnings = [*ready.warnings, *_secret_warnings(report, plan, stack)]
    state = replace(state, keys=key_digests(stack, plan))
    rekeyed = changed_key_sidecars(previous.keys if previous else (), state.keys, plan)
    state.save(stack)
    return _Installed(
        ready=ready, state=state, spec=spec, report=report, warnings=tuple(warnings), rekeyed=tuple(rekeyed)
    )


def _start(
    installed: _Installed, stack: Path, *, timeout: float, say: Say, on_update: Update | None, started: float
) -> QuickstartResult:
    """`compose up` and wait until every service is ready (StackError naming the one that is not)."""
    plan, state, spec = installed.ready.plan, installed.state, installed.spec
    compose = compose_for(stack, state, installed.ready.engine)
    say(f"starting {plan.name} {plan.version} ({len(spec.shown)} services) in {stack}")
    states = up_and_wait(
        compose, spec, timeout=timeout, on_update=on_update, redact=lambda t: sec.redact(t, stack)
    )
    warnings = list(installed.warnings)
    if installed.rekeyed:  # a sidecar reads its key when it starts: `up` alone keeps the old one running
        rekeyed = ", ".join(installed.rekeyed)
        say(f"the TCP-AO key changed since the last start: restarting {rekeyed}")
        compose.run("restart", *installed.rekeyed)
        warnings.append(f"the TCP-AO key changed since the last start: restarted {rekeyed}")
    return QuickstartResult(
        release=plan.name,
        version=plan.version,
        stack=str(stack),
        engine=installed.ready.engine.kind,
        source=str(installed.ready.src.path),
        services=tuple(states),
        urls=tuple(urls(plan, states)),
        secrets_dir=str(stack / sec.SECRETS_DIR),
        secrets_created=tuple(installed.report.created),
        secrets_kept=tuple(installed.report.kept),
        warnings=tuple(warnings),
        seconds=time.monotonic() - started,
        registry=state.registry,
        local_registry=state.local_registry,
    )


# ------------------------------------------------------------------ upgrades


@dataclass(frozen=True, kw_only=True)
class UpgradeResult:
    release: str
    previous: str  # the version that ran before
    version: str
    revision: int  # the revision now running
    replaced: int  # the revision it replaced (`quickstart rollback` goes back to it)
    backup: str | None  # taken before the upgrade (the release has volumes)
    up: QuickstartResult

    def to_json(self) -> dict[str, object]:
        return {
            "release": self.release,
            "from": self.previous,
            "to": self.version,
            "revision": self.revision,
            "replaced": self.replaced,
            "backup": self.backup,
            "services": [s.to_json() for s in self.up.services],
            "warnings": list(self.up.warnings),
            "seconds": round(self.up.seconds, 1),
        }


def upgrade(
    source: Path,
    *,
    stack: Path = DEFAULT_DIR,
    engine: str | None = None,
    skip: tuple[str, ...] = (),
    timeout: float = 180,
    key: Path | None = None,
    registry: str | None = None,
    registries: RegistryOptions | None = None,
    take_backup: bool = True,
    say: Say = quiet,
    on_update: Update | None = None,
    progress: Progress | None = None,
) -> UpgradeResult:
    """Replace the running release with `source` (a release directory or bundle), health-gated:
    preflight the new release (nothing changes when it fails), record the running one as a
    revision, back up its volumes, write the new files (secrets and volumes are kept), bring it
    up (its jobs run first) and wait until every service is ready. When anything fails, put the
    recorded revision back, wait until it is ready, and raise UpgradeFailed naming the service
    with its last log lines."""
    started = time.monotonic()
    stack = stack.absolute()
    old = State.load(stack)
    if registry is None and old.source_kind == "bundle" and bundle_path(source):
        registry = "local" if old.local_registry else old.registry
    ready = _prepare(
        source, stack=stack, engine=engine or old.engine, skip=skip, key=key, registry=registry, say=say
    )
    if ready.plan.name != old.release:
        raise UsageError(
            f"{stack} runs {old.release}; {source} is {ready.plan.name}; nothing was changed",
            fix="upgrade a stack to a later version of its own release (another release goes in another --stack)",
        )
    running = revisions.record(stack, _revision(stack, old, old.revision, "running"))
    number = revisions.next_number(stack)
    backup_path = None
    if take_backup and compose_spec(stack, old).volumes:
        backup_path = stack / revisions.DIR / str(old.revision) / REVISION_BACKUP
        say(f"backing up the volumes of {old.release} {old.version} to {backup_path}")
        try:
            # left stopped: the upgrade replaces it next (a failed upgrade starts it again)
            backup(stack, out=backup_path, say=say, restart=False)
        except UsageError as exc:  # e.g. a stack that is down: no container to read a volume from
            exc.add_note("the backup before the upgrade (nothing was changed)")
            exc.fix = f"{exc.fix}; or upgrade with --no-backup (the volumes are kept either way)"
            raise
        running = replace(running, backup=str(backup_path))
        revisions.mark(stack, running)
    say(f"upgrading {old.release} {old.version} -> {ready.plan.version} (revision {number})")
    installed = None
    try:
        installed = _install(ready, stack, registries=registries, say=say, progress=progress, revision=number)
        _stop(stack, installed.state, ready.engine, say)
        result = _start(installed, stack, timeout=timeout, say=say, on_update=on_update, started=started)
    except Interrupted:
        raise
    except ReleaserError as exc:
        revisions.record(stack, _revision(stack, State.load(stack), number, "failed"))
        if installed is not None:  # its containers replaced the running ones: remove them (volumes stay)
            _stop(stack, installed.state, ready.engine, say)
        _roll_back(
            stack, running, timeout=timeout, say=say, on_update=on_update, cause=exc, to=ready.plan.version
        )
        raise  # unreachable: _roll_back raises
    revisions.mark(stack, replace(running, outcome="replaced"))
    revisions.record(stack, _revision(stack, installed.state, number, "running"))
    return UpgradeResult(
        release=old.release,
        previous=old.version,
        version=ready.plan.version,
        revision=number,
        replaced=old.revision,
        backup=str(backup_path) if backup_path else None,
        up=result,
    )


def _stop(stack: Path, state: State, engine: Engine | None, say: Say) -> None:
    """Remove the project's containers (every one of the project, whichever files name it; volumes,
    secrets and networks' names stay): the quickstart replaces a release whole, so that readiness
    is judged on the new containers only, never on one being recreated."""
    say(f"stopping {state.release}")
    compose = compose_for(stack, state, engine)
    killed = compose.stop(compose_spec(stack, state))
    if killed:
        say(f"warning: {killed_on_stop(killed)}")
    compose.run("down", "--remove-orphans")


def _revision(stack: Path, state: State, number: int, outcome: str) -> revisions.Revision:
    try:
        images = tuple(sorted(set(compose_spec(stack, state).images.values())))
    except ReleaserError:
        images = ()
    return revisions.Revision(
        number=number,
        release=state.release,
        version=state.version,
        source=state.source,
        recorded=revisions.now(),
        outcome=outcome,
        images=images,
    )


def _roll_back(
    stack: Path,
    running: revisions.Revision,
    *,
    timeout: float,
    say: Say,
    on_update: Update | None,
    cause: ReleaserError,
    to: str,
) -> None:
    """Put the revision that ran before back and wait until it is ready; raise UpgradeFailed (or,
    when even that does not come up, RollbackFailed)."""
    say(
        f"the upgrade to {to} failed: {cause.message}; putting {running.version} (revision {running.number}) back"
    )
    revisions.put_back(stack, running.number)
    state = State.load(stack)
    if state.local_registry:
        localregistry.start(stack, state.registry_port)
    try:
        up_and_wait(
            compose_for(stack, state),
            compose_spec(stack, state),
            timeout=timeout,
            on_update=on_update,
            redact=lambda t: sec.redact(t, stack),
        )
    except ReleaserError as again:
        raise RollbackFailed(
            release=running.release,
            version=running.version,
            to=to,
            cause=cause,
            again=again,
            backup=running.backup,
        ) from again
    raise UpgradeFailed(
        release=running.release, version=running.version, to=to, cause=cause, backup=running.backup
    )


@dataclass(frozen=True, kw_only=True)
class RollbackResult:
    release: str
    previous: str
    version: str
    revision: int
    services: tuple[ServiceState, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "release": self.release,
            "from": self.previous,
            "to": self.version,
            "revision": self.revision,
            "services": [s.to_json() for s in self.services],
        }


def rollback(
    stack: Path = DEFAULT_DIR,
    revision: int | None = None,
    *,
    timeout: float = 180,
    say: Say = quiet,
    on_update: Update | None = None,
) -> RollbackResult:
    """Go back to revision `revision` (default: the one the running revision replaced) on purpose:
    its files are put back (secrets and volumes stay as they are) and it is brought up."""
    stack = stack.absolute()
    state = State.load(stack)
    known = revisions.history(stack)
    if revision is None:
        earlier = [r for r in known if r.number < state.revision and r.outcome != "failed"]
        if not earlier:
            raise InputError(
                f"{stack}: {state.release} {state.version} (revision {state.revision}) has no earlier revision",
                fix="revisions are recorded by `releaser quickstart upgrade`; `releaser quickstart history` lists them",
            )
        revision = earlier[-1].number
    if not any(r.number == revision for r in known):
        raise InputError(
            f"{stack}: no revision {revision} (recorded: {', '.join(str(r.number) for r in known) or 'none'})",
            fix="`releaser quickstart history` lists them",
        )
    if revision == state.revision:
        raise UsageError(
            f"revision {revision} is the one running", fix="`releaser quickstart history` lists the others"
        )
    current = revisions.record(stack, _revision(stack, state, state.revision, "rolled-back"))
    _stop(stack, state, None, say)
    target = revisions.put_back(stack, revision)
    back = State.load(stack)
    if back.local_registry:
        localregistry.start(stack, back.registry_port)
    say(
        f"rolling {state.release} back from {state.version} (revision {current.number}) to {target.version} (revision {revision})"
    )
    states = up_and_wait(
        compose_for(stack, back),
        compose_spec(stack, back),
        timeout=timeout,
        on_update=on_update,
        redact=lambda t: sec.redact(t, stack),
    )
    revisions.mark(stack, replace(target, outcome="running"))
    return RollbackResult(
        release=back.release,
        previous=state.version,
        version=back.version,
        revision=revision,
        services=tuple(states),
    )


@dataclass(frozen=True, kw_only=True)
class HistoryResult:
    release: str
    current: int
    revisions: tuple[revisions.Revision, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "release": self.release,
            "current": self.current,
            "revisions": [r.to_json() for r in self.revisions],
        }


def history(stack: Path = DEFAULT_DIR) -> HistoryResult:
    """Every recorded revision of the stack, oldest first, and which one runs."""
    stack = stack.absolute()
    state = State.load(stack)
    known = revisions.history(stack)
    if not any(r.number == state.revision for r in known):  # never upgraded: the running one only
        known.append(_revision(stack, state, state.revision, "running"))
    return HistoryResult(release=state.release, current=state.revision, revisions=tuple(known))
