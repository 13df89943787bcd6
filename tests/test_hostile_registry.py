"""A registry that answers badly on purpose (tests/support/hostile.py): every fault ends in an
ordinary registry error (exit 6) naming the registry and what was wrong, within the timeout,
in bounded memory, never a hang or a traceback. Each case runs `releaser` as its own process
with a 1 GiB address-space limit and RELEASER_REGISTRY_TIMEOUT=2."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .support.bundles import PASS, World
from .support.hostile import MANIFEST_FAULTS, HostileRegistry

LIMIT = 1 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def releaser(*args: str) -> tuple[int, dict[str, object], str]:
    env = {**os.environ, "RELEASER_REGISTRY_TIMEOUT": "2", "RELEASER_KEY_PASSPHRASE": PASS}
    proc = subprocess.run(
        [sys.executable, "-m", "releaser", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # a hang fails here, whatever the registry does
        preexec_fn=_limit_memory,
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    return proc.returncode, json.loads(proc.stdout), output


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileRegistry]:
    server = HostileRegistry().start()
    yield server
    server.stop()


def _release(root: Path, ref: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    doc = {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "hostile", "version": "1.0.0"},
        "images": {"app": {"ref": ref}},
        "services": {"app": {"image": "app", "ports": [{"name": "http", "port": 8080}]}},
    }
    (root / "release.yaml").write_text(yaml.safe_dump(doc))
    return root


@pytest.mark.parametrize("mode", sorted(MANIFEST_FAULTS))
def test_lock_from_a_hostile_registry_fails_cleanly(
    mode: str, hostile: HostileRegistry, tmp_path: Path
) -> None:
    d = _release(tmp_path / "rel", f"{hostile.host}/{mode}/app:v1")
    code, doc, output = releaser("lock", str(d))
    error = doc["error"]
    assert isinstance(error, dict)
    assert code == 6 and error["error"] == "RegistryError", output
    assert hostile.host in error["message"] and MANIFEST_FAULTS[mode] in error["message"], output
    assert not (d / "release.lock.yaml").exists()  # nothing half written


def test_the_good_path_of_the_hostile_registry_locks(hostile: HostileRegistry, tmp_path: Path) -> None:
    """The control: the same server without a fault is a registry `lock` pins from."""
    d = _release(tmp_path / "rel", f"{hostile.host}/fine/app:v1")
    code, _, output = releaser("lock", str(d))
    assert code == 0, output
    assert yaml.safe_load((d / "release.lock.yaml").read_text())["images"]["app"]["digest"].startswith(
        "sha256:"
    )


PUSH_FAULTS = {
    "huge": "more than the 4194304 an answer may have",
    "endless": "goes on past the 4194304 bytes",
    "truncated": "was cut off",
    "trickle": "took over",
    "loop": "more than 5 times",
}


@pytest.mark.parametrize("mode", sorted(PUSH_FAULTS))
def test_a_load_into_a_hostile_registry_fails_cleanly(
    mode: str,
    hostile: HostileRegistry,
    world: World,
    tmp_path: Path,
) -> None:
    code, doc, output = releaser(
        "airgap",
        str(world.bundle),
        "--to",
        f"{hostile.host}/{mode}",
        "--key",
        str(world.pub),
        "--out-dir",
        str(tmp_path / "out"),
    )
    error = doc["error"]
    assert isinstance(error, dict)
    assert code == 6 and error["error"] == "RegistryError", output
    assert PUSH_FAULTS[mode] in error["message"], output
