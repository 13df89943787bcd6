"""The .tar.zst container: a deterministic tar stream through a zstd compressor.

Writing never holds a blob in memory: headers are built here, data is copied
in large chunks straight into the (multi-threaded) compressor. Every large blob
ends a zstd frame, so the file is a plain `zstd -d | tar x` archive that is
also a sequence of independent frames. Reading streams members in order.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import zstandard

from ..errors import ReleaserError

BLOCK = 512
FRAME_THRESHOLD = 1 << 20  # blobs at least this big get a zstd frame of their own


class ArchiveError(ReleaserError):
    """The archive is unreadable, truncated or not a tar.zst."""


def _header(name: str, size: int, mtime: int, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


class TarZstWriter:
    """Append-only deterministic tar.zst writer."""

    def __init__(self, fileobj: IO[bytes], *, level: int = 3, threads: int = -1, mtime: int = 0) -> None:
        params = zstandard.ZstdCompressionParameters.from_level(level, threads=threads, write_checksum=True)
        self._z = zstandard.ZstdCompressor(compression_params=params).stream_writer(fileobj, closefd=False)
        self.mtime = mtime
        self.names: list[str] = []

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, len(data), [data])

    def add_stream(self, name: str, size: int, chunks: Iterable[bytes]) -> int:
        """Write a member whose `size` is known up front; `chunks` must yield exactly that many bytes."""
        self._z.write(_header(name, size, self.mtime))
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise ArchiveError(f"{name}: source gave more than the {size} bytes it declared",
                                   fix="the source changed while bundling; run again")
            self._z.write(chunk)
        if written != size:
            raise ArchiveError(f"{name}: source gave {written} of {size} bytes",
                               fix="the source changed or was cut off while bundling; run again")
        pad = (-size) % BLOCK
        if pad:
            self._z.write(b"\0" * pad)
        if size >= FRAME_THRESHOLD:
            self._z.flush(zstandard.FLUSH_FRAME)
        self.names.append(name)
        return written

    def close(self) -> None:
        self._z.write(b"\0" * (BLOCK * 2))
        self._z.flush(zstandard.FLUSH_FRAME)
        self._z.close()


def iter_members(path: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    """(member, reader) for every member, in archive order, streamed. Raises ArchiveError."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ArchiveError(f"cannot open {path}: {exc.strerror}", fix="check the path") from exc
    with fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_size=1 << 20, read_across_frames=True)
        try:
            with tarfile.open(fileobj=_Buffered(reader), mode="r|", bufsize=1 << 20) as tar:  # type: ignore[call-overload]
                for member in tar:
                    f = tar.extractfile(member) if member.isreg() else None
                    yield member, _Guarded(f, path) if f is not None else None
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
            raise ArchiveError(f"{path}: the archive is damaged or truncated ({exc})",
                               fix="copy the bundle again and compare its size and sha256 with the source") from exc


class _Guarded:
    """A member reader whose read errors (truncation, corrupt frames) become ArchiveError."""

    def __init__(self, reader: IO[bytes], path: Path) -> None:
        self.reader = reader
        self.path = path

    def read(self, n: int = -1) -> bytes:
        try:
            return self.reader.read(n)
        except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
            raise ArchiveError(f"{self.path}: the archive is damaged or truncated ({exc})",
                               fix="copy the bundle again and compare its size and sha256 with the source") from exc


class _Buffered(io.RawIOBase):
    """Adapts the zstd stream reader for tarfile's stream mode."""

    def __init__(self, reader: IO[bytes]) -> None:
        self.reader = reader

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self.reader.read(n if n and n > 0 else 1 << 20)

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        data = self.reader.read(len(b))
        b[: len(data)] = data
        return len(data)
