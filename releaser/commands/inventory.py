"""`releaser airgap inventory`: what the customer's registry holds, in a small file the customer
sends back, so the publisher's next bundle carries only the layers it lacks (`bundle --since`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..bundle.delta import Inventory, take_inventory
from ..bundle.verify import inspect_head
from ..fs import atomic_write
from ..registry import RegistryOptions
from ..target import Target


@dataclass(frozen=True, kw_only=True)
class InventoryResult:
    """What `airgap inventory` recorded: the digests a site's registry holds, for `bundle --since`."""

    path: str
    registry: str
    repositories: int
    tags: int
    manifests: int
    blobs: int
    sha256: str  # of the file: what a delta made --since it names as its base

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "path": self.path,
            "registry": self.registry,
            "repositories": self.repositories,
            "tags": self.tags,
            "manifests": self.manifests,
            "blobs": self.blobs,
            "sha256": self.sha256,
        }


def inventory(
    *,
    source: str,
    out: Path,
    repositories: tuple[str, ...] = (),
    bundle: Path | None = None,
    registries: RegistryOptions | None = None,
    concurrency: int = 8,
) -> InventoryResult:
    """List what registry `source` (HOST[:PORT][/PREFIX]) holds: the repositories named, those of
    the release in `bundle` (its signed head), or else every repository its catalog lists under
    the prefix; every tag, the manifests they reach and the blobs those name. No blob is read."""
    target = Target.parse(source)
    registry = (registries or RegistryOptions()).factory()(target.host)
    paths = list(repositories)
    if bundle is not None:
        meta, _ = inspect_head(bundle, None)
        paths += [i.path for i in meta.images] + [meta.chart.ref.rpartition(":")[0]]
    inv = take_inventory(target, registry, repositories=tuple(paths), concurrency=concurrency)
    content = inventory_json(inv)
    atomic_write(out, content)
    return InventoryResult(
        path=str(out),
        registry=inv.registry,
        repositories=len(inv.repositories),
        tags=sum(len(r.tags) for r in inv.repositories.values()),
        manifests=sum(len(r.manifests) for r in inv.repositories.values()),
        blobs=len(inv.blobs()),
        sha256=hashlib.sha256(content).hexdigest(),
    )


def inventory_json(inv: Inventory) -> bytes:
    """The inventory file: sorted keys, one-space indent, a final newline (docs/bundle-format.md)."""
    return (json.dumps(inv.to_json(), indent=1, sort_keys=True) + "\n").encode()
