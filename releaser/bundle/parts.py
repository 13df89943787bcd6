"""Split bundles: NAME.tar.zst.001, .002, ... for removable media (docs/bundle-format.md#split-bundles).

Part 1 is the signed head alone (releaser.json, its signature, checksums.txt, in a zstd frame of
their own); its releaser.json lists every other part's size and sha256. The parts are plain
byte cuts of one archive: `cat NAME.tar.zst.* | zstd -d | tar -x` unpacks it. Readers never
join them on disk: `open_bundle` gives one seekable stream over the parts, holding one part
open at a time, so memory does not grow with their number.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..errors import InputError, NoSpace, UsageError
from ..format.records import PartRecord

SUFFIX = re.compile(r"^(?P<base>.+)\.(?P<n>[0-9]{3})\Z")
MAX_PARTS = 999  # three digits, as `split -d -a 3` numbers them
MIN_PART = 1 << 20


def part_path(first: Path, number: int) -> Path:
    """Part `number` of the split bundle whose first part is `first` (NAME.tar.zst.001)."""
    m = SUFFIX.match(first.name)
    base = m.group("base") if m else first.name
    return first.with_name(f"{base}.{number:03d}")


def first_part(path: Path) -> Path | None:
    """The first part when `path` names a split bundle (its .001, any of its parts, or its name
    without a suffix when only the parts exist); None for a single-file bundle."""
    m = SUFFIX.match(path.name)
    if m:
        return path.with_name(f"{m.group('base')}.001")
    if not path.exists() and path.with_name(path.name + ".001").exists():
        return path.with_name(path.name + ".001")
    return None


def is_bundle(path: Path) -> bool:
    """A bundle file (*.tar.zst) or a split bundle (any of its parts, or its name when only the
    parts exist), as opposed to a release directory."""
    first = first_part(path)
    return (path.is_file() and path.name.endswith(".tar.zst")) or (first is not None and first.is_file())


def files_of(path: Path) -> list[Path]:
    """The files of a bundle in order: [path] for one file; .001, .002, ... as long as they exist."""
    first = first_part(path)
    if first is None:
        return [path]
    out = []
    for n in range(1, MAX_PARTS + 1):
        p = part_path(first, n)
        if not p.is_file():
            break
        out.append(p)
    return out or [first]


def bundle_size(path: Path) -> int:
    return sum(p.stat().st_size for p in files_of(path) if p.exists())


def open_bundle(path: Path, *, buffering: int = -1) -> IO[bytes]:
    """The bundle's bytes as one seekable stream, whether it is one file or parts."""
    files = files_of(path)
    if len(files) == 1:
        return files[0].open("rb", buffering=buffering)
    return _Concatenated(files)  # type: ignore[return-value]  # read/seek/tell/close: all a reader uses


class _Concatenated(io.RawIOBase):
    """Several files read as one, one of them open at a time. Reads within a part go straight to
    its file (one copy, no seek when already there); only a read across a boundary joins."""

    def __init__(self, files: list[Path]) -> None:
        super().__init__()
        self.files = files
        self.sizes = [p.stat().st_size for p in files]
        self.starts = [sum(self.sizes[:i]) for i in range(len(files))]
        self.total = sum(self.sizes)
        self.pos = 0
        self._open: tuple[int, IO[bytes]] | None = None
        self._at = -1  # where the open file's position is, in the whole stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.total}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _handle(self, i: int) -> IO[bytes]:
        if self._open is None or self._open[0] != i:
            if self._open is not None:
                self._open[1].close()
            self._open = (i, self.files[i].open("rb", buffering=0))
            self._at = self.starts[i]
        fh = self._open[1]
        if self._at != self.pos:
            fh.seek(self.pos - self.starts[i])
            self._at = self.pos
        return fh

    def read(self, n: int = -1) -> bytes:
        n = self.total - self.pos if n is None or n < 0 else n
        chunks = []
        while n > 0 and self.pos < self.total:
            i = (
                bisect.bisect_right(self.starts, self.pos) - 1
            )  # the last part starting here (skips empty ones)
            data = self._handle(i).read(min(n, self.starts[i] + self.sizes[i] - self.pos))
            if not data:
                break  # the part shrank since it was measured: the reader sees the end
            chunks.append(data)
            self.pos += len(data)
            self._at = self.pos
            n -= len(data)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None
        super().close()


def part_problems(first: Path, listed: tuple[PartRecord, ...]) -> list[str]:
    """What is wrong with the parts on disk against the signed list, by existence and size only
    (reading them is verification's job): each missing, short or long part, and any part after
    the last listed one."""
    problems = []
    for rec in listed:
        p = part_path(first, rec.number)
        if not p.is_file():
            problems.append(
                f"{p.name}: part {rec.number} of {len(listed) + 1} is missing ({rec.size:,} bytes expected)"
            )
            continue
        size = p.stat().st_size
        if size != rec.size:
            what = "truncated" if size < rec.size else "longer than written"
            problems.append(f"{p.name}: {size:,} bytes, the signed head lists {rec.size:,} ({what})")
    extra = part_path(first, len(listed) + 2)
    if extra.exists():
        problems.append(
            f"{extra.name}: not a part of this bundle (the signed head lists {len(listed) + 1} parts)"
        )
    return problems


def hash_problems(first: Path, listed: tuple[PartRecord, ...]) -> list[str]:
    """Each listed part whose sha256 differs from the signed list, and what it holds instead when
    that is another part's content (swapped)."""
    by_hash = {rec.sha256: rec for rec in listed}
    out = []
    for rec in listed:
        p = part_path(first, rec.number)
        if not p.is_file():
            continue
        h = hashlib.sha256()
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        got = h.hexdigest()
        if got != rec.sha256:
            other = by_hash.get(got)
            hint = f": it holds part {other.number} (parts swapped or renamed?)" if other else " (damaged)"
            out.append(f"{p.name}: sha256 {got}, the signed head lists {rec.sha256}{hint}")
    return out


def parse_size(value: str) -> int:
    """4G, 700M, 4GB, 4000000000: K/M/G/T are powers of 1024 (as split(1) reads them), KB/MB/GB/TB
    powers of 1000."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([KMGT]?)(B|iB)?\s*", value, re.I)
    if not m:
        raise UsageError(
            f"--split-size {value!r} is not a size", fix="e.g. --split-size 4G (GiB), 700M, or 4000000000"
        )
    unit = m.group(2).upper()
    power = "KMGT".index(unit) + 1 if unit else 0
    base = 1000 if (m.group(3) or "").upper() == "B" and unit else 1024
    size = int(m.group(1)) * int(base**power)
    if size < MIN_PART:
        raise UsageError(f"--split-size {value}: parts must be at least 1 MiB", fix="e.g. --split-size 4G")
    return size


def check_space(directory: Path, needed: int, what: str) -> None:
    """Refuse to start writing `needed` bytes into `directory` when it has less free."""
    directory = directory if directory.exists() else directory.parent
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        raise InputError(f"{directory}: {exc.strerror}", fix="check the output path") from exc
    if free < needed:
        raise NoSpace(
            f"{directory}: {free:,} bytes free, {what} needs up to {needed:,}",
            fix=f"free {needed - free:,} bytes there, or write elsewhere (--out-file)",
        )


class PartsWriter:
    """A file-like sink that cuts what is written into parts of `size` bytes, numbered from
    `start`, each written to a temp name and hashed on the way; `finish()` gives their records,
    `commit()` renames them into place, `abort()` removes them."""

    def __init__(
        self, first: Path, size: int, start: int = 2, *, opener: Callable[[Path], IO[bytes]] | None = None
    ) -> None:
        self.first = first
        self.size = size
        self.number = start - 1
        self.parts: list[tuple[int, Path, int, str]] = []  # (number, temp path, size, sha256)
        self._fh: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._left = 0
        self._opener = opener or (lambda p: p.open("wb"))

    def _next(self) -> None:
        self._close_current()
        self.number += 1
        if self.number > MAX_PARTS:
            raise UsageError(
                f"more than {MAX_PARTS} parts of {self.size:,} bytes", fix="choose a larger --split-size"
            )
        final = part_path(self.first, self.number)
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)  # --out-file in a directory not made yet
        self._fh = self._opener(tmp)
        self._hash = hashlib.sha256()
        self._left = self.size
        self.parts.append((self.number, tmp, 0, ""))

    def _close_current(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._fh.close()
            number, tmp, _, _ = self.parts[-1]
            self.parts[-1] = (number, tmp, self.size - self._left, self._hash.hexdigest())
            self._fh = None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._fh is None or self._left == 0:
                self._next()
            assert self._fh is not None
            n = min(len(view), self._left)
            self._fh.write(view[:n])
            self._hash.update(view[:n])
            self._left -= n
            view = view[n:]
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self) -> list[tuple[int, Path, int, str]]:
        self._close_current()
        return self.parts

    def commit(self) -> None:
        for number, tmp, _, _ in self.parts:
            tmp.replace(part_path(self.first, number))

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        for _, tmp, _, _ in self.parts:
            tmp.unlink(missing_ok=True)
