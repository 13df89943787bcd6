"""Writing files so that a reader never sees half of one: the one atomic-write helper.

Every output (rendered trees, lock, keys, values files, state, backups) is written to a
unique temp name in the destination's directory, flushed to disk, renamed over the
destination, and the directory entry is flushed too; an interruption leaves the previous
file (or none), never a torn one, and no temp file behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot open or sync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: Path, *, mode: int | None = None, durable: bool = True) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces `path` when the block ends without an error.

    `mode` sets the permissions (default: 0666 less the umask, as open() would); the file has
    them before its content is written, so a secret is never readable by others even briefly.
    `durable=False` skips the fsyncs, for files whose content is checked when read (the blob
    cache: a torn entry fails its digest and is removed).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write(path: Path, content: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `content` atomically (see atomic_file)."""
    with atomic_file(path, mode=mode) as fh:
        fh.write(content)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative POSIX path; {} when `root` is not a directory."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def replace_tree(target: Path, files: dict[str, bytes]) -> None:
    """Make `target` a directory holding exactly `files`: written to a temp directory beside it,
    then swapped in with two renames (the old tree is removed afterwards)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; the output is an ordinary directory
    try:
        for rel, content in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:  # put the previous tree back
                os.replace(old / target.name, target)
                old.rmdir()
            raise
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def held(path: Path) -> Iterator[bool]:
    """An exclusive lock on `path` (created if need be) for as long as the block runs, if no
    other process holds it: True when this one holds it, False when another does (never waits).
    The lock goes with the process, however it ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock
