"""`releaser airgap check`: whether a registry serves all of a bundle (the bundle verified first);
its own module so that `airgap verify` and `inspect` never load the registry client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..bundle.audit import Audit, audit
from ..bundle.verify import verify_bundle
from ..errors import CheckError
from ..format import DEFAULT_KEY
from ..registry import RegistryOptions
from ..target import Target


@dataclass(frozen=True, kw_only=True)
class CheckRegistryResult:
    """What `airgap audit` found in the target registry against a bundle's signed metadata."""

    path: str
    target: str
    release: str
    version: str
    audit: Audit

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "path": self.path,
            "target": self.target,
            "release": self.release,
            "version": self.version,
            **self.audit.to_json(),
        }


def check_registry(
    path: Path,
    *,
    to: str,
    key: Path = DEFAULT_KEY,
    registries: RegistryOptions | None = None,
    concurrency: int = 8,
    sample: int = 8,
) -> CheckRegistryResult:
    """Whether registry `to` serves everything a load of the bundle puts there (the bundle is
    verified first: what it says is what is checked); CheckError (exit 4) listing what is not."""
    target = Target.parse(to)
    registry = (registries or RegistryOptions()).factory()(target.host)
    v = verify_bundle(path, key, outcome="nothing was checked in the registry")
    found = audit(v, target, registry, concurrency=concurrency, sample=sample)
    if found.missing:
        raise CheckError(
            list(found.missing),
            between=f"the bundle and what {target.registry_value} serves",
            fix=f"load it again: releaser airgap {path} --to {to} --key {key} (it sends only what is missing)",
        )
    return CheckRegistryResult(
        path=str(path),
        target=target.registry_value,
        release=v.metadata.name,
        version=v.metadata.version,
        audit=found,
    )
