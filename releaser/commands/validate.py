"""`releaser validate`: schema and semantic checks of release.yaml, and the lock's freshness."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import LockError, Problem
from ..lock import Lock, read_lock
from ..model import Release
from ..names import LOCK_FILE
from ..pipeline import release_dir
from ..probe import image as probe_image
from ..release import load_release


@dataclass(frozen=True, kw_only=True)
class ValidateResult:
    """What `validate` checked: the release, its services and images, the lock's state, the warnings."""

    release: str
    version: str
    services: tuple[str, ...]
    images: tuple[str, ...]
    lock: str  # current | missing
    warnings: tuple[Problem, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "release": self.release,
            "version": self.version,
            "services": list(self.services),
            "images": list(self.images),
            "lock": self.lock,
            "warnings": [w.to_json() for w in self.warnings],
        }


def _probe_pin(release: Release, lock: Lock, lock_file: str) -> list[Problem]:
    """The probe the lock pins is this releaser's, or the user is told: an image that is not a
    probe (no /probe) fails every Compose check and `helm test`; an older one may lack a check."""
    if release.probe is None:
        return []
    pinned = lock.image(release.probe).digest
    ours = probe_image().digest
    if pinned == ours:
        return []
    return [
        Problem(
            file=lock_file,
            line=None,
            path=f"$.images.{release.probe}",
            message=f"the probe image pinned ({pinned}) is not this releaser's probe ({ours}): an image "
            "without /probe fails every http/tcp check in Compose and `helm test`",
            severity="warning",
            fix=f"publish this one where images.{release.probe}.ref points (`releaser probe push REF`), "
            "then `releaser lock --refresh`; or keep the older probe on purpose",
        )
    ]


def validate_release(directory: Path) -> ValidateResult:
    """Schema + semantic checks of release.yaml, and the lock's freshness when one exists."""
    directory = release_dir(directory)
    release, warnings = load_release(directory)
    lock_file = str(directory / LOCK_FILE)
    lock_state = "missing"
    if (directory / LOCK_FILE).exists() or (directory / LOCK_FILE).is_symlink():  # a broken link: said so
        try:
            lock = read_lock(directory, release)
            lock_state = "current"
            warnings = [*warnings, *_probe_pin(release, lock, lock_file)]
        except LockError as exc:  # release.yaml is valid; the lock is stale: exit 3, as render
            exc.warnings = list(warnings)
            raise
    else:
        missing = Problem(
            file=lock_file,
            line=None,
            path="$",
            message="no lock yet: render needs one",
            severity="warning",
            fix=f"run `releaser lock {directory}`",
        )
        warnings = [*warnings, missing]
    return ValidateResult(
        release=release.name,
        version=release.version,
        services=tuple(s.name for s in release.services),
        images=tuple(i.name for i in release.images),
        lock=lock_state,
        warnings=tuple(warnings),
    )
