"""What the trust tests (test_trust.py, test_trust_keyless.py, test_referrers_api.py) share: running
releaser and the Go tools as processes, and a signed bundle with the JSON it reports."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RELEASER = str(ROOT / ".venv" / "bin" / "releaser")


def run(*cmd: str | Path, env: dict[str, str], expect: int | None = 0, timeout: float = 300) -> str:
    """The command's stdout and stderr; its exit code must be `expect` (None: any)."""
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    if expect is not None:
        assert proc.returncode == expect, f"{cmd} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def signed_bundle(
    work: Path, env: dict[str, str], rel: Path, out: Path, expect: int = 0
) -> tuple[dict[str, Any], str]:
    """`releaser bundle REL` signed with WORK/rkeys/releaser.key (made by `releaser keygen`): its
    --json envelope and everything it printed."""
    text = run(
        RELEASER, "bundle", rel, "--signing-key", work / "rkeys/releaser.key", "--out-file", out,
        "--no-installer", "--json", env=env, expect=expect,
    )  # fmt: skip
    return json.loads(text[text.index("{") :]), text
