"""examples/platform on podman 4.3.1 with podman-compose 1.6.0: the release with a run-once job
(a migration the API waits for), a config file and a shared secret, as the Docker path runs it
(tests/test_platform_quickstart.py).

What podman needs here (docs/quickstart.md#podman): no service depends on the job in
compose.podman.yaml, and the quickstart starts the job and what it needs first, waits until it has
exited 0, then the rest; configs are read-only bind mounts (podman-compose ignores `configs:`);
every file mounted from the stack directory carries an SELinux relabel option.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import images
from tests.support import podman as podman_mod
from tests.support.registry import RegistryServer, free_port
from tests.test_quickstart import RELEASER

# by itself, after the parallel suite (tests/conftest.py: alone)
pytestmark = [pytest.mark.engine, pytest.mark.alone]


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    podman_mod.require()
    work = tmp_path_factory.mktemp("podman-platform")
    publisher = RegistryServer(work / "publisher").start()
    engine = podman_mod.Podman([publisher.host])
    env = {
        **engine.env,
        "RELEASER_QUICKSTART_DIR": str(work / "stack"),
        "CONSOLE_HTTP_PORT": str(free_port()),
        "RELEASER_CACHE": str(work / "cache"),
    }
    try:
        rel = images.platform_release(work, publisher.host)
        run(env, "lock", str(rel))
        up = run(env, "quickstart", str(rel), "--engine", "podman-compose", "--json")
        yield {"env": env, "rel": rel, "work": work, "engine": engine, "up": json.loads(up.stdout)["result"]}
    finally:
        subprocess.run([RELEASER, "quickstart", "reset", "--yes"], env=env, capture_output=True, check=False)
        engine.stop()
        publisher.stop()


def run(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [RELEASER, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == expect, (
        f"releaser {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def state(plat: dict[str, Any], container: str) -> dict[str, Any]:
    out = plat["engine"].run("inspect", container)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]["State"]  # type: ignore[no-any-return]


def test_the_job_completes_before_the_api_starts_and_the_config_file_is_mounted(plat: dict[str, Any]) -> None:
    services = {s["service"]: s for s in plat["up"]["services"]}
    assert plat["up"]["engine"] == "podman-compose"
    assert {s: v["state"] for s, v in services.items()} == {
        "console": "running",
        "api": "running",
        "migrate": "exited",
        "worker": "running",
        "store": "running",
    }, services
    migrate, api = state(plat, services["migrate"]["container"]), state(plat, services["api"]["container"])
    assert migrate["ExitCode"] == 0
    assert api["StartedAt"] > migrate["FinishedAt"], (migrate, api)  # RFC 3339 in one zone: compares as text
    config = (plat["rel"] / "config/api.yaml").read_bytes()
    api_log = run(plat["env"], "quickstart", "logs", "api").stdout
    assert f"config /etc/api/api.yaml: {len(config)} bytes" in api_log, api_log
    assert "the store password file is readable" in run(plat["env"], "quickstart", "logs", "migrate").stdout
    status = run(plat["env"], "quickstart", "status").stdout
    assert "migrate            completed" in status and "every service is ready" in status, status


def test_a_rerun_and_a_backup_leave_the_job_done_and_every_service_ready(plat: dict[str, Any]) -> None:
    run(plat["env"], "quickstart", str(plat["rel"]), "--engine", "podman-compose")
    run(plat["env"], "quickstart", "backup", "--out", str(plat["work"] / "backup.tar.zst"))
    assert "every service is ready" in run(plat["env"], "quickstart", "status").stdout


def test_a_failing_job_stops_the_quickstart_and_nothing_after_it_starts(plat: dict[str, Any]) -> None:
    """Near the end of the file: it replaces the running stack with one whose migration fails."""
    env = plat["env"]
    run(env, "quickstart", "reset", "--yes")
    rel = images.failing_platform(plat["rel"], plat["work"] / "platform-fail")
    run(env, "lock", str(rel))
    proc = run(env, "quickstart", str(rel), "--engine", "podman-compose", "--json", expect=9)
    error = json.loads(proc.stdout)["error"]
    assert error["service"] == "migrate", error
    assert "the schema does not apply" in error["logs"], error
    states = {s["service"]: s["state"] for s in error["services"]}
    assert states["api"] == "waiting" and states["console"] == "waiting", states
    assert plat["engine"].run("ps", "-a", "--format", "{{.Names}}").stdout.count("_api_") == 0


def test_doctor_says_how_podman_runs_here_and_in_which_order_engines_are_tried(plat: dict[str, Any]) -> None:
    proc = subprocess.run(
        [RELEASER, "doctor", "--engine", "podman-compose", "--skip", "disk", "--json"],
        env=plat["env"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    checks = {c["name"]: c for c in json.loads(proc.stdout)["result"]["checks"]}
    assert checks["engine"]["detail"].endswith("(order: podman-compose; --engine)"), checks["engine"]
    assert checks["podman-mode"] == {
        "name": "podman-mode",
        "status": "pass",
        "detail": "rootful (podman runs as root)",
        "fix": None,
    }
    env = {
        k: v for k, v in plat["env"].items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT", "RELEASER_ENGINE")
    }
    proc = subprocess.run(
        [RELEASER, "doctor", "--skip", "disk", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    engine = {c["name"]: c for c in json.loads(proc.stdout)["result"]["checks"]}["engine"]
    assert engine["detail"].startswith("podman-compose with Compose"), engine  # podman first
    assert (
        "(order: podman, podman-compose, docker, docker-compose; podman first, then Docker)"
        in engine["detail"]
    )


def test_a_container_the_engine_will_not_start_is_named_at_once_and_a_rerun_after_the_fix_works(
    plat: dict[str, Any],
) -> None:
    """Last in the file. podman refuses to start a container whose open-file limit the kernel will
    not grant (containers.conf's default_ulimits above fs.nr_open, on any host): podman-compose
    prints the reason and then waits for the container for ever. The quickstart names the service
    and the engine's reason as soon as it is printed, and leaves no `compose up` (nor the `podman
    wait` it started) behind; once the host is fixed, a rerun makes the never-started containers
    anew (they keep the settings of their creation) and the stack comes up."""
    env, conf = plat["env"], plat["engine"].root / "containers.conf"
    run(env, "quickstart", "reset", "--yes")
    good = conf.read_text()
    conf.write_text(good.replace("nofile=1024:1024", "nofile=999999999:999999999"))
    try:
        proc = run(env, "quickstart", str(plat["rel"]), "--engine", "podman-compose", "--json", expect=9)
    finally:
        conf.write_text(good)
    error = json.loads(proc.stdout)["error"]
    assert "the engine could not start its container" in error["message"], error
    assert "rlimit" in error["message"] and error["service"] in ("store", "migrate"), error
    assert "the engine refused to start the container" in error["fix"], error
    left = subprocess.run(
        ["pgrep", "-af", "podman(-compose| wait)"], capture_output=True, text=True, check=False
    )
    assert str(plat["work"]) not in left.stdout and "platform_" not in left.stdout, left.stdout
    up = json.loads(run(env, "quickstart", str(plat["rel"]), "--engine", "podman-compose", "--json").stdout)
    assert {s["service"]: s["state"] for s in up["result"]["services"]}["api"] == "running", up
    assert "every service is ready" in run(env, "quickstart", "status").stdout
