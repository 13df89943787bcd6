"""Golden files for both renderers, byte for byte, and render determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from releaser.pipeline import load_plan, render_files

from .conftest import RELEASES, assert_golden

GOLDEN = Path(__file__).parent / "golden" / "render"


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_rendered_files_match_goldens(name: str, update_goldens: bool) -> None:
    plan, _ = load_plan(RELEASES[name])
    rendered = render_files(plan)
    seen = set()
    for sub, files in rendered.items():
        for rel, content in files.items():
            golden = GOLDEN / name / sub / rel
            seen.add(golden)
            assert_golden(golden, content.decode(), update_goldens)
    stray = {p for p in (GOLDEN / name).rglob("*") if p.is_file()} - seen
    if update_goldens:
        for p in stray:
            p.unlink()
    else:
        assert not stray, f"golden files no longer rendered: {sorted(map(str, stray))}"


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_render_twice_is_byte_identical(name: str) -> None:
    first = render_files(load_plan(RELEASES[name])[0])
    second = render_files(load_plan(RELEASES[name])[0])
    assert first == second


@pytest.mark.parametrize("name", ["bmp-tcpao", "platform"])
def test_committed_example_outputs_are_current(name: str) -> None:
    root = Path(__file__).resolve().parent.parent
    plan, _ = load_plan(RELEASES[name])
    for sub, files in render_files(plan).items():
        on_disk = {
            p.relative_to(root / sub).as_posix(): p.read_bytes()
            for p in (root / sub).rglob("*")
            if p.is_file()
        }
        assert on_disk == files, f"{sub} is stale: run `make demo` and commit"


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_chart_readme_documents_every_value(name: str) -> None:
    plan, _ = load_plan(RELEASES[name])
    readme = render_files(plan)[f"charts/{name}"]["README.md"].decode()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    assert len(rows) > 40
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), f"incomplete values reference row: {row}"
    for key in ("global.imageRegistry", "networkPolicy.enabled", "generatedSecrets"):
        assert f"| `{key}` |" in readme
