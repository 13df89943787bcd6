"""`releaser lock`: resolve every image to a digest and write release.lock.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import model as m
from ..bundle.policy import at_lock, refuse
from ..errors import InputError, LockError, ValidationError
from ..lock import Lock, Resolution, load_lock_file, resolve_lock, split_reference, stale_reasons, write_lock
from ..names import LOCK_FILE, RELEASE_FILE
from ..pipeline import release_dir
from ..registry import RegistryOptions
from ..release import load_release
from ..trust import Verdict


@dataclass(frozen=True, kw_only=True)
class LockResult:
    """What `lock` resolved and wrote: each image kept, resolved or changed."""

    release: str
    path: str
    written: bool
    images: tuple[Resolution, ...]
    trust: tuple[Verdict, ...] | None = None  # each image's verdict (None: release.yaml sets no policy)

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "release": self.release,
            "path": self.path,
            "written": self.written,
            "images": [
                {"name": r.name, "action": r.action, "pinned": r.pinned, "previous": r.previous}
                for r in self.images
            ],
            "trust": None if self.trust is None else [v.to_json() for v in self.trust],
        }


def _previous(path: Path) -> Lock | None:
    """The lock on disk: a stale one still records what was pinned; a malformed one is replaced."""
    if not path.exists():
        return None
    try:
        return load_lock_file(path)
    except ValidationError:
        return None


def _no_placeholders(release: m.Release, directory: Path) -> None:
    """References to example.org/.com/.net (RFC 2606 reserves them, so no registry serves them):
    the placeholders `releaser init` writes, still to be replaced."""
    placeholders = [
        f"images.{i.name}: {i.ref}"
        for i in release.images
        if re.search(r"(^|\.)example\.(org|com|net)(:\d+)?$", split_reference(i.ref)[0])
    ]
    if placeholders:
        raise InputError(
            f"{directory / RELEASE_FILE} still names placeholder images (example.org and its kind are "
            "reserved names no registry serves):\n" + "\n".join(f"  - {p}" for p in placeholders),
            fix="replace each with your image's reference (REGISTRY/REPOSITORY:TAG), then run `releaser lock` again",
        )


def lock_release(
    directory: Path,
    *,
    platforms: tuple[str, ...] = (),
    refresh: bool = False,
    check: bool = False,
    registries: RegistryOptions | None = None,
) -> LockResult:
    """Resolve every image to a digest and write release.lock.yaml (or, with check, compare only)."""
    directory = release_dir(directory)
    release, _ = load_release(directory)
    path = directory / LOCK_FILE
    previous = _previous(path)
    _no_placeholders(release, directory)
    factory = (registries or RegistryOptions()).factory()
    lock, report = resolve_lock(release, previous, factory, platforms=platforms, refresh=refresh or check)
    verdicts = at_lock(release, directory, lock, factory)  # the trust policy, before anything is written
    refuse(
        verdicts,
        outcome=f"{path} was not written" if not check else "the lock was not checked further",
        fix="sign each image named with a key the policy names (cosign sign --key KEY IMAGE@DIGEST; "
        "cosign attest --type TYPE for an attestation), or change `trust` in release.yaml (docs/trust.md)",
    )
    trust = verdicts if release.trust is not None else None
    if check:
        moved = [
            f"image {r.name!r}: the lock pins {r.previous}, the registry now serves {r.pinned}"
            for r in report
            if r.action == "changed"
        ]
        if previous is None:
            moved.insert(0, "there is no lock yet")
        else:
            moved += stale_reasons(release, previous)
        if moved:
            raise LockError(
                f"{path} is not current:\n" + "\n".join(f"  - {x}" for x in moved),
                fix=f"run `releaser lock {directory} --refresh`, then `releaser render`",
            )
        return LockResult(
            release=release.name, path=str(path), written=False, images=tuple(report), trust=trust
        )
    write_lock(directory, lock)
    return LockResult(release=release.name, path=str(path), written=True, images=tuple(report), trust=trust)
