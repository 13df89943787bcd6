"""The .tar.zst container: a deterministic tar stream through a zstd compressor.

Writing never holds a blob in memory: headers are built here, data is copied
in large chunks straight into the (multi-threaded) compressor. Every large blob
ends a zstd frame, so the file is a plain `zstd -d | tar x` archive that is
also a sequence of independent frames. Reading streams members in order.
"""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zstandard

from .. import budgets
from ..budgets import (
    MAX_EXTRA_MEMBERS,
    MAX_MEMBERS,
    MAX_NAME_BYTES,
    MAX_PAX_BYTES,
    MAX_WINDOW,
    MEMBER_OVERHEAD,
    window_for,
)
from ..errors import ArchiveError, BundleDamaged
from ..readers import Reader, Writer
from .parts import open_bundle

BLOCK = 512
FRAME_THRESHOLD = 1 << 20  # blobs at least this big get a zstd frame of their own


def _header(name: str, size: int, mtime: int, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


class TarZstWriter:
    """Append-only deterministic tar.zst writer."""

    def __init__(
        self, fileobj: IO[bytes] | Writer, *, level: int = 3, threads: int = -1, mtime: int = 0
    ) -> None:
        # 2 MB jobs: zstd's default job size for level 3 costs ~100 MB more memory for no speed;
        # with a fixed job size the output is also the same for any number of threads.
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, write_checksum=True, job_size=2 << 20
        )
        compressor = zstandard.ZstdCompressor(compression_params=params)
        self._z = compressor.stream_writer(fileobj, closefd=False)  # type: ignore[arg-type]  # write+flush suffice
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
                raise ArchiveError(
                    f"{name}: source gave more than the {size} bytes it declared",
                    fix="the source changed while bundling; run again",
                )
            self._z.write(chunk)
        if written != size:
            raise ArchiveError(
                f"{name}: source gave {written} of {size} bytes",
                fix="the source changed or was cut off while bundling; run again",
            )
        pad = (-size) % BLOCK
        if pad:
            self._z.write(b"\0" * pad)
        if size >= FRAME_THRESHOLD:
            self._z.flush(zstandard.FLUSH_FRAME)
        self.names.append(name)
        return written

    def end_frame(self) -> None:
        """End the current zstd frame here (a member boundary): what follows starts a new one."""
        self._z.flush(zstandard.FLUSH_FRAME)

    def close(self, *, end_of_archive: bool = True) -> None:
        """Finish the stream, with tar's end-of-archive marker unless more members follow in
        another stream (the head of a split bundle, part 1, is followed by the other parts)."""
        if end_of_archive:
            self._z.write(b"\0" * (BLOCK * 2))
        self._z.flush(zstandard.FLUSH_FRAME)
        self._z.close()  # type: ignore[no-untyped-call]  # zstandard does not annotate close()


@dataclass
class ReadBudget:
    """What reading an archive may cost: members, and decompressed bytes (None: as many as there
    are, streamed). Shared by the readers of one archive's frames. From a bundle's head:
    `ReadBudget.declared`."""

    members: int = MAX_MEMBERS
    bytes: int | None = None
    window: int = MAX_WINDOW  # the largest zstd window accepted
    exceeded: str = ""  # what to say when it is exceeded (default: what the head declares)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def declared(cls, files: int, nbytes: int, head: int) -> ReadBudget:
        """For an archive whose head (`head` bytes in 3 members) declares `files` more members
        holding `nbytes`: that, plus tar's own headers and padding, and room to name a few
        members that should not be there."""
        members = files + 3 + MAX_EXTRA_MEMBERS
        total = head + nbytes + (members + 1) * MEMBER_OVERHEAD
        return cls(members=members, bytes=total, window=window_for(total))

    def take(self, path: Path, *, members: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.members -= members
            if self.bytes is not None:
                self.bytes -= nbytes
            members_left, bytes_left = self.members, self.bytes
        if members_left < 0:
            raise BundleDamaged(
                path, self.exceeded or "more members than its head declares (or any bundle holds)"
            )
        if bytes_left is not None and bytes_left < 0:
            raise BundleDamaged(
                path, self.exceeded or "more data than its head declares (a decompression bomb?)"
            )


def iter_members(
    path: Path,
    *,
    frame: tuple[int, int] | None = None,
    last: bool = True,
    budget: ReadBudget | None = None,
) -> Iterator[tuple[tarfile.TarInfo, Reader | None]]:
    """(member, reader) for every member, in archive order, streamed. Raises ArchiveError.

    Our own header loop instead of tarfile's stream mode, whose buffer concatenation
    costs more than decompression and hashing together. Headers are parsed by tarfile;
    pax ('x') and GNU long-name ('L'/'K') records are applied to the next member.

    With `frame` (offset, length from `zstd_frames`), only the members of that one zstd frame:
    it must begin at a member header and end at a member boundary, which is how TarZstWriter
    cuts frames; the end-of-archive marker must be in the `last` frame and nowhere else.
    Anything else raises ArchiveError. Reading every frame so gives exactly the members of
    one sequential pass, or an ArchiveError.

    Within `budget` (members and decompressed bytes) and releaser/budgets.py (zstd window,
    name and pax record sizes): past any of them, BundleDamaged.
    """
    budget = budget or ReadBudget()
    try:
        fh = open_bundle(path)
    except OSError as exc:
        raise ArchiveError(f"cannot open {path}: {exc.strerror}", fix="check the path") from exc
    with fh:
        source: IO[bytes] = fh
        if frame is not None:
            fh.seek(frame[0])
            source = _Window(fh, frame[1])  # type: ignore[assignment]
        src = zstandard.ZstdDecompressor(max_window_size=budget.window).stream_reader(
            source, read_size=1 << 20, read_across_frames=frame is None
        )
        stream = _Exact(src, path, budget)
        pending: dict[str, str] = {}
        while True:
            block = stream.read_or_eof(BLOCK)
            if block is None or block == b"\0" * BLOCK:
                if block is None and (last or pending):
                    raise BundleDamaged(
                        path, "the archive is damaged or truncated (no end-of-archive marker)"
                    )
                if block is not None and not last:
                    raise BundleDamaged(path, "an end-of-archive marker before the last zstd frame")
                return
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise BundleDamaged(path, f"a damaged tar header ({exc})") from exc
            padded = info.size + (-info.size) % BLOCK
            budget.take(path, members=1)
            if info.type in _EXTENDED:
                _extended(
                    info,
                    stream.read_exact(padded)[: info.size] if info.size <= MAX_PAX_BYTES else None,
                    pending,
                    path,
                )
                continue
            if "path" in pending:
                info.name = pending["path"]
            if "linkpath" in pending:
                info.linkname = pending["linkpath"]
            if "size" in pending:
                info.size = _pax_size(pending["size"], path)
                padded = info.size + (-info.size) % BLOCK
            if len(info.name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
                raise BundleDamaged(path, f"a member name longer than {MAX_NAME_BYTES} bytes")
            pending = {}
            body = _Member(stream, info.size, path)
            yield info, (body if info.isreg() else None)
            body.drain()
            stream.skip(padded - info.size)


_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


def _extended(info: tarfile.TarInfo, data: bytes | None, pending: dict[str, str], path: Path) -> None:
    """Apply a pax or GNU long-name record (`data`, None when oversized) to the next member."""
    if data is None:
        raise BundleDamaged(path, f"an extended (pax) header larger than {MAX_PAX_BYTES} bytes")
    if info.type == tarfile.GNUTYPE_LONGNAME:
        pending["path"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
    elif info.type == tarfile.GNUTYPE_LONGLINK:
        pending["linkpath"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
    elif info.type == tarfile.XHDTYPE:
        pending.update(_pax(data))


_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE = 0x184D2A50  # ..5F: skippable frames


def zstd_frames(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every non-empty zstd data frame of the file, in order, read from frame and block
    headers alone (3 bytes per block of at most 128 KiB; nothing is decompressed). Raises
    ArchiveError when the file is not a whole sequence of zstd frames (RFC 8878 section 3.1)."""
    bad = BundleDamaged(path, "not a sequence of complete zstd frames")
    frames: list[tuple[int, int]] = []
    try:
        with open_bundle(path, buffering=0) as fh:
            end = fh.seek(0, 2)
            pos = 0
            while pos < end:
                fh.seek(pos)
                head = fh.read(18)  # magic, descriptor and the longest frame header
                if len(head) < 8:
                    raise bad
                magic = int.from_bytes(head[:4], "little")
                if magic & 0xFFFFFFF0 == _SKIPPABLE:
                    pos += 8 + int.from_bytes(head[4:8], "little")
                    continue
                if magic != _ZSTD_MAGIC:
                    raise bad
                fhd = head[4]
                single = fhd >> 5 & 1
                fcs = (0, 2, 4, 8)[fhd >> 6] or single
                at = pos + 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
                empty = True  # only an empty last block: what closing a writer appends
                while True:
                    fh.seek(at)
                    bh = fh.read(3)
                    if len(bh) < 3:
                        raise bad
                    word = int.from_bytes(bh, "little")
                    kind, size = word >> 1 & 3, word >> 3
                    if kind == 3:
                        raise bad
                    at += 3 + (1 if kind == 1 else size)
                    empty = empty and kind == 0 and size == 0
                    if word & 1:
                        break
                at += 4 if fhd >> 2 & 1 else 0
                if at > end:
                    raise bad
                if not empty:  # an empty frame adds nothing to the stream
                    frames.append((pos, at - pos))
                pos = at
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}", fix="check the path") from exc
    return frames


def small_members(path: Path, *, limit: int = 4 << 20) -> dict[str, bytes]:
    """The members of at most `limit` bytes (manifests, configs, index.json, the rendered files),
    read without decompressing the large blobs: a frame that starts with a member of
    FRAME_THRESHOLD or more holds that member alone (how TarZstWriter cuts frames), so only its
    first tar header is decompressed. A bundle with other framing is read in one pass. Raises
    ArchiveError; kept bytes are bounded by budgets.MAX_KEPT_JSON."""
    frames = zstd_frames(path)
    out: dict[str, bytes] = {}
    kept = 0

    def keep(members: Iterator[tuple[tarfile.TarInfo, Reader | None]], framed: bool) -> None:
        nonlocal kept
        for member, reader in members:
            if framed and member.size >= FRAME_THRESHOLD:
                return  # a large blob ends its frame: nothing after it here, and it is not read
            if reader is not None and member.size <= limit:
                kept += member.size
                if kept > budgets.MAX_KEPT_JSON:
                    raise BundleDamaged(path, f"more than {budgets.MAX_KEPT_JSON >> 20} MiB of small members")
                out[member.name] = reader.read()

    if len(frames) < 2:
        keep(iter_members(path), framed=False)
        return out
    with open_bundle(path) as fh:
        for i, frame in enumerate(frames):
            fh.seek(frame[0])
            first = zstandard.ZstdDecompressor(max_window_size=budgets.MAX_WINDOW).stream_reader(
                _Window(fh, frame[1]),  # type: ignore[arg-type]  # read() is all it uses
                read_across_frames=False,
            )
            block = first.read(BLOCK)
            try:
                info = (
                    tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
                    if len(block) == BLOCK
                    else None
                )
            except tarfile.HeaderError:
                info = None
            if info is not None and info.type not in _EXTENDED and info.size >= FRAME_THRESHOLD:
                continue  # a large blob alone in its frame
            keep(iter_members(path, frame=frame, last=i == len(frames) - 1), framed=True)
    return out


class _Window:
    """`length` bytes of a file from its current position, then EOF."""

    def __init__(self, fh: IO[bytes], length: int) -> None:
        self.fh = fh
        self.left = length

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n) if n else b""
        self.left -= len(data)
        return data


def _pax_size(value: str, path: Path) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        raise BundleDamaged(path, f"a pax header with size {value[:40]!r}, not a size in bytes")
    return int(value)


def _pax(data: bytes) -> dict[str, str]:
    out = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError:
            break
        record = data[sp + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += max(length, 1)
    return out


class _Exact:
    """Exact reads from the decompressor; errors become ArchiveError."""

    def __init__(self, src: IO[bytes], path: Path, budget: ReadBudget) -> None:
        self.src = src
        self.path = path
        self.budget = budget

    def read(self, n: int) -> bytes:
        try:
            data = self.src.read(n)
        except (zstandard.ZstdError, OSError) as exc:
            raise BundleDamaged(self.path, f"the archive is damaged or truncated ({exc})") from exc
        self.budget.take(self.path, nbytes=len(data))
        return data

    def read_exact(self, n: int) -> bytes:
        data = self.read_or_eof(n)
        if data is None:
            raise BundleDamaged(self.path, "the archive is damaged or truncated (it ends early)")
        return data

    def read_or_eof(self, n: int) -> bytes | None:
        """Exactly `n` bytes, or None at the end of the stream; ending part way is damage."""
        data = self.read(n)
        if len(data) == n:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            more = self.read(n - got)
            if not more:
                if got == 0:
                    return None
                raise BundleDamaged(self.path, "the archive is damaged or truncated (it ends early)")
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def skip(self, n: int) -> None:
        while n > 0:
            data = self.read(min(n, 1 << 20))
            if not data:
                raise BundleDamaged(self.path, "the archive is damaged or truncated (it ends early)")
            n -= len(data)


class _Member:
    """Reads one member's bytes from the shared stream, never past its end."""

    def __init__(self, stream: _Exact, size: int, path: Path) -> None:
        self.stream = stream
        self.left = size
        self.path = path

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if n is None or n < 0 else min(n, self.left)
        data = self.stream.read(want)
        if not data:
            raise BundleDamaged(self.path, "the archive is damaged or truncated (it ends inside a member)")
        self.left -= len(data)
        return data

    def drain(self) -> None:
        self.stream.skip(self.left)
        self.left = 0
