"""`releaser init`: a commented release.yaml to start from."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import TargetExists
from ..fs import atomic_write
from ..names import RELEASE_FILE

_TEMPLATE = "render/init/release.yaml"


@dataclass(frozen=True, kw_only=True)
class InitResult:
    """What `init` wrote, and the commands to run next."""

    path: str
    next_steps: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {"path": self.path, "next": list(self.next_steps)}


def release_name_for(directory: Path) -> str:
    """A valid release name from a directory name: lower case, letters, digits and dashes."""
    name = directory.resolve().name.lower()
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "my-release"  # ASCII only: a DNS label
    if not name[0].isalpha():
        name = f"r-{name}"
    return name[:40].rstrip("-")


def init_release(directory: Path, *, force: bool = False) -> InitResult:
    """Write a commented release.yaml to start from."""
    target = directory / RELEASE_FILE
    if target.exists() and not force:
        raise TargetExists(target, fix="pass --force to overwrite it, or pick another directory")
    text = resources.files("releaser").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    atomic_write(target, text.replace("__NAME__", release_name_for(directory)).encode())
    return InitResult(
        path=str(target),
        next_steps=(
            f"edit {shlex.quote(str(target))}   # replace the example.org image references with yours",
            "releaser probe push REGISTRY/PATH:TAG   # the probe image, where images.probe.ref says",
            f"releaser validate {shlex.quote(str(directory))}",
            f"releaser lock {shlex.quote(str(directory))}   # resolves every image to a digest",
            f"releaser render {shlex.quote(str(directory))}",
        ),
    )
