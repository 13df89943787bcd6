"""What a registry really holds of a bundle: every manifest and index fetched and hashed, every
blob asked for (HEAD) and a sample of them read (a ranged GET: a pull-through cache may answer a
HEAD for a blob it does not hold), every tag resolved. Nothing is written."""

from __future__ import annotations

from dataclasses import dataclass

from .. import workers
from ..errors import DigestMismatch, RegistryError
from ..registry import Registry
from ..target import Target
from .attachments import contains
from .load import attachment_tags, plan_load
from .verify import Verified


@dataclass(frozen=True, kw_only=True)
class Audit:
    manifests: int = 0  # fetched, and hashing to their digests
    blobs: int = 0  # present (HEAD)
    sampled: int = 0  # of those, read (a ranged GET)
    tags: int = 0  # naming what the bundle has them name
    missing: tuple[str, ...] = ()  # every problem, one line each

    def to_json(self) -> dict[str, object]:
        return {
            "manifests": self.manifests,
            "blobs": self.blobs,
            "sampled": self.sampled,
            "tags": self.tags,
            "missing": list(self.missing),
        }


def audit(v: Verified, target: Target, registry: Registry, *, concurrency: int = 8, sample: int = 8) -> Audit:
    """Ask the registry for everything loading `v` into `target` puts there."""
    items, tags = plan_load(v, target)
    manifests = sorted({(i.repo, i.digest) for i in items if i.kind != "blob"})
    sizes = {(i.repo, i.digest): i.size for i in items if i.kind == "blob"}
    blobs = sorted(sizes)
    attached = attachment_tags(v.metadata, target)
    where = target.host

    def manifest(item: tuple[str, str]) -> str | None:
        repo, digest = item
        if not registry.manifest_exists(repo, digest):
            return f"{where}/{repo}@{digest}: manifest missing"
        try:
            registry.get_manifest(repo, digest)  # hashed against the digest it is asked by
        except DigestMismatch as exc:
            return exc.message
        return None

    def blob(item: tuple[str, str]) -> bool:
        return registry.blob_exists(*item)

    def tag(item: tuple[str, str, str]) -> str | None:
        repo, name, digest = item
        current = registry.tag_digest(repo, name)
        if current == digest:
            return None
        if current is None:
            return f"{where}/{repo}:{name}: tag missing (should name {digest})"
        if (repo, name) in attached and contains(
            registry.get_manifest(repo, current).content, v.small_json[digest]
        ):
            return None  # an attachment tag merged with the site's own: it holds the bundle's
        return f"{where}/{repo}:{name}: names {current}, the bundle has {digest}"

    with workers.pool(concurrency) as pool:
        bad_manifests = [m for m in pool.map(manifest, manifests) if m]
        there = dict(zip(blobs, pool.map(blob, blobs), strict=True))
        bad_blobs = [
            f"{where}/{repo}@{digest}: blob missing" for (repo, digest), ok in there.items() if not ok
        ]
        bad_tags = [t for t in pool.map(tag, tags) if t]
        chosen = spread([b for b, ok in there.items() if ok and sizes[b] > 0], sample)
        bad_reads = [r for r in pool.map(lambda b: read_one_byte(registry, where, *b), chosen) if r]
    return Audit(
        manifests=len(manifests) - len(bad_manifests),
        blobs=len(blobs) - len(bad_blobs),
        sampled=len(chosen) - len(bad_reads),
        tags=len(tags) - len(bad_tags),
        missing=tuple(bad_manifests + bad_blobs + bad_reads + bad_tags),
    )


def spread(items: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """Up to `n` items spread evenly over the (sorted) list: the same sample every run."""
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def read_one_byte(registry: Registry, where: str, repo: str, digest: str) -> str | None:
    try:
        if registry.blob_first_byte(repo, digest):
            return None
        return f"{where}/{repo}@{digest}: blob answers HEAD but serves no content"
    except RegistryError as exc:
        return f"{where}/{repo}@{digest}: blob answers HEAD but not GET ({exc.message})"
