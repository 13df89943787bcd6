"""The release pipeline as the commands use it: release.yaml + lock -> Plan -> files.

These few functions are the stages every command shares (validate, render, check, bundle,
quickstart, doctor); each stage itself lives in its own module (values, lock, plan, render).
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from .errors import Problem, UsageError
from .lock import Lock, read_lock
from .model import Release
from .names import RELEASE_FILE
from .plan import Plan, build_plan
from .release import load_release
from .render.compose import render_compose
from .render.helm import render_helm
from .render.quadlet import render_quadlet


def release_dir(directory: Path) -> Path:
    """The directory of a release: DIR itself, or the directory of a DIR/release.yaml path."""
    if directory.is_file() and directory.name == RELEASE_FILE:
        return directory.parent
    return directory


def load_plan(directory: Path) -> tuple[Plan, list[Problem]]:
    """release.yaml + lock -> Plan and the warnings; raises ValidationError / LockError."""
    plan, _, warnings = load_plan_and_lock(directory)
    return plan, warnings


def load_plan_and_lock(directory: Path) -> tuple[Plan, Lock, list[Problem]]:
    """release.yaml + lock -> Plan, the lock it was built from, and the warnings."""
    directory = release_dir(directory)
    release, warnings = load_release(directory)
    lock = read_lock(directory, release)
    return build_plan(release, lock), lock, warnings


def release_files(release: Release, directory: Path) -> dict[str, bytes]:
    """The config files release.yaml names, as a bundle carries them beside it (release/<path>);
    each is inside the release directory (releaser/release/build.py refuses any other)."""
    return {
        f"release/{posixpath.normpath(c.file)}": (directory / c.file).read_bytes()
        for svc in release.services
        for c in svc.configs
        if c.file is not None
    }


def render_files(plan: Plan) -> dict[str, dict[str, bytes]]:
    """Both outputs in memory: {'compose/<name>': files, 'charts/<name>': files}."""
    return {
        f"compose/{plan.name}": render_compose(plan),
        f"charts/{plan.name}": render_helm(plan),
        f"quadlet/{plan.name}": render_quadlet(plan),
    }


def source_date_epoch() -> int:
    """The timestamp written into archives: $SOURCE_DATE_EPOCH, else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not value.isdigit():
        raise UsageError(
            f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
            fix="unset it, or set it to e.g. $(git log -1 --format=%ct)",
        )
    return int(value)
