"""`releaser render`: compose/<name>/, charts/<name>/ and quadlet/<name>/ from release.yaml and the lock."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import Problem
from ..fs import atomic_write, read_tree, replace_tree
from ..pipeline import load_plan_and_lock, render_files, source_date_epoch
from ..render.docs import CatalogSource, catalog_json, images_md, install_md
from ..render.helm import package_chart


@dataclass(frozen=True, kw_only=True)
class RenderResult:
    """What `render` wrote under --out-dir: files written, unchanged and removed, and the notes."""

    release: str
    compose_dir: str
    chart_dir: str
    quadlet_dir: str
    written: tuple[str, ...]  # files whose content changed (or are new)
    unchanged: int
    removed: tuple[str, ...]
    images: tuple[str, ...]
    notes: tuple[str, ...]
    warnings: tuple[Problem, ...] = ()
    package: str | None = None
    package_sha256: str | None = None

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "release": self.release,
            "compose": self.compose_dir,
            "chart": self.chart_dir,
            "quadlet": self.quadlet_dir,
            "written": list(self.written),
            "unchanged": self.unchanged,
            "removed": list(self.removed),
            "images": list(self.images),
            "notes": list(self.notes),
            "warnings": [w.to_json() for w in self.warnings],
            "package": self.package,
            "packageSha256": self.package_sha256,
        }


def render_release(
    directory: Path, *, out: Path, package: Path | None = None, docs: bool = False
) -> RenderResult:
    """Render compose/<name>/, charts/<name>/ and quadlet/<name>/ under `out`, each swapped in atomically;
    with `package`, also write the chart as a deterministic <name>-<version>.tgz there; with
    `docs`, install/<name>/ too: the INSTALL.md and image catalog a bundle carries."""
    plan, lock, warnings = load_plan_and_lock(directory)
    written: list[str] = []
    removed: list[str] = []
    unchanged = 0
    rendered = render_files(plan)
    if docs:
        src = CatalogSource.of_plan(plan, lock)
        rendered[f"install/{plan.name}"] = {
            "INSTALL.md": install_md(plan, lock),
            "images.md": images_md(src),
            "images.json": catalog_json(src),
        }
    for sub, files in rendered.items():
        target = out / sub
        before = read_tree(target)
        for rel, content in files.items():
            if before.get(rel) == content:
                unchanged += 1
            else:
                written.append(f"{sub}/{rel}")
        removed += [f"{sub}/{rel}" for rel in sorted(set(before) - set(files))]
        if before != files:
            replace_tree(target, files)
    pkg_path = pkg_sha = None
    if package is not None:
        tgz = package_chart(plan, rendered[f"charts/{plan.name}"], mtime=source_date_epoch())
        pkg = package / f"{plan.name}-{plan.version}.tgz"
        atomic_write(pkg, tgz)
        pkg_path, pkg_sha = str(pkg), hashlib.sha256(tgz).hexdigest()
    return RenderResult(
        release=plan.name,
        compose_dir=str(out / "compose" / plan.name),
        chart_dir=str(out / "charts" / plan.name),
        quadlet_dir=str(out / "quadlet" / plan.name),
        written=tuple(written),
        unchanged=unchanged,
        removed=tuple(removed),
        images=tuple(sorted(plan.pinned_references())),
        notes=plan.notes,
        warnings=tuple(warnings),
        package=pkg_path,
        package_sha256=pkg_sha,
    )
