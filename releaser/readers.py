"""The reader shapes streams are passed around in (a tar member, a decompressor, a socket body)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from types import TracebackType
from typing import Protocol


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class OpenReader(Reader, Protocol):
    """A reader that is also a context manager (closed by whoever opened it)."""

    def __enter__(self) -> Reader: ...

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None, /
    ) -> None: ...


class ChunkReader(io.RawIOBase):
    """An iterator of byte chunks as a reader (a blob copied from one repository to another)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1, /) -> bytes:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return b""
        size = len(self._left) if n is None or n < 0 else n
        out, self._left = self._left[:size], self._left[size:]
        return out
