"""Verify a bundle in one streaming pass (its zstd frames side by side), collecting every problem.

Trust chain, in order: the signature over releaser.json (against a public key
the user supplies, never one from the bundle) -> the aggregate checksum of
checksums.txt in releaser.json -> every listed file's sha256 -> no unlisted
file -> safe member names and types -> every blob hashes to its name.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .. import budgets, workers
from ..budgets import MEMBER_OVERHEAD
from ..errors import ArchiveError, BudgetExceeded, InputError, MetadataError, VerificationError
from ..format import CHECKSUMS, METADATA, SIGNATURE
from ..format.records import BundleMetadata, IndexEntry, parse_index
from ..progress import Progress
from ..readers import Reader
from .archive import ReadBudget, iter_members, zstd_frames
from .parts import files_of, first_part, hash_problems, part_problems
from .sign import fingerprint, load_public_key, verify_signature

SMALL = budgets.MAX_JSON_BYTES  # JSON blobs up to this size are kept for the loader (manifests, configs)
_LINE = re.compile(r"^([a-f0-9]{64})  (\S.*)\Z")


@dataclass
class Verified:
    """What a successful verification learned; the loader builds on it."""

    metadata: BundleMetadata
    index: tuple[IndexEntry, ...]
    small_json: dict[str, bytes] = field(default_factory=dict)  # digest -> bytes of small JSON blobs
    files: int = 0
    bytes: int = 0
    signer: str = ""
    frames: list[tuple[int, int]] = field(default_factory=list)  # (offset, length): proven member-aligned


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "'..' in the path"
    if posixpath.normpath(name) != name.rstrip("/") or name.startswith("./"):
        return "non-canonical path"
    if member.issym() or member.islnk():
        return f"a link (to {member.linkname!r})"
    if member.isdev() or member.isfifo():
        return "a device or fifo"
    if not member.isreg():
        return "not a regular file"
    return None


class _Kept:
    """The budget for the small JSON a verification keeps in memory (budgets.MAX_KEPT_JSON),
    shared by the readers of every frame."""

    def __init__(self, tick: Callable[[int], None] | None = None) -> None:
        self.left = budgets.MAX_KEPT_JSON
        self.refused = False
        self.tick = tick  # bytes hashed, for progress (from every frame's reader)
        self._lock = threading.Lock()

    def keep(self, n: int) -> bool:
        with self._lock:
            if n > self.left:
                self.refused = True
                return False
            self.left -= n
            return True


def _hash(
    reader: Reader, first: bytes = b"", *, index: bool = False, tick: Callable[[int], None] | None = None
) -> tuple[str, int, bytes | None]:
    """sha256 hex, size, and the content when it is small JSON (manifests, configs, and
    index.json whatever it holds), of `first` (bytes the caller already read) and the rest of
    `reader`."""
    h = hashlib.sha256()
    size = 0
    head = bytearray()
    keep = True
    chunk = first
    while chunk or (chunk := reader.read(1 << 20)):
        h.update(chunk)
        size += len(chunk)
        if tick is not None:
            tick(len(chunk))
        if keep:
            if size <= SMALL and (head or index or chunk[:1] == b"{"):
                head += chunk
            else:
                keep = False
                head = bytearray()
        chunk = b""
    return h.hexdigest(), size, bytes(head) if keep and head else None


@dataclass
class _Entry:
    """One member as the checks need it: hashed once, by whichever reader got to it."""

    member: tarfile.TarInfo
    digest: str = ""  # sha256 hex of a regular file
    size: int = 0
    content: bytes | None = None  # the bytes of small JSON (manifests, configs, index.json)
    raw: bytes = b""  # releaser.json, its signature, checksums.txt: the first SMALL + 1 bytes


HEAD = (METADATA, SIGNATURE, CHECKSUMS)


def _entry(member: tarfile.TarInfo, reader: Reader | None, kept: _Kept) -> _Entry:
    if reader is None or unsafe_reason(member):
        return _Entry(member)
    raw = reader.read(SMALL + 1) if member.name in HEAD else b""
    tick = None if member.name in HEAD else kept.tick  # progress counts what checksums.txt lists
    digest, size, content = _hash(reader, raw, index=member.name == "index.json", tick=tick)
    if content is not None and not kept.keep(len(content)):
        content = None
    return _Entry(member, digest, size, content, raw)


def _frame_entries(
    path: Path, budget: ReadBudget, kept: _Kept
) -> tuple[list[_Entry], list[tuple[int, int]]] | None:
    """Every member with its hash, the zstd frames of a bundle written by `releaser bundle` read
    and hashed side by side; archive.iter_members proves each frame starts and ends at a member
    boundary with the end-of-archive marker in the last one, so the result is exactly that of one
    sequential pass. None for any other archive (a bundle recompressed by another tool, or a
    damaged one): the sequential pass then reads it and says where it is damaged."""
    try:
        frames = zstd_frames(path)
    except ArchiveError:
        return None
    if len(frames) < 2:
        return None

    def read(i: int) -> list[_Entry]:
        members = iter_members(path, frame=frames[i], last=i == len(frames) - 1, budget=budget)
        return [_entry(m, r, kept) for m, r in members]

    with workers.pool(min(len(frames), os.cpu_count() or 1)) as pool:
        try:
            parts = list(pool.map(read, range(len(frames))))
        except ArchiveError:
            return None
    return [e for part in parts for e in part], frames


def _sequential_entries(path: Path, budget: ReadBudget, kept: _Kept) -> Iterator[_Entry]:
    for member, reader in iter_members(path, budget=budget):
        yield _entry(member, reader, kept)


_UNVERIFIED = (
    "the rest of the bundle was not read: nothing in it can be trusted while releaser.json, "
    "its signature and checksums.txt do not verify"
)


def _budget(path: Path, key: EllipticCurvePublicKey) -> tuple[Callable[[], ReadBudget], bool]:
    """What a full pass may read (a fresh budget per pass): what the verified head declares
    (members, bytes), or only the head itself when it does not verify; and whether it verified.
    When the head cannot be read at all, the pass says where the archive is damaged."""
    try:
        head = read_head(path)
    except ArchiveError:
        return ReadBudget, False
    problems: list[str] = []
    meta, _ = _check_head(head, key, problems) if len(head) == 3 else (None, {})
    size = sum(len(v) for v in head.values())
    if meta is None or problems:
        return lambda: ReadBudget(members=3, bytes=size + 4 * MEMBER_OVERHEAD, exceeded=_UNVERIFIED), False
    files, nbytes = meta.checksums.files, meta.checksums.bytes
    return lambda: ReadBudget.declared(files, nbytes, size), True


def _readable(path: Path) -> None:
    """A bundle that is not there is a wrong path, not a damaged bundle: say only that."""
    path = files_of(path)[0]
    if not path.is_file():
        raise InputError(
            f"{path}: {'is a directory' if path.is_dir() else 'no such file'}",
            fix="pass the bundle file (bundles/<name>-<version>.tar.zst, as `releaser bundle` writes it)",
        )


def verify_bundle(  # noqa: C901 - the trust chain reads best as one pass
    path: Path, public_key: Path, *, outcome: str = "nothing was pushed", progress: Progress | None = None
) -> Verified:
    """Verify everything; raise VerificationError listing every problem. `progress` counts the
    bytes hashed against what the signed head declares."""
    _readable(path)
    key = load_public_key(public_key)
    problems: list[str] = []
    head: dict[str, bytes] = {}
    listed: dict[str, str] = {}
    seen: set[str] = set()
    meta: BundleMetadata | None = None
    index: tuple[IndexEntry, ...] | None = None
    small: dict[str, bytes] = {}
    total = 0
    position = 0
    truncated = False
    budget, verified = _budget(path, key)
    kept = _Kept()
    declared = verify_head(path, public_key) if verified else None
    first = first_part(path)
    if declared is not None:
        _check_parts(path, first, declared, outcome)
    if progress is not None and declared is not None:
        progress.set_totals({path.name: declared.checksums.bytes})
        kept.tick = lambda n: progress(path.name, n)
    framed = _frame_entries(path, budget(), kept) if verified else None
    entries, frames = framed if framed else (_sequential_entries(path, budget(), kept), [])
    try:
        for e in entries:
            member = e.member
            position += 1
            reason = unsafe_reason(member)
            if reason:
                problems.append(f"unsafe member {member.name!r}: {reason}")
                continue
            if member.name in seen:
                problems.append(f"{member.name}: appears twice")
                continue
            seen.add(member.name)
            if position <= 3:
                want = HEAD[position - 1]
                if member.name != want:
                    problems.append(f"member {position} is {member.name!r}; a bundle starts with {want}")
                    if member.name not in HEAD:
                        continue
                head[member.name] = e.raw
                if len(e.raw) > SMALL:
                    problems.append(f"{member.name} is larger than {SMALL} bytes")
                if position == 3:
                    meta, listed = _check_head(head, key, problems)
                continue
            digest, size, content = e.digest, e.size, e.content
            total += size
            want_hex = listed.get(member.name)
            if want_hex is None:
                problems.append(f"{member.name}: not listed in checksums.txt (unlisted file)")
            elif want_hex != digest:
                problems.append(f"{member.name}: sha256 {digest} does not match checksums.txt ({want_hex})")
            if member.name.startswith("blobs/sha256/"):
                name_hex = member.name.rsplit("/", 1)[1]
                if name_hex != digest:
                    problems.append(f"{member.name}: blob content hashes to sha256:{digest}, not its name")
                elif content is not None:
                    small["sha256:" + digest] = content
            if member.name == "index.json":
                index = _parse_index(content, problems)
    except ArchiveError as exc:
        problems.append(exc.message)
        truncated = True
    if position < 3:
        problems.append("the archive ends before releaser.json, its signature and checksums.txt")
    unseen = [name for name in listed if name not in seen]
    if truncated and unseen:
        problems.append(f"{len(unseen)} listed file(s) after the damage could not be checked")
    else:
        problems += [f"{name}: listed in checksums.txt but missing from the bundle" for name in unseen]
    if index:
        relied = (
            {r.digest for r in meta.delta.relies} if meta is not None and meta.delta is not None else set()
        )
        problems += _check_references(index, small, listed, relied)
    if index is None and not problems:
        problems.append("index.json: missing (a bundle's images are an OCI image layout)")
    if kept.refused:
        problems.append(
            f"manifests and configs together exceed {budgets.MAX_KEPT_JSON >> 20} MiB (no real bundle comes near)"
        )
    damaged = hash_problems(first, declared.parts) if problems and first and declared else []
    if problems:  # a split bundle's damage is named by part (which part holds it)
        raise VerificationError(path, problems + damaged, outcome=outcome, fix=PART_FIX if damaged else None)
    # checked above: three head members (meta parsed) and index.json, else a problem was listed
    assert meta is not None and index is not None
    return Verified(
        metadata=meta,
        index=index,
        small_json=small,
        files=len(seen),
        bytes=total,
        signer=fingerprint(public_key.read_bytes()),
        frames=frames,
    )


def _check_parts(path: Path, first: Path | None, meta: BundleMetadata, outcome: str) -> None:
    """A split bundle's parts against what its signed head lists, before any of them is read:
    each missing, truncated or extra part is named. (A single file whose head lists parts was
    joined from them, and is read as it is.)"""
    if first is None:
        return
    problems = (
        part_problems(first, meta.parts)
        if meta.parts
        else [f"{first.name}: these are parts, but the signed head lists none (parts of another bundle?)"]
    )
    if problems:
        raise VerificationError(path, problems, outcome=outcome, fix=PART_FIX)


PART_FIX = (
    "copy the parts named above again from the media (`releaser airgap inspect PART.001` lists every "
    "part's size and sha256; `sha256sum PART.00N` checks one)"
)


def read_head(path: Path) -> dict[str, bytes]:
    """The first three members (releaser.json, its signature, checksums.txt), as far as they are
    there, without reading further. Raises ArchiveError when the archive cannot be read that far."""
    _readable(path)
    head: dict[str, bytes] = {}
    for member, reader in iter_members(path):
        if reader is None or member.name not in (METADATA, SIGNATURE, CHECKSUMS) or member.name in head:
            break
        head[member.name] = reader.read(SMALL + 1)
        if len(head) == 3:
            break
    return head


def verify_head(path: Path, public_key: Path) -> BundleMetadata | None:
    """Signature and aggregate checksum only (the first three members): the signed metadata,
    or None when anything is wrong (the caller then runs the full verification to say what)."""
    _readable(path)
    key = load_public_key(public_key)
    try:
        head = read_head(path)
    except ArchiveError:
        return None
    problems: list[str] = []
    meta, _ = _check_head(head, key, problems)
    return None if problems or len(head) < 3 else meta


def inspect_head(path: Path, public_key: Path | None) -> tuple[BundleMetadata, bool]:
    """The metadata of a bundle from its first three members only (milliseconds, whatever its
    size), and whether the signature and aggregate checksum were checked (only with a key).
    Raises ArchiveError for an unreadable archive, VerificationError when the head is not a
    bundle's or, with a key, does not verify."""
    key = load_public_key(public_key) if public_key is not None else None
    head = read_head(path)
    missing = [n for n in (METADATA, SIGNATURE, CHECKSUMS) if n not in head]
    if missing:
        raise VerificationError(
            path,
            [
                f"not a releaser bundle: it does not start with {', '.join(missing)} "
                f"(a bundle starts with {METADATA}, {SIGNATURE}, {CHECKSUMS})"
            ],
            outcome="nothing to inspect",
        )
    problems: list[str] = []
    meta = None
    if key is not None:
        meta, _ = _check_head(head, key, problems)
    else:
        meta = _parse_metadata(head[METADATA], problems)
    if problems or meta is None:
        raise VerificationError(path, problems, outcome="the metadata cannot be trusted")
    return meta, key is not None


def _parse_index(content: bytes | None, problems: list[str]) -> tuple[IndexEntry, ...] | None:
    """index.json as typed entries (None when it is not there), or None with the reason added to `problems`."""
    if content is None:
        problems.append(f"index.json: larger than the {SMALL} bytes a layout's index may have")
        return None
    try:
        return parse_index(budgets.loads(content))
    except BudgetExceeded as exc:
        problems.append(f"index.json: {exc}")
    except ValueError:
        problems.append("index.json: not JSON")
    except MetadataError as exc:
        problems.append(exc.message)
    return None


def _parse_metadata(raw: bytes, problems: list[str]) -> BundleMetadata | None:
    """releaser.json as a typed record, or None with the reason added to `problems`."""
    try:
        doc = budgets.loads(raw)
    except BudgetExceeded as exc:
        problems.append(f"{METADATA}: {exc}")
        return None
    except ValueError:
        problems.append(f"{METADATA}: not JSON")
        return None
    try:
        return BundleMetadata.parse(doc)
    except MetadataError as exc:
        problems.append(f"{METADATA}: not releaser metadata: {exc.message}; see docs/bundle-format.md")
        return None


def _check_head(
    head: dict[str, bytes], key: EllipticCurvePublicKey, problems: list[str]
) -> tuple[BundleMetadata | None, dict[str, str]]:
    meta_bytes, sig, checksums = head.get(METADATA, b""), head.get(SIGNATURE, b""), head.get(CHECKSUMS, b"")
    unreadable: list[str] = []
    meta = _parse_metadata(meta_bytes, unreadable)
    if not verify_signature(key, meta_bytes, sig):
        given = fingerprint(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        claimed = (
            f"; the bundle says it was signed by {meta.signer}" if meta is not None and meta.signer else ""
        )
        problems.append(
            "releaser.json: the signature does not verify with the given public key "
            f"(wrong key, or releaser.json / its signature was altered): the given key is {given}{claimed}"
        )
    problems += unreadable
    want = meta.checksums.sha256 if meta is not None else None
    got = hashlib.sha256(checksums).hexdigest()
    if want != got:
        problems.append(
            f"checksums.txt: sha256 {got} does not match the aggregate checksum in releaser.json ({want})"
        )
    listed: dict[str, str] = {}
    for n, line in enumerate(checksums.decode("utf-8", "replace").splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            problems.append(f"checksums.txt:{n}: not `<sha256>  <path>`")
            continue
        listed[m.group(2)] = m.group(1)
    return meta, listed


def _check_references(
    index: tuple[IndexEntry, ...], small: dict[str, bytes], listed: dict[str, str], relied: set[str]
) -> list[str]:
    """Every manifest the layout names, and everything they name, is in the bundle (or, in a
    delta, is a layer its signed head says the target already holds)."""
    out: list[str] = []
    present = {"sha256:" + p.rsplit("/", 1)[1] for p in listed if p.startswith("blobs/sha256/")}
    stack = [(d.digest, "index.json", False) for d in index]  # (digest, named by, may be relied on)
    visited: set[str] = set()
    while stack:
        digest, parent, layer = stack.pop()
        if digest in visited:
            continue
        visited.add(digest)
        if digest not in present:
            if not (layer and digest in relied):  # a delta leaves out layers only, never a manifest or config
                out.append(f"{parent} references {digest}, which is not in the bundle")
            continue
        content = small.get(digest)
        if content is None:
            continue  # a layer or config: present is enough
        try:
            doc = budgets.loads(content)
        except ValueError:
            continue
        if not is_manifest(doc):
            continue  # an image config
        image = "manifests" not in doc  # an image manifest: [config, *layers]; only layers may be relied on
        for n, ref in enumerate(references(doc)):
            if ref is None:
                out.append(f"{digest}: a descriptor without a digest")
            else:
                stack.append((ref, digest, image and n > 0))
    return out


def is_manifest(doc: object) -> bool:
    """An OCI/Docker manifest or index (as opposed to an image config, which is JSON too)."""
    return (
        isinstance(doc, dict)
        and doc.get("schemaVersion") == 2
        and (
            isinstance(doc.get("manifests"), list)
            or (isinstance(doc.get("config"), dict) and isinstance(doc.get("layers"), list))
        )
    )


def references(doc: dict[str, Any]) -> list[str | None]:
    """Digests a manifest or index points at (None for a malformed descriptor)."""
    descs = doc.get("manifests") if "manifests" in doc else [doc.get("config"), *doc.get("layers", [])]
    return [
        d.get("digest") if isinstance(d, dict) and isinstance(d.get("digest"), str) else None
        for d in descs or []
    ]
