"""Delta bundles (docs/bundle-format.md#delta-bundles): what a base already holds, the delta a
full bundle becomes against it, and the check a load makes before pushing anything.

A base is an older bundle (its signed head lists every blob it carries), an older lock (its
manifests, fetched from the source registry, name the blobs) or an inventory of the target
registry (`releaser airgap inventory`: what the customer's registry really holds). A delta
leaves out the image layers the base holds, and the base's installer files when identical;
it carries every manifest, index, config, attachment, the chart and the compose files, and the
full bundle's signed head (full/...), from which `bundle merge` rebuilds the full bundle.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from .. import budgets, workers
from ..errors import BaseMissing, BudgetExceeded, InputError, RegistryError, ReleaserError, ValidationError
from ..format import CHECKSUMS, METADATA, SIGNATURE
from ..format.records import BaseRecord, BundleMetadata, DeltaRecord, ReliedBlob
from ..fs import UnreadableInput, read_input
from ..lock import Lock, LockedImage, load_lock_file, split_reference
from ..plan import Plan
from ..registry import Registry, RegistryFor
from ..render.docs import compose_images
from ..render.loadsh import load_sh
from ..target import Target
from .audit import read_one_byte, spread
from .load import plan_load
from .parts import is_bundle
from .verify import Verified, read_head
from .write import BundlePlan, checksums_and_metadata, signed_head

INVENTORY_KIND = "ReleaserInventory"
INVENTORY_VERSION = 1
FULL_PREFIX = "full/"  # a delta's members for `bundle merge`: the full bundle's head, and its own load.sh
FULL_HEAD = {  # the full bundle's signed head, carried at the end of a delta for `bundle merge`
    METADATA: "full/releaser.json",
    SIGNATURE: "full/releaser.json.sig",
    CHECKSUMS: "full/checksums.txt",
}
_LINE = re.compile(r"^([a-f0-9]{64})  (\S.*)\Z")


# ------------------------------------------------------------------------------- inventories


@dataclass(frozen=True, kw_only=True)
class RepositoryInventory:
    tags: Mapping[str, str]  # tag -> digest
    manifests: tuple[str, ...]  # every manifest and index the tags reach
    blobs: tuple[str, ...]  # every config and layer those manifests name

    def to_json(self) -> dict[str, object]:
        return {"tags": dict(self.tags), "manifests": list(self.manifests), "blobs": list(self.blobs)}


@dataclass(frozen=True, kw_only=True)
class Inventory:
    """What a registry holds under its repositories (paths relative to the target's prefix)."""

    registry: str  # HOST[:PORT][/PREFIX], as given to --from
    repositories: Mapping[str, RepositoryInventory]

    def blobs(self) -> frozenset[str]:
        return frozenset(b for r in self.repositories.values() for b in r.blobs)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": INVENTORY_KIND,
            "version": INVENTORY_VERSION,
            "registry": self.registry,
            "repositories": {k: self.repositories[k].to_json() for k in sorted(self.repositories)},
        }

    @classmethod
    def parse(cls, content: bytes, where: str) -> Inventory:
        """An inventory file (untrusted: bounded, every shape checked, errors name the JSON path)."""
        try:
            doc = budgets.loads(content, limit=budgets.MAX_INVENTORY_BYTES)
        except BudgetExceeded as exc:
            raise InputError(f"{where}: {exc}", fix=_INVENTORY_FIX) from None
        except ValueError:
            raise InputError(f"{where}: not JSON", fix=_INVENTORY_FIX) from None
        if not isinstance(doc, dict) or doc.get("kind") != INVENTORY_KIND:
            raise InputError(f"{where}: $.kind: not {INVENTORY_KIND}", fix=_INVENTORY_FIX)
        if doc.get("version") != INVENTORY_VERSION:
            raise InputError(
                f"{where}: $.version: {doc.get('version')!r}, this releaser reads {INVENTORY_VERSION}",
                fix=_INVENTORY_FIX,
            )
        registry, repos = doc.get("registry"), doc.get("repositories")
        if not isinstance(registry, str):
            raise InputError(f"{where}: $.registry: not a string", fix=_INVENTORY_FIX)
        if not isinstance(repos, dict):
            raise InputError(f"{where}: $.repositories: not an object", fix=_INVENTORY_FIX)
        out: dict[str, RepositoryInventory] = {}
        for name, r in repos.items():
            path = f"$.repositories[{name!r}]"
            if not isinstance(r, dict):
                raise InputError(f"{where}: {path}: not an object", fix=_INVENTORY_FIX)
            tags, manifests, blobs = r.get("tags", {}), r.get("manifests", []), r.get("blobs", [])
            if not isinstance(tags, dict) or not all(_digest(v) for v in tags.values()):
                raise InputError(f"{where}: {path}.tags: not an object of digests", fix=_INVENTORY_FIX)
            for key, value in (("manifests", manifests), ("blobs", blobs)):
                if not isinstance(value, list) or not all(_digest(v) for v in value):
                    raise InputError(f"{where}: {path}.{key}: not a list of digests", fix=_INVENTORY_FIX)
            out[name] = RepositoryInventory(tags=tags, manifests=tuple(manifests), blobs=tuple(blobs))
        return cls(registry=registry, repositories=out)


_INVENTORY_FIX = "pass the file `releaser airgap inventory --from REGISTRY --out FILE` wrote at the target site, as it was written"


def _digest(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"sha256:[a-f0-9]{64}", value) is not None


def take_inventory(
    target: Target,
    registry: Registry,
    *,
    repositories: tuple[str, ...] = (),
    concurrency: int = 8,
) -> Inventory:
    """Ask the registry what it holds: its repositories (`repositories`, else its catalog under the
    target's prefix), every tag, the manifests they reach and the blobs those name. No blob is read."""
    if repositories:
        paths = sorted(set(repositories))
    else:
        prefix = f"{target.prefix}/" if target.prefix else ""
        paths = sorted(r[len(prefix) :] for r in registry.catalog() if r.startswith(prefix))

    def one(path: str) -> tuple[str, RepositoryInventory]:
        repo = target.repo(path)
        tags = registry.tags(repo)[: budgets.MAX_TAGS]
        named: dict[str, str] = {}
        manifests: dict[str, None] = {}
        blobs: dict[str, None] = {}
        for tag in tags:
            top = registry.get_manifest(repo, tag)
            named[tag] = top.descriptor.digest
            if top.descriptor.digest in manifests:
                continue
            manifests[top.descriptor.digest] = None
            for m in (
                [registry.get_manifest(repo, c["digest"]) for c in top.children()] if top.is_index else [top]
            ):
                manifests[m.descriptor.digest] = None
                if not m.is_index:
                    blobs.update((d["digest"], None) for d in m.blobs())
        return path, RepositoryInventory(tags=named, manifests=tuple(manifests), blobs=tuple(sorted(blobs)))

    with workers.pool(concurrency) as pool:
        found = dict(pool.map(one, paths))
    return Inventory(registry=target.registry_value, repositories=found)


# ------------------------------------------------------------------------------- bases


@dataclass(frozen=True, kw_only=True)
class Base:
    """What the target is known to hold once the base is loaded."""

    record: BaseRecord
    blobs: frozenset[str]  # blob digests (layers, configs)
    files: Mapping[str, str] = field(default_factory=dict)  # a base bundle's other members: path -> sha256

    @property
    def knows_installer(self) -> bool:
        """Whether the base says which installer the target has: a bundle does; a lock or an
        inventory of a registry does not (a delta then carries none unless asked)."""
        return self.record.kind == "bundle"


def read_base(path: Path, registry_for: RegistryFor, *, concurrency: int = 8) -> Base:
    """The base named by `bundle --since`: an older bundle (or its parts), a release directory or
    lock file (its manifests fetched from the source registries), or an inventory file."""
    if is_bundle(path):
        return _bundle_base(path)
    if path.is_dir():
        path = path / "release.lock.yaml"
    try:  # never more than the budget in memory, and nothing but a regular file
        content = read_input(path, budgets.MAX_INVENTORY_BYTES)
    except FileNotFoundError:
        raise InputError(
            f"--since {path}: no such file",
            fix="pass an older bundle, an older release.lock.yaml (or its release directory), or an "
            "inventory written by `releaser airgap inventory`",
        ) from None
    except UnreadableInput as exc:
        raise InputError(f"--since {exc}", fix=exc.fix) from None
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    if content.lstrip()[:1] == b"{":
        inv = Inventory.parse(content, str(path))
        return Base(
            record=BaseRecord(kind="inventory", name=inv.registry, version="", digest=digest),
            blobs=inv.blobs(),
        )
    try:
        lock = load_lock_file(path)
    except ValidationError as exc:
        exc.add_note(f"--since {path}")
        raise
    return Base(
        record=BaseRecord(kind="lock", name=lock.release, version="", digest=digest),
        blobs=_lock_blobs(lock, registry_for, concurrency),
    )


def _bundle_base(path: Path) -> Base:
    head = read_head(path)
    if METADATA not in head or CHECKSUMS not in head:
        raise InputError(f"--since {path}: not a releaser bundle (no signed head)", fix=_BASE_FIX)
    try:
        meta = BundleMetadata.parse(budgets.loads(head[METADATA]))
    except (ValueError, ReleaserError) as exc:
        raise InputError(f"--since {path}: {METADATA} cannot be read: {exc}", fix=_BASE_FIX) from None
    files: dict[str, str] = {}
    for line in head[CHECKSUMS].decode("utf-8", "replace").splitlines():
        m = _LINE.match(line)
        if m:
            files[m.group(2)] = m.group(1)
    blobs = {"sha256:" + p.rsplit("/", 1)[1] for p in files if p.startswith("blobs/sha256/")}
    if meta.delta is not None:  # a delta's base is in the target too, with what it relied on
        blobs |= {r.digest for r in meta.delta.relies}
    return Base(
        record=BaseRecord(
            kind="bundle",
            name=meta.name,
            version=meta.version,
            digest="sha256:" + hashlib.sha256(head[METADATA]).hexdigest(),
        ),
        blobs=frozenset(blobs),
        files={p: h for p, h in files.items() if not p.startswith("blobs/")},
    )


_BASE_FIX = "pass the older bundle as `releaser bundle` wrote it (or its .001 part)"


def _lock_blobs(lock: Lock, registry_for: RegistryFor, concurrency: int) -> frozenset[str]:
    def blobs(pin: LockedImage) -> set[str]:
        host, path, _, _ = split_reference(pin.repository)
        registry = registry_for(host)
        try:
            top = registry.get_manifest(path, pin.digest)
            ms = [registry.get_manifest(path, c["digest"]) for c in top.children()] if top.is_index else [top]
        except RegistryError as exc:
            exc.add_note(f"--since {lock.file}: images.{pin.name} ({pin.pinned})")
            also = "make the delta --since the older bundle, or an inventory of the target, instead"
            exc.fix = f"{exc.fix}; or {also}" if exc.fix else also
            raise
        return {d["digest"] for m in ms if not m.is_index for d in m.blobs()}

    with workers.pool(concurrency) as pool:
        return frozenset(b for found in pool.map(blobs, lock.images) for b in found)


def make_delta(bp: BundlePlan, base: Base, *, level: int) -> tuple[BundlePlan, DeltaRecord]:
    """`bp` without the image layers the base holds and without the base bundle's identical
    installer files; and the signed record of what it relies on."""
    left_out = sorted(
        (b for b in bp.blobs.values() if b.layer and b.digest in base.blobs), key=lambda b: b.digest
    )
    omitted = {b.digest for b in left_out}
    installer = [f for f in bp.installer if base.files.get(f.name) != f.sha256]
    delta = replace(
        bp,
        blobs={d: b for d, b in bp.blobs.items() if d not in omitted},
        installer=installer,
        files=dict(bp.files),
    )
    record = DeltaRecord(
        base=base.record,
        relies=tuple(ReliedBlob(digest=b.digest, size=b.size) for b in left_out),
        omitted_files=len(bp.installer) - len(installer),
        level=level,
    )
    return delta, record


# ------------------------------------------------------------------------------- loading


@dataclass(frozen=True, kw_only=True)
class Relied:
    """What the target holds of what a delta relies on."""

    present: int  # (repository, blob) pairs already in place
    mounts: Mapping[tuple[str, str], str]  # (repository, blob) -> a repository of the target that has it
    sampled: int  # blobs read back with a ranged GET


def check_relied(
    v: Verified, target: Target, registry: Registry, *, concurrency: int = 8, sample: int = 8
) -> Relied:
    """Before anything is pushed: every blob the delta relies on is served by the target, in the
    repository that needs it or in another one of the release (then mounted). A sample of them
    is read back with a ranged GET (a pull-through cache answers HEAD for blobs it does not hold).
    Raises CheckError listing every blob the target lacks."""
    delta = v.metadata.delta
    assert delta is not None
    relied = {r.digest for r in delta.relies}
    items, _ = plan_load(v, target)
    pairs = sorted({(i.repo, i.digest) for i in items if i.kind == "blob" and i.digest in relied})
    repos = sorted({i.repo for i in items})
    with workers.pool(concurrency) as pool:
        have = dict(zip(pairs, pool.map(lambda p: registry.blob_exists(*p), pairs), strict=True))
        where: dict[str, list[str]] = {}
        for (repo, digest), ok in have.items():
            if ok:
                where.setdefault(digest, []).append(repo)
        lacking = sorted({d for (_, d), ok in have.items() if not ok and d not in where})
        asked = [(r, d) for d in lacking for r in repos if (r, d) not in have]
        for (repo, digest), ok in zip(
            asked, pool.map(lambda p: registry.blob_exists(*p), asked), strict=True
        ):
            if ok:
                where.setdefault(digest, []).append(repo)
        chosen = spread(sorted({(where[d][0], d) for d in where}), sample)
        unreadable = [r for r in pool.map(lambda b: read_one_byte(registry, target.host, *b), chosen) if r]
    missing = [
        f"{target.host}/{repo}@{digest}: not in the target (relied on by this delta)"
        for (repo, digest), ok in have.items()
        if not ok and digest not in where
    ]
    if missing or unreadable:
        raise BaseMissing(
            missing + unreadable,
            target=target.registry_value,
            fix=f"load its base first ({delta.base.describe()}), then this delta; or ask the publisher "
            "for a full bundle, or for a delta made --since an inventory of this registry "
            f"(`releaser airgap inventory --from {target.registry_value} --out site.inventory.json`)",
        )
    mounts = {(repo, d): where[d][0] for (repo, d), ok in have.items() if not ok}
    return Relied(present=sum(have.values()), mounts=mounts, sampled=len(chosen))


def cut_delta(
    plan: Plan,
    lock: Lock,
    bp: BundlePlan,
    base: Base,
    *,
    private: EllipticCurvePrivateKey,
    level: int,
    mtime: int,
    signer: str,
) -> tuple[BundlePlan, list[tuple[str, str, int]], bytes, BundleMetadata]:
    """The delta of the full bundle `bp` against `base`: the layers the base holds left out, the full
    bundle's signed head carried under full/ (for `bundle merge`), and load.sh replaced by one that
    verifies and then says why a delta cannot be loaded by it (the full one kept under full/).
    Returns its plan, entries, checksums.txt and metadata (with the delta record)."""
    entries, checksums, meta = checksums_and_metadata(plan, lock, bp, mtime=mtime, signer_fingerprint=signer)
    full = signed_head(meta, checksums, private)
    bp, delta = make_delta(bp, base, level=level)
    bp.files[FULL_PREFIX + "load.sh"] = bp.leading["load.sh"]
    bp.leading["load.sh"] = load_sh(
        name=plan.name,
        version=plan.version,
        images=bp.images,
        chart=(meta.chart.ref, meta.chart.digest),
        compose=compose_images(plan),
        delta=delta.base.describe(),
    )
    bp.files[FULL_HEAD[METADATA]] = full.metadata
    bp.files[FULL_HEAD[SIGNATURE]] = full.signature
    bp.files[FULL_HEAD[CHECKSUMS]] = full.checksums
    entries, checksums, meta = checksums_and_metadata(plan, lock, bp, mtime=mtime, signer_fingerprint=signer)
    return bp, entries, checksums, replace(meta, delta=delta)
