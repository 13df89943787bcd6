"""Merge: the full bundle a delta was cut from, byte for byte, from the delta and its base.

A delta carries the full bundle's signed head (full/releaser.json, its signature, full/checksums.txt)
and every member of the full bundle except the layers (and installer files) its base holds. The
merge verifies both bundles with the publisher's public key, takes each member the delta lacks
from OLD, checks every member against the full checksums.txt as it writes it, and writes the
members in the full bundle's order with the writer's framing: the result is the file a full
`releaser bundle` run would have written (same level, same SOURCE_DATE_EPOCH), and verifies as one.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .. import budgets
from ..errors import ArchiveError, InputError, VerificationError
from ..format import CHECKSUMS, METADATA, SIGNATURE, bundle_path
from ..format.records import BundleMetadata
from ..fs import atomic_file
from ..readers import Reader
from .archive import TarZstWriter, iter_members
from .delta import FULL_HEAD, FULL_PREFIX
from .parts import check_space
from .sign import load_public_key, verify_signature
from .verify import verify_bundle

CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Merged:
    """The full bundle written: where, its digest and size, whose, and where its members came from."""

    path: Path
    sha256: str
    size: int
    metadata: BundleMetadata
    from_delta: int  # members copied from the delta
    from_base: int  # members taken from OLD


def merge(old: Path, delta: Path, *, key: Path, out: Path | None = None) -> Merged:
    """Rebuild the full bundle of `delta` with the members it left out taken from `old` (both
    verified with `key`), at `out` (default bundles/<name>-<version>.tar.zst); all or nothing."""
    d = verify_bundle(delta, key, outcome="nothing was written")
    if d.metadata.delta is None:
        raise InputError(
            f"{delta}: not a delta bundle (its head names no base)", fix="pass OLD first, then the delta"
        )
    o = verify_bundle(old, key, outcome="nothing was written")
    base = d.metadata.delta.base
    if base.kind == "bundle" and base.digest != _head_digest(old):
        raise InputError(
            f"{old} is {o.metadata.name} {o.metadata.version}, not the base this delta was made against "
            f"({base.describe()})",
            fix=f"pass the {base.name} {base.version} bundle the delta names as OLD",
        )
    head = _full_head(delta, key)
    full = BundleMetadata.parse(budgets.loads(head[METADATA]))
    order = [(line[66:], line[:64]) for line in head[CHECKSUMS].decode().splitlines()]
    target = out or bundle_path(full.name, full.version)
    target.parent.mkdir(parents=True, exist_ok=True)
    check_space(target.parent, full.checksums.bytes + (1 << 20), f"the bundle {target.name}")
    carried = {m.name for m, r in iter_members(delta) if r is not None}
    # a member the delta carries in its own version (load.sh) has the full bundle's under full/
    replaced = {p.removeprefix(FULL_PREFIX) for p in carried if p.startswith(FULL_PREFIX)} - set(FULL_HEAD)
    wanted = {path: sha for path, sha in order if path not in carried}
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.merge-") as tmp:
        taken = _take(old, wanted, Path(tmp))
        sums = dict(order)
        own = _take(delta, {FULL_PREFIX + p: sums[p] for p in replaced if p in sums}, Path(tmp))
        taken.update({p.removeprefix(FULL_PREFIX): f for p, f in own.items()})
        lacking = sorted(set(wanted) - set(taken))
        if lacking:
            raise InputError(
                f"{old} lacks {len(lacking)} member(s) the delta left out: "
                + ", ".join(lacking[:5])
                + (" ..." if len(lacking) > 5 else ""),
                fix=f"pass the bundle of its base ({base.describe()}) as OLD",
            )
        size, digest = _write(
            target, head, order, delta, taken, level=d.metadata.delta.level, mtime=full.created
        )
    return Merged(
        path=target,
        sha256=digest,
        size=size,
        metadata=full,
        from_delta=len(order) - len(wanted),
        from_base=len(wanted),
    )


def _head_digest(path: Path) -> str:
    for member, reader in iter_members(path):
        if reader is not None and member.name == METADATA:
            return "sha256:" + hashlib.sha256(reader.read()).hexdigest()
        break
    return ""


def _full_head(delta: Path, key: Path) -> dict[str, bytes]:
    """The full bundle's head the delta carries, its signature and aggregate checksum checked."""
    names = {v: k for k, v in FULL_HEAD.items()}
    head: dict[str, bytes] = {}
    for member, reader in iter_members(delta):
        if reader is not None and member.name in names:
            head[names[member.name]] = reader.read(1 << 24)
    problems = []
    if set(head) != set(FULL_HEAD):
        problems.append("the full bundle's head (full/...) is not all there")
    elif not verify_signature(load_public_key(key), head[METADATA], head[SIGNATURE]):
        problems.append("full/releaser.json: the signature does not verify with the given public key")
    else:
        meta = BundleMetadata.parse(budgets.loads(head[METADATA]))
        if hashlib.sha256(head[CHECKSUMS]).hexdigest() != meta.checksums.sha256:
            problems.append("full/checksums.txt does not match the aggregate checksum in full/releaser.json")
    if problems:
        raise VerificationError(delta, problems, outcome="nothing was written")
    return head


def _take(old: Path, wanted: dict[str, str], into: Path) -> dict[str, Path]:
    """Copy the members of `old` the delta lacks into `into`, each hashed against the full checksums."""
    out: dict[str, Path] = {}
    for member, reader in iter_members(old):
        if reader is None or member.name not in wanted or member.name in out:
            continue
        dest = into / hashlib.sha256(member.name.encode()).hexdigest()
        h = hashlib.sha256()
        with dest.open("wb") as fh:
            while chunk := reader.read(CHUNK):
                h.update(chunk)
                fh.write(chunk)
        if h.hexdigest() == wanted[member.name]:
            out[member.name] = dest
    return out


def _write(
    target: Path,
    head: dict[str, bytes],
    order: list[tuple[str, str]],
    delta: Path,
    taken: dict[str, Path],
    *,
    level: int,
    mtime: int,
) -> tuple[int, str]:
    """Write the full archive as `releaser bundle` does: the head in a frame of its own, then
    every member in checksums.txt order (a frame ends after each member of 1 MiB or more)."""
    members = iter_members(delta)
    with atomic_file(target) as raw:
        h = hashlib.sha256()
        counted = _Counting(raw, h)
        w = TarZstWriter(counted, level=level, threads=-1, mtime=mtime)
        for name in (METADATA, SIGNATURE, CHECKSUMS):
            w.add_bytes(name, head[name])
        w.end_frame()
        for path, sha in order:
            if path in taken:
                size = taken[path].stat().st_size
                w.add_stream(path, size, _checked(path, sha, _file_chunks(taken[path])))
                continue
            for member, reader in members:  # the delta holds the rest in the same order
                if reader is not None and member.name == path:
                    w.add_stream(path, member.size, _checked(path, sha, _reader_chunks(reader)))
                    break
            else:
                raise ArchiveError(f"{delta}: {path} is not where the full bundle's order puts it")
        w.close()
    return counted.size, h.hexdigest()


def _checked(path: str, sha: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
        yield c
    if h.hexdigest() != sha:
        raise ArchiveError(
            f"{path}: does not hash to the full bundle's checksums.txt", fix="get both bundles again"
        )


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _reader_chunks(reader: Reader) -> Iterator[bytes]:
    while chunk := reader.read(CHUNK):
        yield chunk


class _Counting:
    """The archive file, hashed and counted as it is written."""

    def __init__(self, raw: IO[bytes], h: hashlib._Hash) -> None:
        self.raw, self.h, self.size = raw, h, 0

    def write(self, data: bytes, /) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()
