"""Assemble and write bundles/<name>-<version>.tar.zst (format: docs/bundle-format.md).

Every checksum is known before the first byte is written (blobs are named by
their digest; everything else is rendered in memory), so releaser.json and
checksums.txt lead the archive and one streaming pass can verify and load it.
Blobs flow registry -> hash -> compressor (or cache -> compressor); a blob that
does not hash to its digest aborts the bundle and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from .. import __version__, budgets, workers
from ..errors import ArchiveError, RegistryError, ReleaserError
from ..format import (
    ATTACHMENT_SUFFIXES,
    CHECKSUMS,
    FORMAT_VERSION,
    HELM_CONFIG,
    HELM_LAYER,
    IMAGE_NAME,
    METADATA,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    SIGNATURE,
    SUBJECT,
    chart_ref,
)
from ..format.records import (
    Attachment,
    BundledImage,
    BundleMetadata,
    ChartRecord,
    ChecksumsRecord,
    IndexEntry,
    PartRecord,
    TrustRecord,
)
from ..fs import atomic_file, start_writeback
from ..lock import Lock, LockedImage, split_reference
from ..mediatypes import INDEX_TYPES
from ..names import LOCK_FILE
from ..plan import Plan
from ..progress import Progress
from ..registry import Descriptor, Manifest, Registry, RegistryFor, sha256_digest
from ..render.compose import render_compose
from ..render.docs import CatalogSource, catalog_json, compose_images, images_md, install_md, used_by
from ..render.helm import chart_config, package_chart, render_helm
from ..render.loadsh import load_sh
from ..render.quadlet import render_quadlet
from ..workers import Behind
from .archive import TarZstWriter
from .attachments import referrers_index
from .cache import BlobCache
from .parts import PartsWriter, check_space, part_path
from .sign import sign

if TYPE_CHECKING:  # types only: a bundle without an installer or SBOMs does not import their makers
    from .installer import InstallerFile
    from .sbom import MadeSbom, SbomFor


@dataclass(frozen=True, kw_only=True)
class Blob:
    digest: str
    size: int
    media_type: str
    source_repo: str  # registry path to fetch it from ("" when in memory)
    content: bytes | None = None  # small things we already hold (manifests, chart)
    kind: str = "blob"  # blob | manifest | index
    image: str = ""  # which image (for progress), "" for the chart
    layer: bool = False  # a layer of a pinned image (what a delta may leave out; not configs, attachments)

    @property
    def path(self) -> str:
        return f"blobs/sha256/{self.digest.split(':', 1)[1]}"

    @classmethod
    def of_manifest(cls, m: Manifest, source_repo: str, image: str) -> Blob:
        """A manifest or index as the registry served it (held in memory, bytes as served)."""
        d = m.descriptor
        kind = "index" if d.media_type in INDEX_TYPES else "manifest"
        return cls(
            digest=d.digest,
            size=d.size,
            media_type=d.media_type,
            source_repo=source_repo,
            content=m.content,
            kind=kind,
            image=image,
        )


@dataclass
class BundlePlan:
    """Everything the archive will hold, with checksums, before anything is written."""

    blobs: dict[str, Blob] = field(default_factory=dict)
    index: list[IndexEntry] = field(default_factory=list)
    files: dict[str, bytes] = field(
        default_factory=dict
    )  # in-memory non-blob files (chart tgz, compose, ...)
    # what the customer reads first, right after the head: INSTALL.md, the catalog, load.sh, installer/
    leading: dict[str, bytes] = field(default_factory=dict)
    installer: list[InstallerFile] = field(default_factory=list)  # installer/, after `leading`
    images: list[BundledImage] = field(default_factory=list)
    trust: TrustRecord | None = None  # the publisher's trust policy, for the signed head

    def add(self, blob: Blob) -> None:
        self.blobs.setdefault(blob.digest, blob)


def _collect_image(bp: BundlePlan, name: str, pin: LockedImage, registry: Registry) -> list[str]:
    """Add the pinned manifest (or index and its children) and every blob they reference;
    return the digests something may be attached to (the pinned one, then the children)."""
    _, path, _, _ = split_reference(pin.repository)
    top = registry.get_manifest(path, pin.digest)  # served content hashed against pin.digest
    bp.add(Blob.of_manifest(top, path, name))
    manifests = [top]
    if top.is_index:
        manifests += _children(bp, name, path, top, registry, pin.pinned)
    _add_blobs(bp, name, path, manifests, pin.pinned)
    return [m.descriptor.digest for m in manifests]


def _children(
    bp: BundlePlan, name: str, path: str, index: Manifest, registry: Registry, what: str
) -> list[Manifest]:
    out = []
    for child in index.children():
        m = registry.get_manifest(path, child["digest"])
        if m.descriptor.media_type in INDEX_TYPES:
            raise ReleaserError(
                f"{what}: nested indexes are not supported",
                fix="pin a platform index whose children are image manifests",
            )
        bp.add(Blob.of_manifest(m, path, name))
        out.append(m)
    return out


def _add_blobs(
    bp: BundlePlan, name: str, path: str, manifests: list[Manifest], pinned: str, *, image: bool = True
) -> None:
    """Every config and layer of `manifests`; with `image`, layers are marked as such (an
    attachment's are not: a delta always carries attachments whole)."""
    for m in manifests:
        if m.descriptor.media_type in INDEX_TYPES:
            continue
        config = m.json().get("config")
        config_digest = config.get("digest") if isinstance(config, dict) else None
        for desc in m.blobs():
            if desc.get("urls"):
                raise ReleaserError(
                    f"{pinned}: layer {desc['digest']} is a foreign layer (urls)",
                    fix="airgap bundles cannot carry foreign layers; rebuild the image without them",
                )
            bp.add(
                Blob(
                    digest=desc["digest"],
                    size=int(desc["size"]),
                    media_type=desc["mediaType"],
                    source_repo=path,
                    image=name,
                    layer=image and desc["digest"] != config_digest,
                )
            )


def _attachments(
    bp: BundlePlan, name: str, pin: LockedImage, subjects: list[str], registry: Registry, concurrency: int = 8
) -> tuple[Attachment, ...]:
    """Signatures, attestations and SBOMs attached to `subjects` by tag (ATTACHMENT_SUFFIXES),
    added to the bundle with everything they reference. The repository's tag list says which
    candidate tags exist (one request); a registry that will not list them, or a repository of
    more than 1,000 tags, gets one HEAD per candidate tag, at once."""
    _, path, _, _ = split_reference(pin.repository)
    candidates = [
        (subject, f"sha256-{subject.split(':', 1)[1]}{suffix}")
        for subject in subjects
        for suffix in ATTACHMENT_SUFFIXES
    ]
    listed = registry.tags_if_few(path)
    if listed is not None:
        candidates = [c for c in candidates if c[1] in listed]
    with workers.pool(min(concurrency, len(candidates))) as pool:
        found = list(pool.map(lambda c: registry.tag_digest(path, c[1]), candidates))
        # the referrers API, where the registry has one (cosign 3 and oras attach through it)
        api = list(pool.map(lambda subject: registry.referrers(path, subject), subjects))
    held: dict[tuple[str, str], Manifest] = {}
    for (subject, tag), digest in zip(candidates, found, strict=True):
        if digest is None:
            continue
        m = registry.get_manifest(path, digest)
        if m.is_index and len(m.children()) > budgets.MAX_REFERRERS:  # each child is one more request
            raise RegistryError(
                f"{pin.repository}:{tag} lists {len(m.children())} attachments, more than the "
                f"{budgets.MAX_REFERRERS} read under one digest",
                fix=f"remove the stale signatures and attestations attached to {subject} (cosign clean), or "
                "bundle with --no-attachments",
            )
        held[subject, tag] = m
    for subject, referrers in zip(subjects, api, strict=True):
        if referrers:  # carried as the tag schema's index: what a registry without the API serves
            tag = f"sha256-{subject.split(':', 1)[1]}"
            tagged = held.get((subject, tag))
            content = referrers_index(referrers, tagged.content if tagged is not None else None)
            held[subject, tag] = Manifest(
                descriptor=Descriptor(media_type=OCI_INDEX, digest=sha256_digest(content), size=len(content)),
                content=content,
                origin=f"{pin.repository}: the referrers of {subject}",
            )
    out = []
    for (subject, tag), m in held.items():
        what = f"{pin.repository}:{tag}"
        bp.add(Blob.of_manifest(m, path, name))
        manifests = [m, *(_children(bp, name, path, m, registry, what) if m.is_index else [])]
        _add_blobs(bp, name, path, manifests, what, image=False)
        bp.index.append(
            IndexEntry(
                media_type=m.descriptor.media_type,
                digest=m.descriptor.digest,
                size=m.descriptor.size,
                annotations={REF_NAME: f"{pin.repository}:{tag}", IMAGE_NAME: name, SUBJECT: subject},
            )
        )
        out.append(
            Attachment(
                tag=tag, digest=m.descriptor.digest, media_type=m.descriptor.media_type, subject=subject
            )
        )
    return tuple(out)


def _with_sbom(
    part: BundlePlan, pin: LockedImage, carried: tuple[Attachment, ...], made: MadeSbom
) -> tuple[Attachment, ...]:
    """`made` (an SBOM attestation in the image's `.att` manifest) put into the image's part: the new
    manifest, its config and envelope held in memory; the `.att` manifest it replaces (and that
    manifest's config) gone from the layout."""
    path = split_reference(pin.repository)[1]
    if made.replaces is not None:
        old = part.blobs.pop(made.replaces, None)
        config = json.loads(old.content or b"{}").get("config") if old is not None else None
        if isinstance(config, dict):
            part.blobs.pop(str(config.get("digest")), None)
        part.index = [e for e in part.index if e.digest != made.replaces]
        carried = tuple(a for a in carried if a.digest != made.replaces)
    for nb in made.blobs:
        kind = "manifest" if nb.digest == made.attachment.digest else "blob"
        part.add(
            Blob(digest=nb.digest, size=len(nb.content), media_type=nb.media_type, source_repo=path,
                 content=nb.content, kind=kind, image=pin.name)
        )  # fmt: skip
    a = made.attachment
    size = len(next(nb.content for nb in made.blobs if nb.digest == a.digest))
    part.index.append(
        IndexEntry(
            media_type=a.media_type,
            digest=a.digest,
            size=size,
            annotations={REF_NAME: f"{pin.repository}:{a.tag}", IMAGE_NAME: pin.name, SUBJECT: a.subject},
        )
    )
    return (*carried, a)


def _gather_image(
    pin: LockedImage, registry: Registry, attachments: bool, sbom: SbomFor | None = None
) -> tuple[BundlePlan, BundledImage]:
    """One image's part of the bundle (its manifests, blobs, attachments and index entries),
    in a plan of its own so that images can be gathered side by side. With `sbom`, an image that
    carries no SBOM gets one (bundle/sbom.py)."""
    part = BundlePlan()
    part.index.append(
        IndexEntry(
            media_type=pin.media_type,
            digest=pin.digest,
            size=pin.size,
            annotations={REF_NAME: _ref_name(pin.source, pin), IMAGE_NAME: pin.name},
        )
    )
    try:
        subjects = _collect_image(part, pin.name, pin, registry)
        size = sum(b.size for b in part.blobs.values())  # before its attachments join the part
        carried = _attachments(part, pin.name, pin, subjects, registry) if attachments else None
        if sbom is not None and carried is not None:
            held = {d: b.content for d, b in part.blobs.items() if b.content is not None}
            made = sbom(pin, carried, held)
            if made is not None:
                carried = _with_sbom(part, pin, carried, made)
    except RegistryError as exc:
        exc.add_note(f"images.{pin.name} ({pin.pinned}, from {LOCK_FILE})")
        raise
    return part, BundledImage(
        name=pin.name,
        source=pin.source,
        repository=pin.repository,
        digest=pin.digest,
        media_type=pin.media_type,
        attachments=carried,
        size=size,
    )


def assemble(
    plan: Plan,
    lock: Lock,
    release_dir: Path,
    registry_for: RegistryFor,
    *,
    mtime: int,
    attachments: bool = True,
    concurrency: int = 4,
    sbom: SbomFor | None = None,
    trust: TrustRecord | None = None,
) -> BundlePlan:
    """Fetch manifests (small), render chart and compose, and lay out the bundle. With
    `attachments`, also what is attached to each pinned digest (signatures, attestations, SBOMs).
    Images are gathered side by side (each is a few small requests) and merged in the
    release's order, so the result does not depend on which answer came first."""
    bp = BundlePlan(trust=trust)
    jobs: list[tuple[LockedImage, Registry]] = []
    for img in plan.images:
        pin = lock.image(img.name)
        try:
            registry = registry_for(split_reference(pin.repository)[0])
        except RegistryError as exc:
            exc.add_note(f"images.{img.name} ({pin.pinned}, from {LOCK_FILE})")
            raise
        jobs.append((pin, registry))
    with workers.pool(concurrency) as pool:
        parts = list(pool.map(lambda job: _gather_image(job[0], job[1], attachments, sbom), jobs))
    for part, entry in parts:
        for blob in part.blobs.values():
            bp.add(blob)  # the first image that holds a shared blob is the one it is fetched from
        bp.index.extend(part.index)
        bp.images.append(entry)
    # the chart, as a package and as an OCI artifact in the layout
    chart_files = render_helm(plan)
    tgz = package_chart(plan, chart_files, mtime=mtime)
    cfg = chart_config(plan, chart_files)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": HELM_CONFIG, "digest": sha256_digest(cfg), "size": len(cfg)},
            "layers": [{"mediaType": HELM_LAYER, "digest": sha256_digest(tgz), "size": len(tgz)}],
            "annotations": {
                "org.opencontainers.image.title": plan.name,
                "org.opencontainers.image.version": plan.version,
            },
        },
        separators=(",", ":"),
    ).encode()
    for content, mt, kind in (
        (cfg, HELM_CONFIG, "blob"),
        (tgz, HELM_LAYER, "blob"),
        (manifest, OCI_MANIFEST, "manifest"),
    ):
        bp.add(
            Blob(
                digest=sha256_digest(content),
                size=len(content),
                media_type=mt,
                source_repo="",
                content=content,
                kind=kind,
            )
        )
    bp.index.append(
        IndexEntry(
            media_type=OCI_MANIFEST,
            digest=sha256_digest(manifest),
            size=len(manifest),
            annotations={REF_NAME: chart_ref(plan.name, plan.version), IMAGE_NAME: "chart"},
            artifact_type=HELM_CONFIG,
        )
    )
    bp.files[f"chart/{plan.name}-{plan.version}.tgz"] = tgz
    for rel, content in render_compose(plan).items():
        bp.files[f"compose/{plan.name}/{rel}"] = content
    for rel, content in render_quadlet(plan).items():
        bp.files[f"quadlet/{plan.name}/{rel}"] = content
    bp.files["release/release.yaml"] = (release_dir / "release.yaml").read_bytes()
    bp.files["release/release.lock.yaml"] = (release_dir / "release.lock.yaml").read_bytes()
    catalog = CatalogSource(
        name=plan.name,
        version=plan.version,
        lock=lock,
        used_by=used_by(compose_images(plan)),
        bundled={i.name: i for i in bp.images},
        chart=(chart_ref(plan.name, plan.version), sha256_digest(manifest)),
    )
    bp.leading["INSTALL.md"] = install_md(plan, lock)
    bp.leading["images.md"] = images_md(catalog)
    bp.leading["images.json"] = catalog_json(catalog)
    bp.leading["load.sh"] = load_sh(
        name=plan.name,
        version=plan.version,
        images=bp.images,
        chart=(chart_ref(plan.name, plan.version), sha256_digest(manifest)),
        compose=compose_images(plan),
        trust=bp.trust,
    )
    return bp


def _ref_name(source: str, pin: LockedImage) -> str:
    """The layout's ref.name: the source reference with its tag (digest-only sources get the digest)."""
    registry, path, tag, _ = split_reference(source)
    return f"{registry}/{path}:{tag}" if tag else f"{registry}/{path}@{pin.digest}"


def _order(bp: BundlePlan) -> list[Blob]:
    """Layers and configs, then manifests, then indexes: what a loader must push first comes first."""
    rank = {"blob": 0, "manifest": 1, "index": 2}
    return sorted(bp.blobs.values(), key=lambda b: (rank[b.kind], b.digest))


def layout_files(bp: BundlePlan) -> dict[str, bytes]:
    return {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}\n',
        "index.json": json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [e.to_json() for e in bp.index]},
            indent=1,
            sort_keys=True,
        ).encode()
        + b"\n",
    }


def checksums_and_metadata(
    plan: Plan, lock: Lock, bp: BundlePlan, *, mtime: int, signer_fingerprint: str
) -> tuple[list[tuple[str, str, int]], bytes, BundleMetadata]:
    """(entries [(path, sha256 hex, size)] in archive order, checksums.txt, the metadata record;
    `metadata_json` makes releaser.json of it, with the parts once they are known)."""
    entries: list[tuple[str, str, int]] = []
    for name, content in bp.leading.items():
        entries.append((name, hashlib.sha256(content).hexdigest(), len(content)))
    entries += [(f.name, f.sha256, f.size) for f in bp.installer]
    for name, content in layout_files(bp).items():
        entries.append((name, hashlib.sha256(content).hexdigest(), len(content)))
    for blob in _order(bp):
        entries.append((blob.path, blob.digest.split(":", 1)[1], blob.size))
    for name in sorted(bp.files):
        entries.append((name, hashlib.sha256(bp.files[name]).hexdigest(), len(bp.files[name])))
    checksums = "".join(f"{h}  {p}\n" for p, h, _ in entries).encode()
    meta = BundleMetadata(
        format_version=FORMAT_VERSION,
        tool=f"releaser {__version__}",
        name=plan.name,
        version=plan.version,
        created=mtime,
        checksums=ChecksumsRecord(
            path=CHECKSUMS,
            sha256=hashlib.sha256(checksums).hexdigest(),
            files=len(entries),
            bytes=sum(s for _, _, s in entries),
        ),
        images=tuple(bp.images),
        chart=ChartRecord(
            path=f"chart/{plan.name}-{plan.version}.tgz",
            ref=chart_ref(plan.name, plan.version),
            digest=bp.index[-1].digest,
        ),
        signer=signer_fingerprint,
        lock=lock,
        # compose service -> image name, so the airgap override needs only this signed file
        compose=compose_images(plan),
        trust=bp.trust,
    )
    return entries, checksums, meta


def metadata_json(meta: BundleMetadata) -> bytes:
    """releaser.json: sorted keys, two-space indent, a final newline."""
    return (json.dumps(meta.to_json(), indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True, kw_only=True)
class Head:
    """The three members that lead the archive: releaser.json, its signature, checksums.txt."""

    metadata: bytes
    signature: bytes
    checksums: bytes


def signed_head(meta: BundleMetadata, checksums: bytes, private: EllipticCurvePrivateKey) -> Head:
    """The three head members for `meta` (with its parts, when split), signed."""
    metadata = metadata_json(meta)
    return Head(metadata=metadata, signature=sign(private, metadata), checksums=checksums)


@dataclass(frozen=True, kw_only=True)
class BlobSources:
    """Where a blob's bytes come from: memory (manifests, the chart), the cache, or the registry
    its image came from (`repo_hosts`: repository path -> registry host). `ahead`: how many small
    blobs `stream` fetches at once ahead of the writer."""

    registry_for: RegistryFor
    repo_hosts: dict[str, str]
    cache: BlobCache | None
    ahead: int = 8

    def stream(self, blobs: list[Blob]) -> Generator[tuple[Blob, Iterator[bytes], bool]]:
        """(blob, chunks, fetched from a registry) for each of `blobs`, in their order. The small
        ones a registry must send (up to AHEAD_BLOB bytes each) are fetched ahead of their turn,
        `ahead` at a time, at most AHEAD_BYTES held in memory: a release of many small images
        then waits for one round trip per `ahead` blobs instead of one per blob. Bigger blobs
        stream at their turn, as before. A fetch's error is raised at its blob's turn."""
        futures: dict[int, Future[bytes]] = {}
        held = 0
        nxt = 0  # the next blob to consider fetching ahead

        def fetch(blob: Blob) -> bytes:
            chunks, _ = self.open(blob)
            return b"".join(chunks)  # digest checked (and the cache written) as the stream ends

        def early(blob: Blob) -> bool:
            return (
                blob.content is None
                and blob.size <= AHEAD_BLOB
                and not (self.cache is not None and self.cache.has(blob.digest, blob.size))
            )

        def taken(f: Future[bytes]) -> Iterator[bytes]:
            yield f.result()

        with workers.pool(self.ahead) as pool:
            try:
                for i, blob in enumerate(blobs):
                    nxt = max(nxt, i)
                    while nxt < len(blobs) and len(futures) < 4 * self.ahead:
                        b = blobs[nxt]
                        if early(b):
                            if futures and held + b.size > AHEAD_BYTES:
                                break
                            futures[nxt] = pool.submit(fetch, b)
                            held += b.size
                        nxt += 1
                    f = futures.pop(i, None)
                    if f is None:
                        yield (blob, *self.open(blob))
                    else:
                        held -= blob.size
                        yield blob, taken(f), True
            finally:
                for f in futures.values():
                    f.cancel()

    def open(self, blob: Blob) -> tuple[Iterator[bytes], bool]:
        """(chunks, fetched from a registry) for a blob; fetched blobs are teed into the cache."""
        if blob.content is not None:
            return iter([blob.content]), False
        if self.cache is not None and self.cache.has(blob.digest, blob.size):
            return self.cache.read(blob.digest), False
        host = self.repo_hosts.get(blob.source_repo, "")
        chunks = self.registry_for(host).iter_blob(blob.source_repo, blob.digest, blob.size)
        if self.cache is not None:
            return self.cache.tee(blob.digest, chunks), True
        return chunks, True


@dataclass(frozen=True, kw_only=True)
class Compression:
    level: int  # zstd level
    threads: int  # zstd workers (-1: one per core)
    mtime: int  # of every member: SOURCE_DATE_EPOCH


@dataclass(frozen=True, kw_only=True)
class WriteStats:
    files: int
    blobs: int
    bytes_in: int
    fetched: int  # bytes that came from a registry (not the cache)
    size: int  # bytes of the .tar.zst (all parts)
    sha256: str  # of the .tar.zst, hashed as it was written (of part 1 when split)
    parts: tuple[PartRecord, ...] = ()  # when split: the parts after the first


def write_archive(
    out: Path,
    bp: BundlePlan,
    entries: list[tuple[str, str, int]],
    *,
    head: Callable[[tuple[PartRecord, ...]], Head],
    sources: BlobSources,
    compression: Compression,
    progress: Progress | None = None,
    split: int | None = None,
) -> WriteStats:
    """Write the archive to a temp file beside `out`, then rename it into place. `head(parts)`
    signs the head once the parts are known (none unless `split`). With `split` (bytes per part),
    the body goes to OUT.002, OUT.003, ... and the head alone to OUT.001, each renamed into place
    only when all of them are written. Refuses to start when the directory has less free space
    than the members' bytes (the archive's upper bound: layers do not compress again)."""
    check_space(out.parent, sum(size for _, _, size in entries) + (1 << 20), f"the bundle {out.name}")
    if progress is not None:
        per_image: dict[str, int] = {}
        for blob in bp.blobs.values():
            per_image[blob.image] = per_image.get(blob.image, 0) + blob.size
        progress.set_totals(per_image)
    if split is not None:
        return _write_split(out, bp, entries, head, sources, compression, progress, split)
    with atomic_file(out) as raw:
        fh = _Hashing(raw, str(out))
        try:
            w = _writer(fh, compression)
            _write_head(w, head(()))
            fetched, total_in = _write_body(w, bp, sources, progress)
        except BaseException:
            fh.close(quiet=True)
            raise
        fh.close()
    return WriteStats(
        files=len(entries) + 3,
        blobs=len(bp.blobs),
        bytes_in=total_in,
        fetched=fetched,
        size=fh.size,
        sha256=fh.hash.hexdigest(),
    )


def _write_split(
    out: Path,
    bp: BundlePlan,
    entries: list[tuple[str, str, int]],
    head: Callable[[tuple[PartRecord, ...]], Head],
    sources: BlobSources,
    compression: Compression,
    progress: Progress | None,
    split: int,
) -> WriteStats:
    first = part_path(out, 1)
    body = PartsWriter(first, split)
    try:
        fh = _Hashing(body, str(out))  # type: ignore[arg-type]  # write+flush suffice
        try:
            fetched, total_in = _write_body(_writer(fh, compression), bp, sources, progress)
        except BaseException:
            fh.close(quiet=True)
            raise
        fh.close()
        parts = tuple(
            PartRecord(number=n, name=part_path(first, n).name, size=size, sha256=digest)
            for n, _, size, digest in body.finish()
        )
        with atomic_file(first) as raw:
            one = _Hashing(raw, str(first))
            try:
                w = _writer(one, compression)
                _write_head(w, head(parts))
                w.close(end_of_archive=False)
            except BaseException:
                one.close(quiet=True)
                raise
            one.close()
        body.commit()
    except BaseException:
        body.abort()
        raise
    stale = part_path(first, len(parts) + 2)  # a longer bundle written here before: not ours now
    while stale.exists():
        stale.unlink()
        stale = part_path(first, int(stale.name.rsplit(".", 1)[1]) + 1)
    return WriteStats(
        files=len(entries) + 3,
        blobs=len(bp.blobs),
        bytes_in=total_in,
        fetched=fetched,
        size=one.size + sum(p.size for p in parts),
        sha256=one.hash.hexdigest(),
        parts=parts,
    )


def _writer(fh: _Hashing, compression: Compression) -> TarZstWriter:
    return TarZstWriter(fh, level=compression.level, threads=compression.threads, mtime=compression.mtime)


def _write_head(w: TarZstWriter, head: Head) -> None:
    """The three signed members, in a zstd frame of their own (what `inspect` reads, and all of
    part 1 of a split bundle)."""
    w.add_bytes(METADATA, head.metadata)
    w.add_bytes(SIGNATURE, head.signature)
    w.add_bytes(CHECKSUMS, head.checksums)
    w.end_frame()


def _write_body(
    w: TarZstWriter, bp: BundlePlan, sources: BlobSources, progress: Progress | None
) -> tuple[int, int]:
    """Every member after the head, in the documented order, and the end of the archive;
    (bytes fetched from registries, bytes written in)."""
    fetched = 0
    total_in = 0
    for name, content in bp.leading.items():
        w.add_bytes(name, content)
    for f in bp.installer:
        total_in += w.add_stream(f.name, f.size, _installer_chunks(f))
    for name, content in layout_files(bp).items():
        w.add_bytes(name, content)
    with contextlib.closing(sources.stream(_order(bp))) as blobs:  # on an error: nothing more fetched
        for blob, chunks, from_registry in blobs:

            def counted(it: Iterator[bytes], b: Blob = blob) -> Iterator[bytes]:
                for c in it:
                    if progress:
                        progress(b.image, len(c))
                    yield c

            try:
                total_in += w.add_stream(blob.path, blob.size, counted(chunks))
            except RegistryError as exc:  # the partial archive is a temp file, removed by the caller
                exc.add_note(f"images.{blob.image} blob {blob.digest}")
                raise
            if from_registry:
                fetched += blob.size
    for name in sorted(bp.files):
        w.add_bytes(name, bp.files[name])
    w.close()
    return fetched, total_in


def _installer_chunks(f: InstallerFile) -> Iterator[bytes]:
    """An installer file's bytes, checked against the sha256 already in checksums.txt."""
    if f.content is not None:
        yield f.content
        return
    assert f.path is not None
    h = hashlib.sha256()
    with f.path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            yield chunk
    if h.hexdigest() != f.sha256:
        raise ArchiveError(f"{f.path} changed while bundling", fix="run the bundle again")


AHEAD_BLOB = 4 << 20  # blobs up to this size are fetched ahead of their turn in the archive (BlobSources)
AHEAD_BYTES = 64 << 20  # at most this many bytes fetched ahead and not yet written
WRITEBACK = 32 << 20  # start the disk writing the archive every this many bytes


class _Hashing:
    """A file being written, hashed on the way (no second read of the archive). Hashing and
    writing run Behind the compressor (workers.Behind), so that they overlap with fetching,
    checking and compressing what comes next; at most `depth` compressed chunks (~128 KiB
    each) wait in between. A write error names `name`, the bundle (the file written is a
    temp file beside it)."""

    def __init__(self, raw: IO[bytes], name: str, depth: int = 32) -> None:
        self.raw = raw
        self.name = name
        self.hash = hashlib.sha256()
        self.size = 0
        self._written = self._started = 0  # bytes written; bytes whose writeback was started
        self._behind = Behind(self._hash_and_write, depth=depth, name="bundle-file")

    def _hash_and_write(self, data: bytes) -> None:
        self.hash.update(data)
        try:
            self.raw.write(data)
        except OSError as exc:
            if exc.filename:
                raise
            raise OSError(exc.errno, exc.strerror, self.name) from exc
        self._written += len(data)
        if self._written - self._started >= WRITEBACK:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Start writing what is written so far to the disk, without waiting for it, so that the
        archive's fsync at the end (fs.atomic_file) has little left to wait for (Linux
        sync_file_range; elsewhere, and for the parts of a split bundle, nothing is done)."""
        try:
            self.raw.flush()
            fd = self.raw.fileno()
        except (AttributeError, OSError, ValueError):  # no file descriptor (the parts of a split bundle)
            pass
        else:
            start_writeback(fd, self._started, self._written - self._started)
        self._started = self._written

    def write(self, data: bytes) -> int:
        data = bytes(data)  # the compressor may reuse its buffer
        self._behind.put(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Called by the compressor at every frame end: nothing to wait for here (close() does)."""

    def close(self, *, quiet: bool = False) -> None:
        """Wait until every chunk is hashed and written; raise what writing raised (unless `quiet`)."""
        self._behind.close(quiet=quiet)
