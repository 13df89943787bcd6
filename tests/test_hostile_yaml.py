"""Hostile YAML in release.yaml and release.lock.yaml: alias bombs, self-containing aliases and
oversized files end in an ordinary error naming the file, quickly and in bounded memory (the
command runs with a 512 MiB address-space limit and a 60 s timeout: a hang or a blow-up fails)."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import EXAMPLE

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))


def validate(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "releaser", "validate", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limited,
        check=False,
    )


def test_an_alias_bomb_in_release_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "release.yaml").write_text(LAUGHS)  # 9**9 values once expanded
    proc = validate(tmp_path)
    assert proc.returncode == 1, proc
    assert "release.yaml:" in proc.stderr and "expands to more than 50,000 values" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_value_that_contains_itself_is_named(tmp_path: Path) -> None:
    (tmp_path / "release.yaml").write_text("x: &a [*a, *a]\n")
    proc = validate(tmp_path)
    assert proc.returncode == 1 and "$.x[0]: a recursive alias" in proc.stderr, proc
    assert "Traceback" not in proc.stderr + proc.stdout


def test_an_alias_bomb_in_the_lock_is_refused(tmp_path: Path) -> None:
    release = tmp_path / "rel"
    shutil.copytree(EXAMPLE, release)
    (release / "release.lock.yaml").write_text(LAUGHS)
    proc = validate(release)
    assert proc.returncode in (1, 3) and "release.lock.yaml:" in proc.stderr, proc
    assert "expands to more than 50,000 values" in proc.stderr and "Traceback" not in proc.stderr


def test_an_oversized_file_is_not_read(tmp_path: Path) -> None:
    with (tmp_path / "release.yaml").open("w") as f:
        f.write("# padding\n" * 500_000)  # 5 MB of comments
    proc = validate(tmp_path)
    assert proc.returncode == 1 and "a release file is read only up to 4,194,304" in proc.stderr, proc
