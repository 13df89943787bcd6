"""Typed records of a bundle: the signed metadata (releaser.json) and the layout's index.json.

The writer builds them and serialises them with `to_json()`; verification parses them once
with `parse()` (untrusted input: every shape is checked, a wrong one is a MetadataError naming
the JSON path) and every later stage (inspect, load, the quickstart) reads these records,
never the raw JSON. docs/bundle-format.md describes the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import MetadataError
from ..lock import Lock, lock_document, lock_from_document, split_reference
from . import IMAGE_NAME, REF_NAME, SUBJECT

Json = dict[str, object]


@dataclass(frozen=True, kw_only=True)
class PartRecord:
    """One part after the first, as releaser.json lists it."""

    number: int  # 2, 3, ...
    name: str  # as written: NAME.tar.zst.002 (found by number, so a renamed set still reads)
    size: int
    sha256: str

    def to_json(self) -> dict[str, object]:
        return {"number": self.number, "name": self.name, "size": self.size, "sha256": self.sha256}


class _Reader:
    """Typed access to one JSON object of untrusted metadata; errors name the JSON path."""

    def __init__(self, doc: object, path: str) -> None:
        if not isinstance(doc, dict):
            raise MetadataError(path=path, expected="an object", got=doc)
        self.doc: dict[str, object] = doc
        self.path = path

    def text(self, key: str, default: str | None = None) -> str:
        value = self.doc.get(key, default)
        if not isinstance(value, str):
            raise MetadataError(path=f"{self.path}.{key}", expected="a string", got=value)
        return value

    def number(self, key: str, default: int | None = None) -> int:
        value = self.doc.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise MetadataError(path=f"{self.path}.{key}", expected="an integer", got=value)
        return value

    def obj(self, key: str) -> _Reader:
        return _Reader(self.doc.get(key), f"{self.path}.{key}")

    def array(self, key: str, default: list[object] | None = None) -> list[object]:
        value = self.doc.get(key, default)
        if not isinstance(value, list):
            raise MetadataError(path=f"{self.path}.{key}", expected="a list", got=value)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.array(key, [])
        if not all(isinstance(v, str) for v in value):
            raise MetadataError(path=f"{self.path}.{key}", expected="a list of strings", got=value)
        return tuple(str(v) for v in value)

    def strings(self, key: str) -> dict[str, str]:
        value = self.doc.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise MetadataError(path=f"{self.path}.{key}", expected="an object of strings", got=value)
        return dict(value)


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """A signature, attestation or SBOM carried with an image, under its tag."""

    tag: str  # sha256-<hex>.sig | .att | .sbom | sha256-<hex> (referrers tag schema)
    digest: str
    media_type: str
    subject: str  # the digest it is attached to

    def to_json(self) -> Json:
        return {"tag": self.tag, "digest": self.digest, "mediaType": self.media_type, "subject": self.subject}

    @classmethod
    def parse(cls, r: _Reader) -> Attachment:
        return cls(
            tag=r.text("tag"),
            digest=r.text("digest"),
            media_type=r.text("mediaType"),
            subject=r.text("subject"),
        )


@dataclass(frozen=True, kw_only=True)
class BundledImage:
    """One locked image as the bundle carries it."""

    name: str
    source: str  # the reference as written in release.yaml
    repository: str  # registry/path it was pinned in
    digest: str
    media_type: str
    attachments: tuple[Attachment, ...] | None = None  # None: written with --no-attachments
    size: int | None = None  # bytes of its manifests, config and layers in the bundle (None: not recorded)

    @property
    def path(self) -> str:
        """The repository path without its registry (what a target prefixes)."""
        return split_reference(self.repository)[1]

    def to_json(self) -> Json:
        out: Json = {
            "name": self.name,
            "source": self.source,
            "repository": self.repository,
            "digest": self.digest,
            "mediaType": self.media_type,
        }
        if self.attachments is not None:
            out["attachments"] = [a.to_json() for a in self.attachments]
        if self.size is not None:
            out["size"] = self.size
        return out

    @classmethod
    def parse(cls, r: _Reader) -> BundledImage:
        attachments = None
        if "attachments" in r.doc:
            attachments = tuple(
                Attachment.parse(_Reader(a, f"{r.path}.attachments[{n}]"))
                for n, a in enumerate(r.array("attachments"))
            )
        return cls(
            name=r.text("name"),
            source=r.text("source"),
            repository=r.text("repository"),
            digest=r.text("digest"),
            media_type=r.text("mediaType"),
            attachments=attachments,
            size=r.number("size") if "size" in r.doc else None,
        )


@dataclass(frozen=True, kw_only=True)
class ChartRecord:
    path: str  # chart/<name>-<version>.tgz in the bundle
    ref: str  # charts/<name>:<version>
    digest: str  # of the chart's OCI manifest

    def to_json(self) -> Json:
        return {"path": self.path, "ref": self.ref, "digest": self.digest}


@dataclass(frozen=True, kw_only=True)
class ChecksumsRecord:
    path: str
    sha256: str  # of checksums.txt: the aggregate checksum the signature covers
    files: int
    bytes: int

    def to_json(self) -> Json:
        return {"path": self.path, "sha256": self.sha256, "files": self.files, "bytes": self.bytes}


@dataclass(frozen=True, kw_only=True)
class BaseRecord:
    """What a delta bundle was made against (docs/bundle-format.md#delta-bundles)."""

    kind: str  # bundle | lock | inventory
    name: str  # the release name (bundle), the lock's release, the inventory's registry
    version: str  # the base bundle's release version ("" for a lock or an inventory)
    digest: str  # sha256 of the base's releaser.json, of the lock file, of the inventory file

    def to_json(self) -> Json:
        return {"kind": self.kind, "name": self.name, "version": self.version, "digest": self.digest}

    def describe(self) -> str:
        what = f"{self.name} {self.version}".strip()
        return f"{self.kind} {what} ({self.digest})"


@dataclass(frozen=True, kw_only=True)
class ReliedBlob:
    """A layer a delta leaves out: the target must already hold it."""

    digest: str
    size: int

    def to_json(self) -> Json:
        return {"digest": self.digest, "size": self.size}


@dataclass(frozen=True, kw_only=True)
class DeltaRecord:
    """A delta bundle's signed promise: the base it was made against and every blob it relies on."""

    base: BaseRecord
    relies: tuple[ReliedBlob, ...]
    omitted_files: int = 0  # members of the full bundle left out besides blobs (the base's installer/)
    level: int = 3  # the zstd level of the full bundle (what `bundle merge` compresses with)

    def to_json(self) -> Json:
        return {
            "base": self.base.to_json(),
            "relies": [r.to_json() for r in self.relies],
            "omittedFiles": self.omitted_files,
            "zstdLevel": self.level,
        }

    @classmethod
    def parse(cls, r: _Reader) -> DeltaRecord:
        base = r.obj("base")
        relies = []
        for n, item in enumerate(r.array("relies")):
            one = _Reader(item, f"{r.path}.relies[{n}]")
            relies.append(ReliedBlob(digest=one.text("digest"), size=one.number("size")))
        return cls(
            base=BaseRecord(
                kind=base.text("kind"),
                name=base.text("name"),
                version=base.text("version"),
                digest=base.text("digest"),
            ),
            relies=tuple(relies),
            omitted_files=r.number("omittedFiles", 0),
            level=r.number("zstdLevel", 3),
        )


@dataclass(frozen=True, kw_only=True)
class TrustRuleRecord:
    """One image's rule in the carried policy: its keys (by their path under `TrustRecord.keys`),
    the predicate types it must be attested with, or why it is exempt."""

    keys: tuple[str, ...] = ()
    attestations: tuple[str, ...] = ()
    exempt: str = ""
    keyless: tuple[tuple[str, str], ...] = ()  # (OIDC issuer, identity pattern)

    def to_json(self) -> Json:
        out: Json = {
            "keys": list(self.keys),
            "attestations": list(self.attestations),
            "exempt": self.exempt,
        }
        if self.keyless:  # absent otherwise: heads without keyless rules are as before
            out["keyless"] = [{"issuer": i, "identity": p} for i, p in self.keyless]
        return out


@dataclass(frozen=True, kw_only=True)
class TrustRecord:
    """The publisher's trust policy (release.yaml `trust`) in the signed head: each image's rule
    and the public keys themselves (PEM, by the path release.yaml names them), so that the site
    checks every image offline, before anything is pushed (docs/trust.md)."""

    keys: Mapping[str, str]  # path -> PEM
    images: Mapping[str, TrustRuleRecord]
    trusted_root: tuple[str, str] | None = None  # (its path in release.yaml, the file's text): keyless rules

    def to_json(self) -> Json:
        out: Json = {
            "keys": dict(self.keys),
            "images": {k: v.to_json() for k, v in self.images.items()},
        }
        if self.trusted_root is not None:
            out["trustedRoot"] = {"path": self.trusted_root[0], "json": self.trusted_root[1]}
        return out

    @classmethod
    def parse(cls, r: _Reader) -> TrustRecord:
        keys = r.strings("keys")
        images = {}
        for name, rule in r.obj("images").doc.items():
            rr = _Reader(rule, f"{r.path}.images.{name}")
            listed = rr.texts("keys")
            unknown = [k for k in listed if k not in keys]
            if unknown:
                raise MetadataError(
                    path=f"{rr.path}.keys", expected="keys listed under $.trust.keys", got=unknown[0]
                )
            keyless = []
            for i, k in enumerate(rr.array("keyless", [])):
                kr = _Reader(k, f"{rr.path}.keyless[{i}]")
                keyless.append((kr.text("issuer"), kr.text("identity")))
            images[name] = TrustRuleRecord(
                keys=listed,
                attestations=rr.texts("attestations"),
                exempt=rr.text("exempt", ""),
                keyless=tuple(keyless),
            )
        root = None
        if "trustedRoot" in r.doc:
            tr = r.obj("trustedRoot")
            root = (tr.text("path"), tr.text("json"))
        if root is None and any(rule.keyless for rule in images.values()):
            raise MetadataError(
                path=f"{r.path}.trustedRoot", expected="the trusted root keyless rules need", got=None
            )
        return cls(keys=keys, images=images, trusted_root=root)


@dataclass(frozen=True, kw_only=True)
class BundleMetadata:
    """releaser.json: what the signature covers, and all a loader needs besides the layout."""

    format_version: int
    tool: str
    name: str
    version: str
    created: int
    checksums: ChecksumsRecord
    images: tuple[BundledImage, ...]
    chart: ChartRecord
    signer: str
    lock: Lock
    compose: Mapping[str, str]  # compose service -> image name (the airgap override needs only this file)
    parts: tuple[PartRecord, ...] = ()  # a split bundle's parts after the first (docs/bundle-format.md)
    delta: DeltaRecord | None = None  # a delta bundle: its base and the blobs it relies on
    trust: TrustRecord | None = None  # the publisher's trust policy (None: release.yaml sets none)

    def delta_digests(self) -> tuple[str, ...]:
        """The blobs a delta relies on the target holding (none for a full bundle)."""
        return tuple(r.digest for r in self.delta.relies) if self.delta is not None else ()

    def image(self, name: str) -> BundledImage | None:
        return next((i for i in self.images if i.name == name), None)

    def platforms(self, name: str) -> tuple[str, ...]:
        """The platforms the lock pins for an image (an index's children, or a manifest's own)."""
        pin = next((i for i in self.lock.images if i.name == name), None)
        if pin is None:
            return ()
        return tuple(p.platform for p in pin.platforms) or ((pin.platform,) if pin.platform else ())

    def to_json(self) -> Json:
        return {
            "formatVersion": self.format_version,
            "tool": self.tool,
            "release": {"name": self.name, "version": self.version},
            "created": self.created,
            "checksums": self.checksums.to_json(),
            "images": [i.to_json() for i in self.images],
            "chart": self.chart.to_json(),
            "signer": self.signer,
            "lock": lock_document(self.lock),
            "compose": dict(self.compose),
            **({"parts": [p.to_json() for p in self.parts]} if self.parts else {}),
            **({"delta": self.delta.to_json()} if self.delta is not None else {}),
            **({"trust": self.trust.to_json()} if self.trust is not None else {}),
        }

    @classmethod
    def parse(cls, doc: object) -> BundleMetadata:
        """Check and type releaser.json; raises MetadataError naming the first wrong JSON path."""
        r = _Reader(doc, "$")
        release, sums, chart = r.obj("release"), r.obj("checksums"), r.obj("chart")
        return cls(
            format_version=r.number("formatVersion"),
            tool=r.text("tool", ""),
            name=release.text("name"),
            version=release.text("version"),
            created=r.number("created", 0),
            checksums=ChecksumsRecord(
                path=sums.text("path"),
                sha256=sums.text("sha256"),
                files=sums.number("files"),
                bytes=sums.number("bytes"),
            ),
            images=tuple(
                BundledImage.parse(_Reader(i, f"$.images[{n}]")) for n, i in enumerate(r.array("images"))
            ),
            chart=ChartRecord(path=chart.text("path"), ref=chart.text("ref"), digest=chart.text("digest")),
            signer=r.text("signer", ""),
            lock=lock_from_document(r.doc.get("lock"), where="releaser.json $.lock"),
            compose=r.strings("compose"),
            parts=tuple(_part(_Reader(p, f"$.parts[{n}]"), n) for n, p in enumerate(r.array("parts", []))),
            delta=DeltaRecord.parse(r.obj("delta")) if "delta" in r.doc else None,
            trust=TrustRecord.parse(r.obj("trust")) if "trust" in r.doc else None,
        )


def _part(r: _Reader, n: int) -> PartRecord:
    number = r.number("number")
    if number != n + 2:
        raise MetadataError(
            path=f"{r.path}.number", expected=f"{n + 2} (parts are listed in order)", got=number
        )
    return PartRecord(number=number, name=r.text("name"), size=r.number("size"), sha256=r.text("sha256"))


@dataclass(frozen=True, kw_only=True)
class IndexEntry:
    """One descriptor of the layout's index.json: an image, an attachment or the chart."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None

    @property
    def image_name(self) -> str:
        return self.annotations.get(IMAGE_NAME, "")

    @property
    def ref_name(self) -> str:
        return self.annotations.get(REF_NAME, "")

    @property
    def subject(self) -> str | None:
        return self.annotations.get(SUBJECT)

    def to_json(self) -> Json:
        out: Json = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def parse(cls, doc: object, path: str) -> IndexEntry:
        r = _Reader(doc, path)
        artifact = r.doc.get("artifactType")
        return cls(
            media_type=r.text("mediaType"),
            digest=r.text("digest"),
            size=r.number("size"),
            annotations=r.strings("annotations"),
            artifact_type=artifact if isinstance(artifact, str) else None,
        )


def parse_index(doc: object) -> tuple[IndexEntry, ...]:
    """index.json's descriptors; raises MetadataError naming the first wrong one."""
    r = _Reader(doc, "index.json $")
    return tuple(
        IndexEntry.parse(e, f"index.json $.manifests[{n}]") for n, e in enumerate(r.array("manifests", []))
    )
