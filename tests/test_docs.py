"""The docs' code blocks hold: each says what it is (tests/support/docs.py), each `sh` and `console`
block names a test that runs it and that test reads its page, every `releaser` command line in any
block parses with the real command line (its options exist, take what they are given, and are not
deprecated spellings; a `#` comment has a space before it), and README.md's validation transcript is
what `releaser validate` prints."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from releaser.cli import app

from .support.docs import KINDS, PAGES, ROOT, Block, blocks, commands

ALL = [b for page in PAGES for b in blocks(page)]
RUN = [b for b in ALL if b.kind in ("sh", "console")]


def test_every_block_says_what_it_is() -> None:
    bare = [f"{b.where}: ```{b.kind}" for b in ALL if b.kind not in KINDS]
    assert not bare, f"blocks without one of {', '.join(KINDS)} after the fence:\n" + "\n".join(bare)
    assert len(RUN) >= 15


@pytest.mark.parametrize("block", RUN, ids=[b.where for b in RUN])
def test_every_command_block_names_a_test_that_runs_it(block: Block) -> None:
    assert block.runners, f"{block.where}: ```{block.kind} names no runner (```{block.kind} tests/...py)"
    assert block.lines(), f"{block.where}: a command block without a command"
    for name in block.runners:
        runner = ROOT / name
        assert runner.is_file(), f"{block.where}: the runner {name} does not exist"
        if name == ".ci/run":  # the README's make targets: CI runs them as written
            script = runner.read_text()
            assert all(line in script.splitlines() for line in block.lines()), block.where
            continue
        page = str(block.page.relative_to(ROOT))
        assert page in runner.read_text(), f"{name} never reads {page} (commands(page, runner))"


def _releaser_lines() -> list[tuple[str, str]]:
    """(where, line) of every line of every block that runs releaser, prompt and env assignments
    aside; card lines with alternatives (`a | b`), optional parts (`[...]`) or `...` are left out."""
    out = []
    for b in ALL:
        if b.kind not in ("sh", "console", "text"):
            continue
        for n, raw in enumerate(b.text.splitlines(), start=b.line + 1):
            line = raw.removeprefix("$ ").strip()
            line = re.sub(r"^(\w+=\S*\s+)+", "", line)
            first = line.split(" ", 1)[0]
            if first != "releaser" and not first.endswith("/releaser"):
                continue
            body = line.split(" #", 1)[0]
            if re.search(r"\[|\.\.\.|…|\s\|\s", body):
                continue
            out.append((f"{b.page.relative_to(ROOT)}:{n}", line))
    return out


LINES = _releaser_lines()


def test_the_docs_have_releaser_lines() -> None:
    assert len(LINES) >= 60


@pytest.mark.parametrize(("where", "line"), LINES, ids=[w for w, _ in LINES])
def test_every_releaser_line_parses(where: str, line: str) -> None:
    assert not re.search(r"\S#", line.split(" #", 1)[0]), (
        f"{where}: a `#` with no space before it is part of the word, not a comment: {line}"
    )
    words = shlex.split(line, comments=True)
    result = CliRunner().invoke(app, [*words[1:], "--help"], catch_exceptions=False)
    assert result.exit_code == 0, f"{where}: {line}\n{result.output}"
    assert "deprecated" not in result.output.lower(), f"{where}: an old spelling: {line}\n{result.output}"


def test_the_readme_validation_transcript_is_what_validate_prints(tmp_path: Path) -> None:
    """README.md's transcript, its commands run as written (from the repository's root, with /tmp/bad
    moved under a temporary directory): each printed line is validate's, in order; `...` stands for
    lines left out."""
    (block,) = commands(ROOT / "README.md", "tests/test_docs.py")
    bad = str(tmp_path / "bad")
    env = {"PATH": f"{ROOT / '.venv/bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    printed = ""
    for command in block.lines():
        proc = subprocess.run(
            ["bash", "-c", command.replace("/tmp/bad", bad)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        printed += proc.stdout + proc.stderr
    shown = [line for line in block.text.splitlines() if not line.startswith("$ ")]
    got = printed.replace(bad, "/tmp/bad").splitlines()
    at = 0
    for line in shown:
        if line == "...":
            continue
        assert line in got[at:], (
            f"README.md shows a line validate does not print (in this order):\n{line}\n\n{printed}"
        )
        at = got.index(line, at) + 1


def test_the_security_page_runs_as_written(tmp_path: Path) -> None:
    """docs/security.md's checkov run, from the repository's root, /tmp/ moved under a temporary
    directory: the render, helm template and checkov (findings are test_security.py's business)."""
    (block,) = commands(ROOT / "docs/security.md", "tests/test_docs.py")
    script = block.text.replace("/tmp/", f"{tmp_path}/")
    proc = subprocess.run(
        ["bash", "-uo", "pipefail", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert "Passed checks" in proc.stdout or "passed checks" in proc.stdout.lower(), proc.stdout + proc.stderr
