"""The generated Compose files against a real Docker Compose v2 (`docker compose config`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from releaser.pipeline import load_plan, render_files

from .conftest import RELEASES


def write_compose(name: str, tmp_path: Path) -> Path:
    plan, _ = load_plan(RELEASES[name])
    target = tmp_path / "compose" / name
    for rel, content in render_files(plan)[f"compose/{name}"].items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(content)
    return target


def config(compose_cmd: list[str], env: dict[str, str], project: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [
            *compose_cmd,
            "--project-directory",
            str(project),
            "-f",
            str(project / "compose.yaml"),
            "config",
            "--format",
            "json",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.fixture(params=sorted(RELEASES))
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return write_compose(request.param, tmp_path)


@pytest.mark.compose
def test_compose_config_accepts_the_file(
    compose_cmd: list[str], compose_env: dict[str, str], project: Path
) -> None:
    proc = subprocess.run(
        [
            *compose_cmd,
            "--project-directory",
            str(project),
            "-f",
            str(project / "compose.yaml"),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=compose_env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.compose
def test_hardening_and_digests(compose_cmd: list[str], compose_env: dict[str, str], project: Path) -> None:
    plan, _ = load_plan(RELEASES[project.name])
    doc = config(compose_cmd, compose_env, project)
    images = set()
    for name, svc in doc["services"].items():
        images.add(svc["image"])
        assert "@sha256:" in svc["image"], name
        assert svc["cap_drop"] == ["ALL"], name
        assert svc["read_only"] is True, name
        assert "no-new-privileges:true" in svc["security_opt"], name
        if name.endswith("-volumes"):  # runs once as root with CHOWN alone, no network: the volume's owner
            assert svc["user"] == "0:0" and svc["cap_add"] == ["CHOWN"] and svc["network_mode"] == "none", (
                name
            )
            assert svc["command"][0] == "chown" and svc["restart"] == "no", name
        else:
            assert not svc["user"].startswith("0"), name  # the TCP-AO sidecars too: no privilege needed
        assert "NET_ADMIN" not in svc.get("cap_add", []), name
        if name.endswith("-tcpao"):
            assert "cap_add" not in svc and svc["user"] == "65532:65532"
            assert svc["network_mode"] == f"service:{name.removesuffix('-tcpao')}"
            assert svc["volumes"][0]["read_only"] is True
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
    assert images == plan.pinned_references()
    if project.name == "kitchen-sink":
        # the readiness probe is the healthcheck; the startup probe's 5 + 2 x 60 s is its start period
        api = doc["services"]["api"]["healthcheck"]
        assert api["test"][-1] == "http://127.0.0.1:9090/readyz" and api["start_period"] == "2m5s"
        # scratch: sized tmpfs owned by the service's user, and none for the worker
        assert doc["services"]["db"]["tmpfs"] == [
            "/tmp:uid=999,gid=999,mode=0700,size=33554432",
            "/var/run/postgresql:uid=999,gid=999,mode=0700,size=1048576",
        ]
        assert "tmpfs" not in doc["services"]["worker"]
        # config files: Compose configs from files the render wrote beside compose.yaml
        configs = {c["target"]: c["source"] for c in doc["services"]["api"]["configs"]}
        assert configs == {"/etc/api/api.yaml": "api-api.yaml", "/etc/api/motd": "api-motd"}
        assert doc["configs"]["api-motd"]["file"] == str(project / "configs/api/motd")
        assert (project / "configs/api/motd").read_text().startswith("Welcome to the api.")
        # the migration job runs once, and the api starts only after it exited 0
        migrate = doc["services"]["migrate"]
        assert migrate["restart"] == "no" and migrate["labels"]["dev.releaser.job"] == "true"
        assert (
            doc["services"]["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
        # shutdown: grace period, signal and init where asked, the engine's defaults elsewhere
        db, worker = doc["services"]["db"], doc["services"]["worker"]
        assert (db["stop_grace_period"], db["stop_signal"]) == ("1m0s", "SIGINT")
        assert worker["init"] is True and "init" not in db and "stop_signal" not in worker


@pytest.mark.compose
def test_bind_address_opt_in(compose_cmd: list[str], compose_env: dict[str, str], tmp_path: Path) -> None:
    project = write_compose("bmp-tcpao", tmp_path)
    (project / ".env").write_text("BIND_ADDRESS=0.0.0.0\nCOLLECTOR_HTTP_PORT=18080\n")
    doc = config(compose_cmd, compose_env, project)
    port = doc["services"]["collector"]["ports"][0]
    assert (port["host_ip"], port["published"], port["target"]) == ("0.0.0.0", "18080", 8080)


@pytest.mark.compose
def test_bmp_topology(compose_cmd: list[str], compose_env: dict[str, str], tmp_path: Path) -> None:
    doc = config(compose_cmd, compose_env, write_compose("bmp-tcpao", tmp_path))
    s = doc["services"]
    assert s["collector"]["networks"]["release"]["ipv4_address"] == "10.77.0.10"
    assert s["speaker"]["networks"]["release"]["ipv4_address"] == "10.77.0.20"
    assert s["collector"]["depends_on"]["bus-probe"]["condition"] == "service_healthy"
    assert doc["networks"]["release"]["ipam"]["config"][0]["subnet"] == "10.77.0.0/24"
    assert {x["target"] for x in s["speaker-tcpao"]["secrets"]} == {"tcpao-key"}
    # the check runs from releaser's probe image in the collector's network namespace, not in its image
    assert "healthcheck" not in s["collector"]
    probe = s["collector-probe"]
    assert probe["network_mode"] == "service:collector" and probe["command"] == ["wait"]
    assert probe["healthcheck"]["test"] == [
        "CMD",
        "/probe",
        "--quiet",
        "--timeout",
        "3",
        "http://127.0.0.1:8080/healthz",
    ]
    assert probe["user"] == "65532:65532" and probe["read_only"] is True and probe["cap_drop"] == ["ALL"]
    assert probe["image"] == s["bus-probe"]["image"] and "releaser-probe@sha256:" in probe["image"]


def test_env_example_has_every_knob_and_no_secret_values(tmp_path: Path) -> None:
    plan, _ = load_plan(RELEASES["kitchen-sink"])
    files = render_files(plan)["compose/kitchen-sink"]
    env = files[".env.example"].decode()
    compose = files["compose.yaml"].decode()
    import re

    knobs = set(re.findall(r"\$\{([A-Z0-9_]+):-", compose))
    declared = {line.split("=", 1)[0] for line in env.splitlines() if line and not line.startswith("#")}
    assert knobs == declared
    assert "session-key" in env and "db-password" in env  # named as files ...
    assert "=" not in "".join(
        line for line in env.splitlines() if "secret" in line.lower() and not line.startswith("#")
    )  # ... never given values


@pytest.mark.engine  # podman-compose's dry run still makes the named volumes: in a podman storage of its own
def test_podman_variant_relabels_every_mounted_file_and_orders_no_service_after_a_job(project: Path) -> None:
    """compose.podman.yaml, as podman-compose 1.6 turns it into podman arguments (`--dry-run`):
    every file mounted from the stack directory (secret files, configs, the TCP-AO configuration)
    carries an SELinux relabel option, `Z` when one container mounts it and `z` when several do;
    configs are read-only bind mounts (podman-compose ignores `configs:`); no service depends on a
    run-once job (docs/quickstart.md#podman)."""
    import shutil

    import yaml

    from releaser.render.compose import PODMAN_COMPOSE

    pc = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "podman-compose"
    if not pc.exists() or shutil.which("podman") is None:
        from .conftest import missing_component

        missing_component("podman-compose (requirements/dev.lock) and podman")
    doc = yaml.safe_load((project / PODMAN_COMPOSE).read_text())
    services = doc["services"]
    jobs = {n for n, s in services.items() if (s.get("labels") or {}).get("dev.releaser.job") == "true"}
    assert "configs" not in doc and not any("configs" in s for s in services.values())
    for name, svc in services.items():
        assert not jobs & set(svc.get("depends_on") or ()), (name, svc.get("depends_on"))
    from .support.podman import Podman

    engine = Podman([])  # never the host's own podman storage
    try:
        proc = subprocess.run(
            [str(pc), "--verbose", "--dry-run", "-f", PODMAN_COMPOSE, "-p", "relabel", "up", "-d"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=engine.env,
        )
    finally:
        engine.stop()
    args = proc.stdout.split() + proc.stderr.split()
    mounts = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-v", "--volume")]
    files = [m for m in mounts if m.startswith(str(project))]
    readers: dict[str, int] = {}
    for m in files:
        readers[m.split(":")[0]] = readers.get(m.split(":")[0], 0) + 1
    for m in files:
        source, options = m.split(":")[0], m.split(":")[-1].split(",")
        want = "z" if readers[source] > 1 else "Z"
        assert want in options and ({"z", "Z"} - {want}).isdisjoint(options), (m, readers[source])
    wanted = sum(len(s.get("secrets") or []) for n, s in services.items() if not s.get("profiles"))
    binds = sum(
        1
        for s in services.values()
        if not s.get("profiles")
        for v in s.get("volumes") or []
        if isinstance(v, dict) and v.get("type") == "bind"
    )
    assert len(files) == wanted + binds, (files, wanted, binds)


def test_a_container_podman_refuses_to_start_is_named_with_the_engine_reason_and_its_fix() -> None:
    """podman-compose goes on waiting for a container podman refused to start; the quickstart reads
    the refusal from `compose up`'s output, names the service and the engine's reason, and for an
    address another container holds in podman's host-wide address database, names the holder and
    both ways out (the refusal itself runs for real in test_podman_platform.py)."""
    from typing import cast

    from releaser.quickstart.stack import Compose, ServiceState, _failure, _refused_start

    speaker = ServiceState(service="speaker", container="", state="created", ids=("f71f0ca2b7d04e1c9a8e",))
    other = ServiceState(service="db", container="", state="running", ids=("0a1b2c3d4e5f60718293",))
    out = (
        "podman start -a bmp_speaker_1\n"
        'Error: unable to start container "f71f0ca2b7d04e1c9a8e": IPAM error: requested ip address '
        "10.78.0.20 is already allocated to container ID 9c3e1f00aa11bb22cc33\n"
    )
    refused = _refused_start(out, [other, speaker])
    assert refused is not None and refused[0] is speaker
    assert refused[1].startswith("IPAM error: requested ip address 10.78.0.20")
    assert _refused_start('Error: unable to start container "ffff00001111": x\n', [other, speaker]) is None
    err = _failure(
        cast(Compose, None), speaker, [speaker], lambda s: s, f"speaker: {refused[1]}", refused=True
    )
    assert err.service == "speaker"
    assert "podman rm -f 9c3e1f00aa11" in err.fix and "network.subnet" in err.fix, err.fix
    plain = _failure(cast(Compose, None), speaker, [speaker], lambda s: s, "speaker: rlimit", refused=True)
    assert "releaser doctor" in plain.fix, plain.fix
