"""The command blocks of docs/airgap.md and docs/lock-format.md run as written, in page order, each
block as one shell script (so `export` and `cd` hold within it), in a directory laid out as the
pages say: my-release/ is the bundle world's demo release 1.0.0, its images in a real registry that
stands for `registry.example.org`, and a second real registry stands for the site's
`registry.local:5000`. Between the publisher's block and the customer's, the public key is
"shipped" (copied to ./releaser.pub), as the page tells."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .conftest import ROOT
from .support.bundles import World
from .support.docs import Block, commands, run
from .support.registry import RegistryServer

RUNNER = "tests/test_docs_run.py"
PASSPHRASE = "test-only-passphrase"


def _run(block: Block, cwd: Path, subs: dict[str, str]) -> str:
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv/bin'}:{ROOT / '.tools/bin'}:{os.environ['PATH']}",
        "RELEASER_KEY_PASSPHRASE": PASSPHRASE,  # the page's first block reads and exports it
    }
    # stdin: what the reader types where the page asks for the passphrase
    return run(block, cwd, env, subs, stdin=PASSPHRASE + "\n", timeout=600)


def test_the_airgap_and_lock_pages_run_as_written(world: World, tmp_path: Path) -> None:
    site = RegistryServer(tmp_path / "site").start()
    try:
        work = tmp_path / "work"
        work.mkdir()
        shutil.copytree(world.release, work / "my-release")
        subs = {"registry.local:5000": site.host, "registry.example.org": world.src.host}
        airgap = commands(ROOT / "docs/airgap.md", RUNNER)
        assert len(airgap) >= 7
        for n, block in enumerate(airgap):
            _run(block, work, subs)
            if n == 0:  # the publisher ships the bundle and, separately, the public key
                shutil.copy(work / "keys/releaser.pub", work / "releaser.pub")
        assert (work / "values-airgap.yaml").is_file() and (work / "compose.airgap.yaml").is_file()
        assert (work / "joined.tar.zst").is_file() and (work / "split/demo-1.0.0.tar.zst.001").is_file()
        for block in commands(ROOT / "docs/lock-format.md", RUNNER):
            _run(block, work, subs)
    finally:
        site.stop()
