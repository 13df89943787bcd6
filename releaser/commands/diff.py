"""`releaser diff OLD NEW`: what a new release changes, from metadata alone; the comparison is
releaser/diff.py's (each side a release directory, DIR@REV, a lock file or a bundle)."""

from __future__ import annotations

from ..diff import DiffResult, compare, side
from ..registry import RegistryOptions

__all__ = ["DiffResult", "diff"]


def diff(
    old: str, new: str, *, registries: RegistryOptions | None = None, offline: bool = False
) -> DiffResult:
    """Compare two releases (directories, DIR@REV, locks or bundles); nothing is written. With
    `offline`, no registry is asked (sizes only from bundles)."""
    factory = None if offline else (registries or RegistryOptions()).factory()
    with side(old, factory) as a, side(new, factory) as b:
        return compare(a, b)
