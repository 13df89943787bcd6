"""The quickstart's revisions: what ran before an upgrade, so a failed upgrade (or a rollback on
purpose) can put it back exactly (docs/quickstart.md#upgrades).

A revision is a copy of the stack's own files (the compose files, configs, TCP-AO configs, the
airgap override, quickstart.json) in STACK/.revisions/<N>/files/, and revision.json saying
which release it is, where it came from, when it was recorded and how it ended. Secrets
(.secrets/), the user's .env, the stack's registry and the volumes are never copied: they are kept across revisions
(an upgrade that fails leaves the volumes as the new release's jobs left them; the backup
taken before it, named in revision.json, holds them as they were).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, ReleaserError
from ..fs import atomic_write

DIR = ".revisions"
INFO = "revision.json"
# What a revision holds: the files `quickstart up` writes (compose files, the airgap override and
# values, .env.example, quickstart.json, configs/, tcpao/). Anything else in the stack directory
# (.secrets/, the user's .env, the stack's registry storage, backups) is neither copied nor removed.
OWN_DIRS = ("configs", "tcpao")
OWN_FILES = (".env.example", "quickstart.json")


@dataclass(frozen=True, kw_only=True)
class Revision:
    number: int
    release: str
    version: str
    source: str
    recorded: str  # UTC, ISO 8601
    outcome: str  # running | replaced | failed (the upgrade to it was rolled back) | rolled-back
    backup: str | None = None  # a backup taken just before it was replaced
    images: tuple[str, ...] = ()  # the image references its compose files run

    def to_json(self) -> dict[str, object]:
        return {
            "number": self.number,
            "release": self.release,
            "version": self.version,
            "source": self.source,
            "recorded": self.recorded,
            "outcome": self.outcome,
            "backup": self.backup,
            "images": list(self.images),
        }

    @classmethod
    def read(cls, path: Path) -> Revision:
        try:
            d = json.loads(path.read_text())
            return cls(
                number=int(d["number"]),
                release=str(d["release"]),
                version=str(d["version"]),
                source=str(d["source"]),
                recorded=str(d["recorded"]),
                outcome=str(d["outcome"]),
                backup=d.get("backup"),
                images=tuple(str(i) for i in d.get("images") or ()),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReleaserError(
                f"{path}: unreadable revision ({exc})", fix=f"remove {path.parent} (that revision is lost)"
            ) from exc


def history(stack: Path) -> list[Revision]:
    """Every recorded revision, oldest first."""
    root = stack / DIR
    if not root.is_dir():
        return []
    found = [Revision.read(d / INFO) for d in root.iterdir() if d.name.isdigit() and (d / INFO).is_file()]
    return sorted(found, key=lambda r: r.number)


def next_number(stack: Path) -> int:
    return max((r.number for r in history(stack)), default=0) + 1


def _stack_files(stack: Path) -> list[Path]:
    """The stack's own files (relative), what a revision holds."""
    if not stack.is_dir():
        return []
    out = [
        Path(p.name)
        for p in stack.iterdir()
        if p.is_file() and not p.is_symlink() and (p.name in OWN_FILES or p.name.endswith((".yaml", ".yml")))
    ]
    for d in OWN_DIRS:
        if (stack / d).is_dir():
            out += [
                p.relative_to(stack) for p in (stack / d).rglob("*") if p.is_file() and not p.is_symlink()
            ]
    return sorted(out)


def record(stack: Path, revision: Revision) -> Revision:
    """Copy the stack's files as `revision` (replacing an earlier copy under that number)."""
    target = stack / DIR / str(revision.number)
    work = stack / DIR / f".{revision.number}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    for rel in _stack_files(stack):
        dest = work / "files" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(stack / rel, dest)
    (work / "files").mkdir(parents=True, exist_ok=True)
    atomic_write(work / INFO, (json.dumps(revision.to_json(), indent=2) + "\n").encode())
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
    return revision


def mark(stack: Path, revision: Revision) -> None:
    """Rewrite a revision's revision.json (its outcome, its backup) without touching its files."""
    atomic_write(
        stack / DIR / str(revision.number) / INFO, (json.dumps(revision.to_json(), indent=2) + "\n").encode()
    )


def put_back(stack: Path, number: int) -> Revision:
    """Make the stack's files those of revision `number` (files the stack has now and the revision
    has not are removed; secrets, .env and volumes stay)."""
    root = stack / DIR / str(number)
    if not (root / INFO).is_file():
        known = ", ".join(str(r.number) for r in history(stack)) or "none"
        raise InputError(
            f"{stack}: no revision {number} (recorded: {known})",
            fix="`releaser quickstart history` lists them",
        )
    revision = Revision.read(root / INFO)
    saved = {p.relative_to(root / "files") for p in (root / "files").rglob("*") if p.is_file()}
    for rel in _stack_files(stack):
        if rel not in saved:
            (stack / rel).unlink()
    for rel in sorted(saved):
        dest = stack / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(
            dest, (root / "files" / rel).read_bytes(), mode=(root / "files" / rel).stat().st_mode & 0o777
        )
    return revision


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
