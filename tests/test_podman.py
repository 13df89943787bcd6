"""`releaser quickstart --engine podman-compose` against Debian's podman 4.3.1 with
podman-compose 1.6.0, as far as podman 4.3 allows here.

Limits of this podman (docs/quickstart.md): it runs no health checks by itself (no
systemd timers), so the quickstart runs them (`podman healthcheck run`) while it waits;
podman-compose ignores `depends_on: condition: service_healthy` and starts everything at
once; podman refuses the tmpfs options uid=/gid= that compose.yaml uses for Docker, so the
quickstart writes compose.podman.yaml without them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support import images
from tests.support import podman as podman_mod
from tests.support.registry import RegistryServer, free_port
from tests.support.stack import compose_alone, seqs, wait_for
from tests.support.stack import received as received_on
from tests.test_quickstart import RELEASER

# by itself, after the parallel suite (tests/conftest.py: alone)
pytestmark = [pytest.mark.engine, pytest.mark.alone]


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    podman_mod.require()
    work = tmp_path_factory.mktemp("podman")
    publisher = RegistryServer(work / "publisher").start()
    private = RegistryServer(work / "private").start()  # a customer's registry (INSTALL.md)
    engine = podman_mod.Podman([publisher.host, private.host])
    try:
        rel = images.standin_release(work, publisher.host, subnet="10.78.0")  # test_quickstart.py has 10.77
        port = free_port()
        env = {**engine.env, "RELEASER_QUICKSTART_DIR": str(work / "stack"), "COLLECTOR_HTTP_PORT": str(port)}
        subprocess.run([RELEASER, "lock", str(rel)], env=env, capture_output=True, check=True)
        yield {
            "work": work,
            "rel": rel,
            "env": env,
            "port": port,
            "stack": work / "stack",
            "engine": engine,
            "private": private,
        }
    finally:
        subprocess.run([RELEASER, "quickstart", "reset", "--yes"], env=env, capture_output=True, check=False)
        engine.stop()
        publisher.stop()
        private.stop()


def qs(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [RELEASER, "quickstart", *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == expect, (
        f"quickstart {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def received(pod: dict[str, Any]) -> list[str]:
    return received_on(pod["port"])


def test_podman_stack_reaches_ready_with_the_locked_digests_and_carries_traffic(pod: dict[str, Any]) -> None:
    proc = qs(pod["env"], str(pod["rel"]), "--engine", "podman-compose", "--skip", "tcp-ao", "--json")
    result = json.loads(proc.stdout)["result"]
    assert result["engine"] == "podman-compose"
    assert {s["service"]: s["health"] for s in result["services"] if s["health"]} == {
        "bus": "healthy",
        "collector": "healthy",
        "collector-tcpao": "healthy",  # the wire leg, from collector-tcpao-probe
        "speaker": "healthy",
        "speaker-tcpao": "healthy",
    }  # health checks run by the quickstart
    assert [u["url"] for u in result["urls"]] == [f"http://127.0.0.1:{pod['port']}"]
    state = json.loads((pod["stack"] / "quickstart.json").read_text())
    assert state["files"] == ["compose.podman.yaml"]
    podman_doc = yaml.safe_load((pod["stack"] / "compose.podman.yaml").read_text())
    # podman's :U: the service's user owns it, and still after a stopped container starts again (a backup)
    assert {t for s in podman_doc["services"].values() for t in s.get("tmpfs", [])} == {"/tmp:U"}
    lock = yaml.safe_load((pod["rel"] / "release.lock.yaml").read_text())
    pinned = {f"{e['repository']}@{e['digest']}" for e in lock["images"].values()}
    names = pod["engine"].run("ps", "-a", "--format", "{{.Names}}").stdout.split()
    running = {pod["engine"].run("inspect", "-f", "{{.ImageName}}", n).stdout.strip() for n in names}
    assert running == pinned
    lines = wait_for(lambda: len(received(pod)) >= 3 and received(pod), what="traffic through the sidecars")
    assert seqs(lines) == sorted(seqs(lines))
    status = json.loads(qs(pod["env"], "status", "--json").stdout)["result"]
    assert status["healthy"] is True and status["engine"] == "podman-compose"
    assert (pod["stack"] / ".secrets" / "nats-token").stat().st_uid == 65532


@pytest.fixture
def pod_up(pod: dict[str, Any]) -> dict[str, Any]:
    """The stack running on podman (brought up here when no earlier test left it so)."""
    status = subprocess.run(
        [RELEASER, "quickstart", "status"], env=pod["env"], capture_output=True, text=True, check=False
    )
    if status.returncode != 0:
        qs(pod["env"], str(pod["rel"]), "--engine", "podman-compose", "--skip", "tcp-ao")
    return pod


def test_podman_backup_reset_restore(pod_up: dict[str, Any]) -> None:
    pod = pod_up
    backup = pod["work"] / "backup.tar.zst"
    wait_for(lambda: len(received(pod)) >= 2, what="some traffic before the backup")
    qs(pod["env"], "backup", "--out-file", str(backup))
    saved = int(
        subprocess.run(
            f"zstd -dc {backup} | tar -xO volumes/speaker-state.tar | tar -xO ./seq",
            shell=True,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    qs(pod["env"], "reset", "--yes")
    left = pod["engine"].run("ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Labels}}").stdout
    assert pod["engine"].run("ps", "-aq").stdout.split() == [], left
    assert "bmp-tcpao_speaker-state" not in pod["engine"].run("volume", "ls", "-q").stdout
    qs(pod["env"], "restore", str(backup))
    first = wait_for(lambda: seqs(received(pod)), what="traffic after the restore")
    assert first[0] == saved + 1, (first, saved)
    qs(pod["env"], "down")
    assert pod["engine"].run("ps", "-aq").stdout.split() == []
    assert "bmp-tcpao_speaker-state" in pod["engine"].run("volume", "ls", "-q").stdout  # down keeps volumes


def test_install_md_compose_alone_runs_line_by_line_with_podman(pod: dict[str, Any]) -> None:
    """The bundle's INSTALL.md, "or with Compose alone", on podman: extract, load into a private
    registry with `releaser airgap`, the secret files, then `podman-compose -f compose.podman.yaml
    -f compose.airgap.yaml up -d` as written: the locked digests from the private registry, volumes
    given to the service's user by :U (the volume owners stay in a profile nothing starts), traffic
    through the sidecars."""
    qs(pod["env"], "reset", "--yes")
    site = pod["work"] / "compose-alone"
    site.mkdir()
    env = {**pod["env"], "RELEASER_KEY_PASSPHRASE": "test-only-passphrase"}
    keys = pod["work"] / "keys"
    for args in (
        ("keygen", "--out-dir", str(keys)),
        ("bundle", str(pod["rel"]), "--signing-key", str(keys / "releaser.key"),
         "--out-file", str(pod["work"] / "bmp.tar.zst"), "--no-installer"),
        ("airgap", str(pod["work"] / "bmp.tar.zst"), "--to", pod["private"].host, "--key", str(keys / "releaser.pub")),
    ):  # fmt: skip
        proc = subprocess.run(
            [RELEASER, *args], env=env, cwd=site, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    subprocess.run(["sh", "-c", f"mkdir bundle && zstd -dc {pod['work'] / 'bmp.tar.zst'} | tar -x -C bundle"],
                   cwd=site, check=True)  # fmt: skip
    compose_dir = site / "bundle/compose/bmp-tcpao"
    try:
        install = (site / "bundle/INSTALL.md").read_text()
        ran = compose_alone(install, site, env, "podman-compose", {"tcpao-key": b"a shared test key\n"})
        assert ran[-1] == "podman-compose -f compose.podman.yaml -f ../../../compose.airgap.yaml up -d"
        lock = yaml.safe_load((pod["rel"] / "release.lock.yaml").read_text())
        names = pod["engine"].run("ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert names and not [n for n in names if n.endswith("-volumes") or "volumes_" in n], names
        running = {pod["engine"].run("inspect", "-f", "{{.ImageName}}", n).stdout.strip() for n in names}
        assert {r.split("@")[1] for r in running} == {e["digest"] for e in lock["images"].values()}
        assert all(r.startswith(pod["private"].host + "/") for r in running), running
        lines = wait_for(lambda: len(received(pod)) >= 2 and received(pod), timeout=90, what="traffic")
        assert seqs(lines) == sorted(seqs(lines))
    finally:
        subprocess.run(["podman-compose", "-f", "compose.podman.yaml", "down", "-v", "-t", "1"],
                       cwd=compose_dir, env=env, capture_output=True, check=False)  # fmt: skip
