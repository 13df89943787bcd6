"""`quickstart backup` and `restore`: volumes, config and secrets in one .tar.zst with a manifest
(backup.json) naming each member's sha256, read and checked whole before anything changes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from ..budgets import MAX_JSON_BYTES, MAX_MEMBERS, MAX_NAME_BYTES, MAX_WINDOW, loads
from ..errors import EngineError, InputError, ReleaserError, UsageError
from ..fs import UnreadableInput, atomic_file, regular_file
from . import localregistry
from . import secrets as sec
from .files import write_file
from .lifecycle import killed_on_stop
from .stack import Compose, ComposeFile, ServiceState, up_and_wait, wait_ready
from .state import DEFAULT_DIR, STATE_FILE, Say, State, compose_for, compose_spec, quiet

BACKUP_FORMAT = "releaser.dev/quickstart-backup/v1"


@dataclass(frozen=True, kw_only=True)
class VolumeCopy:
    """One volume in a backup: whose it is, where it is mounted, its tar's sha256 and size."""

    service: str
    path: str
    sha256: str
    size: int


@dataclass(frozen=True, kw_only=True)
class FileMode:
    """A stack file's mode and owner, put back by restore."""

    mode: int
    uid: int
    gid: int


@dataclass(frozen=True, kw_only=True)
class BackupManifest:
    """backup.json: the release, when, and every member with its sha256 (docs/quickstart.md#backup-and-restore).
    `parse` checks an untrusted one's shape; restore reads nothing but this record."""

    release: str
    version: str
    created: str
    volumes: dict[str, VolumeCopy] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # stack-relative path -> sha256
    modes: dict[str, FileMode] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BACKUP_FORMAT,
            "release": self.release,
            "version": self.version,
            "created": self.created,
            "volumes": {k: asdict(v) for k, v in self.volumes.items()},
            "files": dict(self.files),
            "modes": {k: asdict(v) for k, v in self.modes.items()},
        }

    @classmethod
    def parse(cls, doc: object, where: Path) -> BackupManifest:
        """The manifest of `doc` (backup.json as read, within budgets.loads), or a ReleaserError
        naming `where`: a format other than ours, or any member of the wrong shape."""
        not_ours = ReleaserError(
            f"{where}: backup.json is not a quickstart backup's",
            fix="use a backup written by `releaser quickstart backup`",
        )
        if not isinstance(doc, dict):
            raise not_ours
        if doc.get("format") != BACKUP_FORMAT:
            raise ReleaserError(
                f"{where}: format {str(doc.get('format'))[:40]!r}, expected {BACKUP_FORMAT}",
                fix="restore it with the releaser version that wrote it",
            )
        volumes, files, modes = doc.get("volumes"), doc.get("files"), doc.get("modes")
        if not (
            isinstance(doc.get("release"), str)
            and isinstance(volumes, dict)
            and all(
                isinstance(v, dict)
                and all(isinstance(v.get(k), str) for k in ("sha256", "service", "path"))
                and type(v.get("size", 0)) is int
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
        return cls(
            release=doc["release"],
            version=str(doc.get("version", "")),
            created=str(doc.get("created", "")),
            volumes={
                k: VolumeCopy(service=v["service"], path=v["path"], sha256=v["sha256"], size=v.get("size", 0))
                for k, v in volumes.items()
            },
            files=dict(files),
            modes={k: FileMode(mode=m["mode"], uid=m["uid"], gid=m["gid"]) for k, m in modes.items()},
        )


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


def _start_again(
    compose: Compose,
    spec: ComposeFile,
    running: list[str],
    *,
    wait: bool,
    timeout: float,
    redact: Callable[[str], str],
) -> None:
    """What the backup stopped, started again: `compose start` (in network-namespace order); on podman
    the containers are made anew, as restore does (a stopped podman container does not come back as it
    was: a tmpfs loses its mode, a container sharing another's network namespace exits), brought up
    at once when `wait` (a failed copy), else by the caller once the archive is written."""
    if compose.podman:
        compose.run("down", "--remove-orphans", check=False)
        if wait:
            up_and_wait(compose, spec, timeout=timeout, redact=redact)
    else:
        compose.run("start", *spec.start_order(running), check=False)


def backup(
    stack: Path = DEFAULT_DIR, *, out: Path, say: Say = quiet, restart: bool = True, timeout: float = 120
) -> BackupResult:
    """Stop the stack, copy every volume, the config and the secrets into one .tar.zst, start again
    and wait until what ran is ready again (`timeout`; StackError after the backup is written)
    (`restart` False: leave it stopped, as an upgrade does, which replaces it next)."""
    state = State.load(stack)
    spec = compose_spec(stack, state)
    compose = compose_for(stack, state)

    def redact(text: str) -> str:
        return sec.redact(text, stack)

    before = {s.service: s for s in compose.states(spec)}
    holders: dict[str, tuple[str | None, str]] = {}  # volume -> (the container it is read from, path)
    for vol, (svc, path) in spec.volumes.items():
        st = before.get(svc)
        holders[vol] = (st.container if st is not None and st.container else None, path)
    running = [s for s, st in before.items() if st.state in ("running", "restarting")]
    running += [spec.probes[s] for s in running if s in spec.probes]  # each with its probe container
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest = BackupManifest(
        release=state.release,
        version=state.version,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
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
                with target.open("wb") as sink:
                    if container is not None:
                        compose.export_volume(container, path, sink)
                    else:  # after down: no container of the service, the volume is still there
                        svc = spec.volumes[vol][0]
                        try:
                            with compose.volume_helper(vol, path, spec.images[svc]) as (helper, inside):
                                compose.export_volume(helper, inside, sink)
                        except EngineError as exc:
                            raise UsageError(
                                f"volume {vol} of {svc} cannot be read: {exc}",
                                fix="start the stack with `releaser quickstart SOURCE`, then back up",
                            ) from None
                h = hashlib.sha256()
                with target.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                manifest.volumes[vol] = VolumeCopy(
                    service=spec.volumes[vol][0], path=path, sha256=h.hexdigest(), size=target.stat().st_size
                )
                staged.append((f"volumes/{vol}.tar", target))
            copied = True
        finally:
            if running and (restart or not copied):  # a failed copy changes nothing: it runs again
                say(f"starting {', '.join(running)} again")
                _start_again(compose, spec, running, wait=not copied, timeout=timeout, redact=redact)
        for rel in _config_files(stack):
            p = stack / rel
            data = p.read_bytes()
            manifest.files[rel] = hashlib.sha256(data).hexdigest()
            owner = p.stat()
            manifest.modes[rel] = FileMode(mode=owner.st_mode & 0o777, uid=owner.st_uid, gid=owner.st_gid)
            staged.append((f"files/{rel}", p))
        with (
            atomic_file(out, mode=0o600) as raw,
            zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as zw,
            tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):  # 0600: it holds the secrets
            body = json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo("backup.json")
            info.size, info.mode = len(body), 0o600
            tar.addfile(info, io.BytesIO(body))
            for name, staged_path in staged:
                info = tarfile.TarInfo(name)
                info.size, info.mode = staged_path.stat().st_size, 0o600
                with staged_path.open("rb") as f:
                    tar.addfile(info, f)
    with out.open("rb") as written:  # streamed: a backup holds whole volumes
        digest = hashlib.file_digest(written, "sha256").hexdigest()
    if running and restart:  # as it was before: ready, not only started (status right after says so)
        try:
            if compose.podman:
                up_and_wait(compose, spec, timeout=timeout, redact=redact)
            else:
                wait_ready(compose, spec, running, timeout=timeout, redact=redact)
        except ReleaserError as exc:
            exc.add_note(f"the backup itself was written: {out}")
            raise
        say(f"{', '.join(running)} ready again")
    return BackupResult(
        path=str(out),
        release=state.release,
        version=state.version,
        volumes=tuple(sorted(manifest.volumes)),
        files=tuple(manifest.files),
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


def _read_backup(path: Path, work: Path) -> tuple[BackupManifest, dict[str, Path]]:
    """Unpack into `work`, checking names and every sha256 before anything is changed: the manifest and
    where each member was unpacked."""
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
    try:
        doc = loads(members["backup.json"].read_bytes()[: MAX_JSON_BYTES + 1])
    except ValueError:
        doc = None
    manifest = BackupManifest.parse(doc, path)
    bad = []
    for vol, meta in manifest.volumes.items():
        m = members.get(f"volumes/{vol}.tar")
        if m is None or _sha256(m) != meta.sha256:
            bad.append(f"volumes/{vol}.tar")
    for rel, digest in manifest.files.items():
        m = members.get(f"files/{rel}")
        if m is None or _sha256(m) != digest:
            bad.append(f"files/{rel}")
    if bad:
        raise ReleaserError(
            f"{path}: {', '.join(bad)} missing or not matching backup.json; nothing was restored",
            fix="the backup is damaged; use another one",
        )
    return manifest, members


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _inside(rel: str) -> bool:
    """A relative path that stays inside the stack directory."""
    return bool(rel) and not rel.startswith("/") and ".." not in rel.split("/")


def restore(
    archive: Path, stack: Path = DEFAULT_DIR, *, timeout: float = 180, say: Say = quiet, on_update: Any = None
) -> RestoreResult:
    """Put a backup back: config and secrets files, then each volume's exact content, then up."""
    stack = stack.absolute()
    with tempfile.TemporaryDirectory(prefix="releaser-restore-") as work:
        manifest, members = _read_backup(archive, Path(work))
        if (stack / STATE_FILE).is_file():
            current = State.load(stack)
            if current.release != manifest.release:
                raise UsageError(
                    f"{archive} is a backup of {manifest.release}, but {stack} runs "
                    f"{current.release}; nothing was restored",
                    fix="restore into another --stack, or reset this one first",
                )
            say(f"stopping {current.release}")
            compose_for(stack, current).run("down", "--remove-orphans")
        for rel, meta in sorted(manifest.modes.items()):
            dest = stack / rel
            if rel.startswith(sec.SECRETS_DIR + "/"):
                (stack / sec.SECRETS_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(stack / sec.SECRETS_DIR, 0o700)
            write_file(dest, members[f"files/{rel}"].read_bytes(), mode=meta.mode)
            if os.geteuid() == 0:
                os.chown(dest, meta.uid, meta.gid)
        state = State.load(stack)
        compose = compose_for(stack, state)
        spec = compose_spec(stack, state)
        for vol in manifest.volumes:
            subprocess.run(
                [compose.engine_cli(), "volume", "rm", "-f", f"{state.release}_{vol}"],
                capture_output=True,
                check=False,
            )
        if state.local_registry:
            localregistry.start(stack, state.registry_port)
        say("creating empty volumes (and pulling images)")
        compose.run("up", "--no-start")
        for vol, copy in sorted(manifest.volumes.items()):
            svc = copy.service
            if svc not in spec.images:
                raise ReleaserError(
                    f"{archive}: volume {vol} belongs to service {svc!r}, which {state.release} does not have",
                    fix="restore a backup of this release",
                )
            say(f"restoring volume {vol} ({copy.path})")
            with members[f"volumes/{vol}.tar"].open("rb") as f:
                compose.import_volume(vol, copy.path, spec.images[svc], f)
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
        volumes=tuple(sorted(manifest.volumes)),
        files=tuple(sorted(manifest.files)),
        services=tuple(states),
    )
