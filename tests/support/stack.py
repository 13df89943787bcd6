"""Helpers for tests that watch a running stack: polling, and what the collector stand-in received."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests


def wait_for(cond: Any, timeout: float = 30, what: str = "", poll: float = 0.5) -> Any:
    """Call `cond` until it returns something true (and return that), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def received(port: int) -> list[str]:
    """The lines the collector stand-in stored, served at /received on its published HTTP port."""
    try:
        r = requests.get(f"http://127.0.0.1:{port}/received", timeout=3)
    except requests.RequestException:
        return []
    return r.text.splitlines() if r.status_code == 200 else []


def seqs(lines: list[str]) -> list[int]:
    """The speaker stand-in's sequence numbers in received lines."""
    return [int(line.rsplit(" ", 1)[1]) for line in lines if " seq " in line]


def compose_alone(
    install_md: str, work: Path, env: dict[str, str], engine: str, provided: dict[str, bytes]
) -> list[str]:
    """INSTALL.md's "Compose alone" as a customer runs it, line by line, in `work` (which holds the
    extracted bundle/ and step 3's compose.airgap.yaml): the secret files (`provided`: the files
    the customer keeps beside the bundle, by name), then the `engine` line ("docker compose" or
    "podman-compose"). Returns the lines run; a failing line fails the test, naming it."""
    section = install_md.split("or with Compose alone", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, flags=re.S)
    setup, *engines = blocks
    (up,) = [b.strip() for b in engines if b.startswith(engine)]
    for name, content in provided.items():
        (work / name).write_bytes(content)
    cwd, ran = work, []
    for line in [*setup.splitlines(), up]:
        command = line.split("   #")[0].strip()
        if not command:
            continue
        if command.startswith("cd "):
            cwd = cwd / command[3:]
        else:
            # pipefail: a customer's script may set it, and a line must hold there too
            proc = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert proc.returncode == 0, f"{line}\n{proc.stdout}{proc.stderr}"
        ran.append(command)
    return ran
