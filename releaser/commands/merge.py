"""`releaser bundle merge OLD DELTA`: the full bundle a delta was cut from, byte for byte, both
verified first; the stage itself is releaser/bundle/merge.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..bundle.merge import merge
from ..format import DEFAULT_KEY


@dataclass(frozen=True, kw_only=True)
class MergeResult:
    """What `bundle merge` wrote: the full bundle rebuilt from a delta and its base."""

    path: str
    sha256: str
    size: int
    release: str
    version: str
    from_delta: int  # members copied from the delta
    from_base: int  # members taken from OLD

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "release": self.release,
            "version": self.version,
            "fromDelta": self.from_delta,
            "fromBase": self.from_base,
        }


def merge_bundles(old: Path, delta: Path, *, key: Path = DEFAULT_KEY, out: Path | None = None) -> MergeResult:
    """Rebuild the full bundle of `delta` with the members it left out taken from `old`."""
    m = merge(old, delta, key=key, out=out)
    return MergeResult(
        path=str(m.path),
        sha256=m.sha256,
        size=m.size,
        release=m.metadata.name,
        version=m.metadata.version,
        from_delta=m.from_delta,
        from_base=m.from_base,
    )
