"""`releaser quickstart` against a real engine, continued (test_quickstart.py has the engine, the
stand-ins and the stack the tests share): the ways a stack fails to come up (a crashing service, one
that never turns healthy, host-network ports), and the airgap quickstart from a signed bundle
(through a private registry, through its own local registry, and Compose alone as INSTALL.md says).
An engine of its own and the example's network on 10.80.0.0/24, so that it runs beside
test_quickstart.py."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import test_quickstart as qs
from tests.support.registry import RegistryServer, free_port
from tests.support.stack import compose_alone, wait_for

RELEASER, compose, containers, docker, received, run = (
    qs.RELEASER, qs.compose, qs.containers, qs.docker, qs.received, qs.run
)  # fmt: skip
# test_quickstart.py's fixtures, instantiated again for this module: an engine and a stack of its own
engine, world, nothing_running, up, signed_bundle = (
    qs.engine,
    qs.world,
    qs.nothing_running,
    qs.up,
    qs.signed_bundle,
)

pytestmark = pytest.mark.engine
SUBNET = "10.80.0"


# ------------------------------------------------------------------ failure reporting


def test_a_crashing_service_is_named_with_its_logs(world: dict[str, Any]) -> None:
    run(world["env"], "quickstart", "down", expect=None)  # the shared stack, when it runs
    broken = world["work"] / "broken"
    shutil.copytree(world["rel"], broken)
    text = (broken / "release.yaml").read_text().replace('"--http-port=8080"', '"--http-port=notaport"')
    (broken / "release.yaml").write_text(text)
    env = {**world["env"], "RELEASER_QUICKSTART_DIR": str(world["work"] / "broken-stack")}
    try:
        proc = run(env, "quickstart", str(broken), "--skip", "tcp-ao", "--timeout", "90", expect=9)
        assert "error: collector " in proc.stderr and "exit code" in proc.stderr, proc.stderr
        assert "last log lines of collector:" in proc.stderr and "STAND-IN collector" in proc.stderr
        assert "releaser quickstart logs collector" in proc.stderr
    finally:
        run(env, "quickstart", "reset", "--yes", expect=None)


def test_a_service_that_never_turns_healthy_shows_its_health_checks(world: dict[str, Any]) -> None:
    """The collector stand-in (busybox httpd) logs nothing; a health check on a path it does not
    serve keeps it unhealthy: the error shows what the engine's last probes printed."""
    run(world["env"], "quickstart", "down", expect=None)  # the shared stack, when it runs
    silent = world["work"] / "silent"
    shutil.copytree(world["rel"], silent)
    text = (
        (silent / "release.yaml")
        .read_text()
        .replace("http: {path: /healthz, port: http}", "http: {path: /nope, port: http}")
    )
    (silent / "release.yaml").write_text(text)
    run(world["env"], "lock", str(silent))
    env = {**world["env"], "RELEASER_QUICKSTART_DIR": str(world["work"] / "silent-stack")}
    try:
        proc = run(env, "quickstart", str(silent), "--skip", "tcp-ao", "--timeout", "120", expect=9)
        assert "error: collector " in proc.stderr, proc.stderr
        assert "its last health checks: exit 1:" in proc.stderr, proc.stderr
    finally:
        run(env, "quickstart", "reset", "--yes", expect=None)


def test_a_host_network_service_has_its_ports_checked_and_a_rerun_keeps_them(world: dict[str, Any]) -> None:
    """A service on the host network binds its ports on the host itself (nothing is published):
    the preflight checks them on every address, and a re-run does not trip on its own."""
    http, bmp = free_port(), free_port()
    rel = world["work"] / "hostnet"
    rel.mkdir()
    ref = yaml.safe_load((world["rel"] / "release.yaml").read_text())["images"]["gobmp"]["ref"]
    doc = {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "hostnet", "version": "1.0.0"},
        "images": {"gobmp": {"ref": ref}},
        "services": {
            "agent": {
                "image": "gobmp",
                "hostNetwork": True,
                "args": [f"--source-port={bmp}", f"--http-port={http}"],
                "ports": [{"name": "bmp", "port": bmp}, {"name": "http", "port": http}],
                "health": {"http": {"path": "/healthz", "port": "http"}},
                "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
            }
        },
    }
    (rel / "release.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {**world["env"], "RELEASER_QUICKSTART_DIR": str(world["work"] / "hostnet-stack")}
    run(env, "lock", str(rel))

    def project() -> list[str]:
        return docker(env, "ps", "-aq", "--filter", "label=com.docker.compose.project=hostnet").split()

    try:
        with socket.socket() as s:  # held on loopback only: a service listening on 0.0.0.0 would still fail
            s.bind(("127.0.0.1", http))
            s.listen()
            proc = run(env, "quickstart", str(rel), "--json", expect=8)
        failed = {c["name"]: c for c in json.loads(proc.stdout)["error"]["checks"] if c["status"] == "fail"}
        assert list(failed) == [f"port-{http}"], failed
        assert (
            failed[f"port-{http}"]["detail"] == f"0.0.0.0:{http}/tcp for agent.http (host network) is in use"
        )
        assert "which .env cannot move" in failed[f"port-{http}"]["fix"]
        assert project() == []
        run(env, "quickstart", str(rel))
        with urllib.request.urlopen(
            f"http://127.0.0.1:{http}/healthz", timeout=5
        ) as resp:  # on the host itself
            assert resp.read().strip() == b"ok"
        run(env, "quickstart", str(rel))  # a re-run: its own ports are not "in use"
    finally:
        run(env, "quickstart", "reset", "--yes", expect=None)
    assert project() == []


# ------------------------------------------------------------------ airgap


def test_airgap_quickstart_runs_the_same_digests_from_the_private_registry(
    nothing_running: dict[str, Any], signed_bundle: Path
) -> None:
    world = nothing_running
    env = {**world["env"], "RELEASER_QUICKSTART_DIR": str(world["work"] / "airgap-stack")}
    bundle = signed_bundle
    private = RegistryServer(world["work"] / "private").start()
    try:
        # without --skip the TCP-AO check still stops it before anything is loaded
        proc = run(
            env,
            "quickstart",
            str(bundle),
            "--key",
            str(world["work"] / "keys/releaser.pub"),
            "--to",
            private.host,
            expect=8,
        )
        assert "lacks CONFIG_TCP_AO" in proc.stderr
        proc = run(
            env,
            "quickstart",
            str(bundle),
            "--key",
            str(world["work"] / "keys/releaser.pub"),
            "--to",
            private.host,
            "--skip",
            "tcp-ao",
            "--json",
        )
        result = json.loads(proc.stdout)["result"]
        assert all(
            s["state"] == ("exited" if s["service"].endswith("-volumes") else "running")
            for s in result["services"]
        )
        lock = yaml.safe_load((world["rel"] / "release.lock.yaml").read_text())
        digests = {e["digest"] for e in lock["images"].values()}
        running = {docker(env, "inspect", "-f", "{{.Config.Image}}", c).strip() for c in containers(world)}
        assert {r.split("@")[1] for r in running} == digests
        assert all(r.startswith(private.host + "/") for r in running)
        wait_for(lambda: len(received(world)) >= 2, what="traffic in the airgap stack")
        # a wrong key is refused before anything runs
        run(env, "quickstart", "down")
        other = world["work"] / "other-keys"
        run(env, "keygen", "--out-dir", str(other))
        proc = run(
            env,
            "quickstart",
            str(bundle),
            "--key",
            str(other / "releaser.pub"),
            "--to",
            private.host,
            "--skip",
            "tcp-ao",
            expect=None,
        )
        assert proc.returncode != 0 and "signature" in proc.stderr
        assert containers(world) == []
    finally:
        run(env, "quickstart", "reset", "--yes", expect=None)
        private.stop()


def test_install_md_compose_alone_runs_line_by_line_with_docker(
    nothing_running: dict[str, Any], signed_bundle: Path
) -> None:
    """The bundle's INSTALL.md, "or with Compose alone", on Docker: extract, load into a private
    registry with `releaser airgap`, the secret files (one generated, the TCP-AO key provided) and
    `docker compose ... up -d --wait`, line by line as written. The stack runs the locked digests
    from the private registry and carries traffic; nothing of releaser's quickstart is involved."""
    world = nothing_running
    site = world["work"] / "compose-alone"
    site.mkdir()
    private = RegistryServer(world["work"] / "private-alone").start()
    pub = world["work"] / "keys/releaser.pub"
    try:
        subprocess.run(
            ["sh", "-c", f"mkdir bundle && zstd -dc {signed_bundle} | tar -x -C bundle"], cwd=site, check=True
        )
        run(world["env"], "airgap", str(signed_bundle), "--to", private.host, "--key", str(pub), cwd=site)
        install = (site / "bundle/INSTALL.md").read_text()
        ran = compose_alone(
            install, site, world["env"], "docker compose", {"tcpao-key": b"a shared test key\n"}
        )
        assert ran[-1] == "docker compose -f compose.yaml -f ../../../compose.airgap.yaml up -d --wait"
        secrets = site / "bundle/compose/bmp-tcpao/.secrets"
        assert oct(secrets.stat().st_mode & 0o777) == "0o700"
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in secrets.iterdir()} == {
            "bmp-tcpao-key": "0o444",
            "nats-token": "0o444",
        }
        assert len((secrets / "nats-token").read_text()) == 32
        lock = yaml.safe_load((world["rel"] / "release.lock.yaml").read_text())
        running = {
            docker(world["env"], "inspect", "-f", "{{.Config.Image}}", c).strip() for c in containers(world)
        }
        assert {r.split("@")[1] for r in running} == {e["digest"] for e in lock["images"].values()}
        assert all(r.startswith(private.host + "/") for r in running)
        wait_for(lambda: len(received(world)) >= 2, what="traffic in the stack Compose alone started")
    finally:
        subprocess.run(
            ["docker", "compose", "-f", "compose.yaml", "down", "-v", "-t", "1"],
            cwd=site / "bundle/compose/bmp-tcpao", env=world["env"], capture_output=True, check=False,
        )  # fmt: skip
        private.stop()


def test_airgap_quickstart_with_its_own_local_registry(
    nothing_running: dict[str, Any], signed_bundle: Path
) -> None:
    world = nothing_running
    stack = world["work"] / "local-stack"
    env = {**world["env"], "RELEASER_QUICKSTART_DIR": str(stack)}
    bundle = signed_bundle
    try:
        proc = run(
            env,
            "quickstart",
            str(bundle),
            "--key",
            str(world["work"] / "keys/releaser.pub"),
            "--to",
            "local",
            "--skip",
            "tcp-ao",
            "--json",
        )
        result = json.loads(proc.stdout)["result"]
        host = result["registry"]
        assert result["localRegistry"] is True and host.startswith("127.0.0.1:")
        running = {docker(env, "inspect", "-f", "{{.Config.Image}}", c).strip() for c in containers(world)}
        assert running and all(r.startswith(host + "/") for r in running)
        assert (stack / "registry" / "config.yml").stat().st_mode & 0o777 == 0o600
        wait_for(lambda: len(received(world)) >= 2, what="traffic in the stack run from its own registry")
        run(env, "quickstart", "down")
        port = int(host.rsplit(":", 1)[1])

        def registry_gone() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) != 0

        wait_for(registry_gone, timeout=10, what="the local registry to stop")
        proc = run(env, "quickstart", "reset", expect=None)
        assert "the stack's own registry" in proc.stderr
    finally:
        run(env, "quickstart", "reset", "--yes", expect=None)
    assert not (stack / "registry").exists()
