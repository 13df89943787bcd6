"""`releaser airgap verify|inspect`: what a bundle holds and whether it is intact, read from the file
alone (no registry); `check` is in audit.py, `load` in load.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..bundle.parts import bundle_size, first_part, part_path
from ..bundle.policy import at_site, refuse, sigstore_root
from ..bundle.verify import inspect_head, verify_bundle
from ..format import DEFAULT_KEY
from ..format.records import PartRecord, TrustRecord
from ..progress import Progress
from ..render.docs import CatalogSource, catalog, images_md, used_by
from ..trust import Keyless, RootSummary, Verdict


@dataclass(frozen=True, kw_only=True)
class VerifyResult:
    """What `airgap verify` found: the bundle, its signer and what it holds (nothing is loaded)."""

    path: str
    release: str
    version: str
    files: int
    bytes: int
    images: tuple[str, ...]
    signer: str
    delta_base: str | None = None  # a delta bundle: the base it relies on, described
    trust: tuple[Verdict, ...] | None = None  # each image's verdict (None: the bundle carries no policy)

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "path": self.path,
            "release": self.release,
            "version": self.version,
            "files": self.files,
            "bytes": self.bytes,
            "images": list(self.images),
            "signer": self.signer,
            "delta": self.delta_base,
            "problems": [],
            "trust": None if self.trust is None else [v.to_json() for v in self.trust],
        }


def verify(path: Path, *, key: Path = DEFAULT_KEY, progress: Progress | None = None) -> VerifyResult:
    """Verify signature, checksums, every file and every blob; raise listing every problem.
    `progress` counts the bytes hashed."""
    v = verify_bundle(path, key, outcome="do not use it", progress=progress)
    verdicts = at_site(v.metadata.trust, v.metadata.images, path, v.small_json)
    refuse(
        verdicts,
        outcome="do not use it",
        fix="ask the publisher for a bundle whose images carry the signatures its policy names (docs/trust.md)",
    )
    return VerifyResult(
        path=str(path),
        release=v.metadata.name,
        version=v.metadata.version,
        files=v.files,
        bytes=v.bytes,
        images=tuple(f"{i.repository}@{i.digest}" for i in v.metadata.images),
        signer=v.signer,
        delta_base=v.metadata.delta.base.describe() if v.metadata.delta is not None else None,
        trust=verdicts if v.metadata.trust is not None else None,
    )


@dataclass(frozen=True, kw_only=True)
class InspectedImage:
    """One image of a bundle as `airgap inspect` lists it: where it came from, its digest and size."""

    name: str
    source: str
    reference: str  # repository@digest, as pinned
    media_type: str
    platforms: tuple[str, ...]
    attachments: tuple[str, ...] = ()  # tags: sha256-<hex>.sig ...
    policy: str | None = None  # what the carried trust policy requires of it (None: no policy)

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "name": self.name,
            "source": self.source,
            "reference": self.reference,
            "mediaType": self.media_type,
            "platforms": list(self.platforms),
            "attachments": list(self.attachments),
            "policy": self.policy,
        }


@dataclass(frozen=True, kw_only=True)
class InspectResult:
    """What `airgap inspect` reads from a bundle's head alone (unverified unless `checked`)."""

    path: str
    size: int  # of the bundle file
    release: str
    version: str
    tool: str
    format_version: int
    signer: str  # as recorded in releaser.json
    checked: bool  # signature + aggregate checksum verified with the given key
    files: int
    bytes: int  # of the listed files, uncompressed
    images: tuple[InspectedImage, ...]
    chart: dict[str, str]
    parts: tuple[PartRecord, ...] = ()  # a split bundle's parts after the first, as its head lists them
    parts_present: int = 0  # how many of them are beside it, with the listed size
    delta_base: dict[str, str] | None = None  # a delta bundle: the base it was cut against
    trusted_root: RootSummary | None = None  # the Sigstore trusted root its keyless rules are checked against

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "path": self.path,
            "size": self.size,
            "release": self.release,
            "version": self.version,
            "tool": self.tool,
            "formatVersion": self.format_version,
            "signer": self.signer,
            "signatureChecked": self.checked,
            "files": self.files,
            "bytes": self.bytes,
            "images": [i.to_json() for i in self.images],
            "chart": self.chart,
            "parts": [{**p.to_json(), "present": p.number <= self.parts_present + 1} for p in self.parts],
            "delta": self.delta_base,
            "trustedRoot": self.trusted_root.to_json() if self.trusted_root is not None else None,
        }


def inspect(path: Path, *, key: Path | None = None) -> InspectResult:
    """What a bundle holds, from its signed metadata alone (the first three members): release,
    images with their pinned digests and platforms, chart, signer. With `key`, the signature and
    aggregate checksum are checked (not the files: that is verify)."""
    meta, checked = inspect_head(path, key)
    images = tuple(
        InspectedImage(
            name=i.name,
            source=i.source,
            reference=f"{i.repository}@{i.digest}",
            media_type=i.media_type,
            platforms=meta.platforms(i.name),
            attachments=tuple(a.tag for a in i.attachments or ()),
            policy=_policy(meta.trust, i.name),
        )
        for i in meta.images
    )
    return InspectResult(
        path=str(path),
        size=bundle_size(path),
        release=meta.name,
        version=meta.version,
        tool=meta.tool,
        format_version=meta.format_version,
        signer=meta.signer,
        checked=checked,
        files=meta.checksums.files,
        bytes=meta.checksums.bytes,
        images=images,
        chart=meta.chart.to_json(),  # type: ignore[arg-type]  # every value of ChartRecord.to_json is a str
        parts=meta.parts,
        parts_present=_present(path, meta.parts),
        delta_base={k: str(v) for k, v in meta.delta.base.to_json().items()}
        if meta.delta is not None
        else None,
        trusted_root=root.summary if (root := sigstore_root(meta.trust)) is not None else None,
    )


def _policy(trust: TrustRecord | None, image: str) -> str | None:
    """The carried policy's rule for `image`, in words (checked by verify and airgap, not here)."""
    if trust is None:
        return None
    rule = trust.images.get(image)
    if rule is None:
        return "no rule (fails the policy)"
    if rule.exempt:
        return f"exempt: {rule.exempt}"
    attested = f"; attested: {', '.join(rule.attestations)}" if rule.attestations else ""
    signers = [*rule.keys, *(Keyless(issuer=i, identity=p).describe() for i, p in rule.keyless)]
    return f"signed by {' or '.join(signers)}{attested}"


def _present(path: Path, parts: tuple[PartRecord, ...]) -> int:
    """How many of the listed parts, in order, are there with their listed size."""
    first = first_part(path)
    if first is None:
        return 0
    n = 0
    for p in parts:
        f = part_path(first, p.number)
        if not (f.is_file() and f.stat().st_size == p.size):
            break
        n += 1
    return n


@dataclass(frozen=True, kw_only=True)
class CatalogResult:
    """The image catalog of a bundle: what its images.json holds (docs/airgap.md#imagesjson)."""

    catalog: dict[str, object]
    markdown: str  # images.md
    checked: bool

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return self.catalog


def inspect_catalog(path: Path, *, key: Path | None = None) -> CatalogResult:
    """The bundle's image catalog, computed from its signed head alone: the same as the images.json
    and images.md inside it (rendered from the same records when it was written)."""
    meta, checked = inspect_head(path, key)
    src = CatalogSource(
        name=meta.name,
        version=meta.version,
        lock=meta.lock,
        used_by=used_by(meta.compose),
        bundled={i.name: i for i in meta.images},
        chart=(meta.chart.ref, meta.chart.digest),
    )
    return CatalogResult(catalog=catalog(src), markdown=images_md(src).decode(), checked=checked)
