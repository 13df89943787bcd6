"""`releaser airgap load` (short form `releaser airgap BUNDLE --to R`): verify a bundle, then load
it into a private registry; or, with --dry-run, say what the load would write."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..bundle.cache import default_cache_dir
from ..bundle.load import (
    LoadPlan,
    LoadStats,
    already_loaded,
    plan_changes,
    push_bundle,
)
from ..bundle.verify import Verified, verify_bundle, verify_head
from ..format import DEFAULT_KEY
from ..format.records import BundleMetadata
from ..fs import atomic_write
from ..progress import Progress
from ..registry import Registry, RegistryOptions
from ..render.overrides import REGISTRIES_CONF, airgap_values, compose_override, registries_airgap
from ..target import Target
from ..trust import Verdict  # the results' type (a light module: cryptography's key types)

if TYPE_CHECKING:  # a delta's checks and the trust policy are imported where a bundle needs them:
    # a plain load (most loads) spends no start-up time on them (docs/benchmarks.md)
    from ..bundle.delta import Relied


@dataclass(frozen=True, kw_only=True)
class AirgapResult:
    """What `airgap load` did: the verified bundle, what it pushed or found present, and the files it wrote."""

    target: str
    release: str
    version: str
    images: tuple[str, ...]
    chart: str
    values_file: str
    compose_override: str
    registries_conf: str  # podman's registries.conf drop-in (the Quadlet units)
    helm_install: str
    stats: LoadStats
    dry_run: bool = False
    plan: LoadPlan | None = None  # --dry-run: what the load would write
    trust: tuple[Verdict, ...] | None = None  # each image's verdict (None: the bundle carries no policy)

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "target": self.target,
            "release": self.release,
            "version": self.version,
            "images": list(self.images),
            "chart": self.chart,
            "valuesFile": self.values_file,
            "composeOverride": self.compose_override,
            "registriesConf": self.registries_conf,
            "helmInstall": self.helm_install,
            "stats": asdict(self.stats),
            "dryRun": self.dry_run,
            "plan": self.plan.to_json() if self.plan is not None else None,
            "trust": None if self.trust is None else [v.to_json() for v in self.trust],
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
        v = verify_bundle(path, key, progress=progress)  # every problem, as a load would find them
        checked = _trusted(path, v)
        if v.metadata.delta is not None:
            _relied(v, target, registry, concurrency)  # a delta's base must be there
        plan = plan_changes(v, target, registry, concurrency)
        stats = LoadStats(verified="every file and blob")
        return _result(v.metadata, target, registry, out, stats, dry_run=True, plan=plan, trust=checked)
    # Fast path for a re-run: if the signed metadata verifies and the target already holds every
    # signed digest under its tag, nothing would be written, so the full pass is not needed.
    meta = verify_head(path, key)
    verdicts: tuple[Verdict, ...] | None = ()  # in place: checked by the load that put it there
    if meta is not None and already_loaded(meta, target, registry, concurrency):
        stats = LoadStats(
            verified="signature and metadata; every signed digest, and every blob, already in the target",
            in_place=True,
        )
    else:
        v = verify_bundle(path, key)  # raises, listing every problem, before anything is written
        verdicts = _trusted(path, v)  # the publisher's trust policy, offline: raises before any push
        meta = v.metadata
        # a delta: every layer it left out is in the target (else it raises, listing them) before
        # anything is written
        relied = _relied(v, target, registry, concurrency) if meta.delta else None
        stats = push_bundle(
            path,
            v,
            target,
            registry,
            state_dir=state_dir or default_cache_dir() / "uploads",
            concurrency=concurrency,
            progress=progress,
            relied=relied.mounts if relied is not None else None,
        )
    return _result(meta, target, registry, out, stats, trust=verdicts if meta.trust is not None else None)


def _trusted(path: Path, v: Verified) -> tuple[Verdict, ...] | None:
    """The bundle's own trust policy (in its signed head) checked against what it carries; TrustError,
    nothing pushed, when an image fails it. None when the bundle carries no policy."""
    if v.metadata.trust is None:
        return None
    from ..bundle.policy import at_site, refuse

    verdicts = at_site(v.metadata.trust, v.metadata.images, path, v.small_json)
    refuse(
        verdicts,
        outcome="nothing was pushed",
        fix="ask the publisher for a bundle whose images carry the signatures its policy names "
        "(docs/trust.md); the bundle itself verified, so the images are as the publisher bundled them",
    )
    return verdicts


def _relied(v: Verified, target: Target, registry: Registry, concurrency: int) -> Relied:
    """A delta: every layer it left out is in the target (else RegistryError listing them)."""
    from ..bundle.delta import check_relied

    return check_relied(v, target, registry, concurrency=concurrency)


def _result(
    meta: BundleMetadata,
    target: Target,
    registry: Registry,
    out: Path,
    stats: LoadStats,
    *,
    dry_run: bool = False,
    plan: LoadPlan | None = None,
    trust: tuple[Verdict, ...] | None = None,
) -> AirgapResult:
    """Write the airgap values, compose override and registries drop-in (not in a dry run) and say
    how to install."""
    values_path = out / "values-airgap.yaml"
    override_path = out / "compose.airgap.yaml"
    registries_path = out / REGISTRIES_CONF
    http = registry.base.startswith("http://")
    if not dry_run:
        atomic_write(values_path, airgap_values(meta.name, target))
        atomic_write(override_path, compose_override(meta.compose, meta.images, target))
        atomic_write(registries_path, registries_airgap(meta.name, meta.images, target, plain_http=http))
    images = tuple(target.image(i.path, i.digest) for i in meta.images)
    chart_ref = target.chart_url(meta.name)
    plain = " --plain-http" if http else ""
    return AirgapResult(
        target=target.registry_value,
        release=meta.name,
        version=meta.version,
        images=images,
        chart=f"{chart_ref}:{meta.version}",
        values_file=str(values_path),
        compose_override=str(override_path),
        registries_conf=str(registries_path),
        # a delta is the next version of a release the site runs: an upgrade, not an install
        helm_install=f"helm {'upgrade' if meta.delta is not None else 'install'} {meta.name} {chart_ref} "
        f"--version {meta.version} -f {values_path}{plain}",
        stats=stats,
        dry_run=dry_run,
        plan=plan,
        trust=trust,
    )
