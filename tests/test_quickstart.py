"""`releaser quickstart` against a real engine: Docker 20.10 (Debian's dockerd + containerd,
started privately by tests/support/engine.py) with Compose v2.40.

The example release runs with STAND-IN images (tests/support/standins): the speaker
stand-in sends one numbered line per second to its initiator sidecar, the sidecars
relay over PLAIN TCP (this kernel lacks TCP-AO; `--skip tcp-ao` says so), and the
collector stand-in stores what arrives and serves it at /received on its HTTP port.

The tests share one engine and one stack directory. Each says what it needs with a fixture
(`nothing_running`: a fresh host; `up`: the stack running and ready, brought up when it is
not; `backup_file`: a backup of its own), so each runs alone and in any order; in file order
the stack is brought up once: preflight failures (nothing starts) -> up -> traffic ->
sidecar restart behaviour -> secrets -> re-run -> status and logs -> backup / reset /
restore. The ways a stack fails to come up and the airgap quickstart are in
test_quickstart_airgap.py, on an engine of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, TOOLS, missing_component
from tests.support import engine as engine_mod
from tests.support import images
from tests.support.registry import RegistryServer, free_port
from tests.support.stack import received as received_on
from tests.support.stack import seqs, wait_for

pytestmark = pytest.mark.engine
SUBNET = "10.77.0"  # the example's own (test_quickstart_airgap.py takes 10.80.0)

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")
CAPTURED: list[str] = []  # every output of every command this module ran, for the leak test


@pytest.fixture(scope="module")
def engine() -> Iterator[engine_mod.DockerEngine]:
    missing = engine_mod.available()
    if missing or images.have_tools():
        missing_component(f"Docker engine ({', '.join(missing + images.have_tools())})")
    if not (TOOLS / "docker" / "cli-plugins" / "docker-compose").exists():
        missing_component("Docker Compose v2")
    with engine_mod.DockerEngine() as eng:
        yield eng


@pytest.fixture(scope="module")
def world(
    engine: engine_mod.DockerEngine, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """Stand-in images in a publisher registry, the example pointed at it and locked, a stack dir.
    The example's network takes the module's SUBNET: modules run side by side on engines of their own."""
    work = tmp_path_factory.mktemp("qs")
    publisher = RegistryServer(work / "publisher").start()
    try:
        rel = images.standin_release(
            work, publisher.host, subnet=getattr(request.module, "SUBNET", "10.77.0")
        )
        port = free_port()
        env = {
            **engine.env,
            "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}",
            "DOCKER_CONFIG": str(TOOLS / "docker"),
            "RELEASER_QUICKSTART_DIR": str(work / "stack"),
            "COLLECTOR_HTTP_PORT": str(port),
            "RELEASER_CACHE": str(work / "cache"),
            "RELEASER_KEY_PASSPHRASE": "test-only-passphrase",
        }
        run(env, "lock", str(rel))
        yield {
            "work": work,
            "rel": rel,
            "env": env,
            "port": port,
            "stack": work / "stack",
            "publisher": publisher,
            "engine": engine,
        }
    finally:
        subprocess.run([RELEASER, "quickstart", "reset", "--yes"], env=env, capture_output=True, check=False)
        publisher.stop()


@pytest.fixture
def nothing_running(world: dict[str, Any]) -> dict[str, Any]:
    """No stack of the example on the engine and no stack directory (as on a fresh host)."""
    stacks = ("stack", "airgap-stack", "local-stack", "broken-stack", "silent-stack")
    for stack in (world["stack"], *(world["work"] / name for name in stacks[1:])):
        if (stack / "quickstart.json").exists():
            env = {**world["env"], "RELEASER_QUICKSTART_DIR": str(stack)}
            run(env, "quickstart", "reset", "--yes", expect=None)
            shutil.rmtree(stack, ignore_errors=True)
    return world


@pytest.fixture
def up(world: dict[str, Any]) -> dict[str, Any]:
    """The example's stack, running and ready (brought up here when no earlier test left it so)."""
    if run(world["env"], "quickstart", "status", expect=None).returncode != 0:
        run(world["env"], "quickstart", str(world["rel"]), "--skip", "tcp-ao")
    return world


@pytest.fixture
def signed_bundle(world: dict[str, Any]) -> Path:
    """The example's bundle, signed with a key of its own (keys/ beside it)."""
    bundle = world["work"] / "bmp-tcpao-1.4.0.tar.zst"
    if not bundle.exists():
        if not (world["work"] / "keys/releaser.key").exists():
            run(world["env"], "keygen", "--out-dir", str(world["work"] / "keys"))
        key = str(world["work"] / "keys/releaser.key")
        run(
            world["env"],
            *("bundle", str(world["rel"]), "--signing-key", key, "--out-file", str(bundle), "--no-installer"),
        )
    return bundle


@pytest.fixture
def backup_file(up: dict[str, Any]) -> Path:
    """A backup of the running stack, of its own (no test reads another test's files)."""
    path = up["work"] / "backup-fixture.tar.zst"
    if not path.exists():
        run(up["env"], "quickstart", "backup", "--out-file", str(path))
    return path


def run(
    env: dict[str, str], *args: str, expect: int | None = 0, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [RELEASER, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )
    CAPTURED.extend([proc.stdout, proc.stderr])
    if expect is not None:
        assert proc.returncode == expect, (
            f"releaser {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def docker(env: dict[str, str], *args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, check=False)
    CAPTURED.extend([proc.stdout, proc.stderr])
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc.stdout


def compose(w: dict[str, Any], *args: str) -> str:
    return docker(w["env"], "compose", "-f", str(w["stack"] / "compose.yaml"), "-p", "bmp-tcpao", *args)


def received(w: dict[str, Any]) -> list[str]:
    return received_on(w["port"])


def containers(w: dict[str, Any]) -> list[str]:
    return docker(w["env"], "ps", "-aq", "--filter", "label=com.docker.compose.project=bmp-tcpao").split()


# ------------------------------------------------------------------ preflight


def test_preflight_without_tcp_ao_starts_nothing(nothing_running: dict[str, Any]) -> None:
    world = nothing_running
    proc = run(world["env"], "quickstart", str(world["rel"]), expect=8)
    assert "FAIL tcp-ao" in proc.stderr and "lacks CONFIG_TCP_AO" in proc.stderr
    assert "--skip tcp-ao" in proc.stderr  # the documented override is named
    assert containers(world) == []
    assert not (world["stack"] / "compose.yaml").exists()


def test_preflight_port_taken_starts_nothing(nothing_running: dict[str, Any]) -> None:
    world = nothing_running
    with socket.socket() as s:
        # SO_REUSEADDR: connections of an earlier test to this port may linger in TIME_WAIT
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", world["port"]))
        s.listen()
        proc = run(world["env"], "quickstart", str(world["rel"]), "--skip", "tcp-ao", expect=8)
    assert f"FAIL port-{world['port']}" in proc.stderr and "in use" in proc.stderr
    assert containers(world) == []


def test_preflight_engine_missing_or_down(nothing_running: dict[str, Any]) -> None:
    world = nothing_running
    proc = run(world["env"], "quickstart", str(world["rel"]), "--engine", "podman", expect=8)
    assert "no container engine with Compose found" in proc.stderr
    assert "FAIL tcp-ao" in proc.stderr and "ok   disk" in proc.stderr  # every check, as doctor lists them
    down = {**world["env"], "DOCKER_HOST": f"unix://{world['work']}/no-engine.sock"}
    proc = run(down, "quickstart", str(world["rel"]), "--skip", "tcp-ao", expect=8)
    assert "FAIL engine-reachable" in proc.stderr and "DOCKER_HOST" in proc.stderr
    assert containers(world) == []


def test_preflight_subnet_already_routed_starts_nothing(nothing_running: dict[str, Any]) -> None:
    world = nothing_running
    # a stale bridge holding the release's subnet (what a killed engine leaves behind)
    subprocess.run(["ip", "link", "add", "rqclash0", "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.77.0.1/24", "dev", "rqclash0"], check=True)
        subprocess.run(["ip", "link", "set", "rqclash0", "up"], check=True)
        proc = run(world["env"], "quickstart", str(world["rel"]), "--skip", "tcp-ao", expect=8)
        assert (
            "FAIL subnet: 10.77.0.0/24 (network.subnet) is routed to rqclash0 (10.77.0.0/24)" in proc.stderr
        )
        assert "ip link delete rqclash0" in proc.stderr
        assert containers(world) == []
    finally:
        subprocess.run(["ip", "link", "delete", "rqclash0"], check=False)


# ------------------------------------------------------------------ up, traffic, sidecars


def test_up_reaches_ready_and_runs_the_locked_digests(world: dict[str, Any]) -> None:
    proc = run(world["env"], "quickstart", str(world["rel"]), "--skip", "tcp-ao", "--json")
    result = json.loads(proc.stdout)["result"]
    assert {s["service"] for s in result["services"]} == {
        "bus",
        "bus-volumes",  # ran once: the volume to the service's user
        "collector",
        "collector-tcpao",
        "speaker",
        "speaker-tcpao",
        "speaker-volumes",
    }
    assert all(s["state"] == "running" for s in result["services"] if not s["service"].endswith("-volumes"))
    assert all(s["state"] == "exited" for s in result["services"] if s["service"].endswith("-volumes"))
    assert {s["service"]: s["health"] for s in result["services"] if s["health"]} == {
        "bus": "healthy",
        "collector": "healthy",
        "collector-tcpao": "healthy",  # its wire leg is up (collector-tcpao-probe: leg://)
        "speaker": "healthy",
        "speaker-tcpao": "healthy",
    }
    assert [u["url"] for u in result["urls"]] == [f"http://127.0.0.1:{world['port']}"]
    # generated now, or kept from an earlier run of the module (the tests run in any order)
    assert sorted(result["secretsCreated"] + result["secretsKept"]) == ["bmp-tcpao-key", "nats-token"]
    assert any("PLAIN TCP" in w for w in result["warnings"])
    # the running containers use exactly the lock's digests
    lock = yaml.safe_load((world["rel"] / "release.lock.yaml").read_text())
    pinned = {f"{e['repository']}@{e['digest']}" for e in lock["images"].values()}
    running = {
        docker(world["env"], "inspect", "-f", "{{.Config.Image}}", c).strip() for c in containers(world)
    }
    assert running == pinned


def test_traffic_crosses_both_sidecars(up: dict[str, Any]) -> None:
    world = up
    try:
        lines = wait_for(lambda: len(received(world)) >= 3 and received(world), what="lines at the collector")
    except pytest.fail.Exception:
        pytest.fail("no traffic at the collector; logs:\n" + compose(world, "logs", "--no-color"))
    assert all(line.startswith("bmp-standin from ") for line in lines)
    assert seqs(lines) == sorted(seqs(lines))
    logs = compose(world, "logs", "--no-color", "collector-tcpao", "speaker-tcpao")
    assert "relaying 0.0.0.0:1790 -> 127.0.0.1:11019 over plain TCP" in logs  # terminator
    assert "relaying 127.0.0.1:5000 -> 10.77.0.10:1790 over plain TCP" in logs  # initiator


def _health(world: dict[str, Any]) -> dict[str, str]:
    proc = run(world["env"], "quickstart", "status", "--json", expect=None)
    return {s["service"]: s["health"] for s in json.loads(proc.stdout)["result"]["services"]}


def test_sidecar_down_takes_its_leg_down_and_it_recovers(up: dict[str, Any]) -> None:
    world = up
    compose(world, "stop", "speaker-tcpao")
    wait_for(
        lambda: "leg down" in compose(world, "logs", "--no-color", "--since", "20s", "speaker"),
        what="the speaker to report its leg down",
    )
    before = len(received(world))
    time.sleep(3)
    assert len(received(world)) == before, "nothing may arrive while the initiator is down"
    # the terminator's health is its leg: status shows it down, and says so (exit 9)
    wait_for(
        lambda: _health(world).get("collector-tcpao") == "unhealthy",
        timeout=60,
        what="the leg down in status",
    )
    proc = run(world["env"], "quickstart", "status", expect=9)
    assert "collector-tcpao" in proc.stdout + proc.stderr
    compose(world, "start", "speaker-tcpao")
    wait_for(lambda: len(received(world)) > before + 1, what="traffic after the initiator is back")
    wait_for(
        lambda: _health(world).get("collector-tcpao") == _health(world).get("speaker-tcpao") == "healthy",
        timeout=60,
        what="both legs healthy again",
    )
    # a crash (SIGKILL of the terminator's process) is restarted by the engine and traffic resumes
    cid = compose(world, "ps", "-q", "collector-tcpao").strip()
    pid = int(docker(world["env"], "inspect", "-f", "{{.State.Pid}}", cid))
    os.kill(pid, 9)
    wait_for(
        lambda: docker(world["env"], "inspect", "-f", "{{.RestartCount}}", cid).strip() == "1",
        what="the terminator to be restarted",
    )
    n = len(received(world))
    wait_for(lambda: len(received(world)) > n + 1, what="traffic after the terminator restarted")


# ------------------------------------------------------------------ secrets


def _secret_values(world: dict[str, Any]) -> dict[str, str]:
    d = world["stack"] / ".secrets"
    return {p.name: p.read_text() for p in d.iterdir() if not p.name.startswith(".")}


def test_secrets_are_files_with_tight_modes(up: dict[str, Any]) -> None:
    world = up
    d = world["stack"] / ".secrets"
    assert d.stat().st_mode & 0o777 == 0o700
    st = {p.name: p.stat() for p in d.iterdir()}
    assert {n: (s.st_mode & 0o777, s.st_uid) for n, s in st.items()} == {
        "nats-token": (0o400, 65532),  # read by the collector (65532)
        "bmp-tcpao-key": (0o400, 65532),
    }  # read by the TCP-AO sidecars, which run as 65532 with no capability
    vals = _secret_values(world)
    assert len(vals["nats-token"]) == 32 and vals["nats-token"].isalnum()
    logs = compose(world, "logs", "--no-color", "collector")
    assert "is readable (32 bytes; never printed)" in logs


def test_secret_values_appear_nowhere_else(up: dict[str, Any]) -> None:
    world = up
    vals = list(_secret_values(world).values())
    texts = list(CAPTURED)
    for p in world["stack"].rglob("*"):
        if p.is_file() and ".secrets" not in p.parts:
            texts.append(p.read_text(errors="replace"))
    texts.append(compose(world, "logs", "--no-color"))
    texts.append(compose(world, "config"))
    for c in containers(world):
        texts.append(docker(world["env"], "inspect", c))
    run(world["env"], "quickstart", "logs")
    texts.extend(CAPTURED[-2:])
    for v in vals:
        hits = [i for i, t in enumerate(texts) if v in t]
        assert not hits, "a secret value leaked into captured output or a file"


def test_rerun_keeps_secrets_and_its_own_ports(up: dict[str, Any]) -> None:
    world = up
    before = _secret_values(world)
    proc = run(world["env"], "quickstart", str(world["rel"]), "--skip", "tcp-ao", "--json")
    result = json.loads(proc.stdout)["result"]
    assert result["secretsCreated"] == [] and sorted(result["secretsKept"]) == ["bmp-tcpao-key", "nats-token"]
    assert _secret_values(world) == before


def test_a_changed_tcpao_key_restarts_the_sidecars_and_a_bad_one_starts_nothing(up: dict[str, Any]) -> None:
    world = up
    env, key = world["env"], world["stack"] / ".secrets/bmp-tcpao-key"
    sidecars = ("collector-tcpao", "speaker-tcpao")

    def started() -> dict[str, str]:
        return {
            s: docker(env, "inspect", "-f", "{{.State.StartedAt}}", compose(world, "ps", "-q", s).strip())
            for s in sidecars
        }

    before, old = started(), key.read_bytes()
    try:
        key.write_bytes(b"another-lab-key-of-32-characters")  # in place: owner and mode stay
        proc = run(env, "quickstart", str(world["rel"]), "--skip", "tcp-ao", "--json")
        warnings = json.loads(proc.stdout)["result"]["warnings"]
        assert any("restarted collector-tcpao, speaker-tcpao" in w for w in warnings), warnings
        after = started()
        assert all(after[s] != before[s] for s in sidecars), (before, after)
        n = len(received(world))
        wait_for(lambda: len(received(world)) > n + 1, what="traffic through the sidecars with the new key")
        # the same key again: nothing is restarted
        proc = run(env, "quickstart", str(world["rel"]), "--skip", "tcp-ao", "--json")
        assert not any("restarted" in w for w in json.loads(proc.stdout)["result"]["warnings"])
        assert started() == after
        # a key the proxy would refuse (81 bytes) stops the preflight; the running sidecars stay as they are
        key.write_bytes(b"k" * 81)
        proc = run(env, "quickstart", str(world["rel"]), "--skip", "tcp-ao", expect=8)
        assert "bmp-tcpao-key: is 81 bytes; TCP-AO keys are at most 80" in proc.stderr
        assert "k" * 40 not in proc.stdout + proc.stderr
        assert started() == after
    finally:
        key.write_bytes(old)
        run(
            env, "quickstart", str(world["rel"]), "--skip", "tcp-ao"
        )  # the stack as the other tests expect it


def test_status_and_logs(up: dict[str, Any]) -> None:
    world = up
    proc = run(world["env"], "quickstart", "status", "--json")
    assert json.loads(proc.stdout)["result"]["healthy"] is True
    proc = run(world["env"], "quickstart", "status")
    assert "ok: every service is ready" in proc.stdout
    proc = run(world["env"], "quickstart", "logs", "collector", "--tail", "5")
    assert proc.stdout.count("\n") <= 6 and "collector" in proc.stdout
    proc = run(world["env"], "quickstart", "logs", "nope", expect=None)
    assert proc.returncode != 0 and "no service 'nope'" in proc.stderr


# ------------------------------------------------------------------ backup / reset / restore


def test_backup_reset_restore_gives_back_the_volume_data(up: dict[str, Any]) -> None:
    world = up
    backup = world["work"] / "backup.tar.zst"
    secrets_before = _secret_values(world)
    proc = run(world["env"], "quickstart", "backup", "--out-file", str(backup), "--json")
    result = json.loads(proc.stdout)["result"]
    assert result["volumes"] == ["bus-jetstream", "speaker-state"] and backup.stat().st_mode & 0o777 == 0o600
    saved = int(
        subprocess.run(
            f"zstd -dc {backup} | tar -xO volumes/speaker-state.tar | tar -xO ./seq",
            shell=True,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert saved > 0
    # the stack runs again after the backup
    status: list[Any] = []

    def healthy() -> bool:
        status.append(json.loads(run(world["env"], "quickstart", "status", "--json", expect=None).stdout))
        return bool(status[-1]["result"]["healthy"])

    try:
        wait_for(healthy, timeout=90, what="the stack after the backup")
    except pytest.fail.Exception:
        pytest.fail(f"not ready after the backup: {status[-1]}")

    proc = run(world["env"], "quickstart", "reset", expect=None)
    assert (
        proc.returncode != 0
        and "needs --yes" in proc.stderr
        and "volume bmp-tcpao_speaker-state" in proc.stderr
    )
    assert (world["stack"] / ".secrets" / "nats-token").exists()
    run(world["env"], "quickstart", "reset", "--yes")
    assert containers(world) == [] and not (world["stack"] / ".secrets").exists()
    assert "bmp-tcpao_speaker-state" not in docker(world["env"], "volume", "ls", "-q")

    run(world["env"], "quickstart", "restore", str(backup))
    assert _secret_values(world) == secrets_before
    first = wait_for(lambda: seqs(received(world)), what="traffic after the restore")
    # the speaker resumed from the counter kept in its volume: the backup's value came back
    assert first[0] == saved + 1, (first, saved)


def test_restore_refuses_a_damaged_backup(up: dict[str, Any], backup_file: Path) -> None:
    world = up
    before = sorted(containers(world))
    assert len(before) == 12  # 5 services and sidecars, 5 probe containers (2 of the legs), 2 volume owners
    bad = world["work"] / "bad.tar.zst"
    bad.write_bytes(backup_file.read_bytes()[:200])
    proc = run(world["env"], "quickstart", "restore", str(bad), expect=None)
    assert proc.returncode != 0 and "bad.tar.zst" in proc.stderr
    assert "nothing was restored" in proc.stderr or "not a readable" in proc.stderr
    assert sorted(containers(world)) == before  # the running stack was not touched
