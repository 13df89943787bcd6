"""The Quadlet units as podman's own generator reads them, without a container engine: every
example's units through `quadlet -dryrun` of Debian trixie's podman 5.4 (.tools/bin/quadlet, from
scripts/build_quadlet_host.py), which refuses a key it does not know. What they do when systemd
runs them is tests/test_quadlet.py's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from releaser.pipeline import load_plan, render_files

from .conftest import RELEASES, missing_component

GENERATOR = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "quadlet"


def generate(units: dict[str, bytes], tmp: Path) -> tuple[dict[str, str], str]:
    """{generated service: text} and the generator's messages, for `units` written under `tmp`."""
    if not GENERATOR.exists():
        missing_component("podman's Quadlet generator (make setup: scripts/build_quadlet_host.py)")
    for rel, content in units.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(content)
    proc = subprocess.run(
        [str(GENERATOR), "-dryrun"],
        env={**os.environ, "QUADLET_UNIT_DIRS": str(tmp)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    services = dict(re.findall(r"^---(\S+)---\n(.*?)(?=^---|\Z)", proc.stdout, flags=re.M | re.S))
    return services, proc.stderr


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_podman_generates_a_service_from_every_unit(name: str, tmp_path: Path) -> None:
    plan, _ = load_plan(RELEASES[name])
    units = render_files(plan)[f"quadlet/{plan.name}"]
    services, messages = generate(units, tmp_path)
    problems = [m for m in messages.splitlines() if "Loading source" not in m]
    assert not problems, problems
    kinds = {".container": "", ".pod": "-pod", ".volume": "-volume", ".network": "-network"}
    expected = {
        Path(rel).stem + kinds[Path(rel).suffix] + ".service" for rel in units if Path(rel).suffix in kinds
    }
    assert set(services) == expected
    for service, text in services.items():
        if "podman run" in text:  # every container: the lock's digest, hardened
            start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
            assert re.search(r" \S+@sha256:[0-9a-f]{64}( |$)", start), service
            for flag in ("--read-only", "--cap-drop all", "--security-opt=no-new-privileges", "--user "):
                assert flag in start, f"{service}: {flag}"


def test_dollars_and_percents_reach_the_container_as_written(tmp_path: Path) -> None:
    """systemd expands `$VARIABLES` and `%` specifiers in the ExecStart the generator writes: the
    units double both, so `price is $5` is what the container's environment holds."""
    plan, _ = load_plan(RELEASES["kitchen-sink"])
    units = render_files(plan)[f"quadlet/{plan.name}"]
    services, _ = generate(units, tmp_path)
    start = next(
        line for line in services["kitchen-sink-api.service"].splitlines() if line.startswith("ExecStart=")
    )
    assert '--env "GREETING=price is $$5 {not a knob}"' in start


def test_no_secret_value_is_in_a_unit() -> None:
    """Secrets are podman secrets: the units name them, they never hold a value."""
    for name in sorted(RELEASES):
        plan, _ = load_plan(RELEASES[name])
        units = render_files(plan)[f"quadlet/{plan.name}"]
        for rel, content in units.items():
            for line in content.decode().splitlines():
                if line.startswith("Secret="):
                    assert re.fullmatch(
                        r"Secret=[a-z0-9-]+,type=mount,target=/run/secrets/[a-z0-9-]+,uid=\d+,gid=\d+,mode=0400",
                        line,
                    ), f"{rel}: {line}"
        assert not any(rel.startswith(".secrets") for rel in units)


def test_the_generator_is_the_pinned_podman() -> None:
    if not GENERATOR.exists():
        missing_component("podman's Quadlet generator (make setup: scripts/build_quadlet_host.py)")
    out = subprocess.run([str(GENERATOR), "-version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "5.4.2"
    assert (
        shutil.which("quadlet") is None
        or Path(shutil.which("quadlet") or "").resolve() == GENERATOR.resolve()
    )
