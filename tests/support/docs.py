"""The command lines of a doc page's walk-through: what the doc tests run as written."""

from __future__ import annotations

import re
from pathlib import Path


def walk_through(page: Path, heading: str = "## Walk-through") -> list[str]:
    """Every non-empty line of the ```sh blocks under `heading`, in order, up to the next section."""
    section = page.read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    return [
        line
        for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S)
        for line in block.splitlines()
        if line.strip()
    ]
