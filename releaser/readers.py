"""The reader shapes streams are passed around in (a tar member, a decompressor, a socket body)."""

from __future__ import annotations

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
