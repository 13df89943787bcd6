"""A local content-addressed blob cache, so a second bundle fetches only what changed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import DigestMismatch
from ..fs import atomic_file


def default_cache_dir() -> Path:
    base = os.environ.get("RELEASER_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / ("" if os.environ.get("RELEASER_CACHE") else "releaser")


class BlobCache:
    """blobs/sha256/<hex> under a directory; entries are written to a temp name and renamed
    only once their digest is verified."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def has(self, digest: str, size: int) -> bool:
        p = self.path(digest)
        return p.exists() and p.stat().st_size == size

    def read(self, digest: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Stream a cached blob, re-verifying it (a corrupt entry is removed and reported)."""
        h = hashlib.sha256()
        p = self.path(digest)
        with p.open("rb") as f:
            while True:
                data = f.read(chunk)
                if not data:
                    break
                h.update(data)
                yield data
        if "sha256:" + h.hexdigest() != digest:
            p.unlink(missing_ok=True)
            raise DigestMismatch(f"cache entry {p} is corrupt (removed)", fix="run the command again")

    def tee(self, digest: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Pass `chunks` through while storing them; the entry appears only if the stream completes
        (the source verifies the digest before it finishes)."""
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(final, durable=False) as f:  # entries are re-hashed when read
            for data in chunks:
                f.write(data)
                yield data
