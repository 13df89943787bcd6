"""`releaser bundle split` / `join`: an existing bundle cut into parts for removable media, and
parts put back into one file (docs/bundle-format.md#split-bundles).

Split verifies the bundle first (against the signing key's own public key: only its signer can
list the parts in its head), then copies the body's zstd frames byte for byte into the parts;
only members that share the head's frame (a bundle written before the head had a frame of its
own, or recompressed by another tool) are compressed again. Join checks every part against the
signed list while it copies, and writes nothing if one differs.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..bundle.archive import TarZstWriter, iter_members
from ..bundle.parts import (
    PartsWriter,
    bundle_size,
    check_space,
    first_part,
    open_bundle,
    part_path,
    part_problems,
)
from ..bundle.sign import load_private_key, passphrase, public_pem
from ..bundle.verify import HEAD, Verified, read_head, verify_bundle, verify_head
from ..bundle.write import signed_head
from ..errors import UsageError, VerificationError
from ..format.records import PartRecord
from ..fs import atomic_file
from ..pipeline import source_date_epoch
from ..readers import Reader


@dataclass(frozen=True, kw_only=True)
class SplitResult:
    """What `bundle split` wrote: the parts and their digests."""

    source: str
    first: str  # NAME.tar.zst.001: the signed head
    parts: tuple[PartRecord, ...]
    size: int  # all parts together
    recompressed: int  # members compressed again (they shared the head's zstd frame)

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "source": self.source,
            "first": self.first,
            "parts": [p.to_json() for p in self.parts],
            "size": self.size,
            "recompressed": self.recompressed,
        }


def split_bundle(
    path: Path,
    *,
    size: int,
    key: Path,
    out: Path | None = None,
    passphrase_file: Path | None = None,
    level: int = 3,
) -> SplitResult:
    """Cut a bundle into OUT.001 (its head, signed again with the part list), OUT.002, ...
    (default OUT: the bundle's own name)."""
    private = load_private_key(key, passphrase(passphrase_file))
    source_first = first_part(path)
    base = out or (source_first.with_suffix("") if source_first is not None else path)
    if source_first is not None and part_path(base, 1) == source_first:
        raise UsageError(
            f"{path} is already split under this name; splitting it again would overwrite what is read",
            fix="give the new parts another name: --out-file OTHER.tar.zst",
        )
    with tempfile.TemporaryDirectory() as tmp:
        pub = Path(tmp) / "signer.pub"
        pub.write_bytes(public_pem(private))
        v = verify_bundle(path, pub, outcome="nothing was written")  # only its signer may re-sign it
    check_space(base.parent, bundle_size(path) + (1 << 20), f"the parts of {path.name}")
    first = part_path(base, 1)
    body = PartsWriter(first, size)
    try:
        recompressed = _copy_body(path, v, body, level)
        parts = tuple(
            PartRecord(number=n, name=part_path(first, n).name, size=s, sha256=h)
            for n, _, s, h in body.finish()
        )
        raw = read_head(path)
        head = signed_head(replace(v.metadata, parts=parts), raw[HEAD[2]], private)
        with atomic_file(first) as fh:
            w = TarZstWriter(fh, level=level, mtime=source_date_epoch())
            w.add_bytes(HEAD[0], head.metadata)
            w.add_bytes(HEAD[1], head.signature)
            w.add_bytes(HEAD[2], head.checksums)
            w.close(end_of_archive=False)
        body.commit()
    except BaseException:
        body.abort()
        raise
    return SplitResult(
        source=str(path),
        first=str(first),
        parts=parts,
        size=first.stat().st_size + sum(p.size for p in parts),
        recompressed=recompressed,
    )


def _copy_body(path: Path, v: Verified, sink: PartsWriter, level: int) -> int:
    """Everything after the head into `sink`: the zstd frames after the first byte for byte; the
    members of the first frame that are not the head compressed again. Returns how many were."""
    frames = v.frames
    again = 0
    rest = frames[1][0] if len(frames) >= 2 else None
    w = TarZstWriter(sink, level=level, mtime=source_date_epoch())
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


@dataclass(frozen=True, kw_only=True)
class JoinResult:
    """What `bundle join` wrote: the one file put back from the parts."""

    path: str
    size: int
    sha256: str
    parts: int  # files joined, the head's included

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "parts": self.parts}


def join_bundle(path: Path, *, key: Path, out: Path | None = None) -> JoinResult:
    """The parts of a split bundle as one file (default: its name without .001), each part
    checked against the signed list as it is copied; nothing is written if one differs."""
    first = first_part(path)
    if first is None:
        raise UsageError(
            f"{path} is not a split bundle (NAME.tar.zst.001, .002, ...)", fix="pass its first part"
        )
    meta = verify_head(first, key)
    if meta is None:
        verify_bundle(first, key, outcome="nothing was written")  # says what is wrong with the head
        raise VerificationError(first, ["the signed head does not verify"], outcome="nothing was written")
    problems = part_problems(first, meta.parts)
    if problems or not meta.parts:
        raise VerificationError(
            first, problems or ["the signed head lists no parts"], outcome="nothing was written"
        )
    target = out or first.with_suffix("")
    total = first.stat().st_size + sum(p.size for p in meta.parts)
    check_space(target.parent, total, f"the joined {target.name}")
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
    return JoinResult(path=str(target), size=total, sha256=whole.hexdigest(), parts=len(meta.parts) + 1)
