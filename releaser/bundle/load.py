"""Load a verified bundle into a registry, digests preserved exactly.

Order: verify everything (nothing is pushed on any problem) -> ask the target
which blobs and manifests it already has (concurrently) -> stream the missing
blobs from the archive, several zstd frames at once (a blob several repositories
share is sent once and mounted into the others) -> manifests by digest, children
before indexes -> tags -> the chart as an OCI artifact. A re-run after an
interruption transfers only what is missing and resumes a half-sent blob from
the registry's upload status.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .. import workers
from ..errors import ArchiveError, RegistryError
from ..format.records import BundleMetadata
from ..fs import held
from ..lock import split_reference
from ..mediatypes import INDEX_TYPES
from ..progress import Progress
from ..readers import ChunkReader, OpenReader, Reader
from ..registry import Registry, sha256_digest
from ..target import Target
from .archive import iter_members
from .attachments import IMAGE_CONFIGS, CannotMerge, Merged, config_descriptor, contains, merge
from .verify import Verified

SMALL_CONFIG = 1 << 20  # a cosign config is a few hundred bytes

IN_FLIGHT = 64 << 20  # at most this many buffered bytes at once (keeps peak RSS bounded)


class _Budget:
    """A byte budget: take() blocks until `n` more bytes fit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.cond = threading.Condition()

    def take(self, n: int) -> None:
        with self.cond:
            while self.used and self.used + n > self.limit:
                self.cond.wait()
            self.used += n

    def give(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


@dataclass
class LoadStats:
    blobs_pushed: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_pushed: int = 0
    bytes_skipped: int = 0
    manifests_pushed: int = 0
    manifests_skipped: int = 0
    tags: list[str] = field(default_factory=list)
    # attachment tags the target already had at another digest: merged with the bundle's, or kept
    # as they were (with the reason); never replaced (bundle/attachments.py)
    attachments_merged: list[str] = field(default_factory=list)
    attachments_kept: list[str] = field(default_factory=list)
    resumed: int = 0
    blobs_sent_again: int = 0  # sent or mounted, then not found in its repository before the manifests
    relied: int = 0  # a delta: blobs it left out, found in the target (in their repository, or mounted)
    in_place: bool = False  # everything was already in the target: the bundle's body was not read again
    verified: str = "every file and blob"


@dataclass(frozen=True, kw_only=True)
class _Item:
    digest: str
    media_type: str
    size: int
    repo: str
    kind: str  # blob | manifest | index


def _walk(v: Verified, digest: str, repo: str, out: list[_Item], media_type: str, size: int) -> None:
    content = v.small_json.get(digest)
    doc = json.loads(content) if content else {}
    kind = "index" if media_type in INDEX_TYPES else "manifest"
    if kind == "index":
        for child in doc.get("manifests", []):
            _walk(v, child["digest"], repo, out, child["mediaType"], int(child["size"]))
    else:
        for d in [doc.get("config"), *doc.get("layers", [])]:
            if d:
                out.append(
                    _Item(
                        digest=d["digest"],
                        media_type=d["mediaType"],
                        size=int(d["size"]),
                        repo=repo,
                        kind="blob",
                    )
                )
    out.append(_Item(digest=digest, media_type=media_type, size=size, repo=repo, kind=kind))


def plan_load(v: Verified, target: Target) -> tuple[list[_Item], list[tuple[str, str, str]]]:
    """(items to exist in the target, tags [(repo, tag, digest)])."""
    items: list[_Item] = []
    tags: list[tuple[str, str, str]] = []
    for entry in v.index:
        if entry.image_name == "chart":
            repo = target.chart_repo(v.metadata.name)
            ref = entry.ref_name
            tag = ref.rsplit(":", 1)[1] if ":" in ref else None
        else:
            src = v.metadata.image(entry.image_name)
            if src is None:
                continue
            repo = target.repo(src.path)
            _, _, tag, _ = split_reference(entry.ref_name)
        _walk(v, entry.digest, repo, items, entry.media_type, entry.size)
        if tag:
            tags.append((repo, tag, entry.digest))
    return items, tags


def push_bundle(
    path: Path,
    v: Verified,
    target: Target,
    registry: Registry,
    *,
    state_dir: Path,
    concurrency: int = 8,
    progress: Progress | None = None,
    relied: Mapping[tuple[str, str], str] | None = None,
) -> LoadStats:
    """Push a bundle that `verify_bundle` accepted (`v`): blobs the target lacks (each sent once,
    then mounted into the other repositories that need it), manifests by digest (children before
    their index), then tags. `relied` (a delta): (repository, blob) -> the target's repository
    that holds it, for the layers the delta left out (bundle/delta.py check_relied)."""
    items, tags = plan_load(v, target)
    load = _Load(
        path,
        v,
        target,
        registry,
        state_dir=state_dir,
        concurrency=concurrency,
        progress=progress,
        items=items,
        relied=relied or {},
    )
    load.blobs()
    load.confirm()
    load.manifests()
    load.tags(tags)
    return load.stats


class _Load:
    """One load's state: what the target lacks, what was sent, the progress shown."""

    def __init__(
        self,
        path: Path,
        v: Verified,
        target: Target,
        registry: Registry,
        *,
        state_dir: Path,
        concurrency: int,
        progress: Progress | None,
        items: list[_Item],
        relied: Mapping[tuple[str, str], str],
    ) -> None:
        self.path, self.v, self.target, self.registry = path, v, target, registry
        self.state_dir, self.concurrency, self.progress = state_dir, concurrency, progress
        self.items, self.relied = items, relied
        self.stats = LoadStats()
        self.lock = threading.Lock()
        blobs = [i for i in items if i.kind == "blob"]
        self.pairs = sorted({(b.repo, b.digest) for b in blobs})
        self.sizes = {b.digest: b.size for b in blobs}
        self.label = {
            r: r.rsplit("/", 1)[-1] for r in {b.repo for b in items}
        }  # progress per repository (image)
        self.shown = _Shown(progress, self.label)
        self.need: dict[str, list[str]] = {}  # digest -> repos lacking it
        self.pending_mounts: list[tuple[str, str, str]] = []  # (repo, digest, the repo it was sent to)
        # blobs another load may have shared or disturbed: an upload resumed from a session, one sent
        # while another load held the session, a mount. confirm() asks for these before any manifest;
        # any other blob gone missing is named by the registry at the manifest's PUT and sent again.
        self.unsure: set[tuple[str, str]] = set()

    def blobs(self) -> None:
        with workers.pool(self.concurrency) as pool:
            have = dict(
                zip(self.pairs, pool.map(lambda p: self.registry.blob_exists(*p), self.pairs), strict=True)
            )
        if self.progress is not None:
            totals: dict[str, int] = {}
            for repo, digest in self.pairs:
                totals[self.label[repo]] = totals.get(self.label[repo], 0) + self.sizes[digest]
            self.progress.set_totals(totals)
        relied_digests = set(self.v.metadata.delta_digests())
        mounts = []
        for (repo, digest), present in have.items():
            if present:
                self.stats.blobs_skipped += 1
                self.stats.bytes_skipped += self.sizes[digest]
                self.stats.relied += digest in relied_digests
                self.shown.done(repo, digest, self.sizes[digest])
            elif (repo, digest) in self.relied:
                mounts.append((repo, digest, self.relied[repo, digest]))
            else:
                self.need.setdefault(digest, []).append(repo)
        for repo, digest, source in mounts:  # not in the bundle: from the target's other repository
            self._from_target(repo, digest, source)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.need:
            _BlobStream(
                self.path,
                self.v.frames,
                self.need,
                self.sizes,
                self.registry.chunk_size,
                self.send,
                self.concurrency,
                self.lock,
            ).run()
        with workers.pool(self.concurrency) as pool:  # a layer shared by many images: one mount each
            list(pool.map(lambda m: self._mount_or_send(*m), self.pending_mounts))

    def send(self, repo: str, digest: str, size: int, opener: Callable[[], OpenReader]) -> None:
        # An upload session belongs to one repository and one uploader: its state file is named
        # after both host and repository, and held while in use. Another load sending the same blob
        # at the same time (the same bundle twice, or releases sharing layers) sends its own
        # bytes instead of writing into this one's session.
        name = f"{self.target.host}/{repo}".replace(":", "_").replace("/", "_")
        state = self.state_dir / f"{name}-{digest.split(':')[1]}"
        with held(state.with_name(state.name + ".lock")) as mine:
            result = self.registry.push_blob(
                repo,
                digest,
                size,
                opener,
                progress=self.shown.blob(repo, digest, size),
                state_file=state if mine else None,
                known_missing=True,
            )  # missing: pushed or resumed
        with self.lock:
            self.stats.blobs_pushed += 1
            self.stats.bytes_pushed += size
            self.stats.resumed += result == "resumed"
            if result == "resumed" or not mine:
                self.unsure.add((repo, digest))
            self.pending_mounts.extend((other, digest, repo) for other in self.need[digest][1:])

    def _mount_or_send(self, repo: str, digest: str, source: str) -> None:
        if self.registry.mount_blob(repo, digest, source):
            with self.lock:
                self.stats.blobs_mounted += 1
                self.unsure.add((repo, digest))
        else:  # the registry would not mount: send the bytes again
            self._send_from_archive(repo, digest)
        self.shown.done(repo, digest, self.sizes[digest])

    def _from_target(self, repo: str, digest: str, source: str) -> None:
        """A layer a delta left out, held by another repository of the target: mounted, or
        (a registry that will not mount) copied from there, hashed on the way."""
        size = self.sizes[digest]
        if self.registry.mount_blob(repo, digest, source):
            self.stats.blobs_mounted += 1
            self.unsure.add((repo, digest))
        else:
            self.registry.push_blob(
                repo, digest, size, lambda: ChunkReader(self.registry.iter_blob(source, digest, size))
            )
            self.stats.blobs_pushed += 1
        self.stats.relied += 1
        self.shown.done(repo, digest, size)

    def _send_from_archive(self, repo: str, digest: str) -> None:
        for member, reader in iter_members(self.path):
            if member.name == f"blobs/sha256/{digest.split(':')[1]}" and reader is not None:
                self.registry.push_blob(repo, digest, member.size, partial(_NoClose, reader))
                with self.lock:  # also called from the manifests' pool
                    self.stats.blobs_pushed += 1
                return

    def confirm(self) -> None:
        """Before any manifest: every blob another load may have shared or disturbed (`unsure`) is
        in its repository (one HEAD each); what is not is sent again. A load cannot know what other
        loads running at the same time did to the sessions and repositories it shares. A blob this
        load sent whole by itself is not asked for: should it be gone by the manifest's PUT, the
        registry says so (MANIFEST_BLOB_UNKNOWN) and `_put_manifest` sends it again."""
        sent = sorted(self.unsure)
        with workers.pool(self.concurrency) as pool:
            there = list(pool.map(lambda p: self.registry.blob_exists(*p), sent))
        for (repo, digest), ok in zip(sent, there, strict=True):
            if not ok:
                self._send_from_archive(repo, digest)
                self.stats.blobs_sent_again += 1

    def manifests(self) -> None:
        """Every manifest by digest: every child before its index (plan order guarantees it)."""
        ordered: list[_Item] = []
        seen: set[tuple[str, str]] = set()
        for m in self.items:
            if m.kind != "blob" and (m.repo, m.digest) not in seen:
                seen.add((m.repo, m.digest))
                ordered.append(m)
        for level in ("manifest", "index"):
            batch = [m for m in ordered if m.kind == level]
            with workers.pool(self.concurrency) as pool:
                for pushed in pool.map(self._put_manifest, batch):
                    if pushed:
                        self.stats.manifests_pushed += 1
                    else:
                        self.stats.manifests_skipped += 1

    def _put_manifest(self, m: _Item) -> bool:
        """PUT one manifest unless it is there. When the registry answers that a blob it references
        is unknown in its repository (unlinked since it was sent: another load, a cleanup), each
        of its blobs the repository lacks is sent again from the bundle, and the PUT made once more."""
        if self.registry.manifest_exists(m.repo, m.digest):
            return False
        content = self.v.small_json[m.digest]
        try:
            self.registry.put_manifest(m.repo, m.digest, content, m.media_type)
        except RegistryError as exc:
            if not {"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"} & set(exc.codes):
                raise
            doc = json.loads(content)
            for d in [doc.get("config") or {}, *(doc.get("layers") or [])]:
                digest = d.get("digest") if isinstance(d, dict) else None
                if isinstance(digest, str) and not self.registry.blob_exists(m.repo, digest):
                    self._send_from_archive(m.repo, digest)
                    with self.lock:
                        self.stats.blobs_sent_again += 1
            self.registry.put_manifest(m.repo, m.digest, content, m.media_type)
        return True

    def tags(self, tags: list[tuple[str, str, str]]) -> None:
        """Tags last: each names a manifest already there."""
        attached = attachment_tags(self.v.metadata, self.target)
        with workers.pool(self.concurrency) as pool:
            self.stats.tags.extend(
                pool.map(lambda t: self._put_tag(t, attachment=(t[0], t[1]) in attached), tags)
            )

    def _put_tag(self, item: tuple[str, str, str], *, attachment: bool) -> str:
        repo, tag, digest = item
        manifests = [i for i in self.items if i.kind != "blob"]
        content, media_type = self.v.small_json[digest], _media_type(self.v, digest, manifests)
        ref = self.target.ref(repo, tag)
        if attachment:
            change = tag_change(
                self.registry, self.target, repo, tag, digest, content, media_type, attachment=True
            )
            if change.action == "merge":
                assert change.merged is not None
                if change.merged.config is not None:
                    cfg = change.merged.config
                    self.registry.push_blob(repo, sha256_digest(cfg), len(cfg), lambda: io.BytesIO(cfg))
                self.registry.put_manifest(repo, tag, change.merged.manifest, change.media_type)
                with self.lock:
                    self.stats.attachments_merged.append(describe(change))
                return ref
            if change.action == "keep-theirs":
                with self.lock:
                    self.stats.attachments_kept.append(describe(change))
                return ref
            if change.action == "keep":
                return ref
        self.registry.put_manifest(repo, tag, content, media_type)
        return ref


def _media_type(v: Verified, digest: str, items: list[_Item]) -> str:
    """A manifest's media type: its own `mediaType`, else the descriptor that names it."""
    return str(
        json.loads(v.small_json[digest]).get("mediaType")
        or next(i.media_type for i in items if i.digest == digest)
    )


def attachment_tags(metadata: BundleMetadata, target: Target) -> set[tuple[str, str]]:
    """(repo, tag) in the target of everything attached to the bundle's images."""
    out = set()
    for img in metadata.images:
        out |= {(target.repo(img.path), a.tag) for a in img.attachments or ()}
    return out


@dataclass(frozen=True)
class TagChange:
    """What loading does to one tag of the target."""

    ref: str  # HOST/REPO:TAG
    repo: str  # REPO, in the target
    action: str  # create | move | keep (already the bundle's) | merge | keep-theirs (cannot merge)
    digest: str  # the bundle's
    current: str | None = None  # what the tag names in the target now
    merged: Merged | None = None  # action == merge: what will be put under the tag
    media_type: str = ""  # action == merge: the target manifest's media type
    reason: str = ""  # action == keep-theirs

    @property
    def detail(self) -> str:
        return describe(self)


def tag_change(
    registry: Registry,
    target: Target,
    repo: str,
    tag: str,
    digest: str,
    content: bytes,
    media_type: str,
    *,
    attachment: bool,
) -> TagChange:
    """Decide, without writing, what loading does to `tag` (bundle/attachments.py for merges)."""
    ref = target.ref(repo, tag)
    current = registry.tag_digest(repo, tag)
    if current is None:
        return TagChange(ref, repo, "create", digest)
    if current == digest:
        return TagChange(ref, repo, "keep", digest, current)
    if not attachment:
        return TagChange(ref, repo, "move", digest, current)
    theirs = registry.get_manifest(repo, current)
    their_type = theirs.descriptor.media_type
    config = None
    cfg = config_descriptor(theirs.content) if their_type not in INDEX_TYPES else {}
    size = cfg.get("size")
    if cfg.get("mediaType") in IMAGE_CONFIGS and type(size) is int and 0 <= size <= SMALL_CONFIG:
        config = b"".join(registry.iter_blob(repo, cfg["digest"], size))
    try:
        merged = merge(theirs.content, their_type, content, media_type, config)
    except CannotMerge as exc:
        return TagChange(ref, repo, "keep-theirs", digest, current, reason=str(exc))
    if merged is None:  # the target's already holds the bundle's
        return TagChange(ref, repo, "keep", digest, current)
    return TagChange(ref, repo, "merge", digest, current, merged=merged, media_type=their_type)


def describe(change: TagChange) -> str:
    """One line for a tag change (the load's report and the dry run's)."""
    if change.action == "merge":
        assert change.merged is not None
        return (
            f"{change.ref}: the target's {change.current} + the bundle's {change.digest} "
            f"= {sha256_digest(change.merged.manifest)}"
        )
    if change.action == "keep-theirs":
        return (
            f"{change.ref}: kept the target's {change.current} ({change.reason}); the bundle's is "
            f"{change.repo}@{change.digest}"
        )
    if change.action == "move":
        return f"{change.ref}: {change.current} -> {change.digest}"
    return f"{change.ref}: {change.digest}"


@dataclass(frozen=True, kw_only=True)
class LoadPlan:
    """What a load would write, asked of the target without writing (`airgap --dry-run`)."""

    blobs_missing: int  # (repository, blob) pairs the target lacks
    blobs_present: int
    bytes_to_send: int  # each missing blob once: the others are mounted
    manifests_missing: int
    manifests_present: int
    tags: list[TagChange]

    def to_json(self) -> dict[str, Any]:
        return {
            "blobsMissing": self.blobs_missing,
            "blobsPresent": self.blobs_present,
            "bytesToSend": self.bytes_to_send,
            "manifestsMissing": self.manifests_missing,
            "manifestsPresent": self.manifests_present,
            "tags": [
                {
                    "ref": t.ref,
                    "action": t.action,
                    "digest": t.digest,
                    "current": t.current,
                    "detail": describe(t),
                }
                for t in self.tags
            ],
        }


def plan_changes(v: Verified, target: Target, registry: Registry, concurrency: int = 8) -> LoadPlan:
    """Ask the target what it has (HEADs, and a GET per attachment tag it holds at another
    digest) and say what loading `v` would write; nothing is written."""
    items, tags = plan_load(v, target)
    blobs = sorted({(i.repo, i.digest): i.size for i in items if i.kind == "blob"}.items())
    manifests = sorted({(i.repo, i.digest) for i in items if i.kind != "blob"})
    attached = attachment_tags(v.metadata, target)

    def change(item: tuple[str, str, str]) -> TagChange:
        repo, tag, digest = item
        return tag_change(
            registry,
            target,
            repo,
            tag,
            digest,
            v.small_json[digest],
            _media_type(v, digest, items),
            attachment=(repo, tag) in attached,
        )

    with workers.pool(concurrency) as pool:
        have_blob = list(pool.map(lambda b: registry.blob_exists(*b[0]), blobs))
        have_manifest = list(pool.map(lambda m: registry.manifest_exists(*m), manifests))
        changes = list(pool.map(change, tags))
    missing = {digest: size for ((_, digest), size), have in zip(blobs, have_blob, strict=True) if not have}
    return LoadPlan(
        blobs_missing=have_blob.count(False),
        blobs_present=have_blob.count(True),
        bytes_to_send=sum(missing.values()),
        manifests_missing=have_manifest.count(False),
        manifests_present=have_manifest.count(True),
        tags=changes,
    )


class _Shown:
    """Progress per blob that never goes backwards and never counts a byte twice.

    A blob can be sent more than once in a run (a frame that fails after verification leaves
    its blob to the sequential pass; a resumed upload first reports the registry's offset), so
    each attempt reports its own position and only bytes beyond the most already shown for that
    blob reach `progress`; the total for a blob never exceeds its size.
    """

    def __init__(self, progress: Callable[[str, int], None] | None, label: dict[str, str]) -> None:
        self.progress = progress
        self.label = label
        self.high: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def blob(self, repo: str, digest: str, size: int) -> Callable[[int], None] | None:
        """A callback for one attempt at sending a blob: `n` more bytes of it confirmed."""
        if self.progress is None:
            return None
        at = 0

        def advance(n: int) -> None:
            nonlocal at
            at = min(at + n, size)
            self._show(repo, digest, at)

        return advance

    def done(self, repo: str, digest: str, size: int) -> None:
        """The blob is in the target (was there, mounted, or sent)."""
        if self.progress is not None:
            self._show(repo, digest, size)

    def _show(self, repo: str, digest: str, at: int) -> None:
        with self.lock:
            new = at - self.high.get((repo, digest), 0)
            if new <= 0:
                return
            self.high[(repo, digest)] = at
        self.progress(self.label[repo], new)  # type: ignore[misc]


Send = Callable[[str, str, int, Callable[[], OpenReader]], None]  # repo, digest, size, opener
STREAMS = 4  # archive frames read and uploaded at once: a registry takes several streams faster than one


class _BlobStream:
    """Send every blob of `need` (digest -> repositories lacking it) once, to its first repository.

    When verification proved the archive's zstd frames member-aligned (`frames`, archive.py), up
    to STREAMS frames are decompressed and uploaded side by side, each from its own file handle;
    otherwise (a bundle recompressed by another tool), and for anything a frame could not give
    (the file changed since), one sequential pass over the whole archive follows. The registry
    checks every blob's digest as it commits it. Blobs that fit the upload chunk are read into
    memory and sent by a pool, at most IN_FLIGHT bytes at a time, so their uploads overlap the
    registry's digest checks; bigger ones stream straight from the archive.
    """

    def __init__(
        self,
        path: Path,
        frames: list[tuple[int, int]],
        need: dict[str, list[str]],
        sizes: dict[str, int],
        chunk_size: int,
        send: Send,
        concurrency: int,
        lock: threading.Lock,
    ) -> None:
        self.path, self.frames, self.need, self.sizes = path, frames, need, sizes
        self.chunk_size, self.send, self.concurrency, self.lock = chunk_size, send, concurrency, lock
        self.remaining = dict(need)
        self.budget = _Budget(IN_FLIGHT)
        self.failed = threading.Event()
        self.futures: list[Future[None]] = []

    def run(self) -> None:
        with workers.pool(self.concurrency) as pool:
            try:
                if len(self.frames) > 1:
                    with workers.pool(min(STREAMS, self.concurrency)) as readers:
                        for f in [readers.submit(self.one_pass, fr, pool) for fr in self.frames]:
                            f.result()
                if self.remaining:
                    self.one_pass(None, pool)
            except KeyboardInterrupt:
                self.failed.set()  # readers stop at their next member; nothing waits for the uploads
                raise
            except BaseException:
                for f in list(self.futures):
                    f.exception()  # every upload has stopped before the error is reported
                raise
            for f in list(self.futures):
                f.result()  # re-raises the first upload error, after every upload has stopped

    def claim(self, name: str, size: int) -> str | None:
        """The digest of a blob member this pass should send, taken from `remaining`; else None."""
        if not name.startswith("blobs/sha256/"):
            return None
        digest = "sha256:" + name.rsplit("/", 1)[1]
        with self.lock:
            if self.sizes.get(digest) != size or self.remaining.pop(digest, None) is None:
                return None
        return digest

    def unclaim(self, digest: str) -> None:
        with self.lock:
            self.remaining[digest] = self.need[digest]

    def one_pass(self, frame: tuple[int, int] | None, pool: ThreadPoolExecutor) -> None:
        """Send what `remaining` holds from one frame (or, with None, the whole archive)."""
        current = None
        try:
            last = frame is None or frame == self.frames[-1]
            for member, reader in iter_members(self.path, frame=frame, last=last):
                if not self.remaining or self.failed.is_set():
                    return
                digest = None if reader is None else self.claim(member.name, member.size)
                if digest is None or reader is None:
                    continue
                current = digest
                self._send_member(digest, member.size, reader, pool)
                current = None
        except ArchiveError:
            if frame is None:
                self.failed.set()
                raise
            if current is not None:
                self.unclaim(current)  # the sequential pass sends it (resuming what reached the registry)
        except BaseException:
            self.failed.set()  # the other readers stop at their next member
            raise

    def _send_member(self, digest: str, size: int, reader: Reader, pool: ThreadPoolExecutor) -> None:
        repo = self.need[digest][0]
        if size > min(self.chunk_size, IN_FLIGHT // 2):
            self.send(repo, digest, size, partial(_NoClose, reader))  # streamed from the archive
            return
        self.budget.take(size)
        try:
            data = reader.read()
        except BaseException:
            self.budget.give(size)
            raise

        def job() -> None:
            try:
                self.send(repo, digest, len(data), lambda: io.BytesIO(data))
            finally:
                self.budget.give(len(data))

        self.futures.append(pool.submit(job))


class _NoClose:
    """A tar member reader handed to push_blob, which closes what it opens."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def read(self, n: int = -1, /) -> bytes:
        return self.reader.read(n)

    def __enter__(self) -> _NoClose:
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # the archive's reader stays open for the members after this one


def top_level(metadata: BundleMetadata, target: Target) -> list[tuple[str, str, str | None]]:
    """(repo, digest, tag) of every image, everything attached to it, and the chart, from the
    signed metadata."""
    out: list[tuple[str, str, str | None]] = []
    for img in metadata.images:
        _, _, tag, _ = split_reference(img.source)
        out.append((target.repo(img.path), img.digest, tag))
        out += [(target.repo(img.path), a.digest, a.tag) for a in img.attachments or ()]
    name, _, version = metadata.chart.ref.rpartition(":")
    out.append((target.repo(name), metadata.chart.digest, version))
    return out


def already_loaded(
    metadata: BundleMetadata, target: Target, registry: Registry, concurrency: int = 8
) -> bool:
    """True when every signed top-level digest is in the target under its tag (an attachment
    tag may name a merge that holds it) and every blob those manifests reference is in its
    repository (a blob can go missing after its manifest went in: deleted, or lost by a cache)."""
    tops = top_level(metadata, target)
    attached = attachment_tags(metadata, target)

    def present(item: tuple[str, str, str | None]) -> bool:
        repo, digest, tag = item
        if tag is None:
            return registry.manifest_exists(repo, digest)
        current = registry.tag_digest(repo, tag)  # one HEAD: the tag resolves to the signed digest
        if current == digest:
            return True
        if current is None or (repo, tag) not in attached or not registry.manifest_exists(repo, digest):
            return False
        return contains(
            registry.get_manifest(repo, current).content, registry.get_manifest(repo, digest).content
        )

    with workers.pool(concurrency) as pool:
        if not (tops and all(pool.map(present, tops))):
            return False
        under = pool.map(lambda item: _blobs_under(registry, item[0], item[1]), tops)
        blobs = sorted({b for found in under for b in found})
        return all(pool.map(lambda b: registry.blob_exists(*b), blobs))


def _blobs_under(registry: Registry, repo: str, digest: str) -> list[tuple[str, str]]:
    """(repo, digest) of every blob a manifest (or an index's children) in the target references:
    read from the target itself, each manifest hashed against the digest it is asked by."""
    top = registry.get_manifest(repo, digest)
    manifests = [registry.get_manifest(repo, c["digest"]) for c in top.children()] if top.is_index else [top]
    return [(repo, d["digest"]) for m in manifests if not m.is_index for d in m.blobs()]
