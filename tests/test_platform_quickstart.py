"""examples/platform's Compose quickstart on a real engine (Docker 20.10 + Compose v2.40, as in
test_quickstart.py), with stand-in images: the migration job runs first and exits 0, and the
API starts only then; the API reads its config file; the worker writes to its scratch
directory while the root file system stays read-only; the store keeps a named volume; a stop
gives each service its grace period; and a job that fails stops the quickstart, naming it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TOOLS, missing_component
from tests.support import engine as engine_mod
from tests.support import images
from tests.support.registry import RegistryServer, free_port

pytestmark = pytest.mark.engine

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")


@contextlib.contextmanager
def platform_stack(prefix: str) -> Iterator[dict[str, Any]]:
    """examples/platform's stand-ins pushed to a registry of their own, locked and brought up with
    the quickstart on a Docker engine of its own; reset and stopped afterwards."""
    missing = engine_mod.available()
    if missing or images.have_tools():
        missing_component(f"Docker engine ({', '.join(missing + images.have_tools())})")
    if not (TOOLS / "docker" / "cli-plugins" / "docker-compose").exists():
        missing_component("Docker Compose v2")
    with engine_mod.DockerEngine() as eng, tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        publisher = RegistryServer(work / "publisher").start()
        env = {
            **eng.env,
            "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}",
            "DOCKER_CONFIG": str(TOOLS / "docker"),
            "RELEASER_QUICKSTART_DIR": str(work / "stack"),
            "CONSOLE_HTTP_PORT": str(free_port()),
            "RELEASER_CACHE": str(work / "cache"),
        }
        try:
            rel = images.platform_release(work, publisher.host)
            run(env, "lock", str(rel))
            up = run(env, "quickstart", str(rel), "--json", timeout=600)
            yield {"env": env, "rel": rel, "work": work, "up": json.loads(up.stdout)["result"]}
        finally:
            subprocess.run(
                [RELEASER, "quickstart", "reset", "--yes"], env=env, capture_output=True, check=False
            )
            publisher.stop()


@pytest.fixture(scope="module")
def platform() -> Iterator[dict[str, Any]]:
    with platform_stack("platform-qs-") as found:
        yield found


def run(
    env: dict[str, str], *args: str, expect: int | None = 0, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [RELEASER, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if expect is not None:
        assert proc.returncode == expect, (
            f"releaser {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def inspect(env: dict[str, str], container: str) -> dict[str, Any]:
    out = subprocess.run(
        ["docker", "inspect", container], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)[0]  # type: ignore[no-any-return]


def logs(env: dict[str, str], service: str) -> str:
    return run(env, "quickstart", "logs", service).stdout


def test_the_job_completes_first_and_its_dependents_start_after_it(platform: dict[str, Any]) -> None:
    states = {s["service"]: s for s in platform["up"]["services"]}
    assert states["migrate"]["state"] == "exited" and states["migrate"]["exitCode"] == 0
    # store-volumes ran once before the store: its volume to the store's user
    assert states["store-volumes"]["state"] == "exited" and states["store-volumes"]["exitCode"] == 0
    assert all(
        s["state"] == "running" for name, s in states.items() if name not in ("migrate", "store-volumes")
    )
    owner = inspect(platform["env"], states["store-volumes"]["container"])["State"]
    store = inspect(platform["env"], states["store"]["container"])["State"]
    assert store["StartedAt"] > owner["FinishedAt"]
    migrate = inspect(platform["env"], states["migrate"]["container"])["State"]
    api = inspect(platform["env"], states["api"]["container"])["State"]
    assert api["StartedAt"] > migrate["FinishedAt"]  # RFC 3339 times of one clock compare as text
    assert "migrate: schema at the latest version" in logs(platform["env"], "migrate")
    status = run(platform["env"], "quickstart", "status")
    assert "completed" in status.stdout and "ok: every service is ready" in status.stdout


def test_config_files_scratch_and_the_read_only_root(platform: dict[str, Any]) -> None:
    config = (platform["rel"] / "config/api.yaml").read_bytes()
    api = logs(platform["env"], "api")
    assert (
        f"config /etc/api/api.yaml: {len(config)} bytes" in api and "API_CONFIG_FILE=/etc/api/api.yaml" in api
    )
    worker = logs(platform["env"], "worker")
    assert "scratch /var/cache/worker is writable" in worker and "the root file system is read-only" in worker
    states = {s["service"]: s for s in platform["up"]["services"]}
    mounts = inspect(platform["env"], states["worker"]["container"])["HostConfig"]["Tmpfs"]
    assert mounts["/var/cache/worker"].endswith("size=536870912")
    store = inspect(platform["env"], states["store"]["container"])
    assert [m["Destination"] for m in store["Mounts"] if m["Type"] == "volume"] == ["/data"]


def test_a_stop_gives_each_service_its_grace_period(platform: dict[str, Any]) -> None:
    states = {s["service"]: s for s in platform["up"]["services"]}
    assert inspect(platform["env"], states["store"]["container"])["Config"]["StopTimeout"] == 60
    assert inspect(platform["env"], states["console"]["container"])["Config"]["StopTimeout"] == 20
    assert inspect(platform["env"], states["worker"]["container"])["HostConfig"]["Init"] is True


def test_after_down_status_says_stopped_and_backup_still_reads_the_volumes(platform: dict[str, Any]) -> None:
    """`down` removes the containers and keeps the volumes: status says stopped (not `waiting`), and a
    backup reads each volume through a helper container of the service's own image."""
    env = platform["env"]
    run(env, "quickstart", "down")
    status = run(env, "quickstart", "status", expect=9)
    assert "stopped: no container of this stack exists" in status.stdout, status.stdout
    out = platform["work"] / "after-down.tar.zst"
    backup = json.loads(run(env, "quickstart", "backup", "--out-file", str(out), "--json").stdout)["result"]
    assert backup["volumes"] == ["store-data"], backup
    helpers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "name=platform-volume-"], env=env, capture_output=True, text=True
    )
    assert helpers.stdout.strip() == ""  # the helper is gone


def test_a_failing_job_stops_the_quickstart_and_is_named(platform: dict[str, Any]) -> None:
    """Last in the file: it replaces the running stack with one whose migration fails."""
    env = platform["env"]
    run(env, "quickstart", "reset", "--yes")
    rel = images.failing_platform(platform["rel"], platform["work"] / "platform-fail")
    run(env, "lock", str(rel))
    proc = run(env, "quickstart", str(rel), "--json", expect=9, timeout=600)
    error = json.loads(proc.stdout)["error"]
    assert error["service"] == "migrate", error
    assert "the schema does not apply" in error["logs"], error
    states = {s["service"]: s["state"] for s in error["services"]}
    assert states["api"] in ("waiting", "created") and states["console"] in ("waiting", "created"), states
