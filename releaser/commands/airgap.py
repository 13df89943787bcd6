"""`releaser airgap verify|inspect|load`: the customer's side of a bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..bundle.cache import default_cache_dir
from ..bundle.load import (
    LoadPlan,
    LoadStats,
    Target,
    airgap_values,
    already_loaded,
    compose_override,
    plan_changes,
    push_bundle,
)
from ..bundle.records import BundleMetadata
from ..bundle.verify import inspect_head, verify_bundle, verify_head
from ..fs import atomic_write
from ..progress import Progress
from ..registry import Registry, RegistryOptions

DEFAULT_KEY = Path("releaser.pub")


@dataclass(frozen=True, kw_only=True)
class VerifyResult:
    path: str
    release: str
    version: str
    files: int
    bytes: int
    images: tuple[str, ...]
    signer: str

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "release": self.release,
            "version": self.version,
            "files": self.files,
            "bytes": self.bytes,
            "images": list(self.images),
            "signer": self.signer,
            "problems": [],
        }


def verify(path: Path, *, key: Path = DEFAULT_KEY) -> VerifyResult:
    """Verify signature, checksums, every file and every blob; raise listing every problem."""
    v = verify_bundle(path, key)
    return VerifyResult(
        path=str(path),
        release=v.metadata.name,
        version=v.metadata.version,
        files=v.files,
        bytes=v.bytes,
        images=tuple(f"{i.repository}@{i.digest}" for i in v.metadata.images),
        signer=v.signer,
    )


@dataclass(frozen=True, kw_only=True)
class InspectedImage:
    name: str
    source: str
    reference: str  # repository@digest, as pinned
    media_type: str
    platforms: tuple[str, ...]
    attachments: tuple[str, ...] = ()  # tags: sha256-<hex>.sig ...

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "reference": self.reference,
            "mediaType": self.media_type,
            "platforms": list(self.platforms),
            "attachments": list(self.attachments),
        }


@dataclass(frozen=True, kw_only=True)
class InspectResult:
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

    def to_json(self) -> dict[str, object]:
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
        )
        for i in meta.images
    )
    return InspectResult(
        path=str(path),
        size=path.stat().st_size,
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
    )


@dataclass(frozen=True, kw_only=True)
class AirgapResult:
    target: str
    release: str
    version: str
    images: tuple[str, ...]
    chart: str
    values_file: str
    compose_override: str
    helm_install: str
    stats: LoadStats
    dry_run: bool = False
    plan: LoadPlan | None = None  # --dry-run: what the load would write

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "release": self.release,
            "version": self.version,
            "images": list(self.images),
            "chart": self.chart,
            "valuesFile": self.values_file,
            "composeOverride": self.compose_override,
            "helmInstall": self.helm_install,
            "stats": asdict(self.stats),
            "dryRun": self.dry_run,
            "plan": self.plan.to_json() if self.plan is not None else None,
        }


def load_bundle(
    path: Path,
    *,
    to: str,
    key: Path = DEFAULT_KEY,
    out: Path = Path("."),
    registries: RegistryOptions | None = None,
    concurrency: int = 8,
    state_dir: Path | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> AirgapResult:
    """Verify the bundle, then load it into the registry `to` (HOST[:PORT][/PREFIX]). With
    `dry_run`, verify it whole and ask the registry what the load would write; write nothing."""
    target = Target.parse(to)
    registry = (registries or RegistryOptions()).factory()(target.host)
    if dry_run:
        v = verify_bundle(path, key)  # every problem, as a load would find them
        plan = plan_changes(v, target, registry, concurrency)
        stats = LoadStats(verified="every file and blob")
        return _result(v.metadata, target, registry, out, stats, dry_run=True, plan=plan)
    # Fast path for a re-run: if the signed metadata verifies and the target already holds every
    # signed digest under its tag, nothing would be written, so the full pass is not needed.
    meta = verify_head(path, key)
    if meta is not None and already_loaded(meta, target, registry, concurrency):
        stats = LoadStats(verified="signature and metadata; every signed digest already in the target")
    else:
        v = verify_bundle(path, key)  # raises, listing every problem, before anything is written
        meta = v.metadata
        stats = push_bundle(
            path,
            v,
            target,
            registry,
            state_dir=state_dir or default_cache_dir() / "uploads",
            concurrency=concurrency,
            progress=progress,
        )
    return _result(meta, target, registry, out, stats)


def _result(
    meta: BundleMetadata,
    target: Target,
    registry: Registry,
    out: Path,
    stats: LoadStats,
    *,
    dry_run: bool = False,
    plan: LoadPlan | None = None,
) -> AirgapResult:
    """Write the airgap values and compose override (not in a dry run) and say how to install."""
    values_path = out / "values-airgap.yaml"
    override_path = out / "compose.airgap.yaml"
    if not dry_run:
        atomic_write(values_path, airgap_values(meta.name, target))
        atomic_write(override_path, compose_override(meta, target))
    images = tuple(f"{target.host}/{target.repo(i.path)}@{i.digest}" for i in meta.images)
    chart_ref = f"oci://{target.host}/{target.repo('charts')}/{meta.name}"
    plain = " --plain-http" if registry.base.startswith("http://") else ""
    return AirgapResult(
        target=target.registry_value,
        release=meta.name,
        version=meta.version,
        images=images,
        chart=f"{chart_ref}:{meta.version}",
        values_file=str(values_path),
        compose_override=str(override_path),
        helm_install=f"helm install {meta.name} {chart_ref} --version {meta.version} -f {values_path}{plain}",
        stats=stats,
        dry_run=dry_run,
        plan=plan,
    )
