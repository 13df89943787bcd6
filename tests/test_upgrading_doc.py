"""docs/upgrading.md's walk-through runs as written: every ```sh block of it, in order, in a
directory laid out as the page says (my-release/ = release 1.1.0 of the bundle world's demo,
keys/releaser.key, releaser.pub, bundles/demo-1.0.0.tar.zst loaded into the site registry),
with `registry.local:5000` standing for a real registry that holds 1.0.0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT
from .support.bundles import PASS, Upgrade, World, load
from .support.docs import walk_through
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry


def test_the_walk_through_runs_as_written(world: World, upgrade: Upgrade, tmp_path: Path) -> None:
    lines = walk_through(ROOT / "docs/upgrading.md", "tests/test_upgrading_doc.py")
    assert len(lines) >= 10
    site = RegistryServer(tmp_path / "site").start()
    try:
        assert load(world, site.host, tmp_path / "v1")[0] == 0
        work = tmp_path / "work"
        shutil.copytree(upgrade.release, work / "my-release")
        (work / "keys").mkdir()
        shutil.copy(world.key, work / "keys/releaser.key")
        shutil.copy(world.pub, work / "releaser.pub")
        (work / "bundles").mkdir()
        shutil.copy(world.bundle, work / "bundles/demo-1.0.0.tar.zst")
        env = {
            **os.environ,
            "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}",
            "RELEASER_KEY_PASSPHRASE": PASS,
        }
        for line in lines:
            command = line.replace("registry.local:5000", site.host)
            if command.startswith("releaser bundle my-release/"):
                command += " --no-installer"  # the world's bundles carry none (test_bundle_installer.py does)
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
        changes = json.loads((work / "changes.json").read_text())["result"]
        assert [i["name"] for i in changes["images"]] == ["nats"]
        assert (work / "bundles/demo-1.1.0.tar.zst").read_bytes() == upgrade.full.read_bytes()
    finally:
        site.stop()
