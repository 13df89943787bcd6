"""`releaser bundle`: the signed airgap bundle of a release."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..bundle.cache import BlobCache, default_cache_dir
from ..bundle.parts import part_path
from ..bundle.sign import fingerprint, load_private_key, passphrase, public_pem
from ..bundle.write import (
    BlobSources,
    BundlePlan,
    Compression,
    assemble,
    checksums_and_metadata,
    signed_head,
    write_archive,
)
from ..errors import TargetExists, UsageError
from ..format import bundle_path
from ..format.records import DeltaRecord, PartRecord
from ..lock import read_lock, split_reference
from ..pipeline import release_dir, release_files, source_date_epoch
from ..plan import build_plan
from ..progress import Progress
from ..registry import RegistryOptions
from ..release import load_release
from ..trust import Verdict  # the results' type (a light module: cryptography's key types)

if TYPE_CHECKING:  # the trust policy, SBOMs and the installer are imported where a bundle asks for
    # them: a bundle without spends no start-up time on them (docs/benchmarks.md)
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from ..bundle.sbom import SbomFor
    from ..format.records import TrustRecord
    from ..model import Release
    from ..registry import RegistryFor


@dataclass(frozen=True, kw_only=True)
class BundleResult:
    """What `bundle` wrote: the archive (or its parts), its digest, what it holds and who signed it."""

    path: str
    sha256: str
    size: int
    images: tuple[str, ...]
    blobs: int
    bytes_in: int
    fetched: int
    signer: str
    attachments: tuple[str, ...] = ()  # repository:sha256-<hex>.sig ... carried with the images
    installer_targets: tuple[str, ...] = ()  # cp311-x86_64 ... (empty: --no-installer)
    installer_bytes: int = 0  # what installer/ adds, uncompressed
    installer_note: str = ""  # why there is none, or why a delta carries none
    parts: tuple[PartRecord, ...] = ()  # split: the parts after the first (path is the first)
    delta: DeltaRecord | None = None  # --since: the base and the blobs left out
    trust: tuple[Verdict, ...] | None = None  # each image's verdict (None: release.yaml sets no policy)
    sboms: tuple[str, ...] = ()  # --sbom: the images that carried none and got one

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "images": list(self.images),
            "blobs": self.blobs,
            "bytesIn": self.bytes_in,
            "fetched": self.fetched,
            "signer": self.signer,
            "attachments": list(self.attachments),
            "installer": {
                "targets": list(self.installer_targets),
                "bytes": self.installer_bytes,
                "note": self.installer_note,
            },
            "parts": [p.to_json() for p in self.parts],
            "delta": None
            if self.delta is None
            else {
                "base": self.delta.base.to_json(),
                "relies": len(self.delta.relies),
                "reliedBytes": sum(r.size for r in self.delta.relies),
                "omittedFiles": self.delta.omitted_files,
            },
            "trust": None if self.trust is None else [v.to_json() for v in self.trust],
            "sboms": list(self.sboms),
        }


def bundle_release(
    directory: Path,
    *,
    key: Path,
    out: Path | None = None,
    passphrase_file: Path | None = None,
    level: int = 3,
    threads: int = -1,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    attachments: bool = True,
    installer: bool | None = None,
    installer_pythons: tuple[str, ...] = (),
    installer_machines: tuple[str, ...] = (),
    split_size: int | None = None,
    since: Path | None = None,
    registries: RegistryOptions | None = None,
    progress: Progress | None = None,
    force: bool = False,
    sbom: bool = False,
) -> BundleResult:
    """Write bundles/<name>-<version>.tar.zst: images, chart, compose files, lock; signed. With
    `installer` (the default), also installer/: releaser's wheels for the chosen CPython versions
    and machines (all supported ones when empty) and install.sh. With `split_size`, as parts
    NAME.tar.zst.001 (the signed head), .002, ... of at most that many bytes. With `since` (an older
    bundle, lock or an inventory of the target), a delta bundle <name>-<version>-delta.tar.zst
    that leaves out the layers the base holds (docs/bundle-format.md#delta-bundles).

    `installer` None (the default): carried by a full bundle; by a delta against an older bundle, the
    files that changed since; by a delta against a lock or an inventory (which do not say which
    installer the target has), none: True carries it, False never."""
    factory = (registries or RegistryOptions()).factory()
    base = None
    if since is not None:
        # the delta's modules (load, audit, verify) only for a delta: ~0.1 s of every bundle's start
        from ..bundle.delta import read_base

        base = read_base(since, factory)
    installer_note = ""
    if installer is None:
        installer = base is None or base.knows_installer
        if not installer and base is not None:
            installer_note = (
                f"left out: the base ({base.record.kind}) does not say which installer the site has; "
                "--installer carries it"
            )
    elif not installer:
        installer_note = "left out (--no-installer)"
    if installer:
        from ..bundle.installer import choose

        choose(installer_pythons, installer_machines)  # a wrong choice fails before anything is fetched
    if not 1 <= level <= 19:
        raise UsageError(
            f"--zstd-level {level} is out of range", fix="use 1 (fastest) to 19 (smallest); default 3"
        )
    directory = release_dir(directory)
    release, _ = load_release(directory)
    lock = read_lock(directory, release)
    plan = build_plan(release, lock)
    target = out or bundle_path(plan.name, plan.version, delta=since is not None)
    existing = part_path(target, 1) if split_size else target
    if existing.exists() and not force:  # a signed bundle someone may have shipped is not replaced silently
        raise TargetExists(
            existing,
            fix="pass --force to replace it (the same release and version give the same bytes when "
            "nothing changed), or --out-file another path",
        )
    if sbom and not attachments:
        raise UsageError(
            "--sbom attaches an SBOM beside each image's attachments; --no-attachments leaves them out",
            fix="drop one of the two",
        )
    if release.trust is not None and not attachments:
        raise UsageError(
            "--no-attachments leaves out the signatures the trust policy in release.yaml requires",
            fix="drop --no-attachments (or the `trust` section)",
        )
    private = load_private_key(key, passphrase(passphrase_file))
    signer = fingerprint(public_pem(private))
    mtime = source_date_epoch()
    make_sbom, sboms = _sbom_step(private, mtime, registries) if sbom else (None, [])
    bp = assemble(
        plan, lock, directory, factory, mtime=mtime, attachments=attachments, sbom=make_sbom,
        trust=_trust_record(release, directory),
    )  # fmt: skip
    verdicts = _at_publisher(bp, factory)
    bp.files.update(release_files(release, directory))
    if installer:
        from ..bundle.installer import installer_files

        bp.installer = installer_files(
            (cache_dir or default_cache_dir()) / "wheels",
            mtime=mtime,
            pythons=installer_pythons,
            machines=installer_machines,
        )
    if base is not None:
        from ..bundle.delta import cut_delta

        bp, entries, checksums, meta = cut_delta(
            plan, lock, bp, base, private=private, level=level, mtime=mtime, signer=signer
        )
    else:
        entries, checksums, meta = checksums_and_metadata(
            plan, lock, bp, mtime=mtime, signer_fingerprint=signer
        )
    delta = meta.delta
    repo_hosts = {}
    for img in lock.images:
        registry_host, path, _, _ = split_reference(img.repository)
        repo_hosts[path] = registry_host
    cache = BlobCache(cache_dir or default_cache_dir()) if use_cache else None
    stats = write_archive(
        target,
        bp,
        entries,
        head=lambda parts: signed_head(replace(meta, parts=parts), checksums, private),
        sources=BlobSources(registry_for=factory, repo_hosts=repo_hosts, cache=cache),
        compression=Compression(level=level, threads=threads, mtime=mtime),
        progress=progress,
        split=split_size,
    )
    return BundleResult(
        path=str(part_path(target, 1) if split_size else target),
        sha256=stats.sha256,
        size=stats.size,
        images=tuple(i.source for i in bp.images),
        blobs=stats.blobs,
        bytes_in=stats.bytes_in,
        fetched=stats.fetched,
        signer=signer,
        attachments=tuple(f"{i.repository}:{a.tag}" for i in bp.images for a in i.attachments or ()),
        installer_targets=_targets(installer_pythons, installer_machines) if bp.installer else (),
        installer_bytes=sum(f.size for f in bp.installer),
        installer_note=installer_note
        or (
            f"unchanged since the base bundle ({delta.omitted_files} files left out)"
            if delta is not None and installer and not bp.installer
            else ""
        ),
        parts=stats.parts,
        delta=delta,
        trust=verdicts if bp.trust is not None else None,
        sboms=tuple(sorted(sboms)),
    )


def _targets(pythons: tuple[str, ...], machines: tuple[str, ...]) -> tuple[str, ...]:
    """The installer's targets (CPython and machine pairs) as the result names them."""
    from ..bundle.installer import choose

    return choose(pythons, machines)


def _sbom_step(
    private: EllipticCurvePrivateKey, mtime: int, registries: RegistryOptions | None
) -> tuple[SbomFor, list[str]]:
    """`--sbom`: the step that makes and signs an SBOM where an image carries none."""
    from ..bundle.sbom import maker

    return maker(
        private, mtime=mtime, plain_http=bool(registries and registries.plain_http),
        ca_file=registries.ca_file if registries else None,
    )  # fmt: skip


def _trust_record(release: Release, directory: Path) -> TrustRecord | None:
    """release.yaml's trust policy as the head carries it; None (nothing imported) when it sets none."""
    if release.trust is None:
        return None
    from ..bundle.policy import trust_record

    return trust_record(release, directory)


def _at_publisher(bp: BundlePlan, factory: RegistryFor) -> tuple[Verdict, ...]:
    """Each image's verdict under the policy, from what its registry attaches; TrustError, nothing
    written, when one fails. () when there is no policy."""
    if bp.trust is None:
        return ()
    from ..bundle.policy import at_publisher, refuse

    verdicts = at_publisher(
        bp.trust, bp.images, {d: b.content for d, b in bp.blobs.items() if b.content is not None}, factory
    )
    refuse(
        verdicts,
        outcome="no bundle was written",
        fix="sign each image named with a key the policy names (cosign sign --key KEY IMAGE@DIGEST; "
        "cosign attest --type TYPE for an attestation), or change `trust` in release.yaml (docs/trust.md)",
    )
    return verdicts
