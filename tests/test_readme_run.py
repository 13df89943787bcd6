"""README.md's "Use it" runs as written, block by block in page order, each block as one shell
script, in one directory, as a newcomer would: `releaser init`'s own template with its images put
in (runnable stand-ins: web answers /healthz, the cache listens and writes its volume), published
to a real registry that stands for `registry.example.org`; a second real registry stands for the
site's `registry.local:5000` (and for the `127.0.0.1:5000` of docs/quickstart.md, whose card runs
here too); a Docker engine of its own runs the quickstart. Where the page asks the reader to edit
release.yaml, the test makes that edit and nothing else. The Kubernetes block runs on the cluster
(tests/e2e/test_readme_cluster.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TOOLS, missing_component
from tests.support import engine as engine_mod
from tests.support import images
from tests.support.docs import Block, commands, run
from tests.support.registry import RegistryServer, free_port

pytestmark = pytest.mark.engine

RUNNER = "tests/test_readme_run.py"
PASSPHRASE = "test-only-passphrase"


def blocks() -> list[Block]:
    """The README's blocks this test runs: init, publish, load at the site, quickstart, next version."""
    found = commands(ROOT / "README.md", RUNNER)
    assert len(found) == 5, [b.where for b in found]
    return found


def put_in_images(work: Path, src: RegistryServer) -> None:
    """The reader's edit after `init`: their image references in release.yaml (here the stand-ins,
    pushed to the registry that plays registry.example.org; the probe image is the page's to push).
    Their registry is not example.org, which `lock` refuses as a placeholder."""
    release = work / "my-release/release.yaml"
    text = images.publish_standins(release.read_text(), work / "layout", src.host, probe=False)
    release.write_text(text)


def next_version(work: Path, src: RegistryServer) -> None:
    """The reader's edit for the next version: web 1.1.0 (one changed layer) and version 0.2.0."""
    images.build_standin(work / "layout", "web", "web:1.1.0", extra={"app/VERSION": b"web 1.1.0\n"})
    images.push(work / "layout", "web:1.1.0", f"{src.host}/acme/web:1.1.0")
    release = work / "my-release/release.yaml"
    text = release.read_text()
    assert "acme/web:1.0.0" in text and "version: 0.1.0" in text
    release.write_text(
        text.replace("acme/web:1.0.0", "acme/web:1.1.0").replace("version: 0.1.0", "version: 0.2.0", 1)
    )


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    missing = engine_mod.available()
    if missing or images.have_tools():
        missing_component(f"Docker engine ({', '.join(missing + images.have_tools())})")
    with engine_mod.DockerEngine() as eng, tempfile.TemporaryDirectory(prefix="readme-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        src = RegistryServer(Path(tmp) / "src").start()
        site = RegistryServer(Path(tmp) / "site").start()
        env = {
            **eng.env,
            "PATH": f"{ROOT / '.venv/bin'}:{TOOLS / 'bin'}:{os.environ['PATH']}",
            "DOCKER_CONFIG": str(TOOLS / "docker"),
            "RELEASER_CACHE": str(Path(tmp) / "cache"),
            "RELEASER_KEY_PASSPHRASE": PASSPHRASE,
            "WEB_HTTP_PORT": str(free_port()),  # the knob in .env.example: 8080 may be taken here
        }
        try:
            yield {"work": work, "src": src, "site": site, "env": env}
        finally:
            subprocess.run(
                [str(ROOT / ".venv/bin/releaser"), "quickstart", "reset", "--yes"],
                cwd=work,
                env=env,
                capture_output=True,
                check=False,
            )
            src.stop()
            site.stop()


def test_the_readme_runs_as_written(world: dict[str, Any]) -> None:
    work, env = world["work"], world["env"]
    subs = {"registry.example.org": world["src"].host, "registry.local:5000": world["site"].host}
    init, publish, site, quickstart, upgrade = blocks()

    run(init, work, env, subs)
    put_in_images(work, world["src"])
    run(publish, work, env, subs)
    assert (work / "bundles/my-release-0.1.0.tar.zst").is_file()
    assert (work / "parts/my-release-0.1.0.tar.zst.001").is_file()
    assert (work / "compose/my-release/compose.yaml").is_file() and (
        work / "charts/my-release/Chart.yaml"
    ).is_file()

    shown = run(site, work, env, subs)
    assert "would write" in shown or "dry run" in shown.lower(), shown
    assert (work / "values-airgap.yaml").is_file()

    run(quickstart, work, env, subs)
    proc = subprocess.run(
        ["releaser", "quickstart", "status", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # ready again after the backup

    next_version(work, world["src"])
    shown = run(upgrade, work, env, subs)
    assert "acme/web" in shown, shown
    assert (work / "bundles/my-release-0.2.0.tar.zst").is_file() and (work / "delta-0.2.0.tar.zst").is_file()
    delta, full = (
        (work / "delta-0.2.0.tar.zst").stat().st_size,
        (work / "bundles/my-release-0.2.0.tar.zst").stat().st_size,
    )
    assert delta < full / 2, (delta, full)
    assert not (work / "quickstart/.secrets").exists() or not any((work / "quickstart/.secrets").iterdir())
    shutil.rmtree(work / "quickstart", ignore_errors=True)

    # docs/quickstart.md's card, in the same directory: the publisher's key shipped as releaser.pub,
    # 127.0.0.1:5000 the site registry (which holds 0.1.0 since the load above)
    (card,) = commands(ROOT / "docs/quickstart.md", RUNNER)
    shutil.copy(work / "keys/releaser.pub", work / "releaser.pub")
    shown = run(card, work, env, {"127.0.0.1:5000": world["site"].host})
    assert "restored" in shown.lower() or "restore" in shown.lower(), shown
    assert not (work / "quickstart/.secrets").exists() or not any((work / "quickstart/.secrets").iterdir())
