"""Split and join: a verified bundle's body copied into parts for removable media, and parts put
back into one file (docs/bundle-format.md#split-bundles).

`write_parts` copies the body's zstd frames byte for byte into the parts; only members that share
the head's frame (a bundle written before the head had a frame of its own, or recompressed by
another tool) are compressed again; the head is signed again with the part list. `join_parts`
checks every part against the signed list while it copies, and leaves nothing behind if one differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from ..errors import VerificationError
from ..format.records import BundleMetadata, PartRecord
from ..fs import atomic_file
from ..readers import Reader
from .archive import TarZstWriter, iter_members
from .parts import PartsWriter, open_bundle, part_path
from .verify import HEAD, Verified, read_head
from .write import signed_head


def write_parts(
    path: Path,
    v: Verified,
    private: EllipticCurvePrivateKey,
    first: Path,
    *,
    size: int,
    level: int,
    mtime: int,
) -> tuple[tuple[PartRecord, ...], int]:
    """The bundle at `path` (verified as `v`) as `first` (its head, signed again with the part list by
    `private`) and the parts after it, each at most `size` bytes; all or nothing. Returns the parts
    listed in the head and how many members were compressed again."""
    body = PartsWriter(first, size)
    try:
        recompressed = _copy_body(path, v, body, level, mtime)
        parts = tuple(
            PartRecord(number=n, name=part_path(first, n).name, size=s, sha256=h)
            for n, _, s, h in body.finish()
        )
        raw = read_head(path)
        head = signed_head(replace(v.metadata, parts=parts), raw[HEAD[2]], private)
        with atomic_file(first) as fh:
            w = TarZstWriter(fh, level=level, mtime=mtime)
            w.add_bytes(HEAD[0], head.metadata)
            w.add_bytes(HEAD[1], head.signature)
            w.add_bytes(HEAD[2], head.checksums)
            w.close(end_of_archive=False)
        body.commit()
    except BaseException:
        body.abort()
        raise
    return parts, recompressed


def _copy_body(path: Path, v: Verified, sink: PartsWriter, level: int, mtime: int) -> int:
    """Everything after the head into `sink`: the zstd frames after the first byte for byte; the
    members of the first frame that are not the head compressed again. Returns how many were."""
    frames = v.frames
    again = 0
    rest = frames[1][0] if len(frames) >= 2 else None
    w = TarZstWriter(sink, level=level, mtime=mtime)
    members = iter_members(path, frame=frames[0], last=False) if rest is not None else iter_members(path)
    for n, (member, reader) in enumerate(members):
        if n < 3 or reader is None:
            continue  # the head: written again, with the parts, into part 1
        w.mtime = int(member.mtime)  # as the bundle wrote it (its SOURCE_DATE_EPOCH)
        w.add_stream(member.name, member.size, _chunks(reader))
        again += 1
    if rest is None:
        w.close()  # every member was compressed again: the end of the archive too
        return again
    if again:
        w.close(end_of_archive=False)
    with open_bundle(path, buffering=0) as fh:
        fh.seek(rest)
        while chunk := fh.read(1 << 20):
            sink.write(chunk)
    return again


def _chunks(reader: Reader) -> Iterator[bytes]:
    while chunk := reader.read(1 << 20):
        yield chunk


def join_parts(first: Path, meta: BundleMetadata, target: Path) -> str:
    """The parts of the split bundle whose verified head `meta` lists, copied into `target` in order,
    each checked against its listed sha256 as it goes (VerificationError, nothing written, when one
    differs). Returns the sha256 of the whole file."""
    whole = hashlib.sha256()
    with atomic_file(target) as fh:
        for number, listed in [(1, None), *((p.number, p) for p in meta.parts)]:
            h = hashlib.sha256()
            with part_path(first, number).open("rb") as src:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    whole.update(chunk)
                    fh.write(chunk)
            if listed is not None and h.hexdigest() != listed.sha256:
                raise VerificationError(
                    first,
                    [
                        f"{part_path(first, number).name}: sha256 {h.hexdigest()}, the signed head lists {listed.sha256}"
                    ],
                    outcome="nothing was written",
                )
    return whole.hexdigest()
