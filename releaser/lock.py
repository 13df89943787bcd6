"""release.lock.yaml: the one place digests come from.

Format (docs/lock-format.md): per image the source reference as written in
release.yaml, the resolved repository, the pinned digest with its media type
and size, and for an index the per-platform child manifests. Resolution against
registries fills it (`releaser lock`); everything else only reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import model as m
from .errors import LockError, Problem, ValidationError
from .yamlsource import PathT, Source, load_source

LOCK_FILE = "release.lock.yaml"
LOCK_KIND = "ReleaseLock"
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")


@dataclass(frozen=True, kw_only=True)
class LockedPlatform:
    platform: str
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, kw_only=True)
class LockedImage:
    name: str
    source: str
    repository: str
    digest: str
    media_type: str
    size: int
    platforms: tuple[LockedPlatform, ...] = ()

    @property
    def pinned(self) -> str:
        """repository@sha256:... — the only form any output may use."""
        return f"{self.repository}@{self.digest}"

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


@dataclass(frozen=True, kw_only=True)
class Lock:
    release: str
    images: tuple[LockedImage, ...]
    file: str

    def image(self, name: str) -> LockedImage:
        return next(i for i in self.images if i.name == name)


def split_reference(ref: str) -> tuple[str, str, str | None, str | None]:
    """'reg:5000/a/b:tag@sha256:..' -> (registry, path, tag, digest). Docker Hub names get docker.io."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, tag, digest
    path = ref if "/" in ref else f"library/{ref}"
    return "docker.io", path, tag, digest


def repository_of(ref: str) -> str:
    registry, path, _, _ = split_reference(ref)
    return f"{registry}/{path}"


def _problems(src: Source) -> list[Problem]:
    """Structural checks of the lock; small enough that code reads better than a schema."""
    out: list[Problem] = []
    d = src.data
    if not isinstance(d, dict):
        return [src.problem((), "expected a mapping", "regenerate it with `releaser lock DIR`")]
    for key, want in (("apiVersion", "releaser.dev/v1alpha1"), ("kind", LOCK_KIND)):
        if d.get(key) != want:
            out.append(src.problem((key,), f"expected {want!r}, got {d.get(key)!r}", f"{key}: {want}"))
    for key in sorted(set(d) - {"apiVersion", "kind", "release", "images"}):
        out.append(src.problem((key,), f"unknown key {key!r}", "remove it"))
    images = d.get("images")
    if not isinstance(images, dict):
        out.append(src.problem(("images",), "expected a mapping of image name -> pin", "run `releaser lock DIR`"))
        return out
    for name, img in images.items():
        base: PathT = ("images", name)
        if not isinstance(img, dict):
            out.append(src.problem(base, "expected a mapping", "run `releaser lock DIR`"))
            continue
        allowed = {"source", "repository", "digest", "mediaType", "size", "platforms"}
        for key in sorted(set(img) - allowed):
            out.append(src.problem((*base, key), f"unknown key {key!r}", "remove it"))
        for key in ("source", "repository", "digest", "mediaType", "size"):
            if key not in img:
                out.append(src.problem(base, f"missing {key!r}", "run `releaser lock --refresh DIR`"))
        out += _pin_problems(src, base, img)
        plats = img.get("platforms", {})
        if not isinstance(plats, dict):
            out.append(src.problem((*base, "platforms"), "expected a mapping of os/arch -> pin", None))
            continue
        if plats and img.get("mediaType") not in INDEX_TYPES:
            out.append(src.problem((*base, "platforms"), "only an index has per-platform children",
                                   "run `releaser lock --refresh DIR`"))
        for p, child in plats.items():
            if not isinstance(child, dict):
                out.append(src.problem((*base, "platforms", p), "expected a mapping", None))
                continue
            out += _pin_problems(src, (*base, "platforms", p), child)
    return out


def _pin_problems(src: Source, base: PathT, pin: dict[str, Any]) -> list[Problem]:
    out = []
    if "digest" in pin and not (isinstance(pin["digest"], str) and DIGEST_RE.match(pin["digest"])):
        out.append(src.problem((*base, "digest"), f"{pin['digest']!r} is not a sha256 digest",
                               "run `releaser lock --refresh DIR`; never edit digests by hand"))
    if "mediaType" in pin and pin["mediaType"] not in INDEX_TYPES + MANIFEST_TYPES:
        out.append(src.problem((*base, "mediaType"), f"{pin['mediaType']!r} is not an image manifest or index type",
                               "run `releaser lock --refresh DIR`"))
    if "size" in pin and not (isinstance(pin["size"], int) and not isinstance(pin["size"], bool) and pin["size"] > 0):
        out.append(src.problem((*base, "size"), "size must be a positive integer", "run `releaser lock --refresh DIR`"))
    return out


def read_lock(directory: Path, release: m.Release) -> Lock:
    """Read DIR/release.lock.yaml and prove it is current for `release`.

    Raises LockError (missing / stale) or ValidationError (malformed).
    """
    path = directory / LOCK_FILE
    fix = f"run `releaser lock {directory}` to resolve every image to a digest"
    if not path.exists():
        raise LockError(f"{path}: no lock file; outputs are pinned from the lock only", fix=fix)
    src, problems = load_source(path)
    if src is None:
        raise ValidationError(problems)
    problems += _problems(src)
    if problems:
        raise ValidationError(problems)
    d = src.data
    images = tuple(
        LockedImage(name=n, source=i["source"], repository=i["repository"], digest=i["digest"],
                    media_type=i["mediaType"], size=i["size"],
                    platforms=tuple(LockedPlatform(platform=p, digest=c["digest"], media_type=c["mediaType"],
                                                   size=c["size"]) for p, c in sorted((i.get("platforms") or {}).items())))
        for n, i in sorted(d["images"].items()))
    lock = Lock(release=str(d.get("release", "")), images=images, file=str(path))
    stale = stale_reasons(release, lock)
    if stale:
        raise LockError(f"{path} is stale:\n" + "\n".join(f"  - {s}" for s in stale),
                        fix=f"run `releaser lock {directory}` (re-resolves only what changed)")
    return lock


def stale_reasons(release: m.Release, lock: Lock) -> list[str]:
    """Every way the lock fails to match release.yaml; empty when current."""
    out = []
    locked = {i.name: i for i in lock.images}
    if lock.release and lock.release != release.name:
        out.append(f"the lock is for release {lock.release!r}, not {release.name!r}")
    for img in release.images:
        pin = locked.get(img.name)
        if pin is None:
            out.append(f"image {img.name!r} ({img.ref}) is not in the lock")
            continue
        if pin.source != img.ref:
            out.append(f"image {img.name!r}: release.yaml says {img.ref}, the lock pinned {pin.source}")
        if pin.repository != repository_of(img.ref):
            out.append(f"image {img.name!r}: repository {pin.repository} does not match {repository_of(img.ref)}")
        _, _, _, want_digest = split_reference(img.ref)
        if want_digest and want_digest != pin.digest and want_digest not in {p.digest for p in pin.platforms}:
            out.append(f"image {img.name!r}: release.yaml pins {want_digest}, the lock has {pin.digest}")
        if img.platforms and pin.is_index:
            have = {p.platform for p in pin.platforms}
            missing = sorted(set(img.platforms) - have)
            extra = sorted(have - set(img.platforms))
            if missing:
                out.append(f"image {img.name!r}: platforms {', '.join(missing)} are asked for but not locked")
            if extra:
                out.append(f"image {img.name!r}: the lock keeps {', '.join(extra)}, which release.yaml no longer lists")
    for name in sorted(set(locked) - {i.name for i in release.images}):
        out.append(f"image {name!r} is in the lock but no longer in release.yaml")
    return out


def dump_lock(lock: Lock, *, header: str = "") -> str:
    """Deterministic YAML text of a lock."""
    doc: dict[str, Any] = {"apiVersion": "releaser.dev/v1alpha1", "kind": LOCK_KIND, "release": lock.release,
                           "images": {}}
    for i in lock.images:
        entry: dict[str, Any] = {"source": i.source, "repository": i.repository, "digest": i.digest,
                                 "mediaType": i.media_type, "size": i.size}
        if i.platforms:
            entry["platforms"] = {p.platform: {"digest": p.digest, "mediaType": p.media_type, "size": p.size}
                                  for p in i.platforms}
        doc["images"][i.name] = entry
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
