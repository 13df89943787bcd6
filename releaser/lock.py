"""release.lock.yaml: the one place digests come from.

Format (docs/lock-format.md): per image the source reference as written in
release.yaml, the resolved repository, the pinned digest with its media type
and size, and for an index the per-platform child manifests. Resolution against
registries fills it (`releaser lock`); everything else only reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .budgets import MAX_JSON_BYTES, json_object
from .errors import LockError, MetadataError, Problem, ReleaserError, ValidationError
from .fs import atomic_write
from .mediatypes import INDEX_TYPES, MANIFEST_TYPES
from .names import LOCK_FILE, RELEASE_FILE
from .yamlsource import PathT, Source, load_source

if TYPE_CHECKING:  # types only: validate and render never load the registry client (requests),
    # and a load never the release model
    from . import model as m
    from .registry import Manifest, Registry, RegistryFor

LOCK_KIND = "ReleaseLock"
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}\Z")  # \Z: $ would take a final newline too


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
    platforms: tuple[LockedPlatform, ...] = ()  # an index's kept children
    platform: str | None = None  # a single manifest's platform, when known

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
        out.append(
            src.problem(("images",), "expected a mapping of image name -> pin", "run `releaser lock DIR`")
        )
        return out
    for name, img in images.items():
        base: PathT = ("images", name)
        if not isinstance(img, dict):
            out.append(src.problem(base, "expected a mapping", "run `releaser lock DIR`"))
            continue
        allowed = {"source", "repository", "digest", "mediaType", "size", "platforms", "platform"}
        for key in sorted(set(img) - allowed):
            out.append(src.problem((*base, key), f"unknown key {key!r}", "remove it"))
        out += _pin_problems(src, base, img, ("source", "repository", "digest", "mediaType", "size"))
        for key in ("source", "repository", "platform"):
            if key in img and not isinstance(img[key], str):
                out.append(
                    src.problem((*base, key), "expected a string", "run `releaser lock --refresh DIR`")
                )
        plats = img.get("platforms", {})
        if not isinstance(plats, dict):
            out.append(src.problem((*base, "platforms"), "expected a mapping of os/arch -> pin", None))
            continue
        if plats and img.get("mediaType") not in INDEX_TYPES:
            out.append(
                src.problem(
                    (*base, "platforms"),
                    "only an index has per-platform children",
                    "run `releaser lock --refresh DIR`",
                )
            )
        for p, child in plats.items():
            if not isinstance(child, dict):
                out.append(src.problem((*base, "platforms", p), "expected a mapping", None))
                continue
            out += _pin_problems(src, (*base, "platforms", p), child, ("digest", "mediaType", "size"))
    return out


def _pin_problems(src: Source, base: PathT, pin: dict[str, Any], required: tuple[str, ...]) -> list[Problem]:
    out = [
        src.problem(base, f"missing {key!r}", "run `releaser lock --refresh DIR`")
        for key in required
        if key not in pin
    ]
    if "digest" in pin and not (isinstance(pin["digest"], str) and DIGEST_RE.match(pin["digest"])):
        out.append(
            src.problem(
                (*base, "digest"),
                f"{pin['digest']!r} is not a sha256 digest",
                "run `releaser lock --refresh DIR`; never edit digests by hand",
            )
        )
    if "mediaType" in pin and pin["mediaType"] not in INDEX_TYPES + MANIFEST_TYPES:
        out.append(
            src.problem(
                (*base, "mediaType"),
                f"{pin['mediaType']!r} is not an image manifest or index type",
                "run `releaser lock --refresh DIR`",
            )
        )
    if "size" in pin and not (
        isinstance(pin["size"], int) and not isinstance(pin["size"], bool) and pin["size"] > 0
    ):
        out.append(
            src.problem(
                (*base, "size"), "size must be a positive integer", "run `releaser lock --refresh DIR`"
            )
        )
    return out


def load_lock_file(path: Path) -> Lock:
    """Parse and structurally check a lock file, without comparing it to release.yaml."""
    src, problems = load_source(path)
    if src is None:
        raise ValidationError(problems)
    problems += _problems(src)
    if problems:
        raise ValidationError(problems)
    return _lock(src.data, file=str(path))


def _lock(d: dict[str, Any], *, file: str) -> Lock:
    """A lock document that passed _problems, as a Lock."""
    images = tuple(
        LockedImage(
            name=n,
            source=i["source"],
            repository=i["repository"],
            digest=i["digest"],
            media_type=i["mediaType"],
            size=i["size"],
            platform=i.get("platform"),
            platforms=tuple(
                LockedPlatform(platform=p, digest=c["digest"], media_type=c["mediaType"], size=c["size"])
                for p, c in sorted((i.get("platforms") or {}).items())
            ),
        )
        for n, i in sorted(d["images"].items())
    )
    return Lock(release=str(d.get("release", "")), images=images, file=file)


def lock_from_document(doc: object, *, where: str) -> Lock:
    """A lock carried as data (in a bundle's releaser.json), checked as a lock file is; raises
    MetadataError naming `where` and the first problem."""
    src = Source(file=where, data=doc, lines={})
    problems = _problems(src)
    if problems:
        p = problems[0]
        raise MetadataError(path=f"{where} {p.path}", expected=f"a lock ({p.message})", got=doc)
    assert isinstance(doc, dict)
    return _lock(doc, file=where)


def read_lock(directory: Path, release: m.Release) -> Lock:
    """Read DIR/release.lock.yaml and prove it is current for `release`.

    Raises LockError (missing / stale) or ValidationError (malformed).
    """
    path = directory / LOCK_FILE
    fix = f"run `releaser lock {directory}` to resolve every image to a digest"
    if not path.exists() and not path.is_symlink():  # a broken link is read, and said to be one
        raise LockError(f"{path}: no lock file; outputs are pinned from the lock only", fix=fix)
    lock = load_lock_file(path)
    stale = stale_reasons(release, lock)
    if stale:
        raise LockError(
            f"{path} is stale:\n" + "\n".join(f"  - {s}" for s in stale),
            fix=f"run `releaser lock {directory}` (re-resolves only what changed)",
        )
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
            out.append(
                f"image {img.name!r}: repository {pin.repository} does not match {repository_of(img.ref)}"
            )
        _, _, _, want_digest = split_reference(img.ref)
        if want_digest and want_digest != pin.digest and want_digest not in {p.digest for p in pin.platforms}:
            out.append(f"image {img.name!r}: release.yaml pins {want_digest}, the lock has {pin.digest}")
        if img.platforms and not pin.is_index:
            if len(img.platforms) > 1:
                out.append(
                    f"image {img.name!r}: {len(img.platforms)} platforms are asked for but the lock pins one "
                    "manifest"
                )
            elif pin.platform and pin.platform != img.platforms[0]:
                out.append(
                    f"image {img.name!r}: {img.platforms[0]} is asked for but the lock pins {pin.platform}"
                )
        if img.platforms and pin.is_index:
            have = {p.platform for p in pin.platforms}
            missing = sorted(set(img.platforms) - have)
            extra = sorted(have - set(img.platforms))
            if missing:
                out.append(f"image {img.name!r}: platforms {', '.join(missing)} are asked for but not locked")
            if extra:
                out.append(
                    f"image {img.name!r}: the lock keeps {', '.join(extra)}, which release.yaml no longer lists"
                )
    for name in sorted(set(locked) - {i.name for i in release.images}):
        out.append(f"image {name!r} is in the lock but no longer in release.yaml")
    return out


def dump_lock(lock: Lock, *, header: str = "") -> str:
    """Deterministic YAML text of a lock."""
    return header + yaml.safe_dump(lock_document(lock), sort_keys=False, default_flow_style=False)


def lock_document(lock: Lock) -> dict[str, object]:
    """A lock as the data of its file (the same document the YAML and the bundle's metadata hold)."""
    doc: dict[str, Any] = {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": LOCK_KIND,
        "release": lock.release,
        "images": {},
    }
    for i in lock.images:
        entry: dict[str, Any] = {
            "source": i.source,
            "repository": i.repository,
            "digest": i.digest,
            "mediaType": i.media_type,
            "size": i.size,
        }
        if i.platform:
            entry["platform"] = i.platform
        if i.platforms:
            entry["platforms"] = {
                p.platform: {"digest": p.digest, "mediaType": p.media_type, "size": p.size}
                for p in i.platforms
            }
        doc["images"][i.name] = entry
    return doc


# ---------------------------------------------------------------- resolution

LOCK_HEADER = (
    "# release.lock.yaml: written by `releaser lock`; do not edit by hand.\n"
    "# Every output (compose, chart, bundle) takes its digests from here.\n"
)


@dataclass(frozen=True, kw_only=True)
class Resolution:
    """What `releaser lock` did for one image."""

    name: str
    action: str  # kept | resolved | changed
    pinned: str
    previous: str | None = None


def _platform_of(entry: dict[str, Any]) -> str:
    p = entry.get("platform") or {}
    text = f"{p.get('os', 'unknown')}/{p.get('architecture', 'unknown')}"
    return f"{text}/{p['variant']}" if p.get("variant") else text  # str() by the JSON: any scalar


def resolve_image(
    img: m.Image, registry: Registry, *, platforms: tuple[str, ...] = (), previous: LockedImage | None = None
) -> LockedImage:
    """Resolve one image to a pin. `platforms` (from --platform or release.yaml) keeps a subset:
    exactly one re-pins to that platform's manifest; none keeps the whole index."""
    registry_host, path, tag, digest = split_reference(img.ref)
    reference = digest or tag or "latest"
    where = f"{img.ref} (images.{img.name})"
    manifest = registry.get_manifest(path, reference)
    repo = f"{registry_host}/{path}"
    d = manifest.descriptor
    if manifest.is_index:
        children = {}
        for entry in manifest.children():
            plat = _platform_of(entry)
            if plat == "unknown/unknown":  # attestations and other artifacts are not platforms
                continue
            children[plat] = LockedPlatform(
                platform=plat, digest=entry["digest"], media_type=entry["mediaType"], size=int(entry["size"])
            )
        missing = [p for p in platforms if p not in children]
        if missing:
            raise LockError(
                f"{where}: platform {', '.join(missing)} is not in the index "
                f"(it has {', '.join(sorted(children)) or 'none'})",
                fix="ask only for platforms the image provides, or build the missing one",
            )
        if len(platforms) == 1:
            child = children[platforms[0]]
            return _pin(img, repo, child.digest, child.media_type, child.size, platform=child.platform)
        if platforms and set(platforms) != set(children):
            raise LockError(
                f"{where}: keeping {len(platforms)} of {len(children)} platforms cannot be pinned by "
                "one digest: the index names them all",
                fix="keep every platform (remove the platforms list) or exactly one",
            )
        kept = tuple(children[p] for p in sorted(children))
        if previous is not None and previous.source == img.ref and previous.platforms:
            dropped = sorted({p.platform for p in previous.platforms} - set(children))
            if dropped:
                raise LockError(
                    f"{where}: the index no longer provides {', '.join(dropped)}, which the lock had",
                    fix=f"list the platforms you want under images.{img.name}.platforms to drop "
                    "the others on purpose, or fix the image",
                )
        return _pin(img, repo, d.digest, d.media_type, d.size, platforms=kept)
    return _pin_single(
        img, registry, manifest, path=path, repo=repo, where=where, platforms=platforms, previous=previous
    )


def _pin_single(
    img: m.Image,
    registry: Registry,
    manifest: Manifest,
    *,
    path: str,
    repo: str,
    where: str,
    platforms: tuple[str, ...],
    previous: LockedImage | None,
) -> LockedImage:
    """A single manifest's pin; its platform comes from its config."""
    cfg_desc = manifest.blobs()[0]
    plat: str | None = None
    size = cfg_desc["size"]
    if size <= MAX_JSON_BYTES:
        cfg = json_object(
            b"".join(registry.iter_blob(path, cfg_desc["digest"], size)),
            f"{registry.host}/{path}@{cfg_desc['digest']}: the image config",
        )
        plat = f"{cfg.get('os', 'unknown')}/{cfg.get('architecture', 'unknown')}"
        if cfg.get("variant"):
            plat += f"/{cfg['variant']}"
    if previous is not None and previous.source == img.ref and previous.platforms and not platforms:
        raise LockError(
            f"{where}: now a single {plat} image; the lock had "
            f"{', '.join(p.platform for p in previous.platforms)}",
            fix=f"set images.{img.name}.platforms: [{plat}] to drop the others on purpose, or fix the tag",
        )
    wanted = [p for p in platforms if p != plat]
    if platforms and (len(platforms) > 1 or wanted):
        raise LockError(
            f"{where}: is a single {plat} image; asked for {', '.join(platforms)}",
            fix="drop the platforms list for this image, or point it at a multi-platform index",
        )
    d = manifest.descriptor
    return _pin(img, repo, d.digest, d.media_type, d.size, platform=plat)


def _pin(
    img: m.Image,
    repo: str,
    digest: str,
    media_type: str,
    size: int,
    *,
    platform: str | None = None,
    platforms: tuple[LockedPlatform, ...] = (),
) -> LockedImage:
    return LockedImage(
        name=img.name,
        source=img.ref,
        repository=repo,
        digest=digest,
        media_type=media_type,
        size=size,
        platform=platform,
        platforms=platforms,
    )


def _kept_platform(img: m.Image, prev: LockedImage | None) -> tuple[str, ...]:
    """The one platform an earlier `lock --platform` pinned `img` to (the lock records it), kept by
    `--refresh` and `--check`: otherwise they would read the whole index again and call it moved."""
    if prev is not None and prev.source == img.ref and prev.platform and not prev.is_index:
        return (prev.platform,)
    return ()


def resolve_lock(
    release: m.Release,
    previous: Lock | None,
    registry_for: RegistryFor,
    *,
    platforms: tuple[str, ...] = (),
    refresh: bool = False,
) -> tuple[Lock, list[Resolution]]:
    """Resolve every image of `release`. Entries of `previous` that are still current are kept
    without touching a registry unless `refresh`."""
    old = {i.name: i for i in previous.images} if previous else {}
    images: list[LockedImage] = []
    report: list[Resolution] = []
    for img in release.images:
        prev = old.get(img.name)
        want = platforms or img.platforms or _kept_platform(img, prev)
        single = _narrowed(release, img)
        if (
            prev
            and not refresh
            and not platforms
            and not stale_reasons(single, Lock(release=release.name, images=(prev,), file=""))
        ):
            images.append(prev)
            report.append(Resolution(name=img.name, action="kept", pinned=prev.pinned))
            continue
        registry_host = split_reference(img.ref)[0]
        try:
            pin = resolve_image(img, registry_for(registry_host), platforms=tuple(want), previous=prev)
        except LockError:
            raise
        except ReleaserError as exc:  # a registry error: say which image of release.yaml asked
            exc.add_note(f"images.{img.name} ({img.ref}) in {RELEASE_FILE}")
            raise
        action = "resolved" if prev is None else ("kept" if prev.digest == pin.digest else "changed")
        images.append(pin)
        report.append(
            Resolution(
                name=img.name,
                action=action,
                pinned=pin.pinned,
                previous=prev.pinned if prev and prev.digest != pin.digest else None,
            )
        )
    return Lock(release=release.name, images=tuple(sorted(images, key=lambda i: i.name)), file=""), report


def _narrowed(release: m.Release, img: m.Image) -> m.Release:
    """`release` narrowed to one image, to ask whether that image's pin is current."""
    return replace(release, images=(img,))


def write_lock(directory: Path, lock: Lock) -> Path:
    """Atomically write DIR/release.lock.yaml."""
    path = directory / LOCK_FILE
    atomic_write(path, dump_lock(lock, header=LOCK_HEADER).encode())
    return path
