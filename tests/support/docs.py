"""The docs' code blocks, as the tests read them.

Every fenced block of README.md and docs/*.md says what it is in its info string: `sh` (commands a
test runs as written), `console` (a transcript: `$ ` lines a test runs, then what they print),
`text` (output, layouts, diagrams and cards whose UPPER-CASE words are yours), `yaml`, `json`.
A `sh` or `console` block names the test that runs it after the language, invisible on a rendered
page: ```` ```sh tests/test_docs_run.py ```` (or the tests, when two run it: a block both the engine
test and the cluster test need). That test takes its blocks with `commands(page,
runner)`, so a block it does not run cannot go unnoticed; tests/test_docs.py checks that every such
block names a runner that reads its page, and parses every `releaser` line of every block with the
real command line (options, arguments, the space before a `#` comment).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
KINDS = ("sh", "console", "text", "yaml", "json")
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", flags=re.S | re.M)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence
    kind: str  # the info string's first word ("" when there is none)
    runners: tuple[str, ...]  # the words after the first: the tests that run it (sh and console blocks)
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def lines(self) -> list[str]:
        """Its command lines: a `sh` block's non-empty lines with `\\` continuations joined, or a
        `console` block's `$ ` lines without the prompt."""
        if self.kind == "console":
            return [line[2:] for line in self.text.splitlines() if line.startswith("$ ")]
        out: list[str] = []
        for line in self.text.replace("\\\n", " ").splitlines():
            if line.strip():
                out.append(line)
        return out


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    out = []
    for m in _FENCE.finditer(text):
        words = m.group(1).split()
        out.append(
            Block(
                page=page,
                line=text[: m.start()].count("\n") + 1,
                kind=words[0] if words else "",
                runners=tuple(words[1:]),
                text=m.group(2),
            )
        )
    return out


def commands(page: Path, runner: str) -> list[Block]:
    """The `sh` and `console` blocks of `page` that name `runner` (a path from the repository's
    root, e.g. tests/test_docs_run.py), in page order."""
    found = [b for b in blocks(page) if b.kind in ("sh", "console") and runner in b.runners]
    assert found, f"{page.relative_to(ROOT)} has no block that {runner} runs"
    return found


def walk_through(page: Path, runner: str) -> list[str]:
    """Every command line of the `sh` blocks of `page` that `runner` runs, in order."""
    return [line for b in commands(page, runner) if b.kind == "sh" for line in b.lines()]


def run(
    block: Block,
    cwd: Path,
    env: Mapping[str, str],
    subs: Mapping[str, str] | None = None,
    *,
    stdin: str | None = None,
    timeout: float = 900,
) -> str:
    """Run `block` as written, as one bash script (-euo pipefail: a variable set in it holds to its
    end, the first failure stops it) in `cwd`, with each key of `subs` replaced by its value (a
    placeholder host by a test registry's); a `console` block's `$ ` lines only. Fails naming the
    block's place; returns what it printed."""
    script = block.text if block.kind == "sh" else "\n".join(block.lines())
    for old, new in (subs or {}).items():
        script = script.replace(old, new)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        input=stdin,
    )
    assert proc.returncode == 0, (
        f"{block.where} failed ({proc.returncode}):\n{script}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout + proc.stderr
