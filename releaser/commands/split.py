"""`releaser bundle split` / `join`: an existing bundle cut into parts for removable media, and
parts put back into one file (docs/bundle-format.md#split-bundles).

Split verifies the bundle first (against the signing key's own public key: only its signer can
list the parts in its head), then has releaser/bundle/split.py copy it into the parts; join
verifies the head and has it put the parts back, each checked against the signed list.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..bundle.parts import bundle_size, check_space, first_part, part_path, part_problems
from ..bundle.sign import load_private_key, passphrase, public_pem
from ..bundle.split import join_parts, write_parts
from ..bundle.verify import verify_bundle, verify_head
from ..errors import UsageError, VerificationError
from ..format.records import PartRecord
from ..pipeline import source_date_epoch


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
    parts, recompressed = write_parts(
        path, v, private, first, size=size, level=level, mtime=source_date_epoch()
    )
    return SplitResult(
        source=str(path),
        first=str(first),
        parts=parts,
        size=first.stat().st_size + sum(p.size for p in parts),
        recompressed=recompressed,
    )


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
    digest = join_parts(first, meta, target)
    return JoinResult(path=str(target), size=total, sha256=digest, parts=len(meta.parts) + 1)
