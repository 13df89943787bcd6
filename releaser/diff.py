"""What a new release changes, from metadata alone (`releaser diff OLD NEW` is the command).

Each side is a release directory (DIR, or DIR@REV for the directory as git holds it at REV), a
lock file, or a bundle (one file or parts). Images are compared by the lock (digest, and each
platform's child digest); the bytes a delta would carry come from the manifests (fetched from
the source registry for a directory or lock, read from the bundle's small members for a bundle:
no layer is read); services, chart values and Compose files are compared through the one plan
when both sides carry release.yaml (a lock alone has only images). What needs care on upgrade
is decided in `_care`, in one place.
"""

from __future__ import annotations

import difflib
import json
import posixpath
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

from . import budgets, workers
from .bundle.archive import small_members
from .bundle.parts import is_bundle
from .bundle.verify import inspect_head
from .errors import InputError, RegistryError, ToolError
from .format.records import BundleMetadata
from .lock import Lock, LockedImage, load_lock_file, read_lock, split_reference
from .mediatypes import INDEX_TYPES
from .names import RELEASE_FILE
from .plan import Plan, PlanService, build_plan
from .registry import RegistryFor
from .release import load_release
from .render.compose import render_compose
from .render.helm_values import chart_values
from .yamlsource import load_source


@dataclass(frozen=True, kw_only=True)
class Side:
    """One side of a diff: its lock always; its plan when it carries release.yaml; the blobs of
    each image (digest -> size: manifests, configs, layers) when they could be read."""

    label: str
    kind: str  # release | lock | bundle
    name: str
    version: str
    lock: Lock
    plan: Plan | None
    blobs: Mapping[str, Mapping[str, int]] | None  # image -> {digest: size}
    blobs_note: str = ""  # why blobs is None


@dataclass(frozen=True, kw_only=True)
class ImageChange:
    name: str
    change: str  # added | removed | repinned
    old: str | None  # digest
    new: str | None
    platforms: tuple[tuple[str, str | None, str | None], ...] = ()  # (platform, old, new) that differ

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "change": self.change,
            "old": self.old,
            "new": self.new,
            "platforms": [{"platform": p, "old": o, "new": n} for p, o, n in self.platforms],
        }


@dataclass(frozen=True, kw_only=True)
class Bytes:
    full: int  # every blob of NEW (what a full bundle carries, before compression)
    delta: int  # the blobs NEW has and OLD lacks (what `bundle --since OLD` carries)
    image_level: int  # every blob of each added or re-pinned image (a per-image differential)

    def to_json(self) -> dict[str, object]:
        return {"full": self.full, "delta": self.delta, "imageLevel": self.image_level}


@dataclass(frozen=True, kw_only=True)
class DiffResult:
    """What `diff` found between two releases: images added, removed and re-pinned, and what needs care."""

    old: str
    new: str
    release: str
    versions: tuple[str, str]
    images: tuple[ImageChange, ...]
    bytes: Bytes | None
    bytes_note: str
    services: Mapping[str, tuple[str, ...]]  # added, removed, changed (service: fields)
    values: Mapping[str, tuple[str, ...]]  # added, removed, changed (JSON paths)
    compose: Mapping[str, tuple[str, ...]]  # added, removed, changed (files)
    care: tuple[str, ...]
    compared: tuple[str, ...]  # what could be compared: images, bytes, services, values, compose
    compose_diff: str = ""  # unified diff of the compose files (text output)
    changed_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when the new release changes anything at all (the exit code of `diff --exit-code`)."""
        return bool(
            self.images
            or any(self.services.values())
            or any(self.values.values())
            or any(self.compose.values())
        )

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "old": self.old,
            "new": self.new,
            "release": self.release,
            "versions": dict(zip(("old", "new"), self.versions, strict=False)),
            "images": [i.to_json() for i in self.images],
            "bytes": self.bytes.to_json() if self.bytes is not None else None,
            "bytesNote": self.bytes_note,
            "services": {k: list(v) for k, v in self.services.items()},
            "serviceFields": {k: list(v) for k, v in self.changed_fields.items()},
            "values": {k: list(v) for k, v in self.values.items()},
            "compose": {k: list(v) for k, v in self.compose.items()},
            "care": list(self.care),
            "compared": list(self.compared),
            "changed": self.changed,
        }


def compare(a: Side, b: Side) -> DiffResult:
    images = _images(a.lock, b.lock)
    size, note = _bytes(a, b, images)
    compared = ["images"] + (["bytes"] if size is not None else [])
    services: dict[str, tuple[str, ...]] = {}
    fields: dict[str, tuple[str, ...]] = {}
    values: dict[str, tuple[str, ...]] = {}
    compose: dict[str, tuple[str, ...]] = {}
    compose_text = ""
    care: list[str] = [
        f"image {i.name} removed: its repository in your registry keeps it"
        for i in images
        if i.change == "removed"
    ]
    if a.plan is not None and b.plan is not None:
        compared += ["services", "values", "compose"]
        services, fields = _services(a.plan, b.plan, {i.name for i in images if i.change == "repinned"})
        values = _keyed(_flatten(chart_values(a.plan)), _flatten(chart_values(b.plan)), ignore=("images.",))
        old_files, new_files = render_compose(a.plan), render_compose(b.plan)
        compose = _keyed(old_files, new_files)
        compose_text = "".join(
            "".join(
                difflib.unified_diff(
                    old_files.get(f, b"").decode(errors="replace").splitlines(keepends=True),
                    new_files.get(f, b"").decode(errors="replace").splitlines(keepends=True),
                    f"a/{f}",
                    f"b/{f}",
                )
            )
            for f in sorted(set(old_files) | set(new_files))
            if old_files.get(f) != new_files.get(f)
        )
        care += _care(a.plan, b.plan)
    return DiffResult(
        old=a.label,
        new=b.label,
        release=b.name,
        versions=(a.version, b.version),
        images=images,
        bytes=size,
        bytes_note=note,
        services=services,
        values=values,
        compose=compose,
        care=tuple(care),
        compared=tuple(compared),
        compose_diff=compose_text,
        changed_fields=fields,
    )


# ------------------------------------------------------------------------------- sides


@contextmanager
def side(spec: str, factory: RegistryFor | None) -> Iterator[Side]:
    path = Path(spec)
    if "@" in spec and not path.exists():
        directory, _, rev = spec.rpartition("@")
        with _checkout(Path(directory), rev) as tree:
            yield _release_side(spec, tree, factory)
        return
    if is_bundle(path):
        yield _bundle_side(spec, path)
    elif path.is_dir() or path.name == RELEASE_FILE:
        yield _release_side(spec, path if path.is_dir() else path.parent, factory)
    elif path.is_file():
        lock = load_lock_file(path)
        yield Side(
            label=spec,
            kind="lock",
            name=lock.release,
            version="",
            lock=lock,
            plan=None,
            **_blobs(lock, factory),
        )
    else:
        raise InputError(
            f"{spec}: no such release directory, lock or bundle",
            fix="pass a release directory (or DIR@GIT-REV), a release.lock.yaml, or a bundle",
        )


@contextmanager
def _checkout(directory: Path, rev: str) -> Iterator[Path]:
    """The release directory as git holds it at `rev` (git archive, streamed to disk: nothing of the
    work tree changes, nothing is held in memory)."""
    where = f"{directory}@{rev}"
    if not directory.is_dir():
        raise InputError(
            f"{where}: {directory} is not a directory",
            fix="DIR@REV names a release directory inside a git repository",
        )
    fix = "name a commit, tag or branch of the git repository holding the release directory, e.g. DIR@v2.3.0"
    with tempfile.TemporaryDirectory(prefix="releaser-diff-") as tmp, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                ["git", "-C", str(directory), "archive", "--format=tar", rev, "."],
                stdout=subprocess.PIPE,
                stderr=err,
            )
        except FileNotFoundError:
            raise ToolError(
                f"{where}: git is not installed",
                fix="install git, or pass the older release directory itself",
            ) from None
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                tar.extractall(tmp, filter="data")
        except tarfile.TarError:
            pass  # git said why (below)
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            err.seek(0)
            said = err.read(4096).decode(errors="replace").strip().splitlines()
            raise InputError(
                f"{where}: git cannot give the directory at {rev!r}: {said[-1] if said else f'exit {code}'}",
                fix=fix,
            )
        yield Path(tmp)


def _release_side(label: str, directory: Path, factory: RegistryFor | None) -> Side:
    release, _ = load_release(directory)
    lock = read_lock(directory, release)
    return Side(
        label=label,
        kind="release",
        name=release.name,
        version=release.version,
        lock=lock,
        plan=build_plan(release, lock),
        **_blobs(lock, factory),
    )


def _bundle_side(label: str, path: Path) -> Side:
    meta, _ = inspect_head(path, None)
    small = small_members(path)
    plan = None
    if "release/release.yaml" in small:
        plan = _bundled_plan(meta, small)
    return Side(
        label=label,
        kind="bundle",
        name=meta.name,
        version=meta.version,
        lock=meta.lock,
        plan=plan,
        blobs=_bundle_blobs(meta, small),
    )


def _bundled_plan(meta: BundleMetadata, small: Mapping[str, bytes]) -> Plan:
    """The plan of the release.yaml a bundle carries, with the config files it names (release/<file>;
    a bundle written before it carried them: from its compose files, which hold them verbatim)."""
    with tempfile.TemporaryDirectory(prefix="releaser-diff-") as tmp:
        root = Path(tmp)
        for name, content in small.items():  # release.yaml and the config files it names
            dest = (root / name.removeprefix("release/")).resolve()
            if name.startswith("release/") and dest.is_relative_to(root.resolve()):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(content)
        src, _ = load_source(root / RELEASE_FILE)  # within the YAML budgets
        services = src.data.get("services") if src is not None and isinstance(src.data, dict) else None
        for svc, spec in (services or {}).items() if isinstance(services, dict) else ():
            for c in spec.get("configs") or () if isinstance(spec, dict) else ():
                if isinstance(c, dict) and isinstance(c.get("file"), str) and isinstance(c.get("path"), str):
                    name = c.get("name") or posixpath.basename(c["path"])
                    rendered = small.get(f"compose/{meta.name}/configs/{svc}/{name}")
                    dest = (root / c["file"]).resolve()
                    if rendered is not None and not dest.exists() and dest.is_relative_to(root.resolve()):
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(rendered)
        release, _ = load_release(root)
        return build_plan(release, meta.lock)


def _bundle_blobs(meta: BundleMetadata, small: Mapping[str, bytes]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for image in meta.lock.images:
        found: dict[str, int] = {}
        stack = [(image.digest, image.size)]
        while stack:
            digest, size = stack.pop()
            found[digest] = size
            content = small.get(f"blobs/sha256/{digest.split(':', 1)[1]}")
            if content is None:
                continue
            doc = _json(content)
            if not isinstance(doc, dict):
                continue
            descs = (
                doc.get("manifests") if "manifests" in doc else [doc.get("config"), *doc.get("layers", [])]
            )
            for d in descs or []:
                if (
                    isinstance(d, dict)
                    and isinstance(d.get("digest"), str)
                    and isinstance(d.get("size"), int)
                ):
                    stack.append((d["digest"], d["size"]))
        out[image.name] = found
    return out


def _json(content: bytes) -> object:
    try:
        return budgets.loads(content)
    except ValueError:
        return None


def _blobs(lock: Lock, factory: RegistryFor | None) -> _BlobFields:
    if factory is None:
        return {"blobs": None, "blobs_note": "sizes not asked for (--offline)"}
    blobs, note = _registry_blobs(lock, factory)
    return {"blobs": blobs, "blobs_note": note}


class _BlobFields(TypedDict):
    blobs: dict[str, dict[str, int]] | None
    blobs_note: str


def _registry_blobs(lock: Lock, factory: RegistryFor) -> tuple[dict[str, dict[str, int]] | None, str]:
    """(image -> {digest: size}, "") from the manifests in the source registries, or (None, why)
    when a registry cannot be asked."""

    def one(pin: LockedImage) -> tuple[str, dict[str, int]]:
        host, path, _, _ = split_reference(pin.repository)
        registry = factory(host)
        found = {pin.digest: pin.size}
        top = registry.get_manifest(path, pin.digest)
        manifests = (
            [registry.get_manifest(path, c["digest"]) for c in top.children()] if top.is_index else [top]
        )
        for m in manifests:
            found[m.descriptor.digest] = m.descriptor.size
            if m.descriptor.media_type not in INDEX_TYPES:
                found.update({d["digest"]: int(d["size"]) for d in m.blobs()})
        return pin.name, found

    try:
        with workers.pool(8) as pool:
            return dict(pool.map(one, lock.images)), ""
    except RegistryError as exc:
        return None, f"sizes unknown: {exc.message}"


# ------------------------------------------------------------------------------- comparisons


def _images(a: Lock, b: Lock) -> tuple[ImageChange, ...]:
    old = {i.name: i for i in a.images}
    new = {i.name: i for i in b.images}
    out = []
    for name in [*new, *(n for n in old if n not in new)]:
        o, n = old.get(name), new.get(name)
        if o is None:
            out.append(ImageChange(name=name, change="added", old=None, new=n.digest if n else None))
        elif n is None:
            out.append(ImageChange(name=name, change="removed", old=o.digest, new=None))
        elif o.digest != n.digest:
            po = {p.platform: p.digest for p in o.platforms}
            pn = {p.platform: p.digest for p in n.platforms}
            platforms = tuple(
                (p, po.get(p), pn.get(p)) for p in sorted(set(po) | set(pn)) if po.get(p) != pn.get(p)
            )
            out.append(
                ImageChange(name=name, change="repinned", old=o.digest, new=n.digest, platforms=platforms)
            )
    return tuple(out)


def _bytes(a: Side, b: Side, images: tuple[ImageChange, ...]) -> tuple[Bytes | None, str]:
    if a.blobs is None or b.blobs is None:
        return None, (a.blobs_note or b.blobs_note)
    old = {d for blobs in a.blobs.values() for d in blobs}
    new: dict[str, int] = {}
    for blobs in b.blobs.values():
        new.update(blobs)
    moved = {i.name for i in images if i.change in ("added", "repinned")}
    image_level: dict[str, int] = {}
    for name in moved:
        image_level.update(b.blobs.get(name, {}))
    return (
        Bytes(
            full=sum(new.values()),
            delta=sum(s for d, s in new.items() if d not in old),
            image_level=sum(image_level.values()),
        ),
        "",
    )


def _services(
    a: Plan, b: Plan, repinned: set[str]
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Services added, removed and changed (with the fields that changed; `image` when it names
    another image or its image was re-pinned)."""
    old = {s.name: s for s in a.services}
    new = {s.name: s for s in b.services}
    fields: dict[str, tuple[str, ...]] = {}
    for name in sorted(set(old) & set(new)):
        x, y = asdict(old[name]), asdict(new[name])
        changed = tuple(k for k in x if x[k] != y[k] and k != "image")
        image = old[name].image != new[name].image or new[name].image in repinned
        if image or changed:
            fields[name] = ("image", *changed) if image else changed
    return (
        {
            "added": tuple(n for n in new if n not in old),
            "removed": tuple(n for n in old if n not in new),
            "changed": tuple(fields),
        },
        fields,
    )


def _flatten(doc: object, prefix: str = "") -> dict[str, str]:
    """JSON paths (a.b.c) of every leaf, with the leaf as compact JSON; lists are leaves."""
    if isinstance(doc, dict) and doc:
        out: dict[str, str] = {}
        for k, v in doc.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(doc, sort_keys=True)}


def _keyed(
    old: Mapping[str, object], new: Mapping[str, object], ignore: tuple[str, ...] = ()
) -> dict[str, tuple[str, ...]]:
    keep = [k for k in sorted(set(old) | set(new)) if not k.startswith(ignore)]
    return {
        "added": tuple(k for k in keep if k not in old),
        "removed": tuple(k for k in keep if k not in new),
        "changed": tuple(k for k in keep if k in old and k in new and old[k] != new[k]),
    }


def _care(a: Plan, b: Plan) -> list[str]:
    """What an upgrade from `a` to `b` needs the operator to know, one line each."""
    out: list[str] = []
    old = {s.name: s for s in a.services}
    new = {s.name: s for s in b.services}
    for name in old:
        if name not in new:
            out.append(
                f"service {name} removed: its volumes and secrets stay (PVCs and Compose volumes are never "
                "deleted by an upgrade); remove them yourself once nothing needs the data"
            )
    for name, s in new.items():
        o = old.get(name)
        if o is None:
            if s.job is not None:
                out.append(f"job {name} added: {_job_runs(s)}")
            continue
        out += _service_care(o, s)
    return out


def _service_care(o: PlanService, s: PlanService) -> list[str]:
    out: list[str] = []
    name = s.name
    if o.workload != s.workload:
        out.append(
            f"service {name}: {o.workload} becomes {s.workload}: helm upgrade deletes the old workload and creates "
            "the new one (its pods restart; a StatefulSet's claims are new claims, not the old volume)"
        )
    gone = {v.claim for v in o.volumes} - {v.claim for v in s.volumes}
    for claim in sorted(gone):
        out.append(f"service {name}: volume {claim} is no longer mounted; its data stays until you delete it")
    sizes = {v.claim: v.size for v in o.volumes}
    for v in s.volumes:
        if v.claim in sizes and sizes[v.claim] != v.size:
            grow = (
                "a StatefulSet's volumeClaimTemplates cannot change: recreate it, or resize the PVCs yourself"
                if s.workload == "StatefulSet"
                else "a PVC grows only on a StorageClass with allowVolumeExpansion; it never shrinks"
            )
            out.append(f"service {name}: volume {v.claim} size {sizes[v.claim]} -> {v.size}: {grow}")
    ports = {p.name: p for p in o.ports}
    for p in s.ports:
        q = ports.get(p.name)
        if q is not None and (q.port, q.protocol) != (p.port, p.protocol):
            out.append(
                f"service {name}: port {p.name} {q.port}/{q.protocol} -> {p.port}/{p.protocol}: clients and firewall rules must follow"
            )
        elif q is not None and q.public and q.host_port != p.host_port:
            out.append(f"service {name}: published port {p.name} {q.host_port} -> {p.host_port} on the host")
    for gone_port in sorted(set(ports) - {p.name for p in s.ports}):
        out.append(f"service {name}: port {gone_port} removed: clients of it stop working")
    if s.job is not None and (o.job is None or o.job != s.job):
        out.append(f"job {name} {'added' if o.job is None else 'changed'}: {_job_runs(s)}")
    return out


def _job_runs(s: PlanService) -> str:
    """When the chart runs a job in an upgrade (the plan's hooks decide)."""
    if s.hooks:
        return f"it runs during the upgrade as a Helm hook ({', '.join(s.hooks)})"
    return "it runs during the upgrade as a new Job, and the pods of the services that wait for it start once it completed"
