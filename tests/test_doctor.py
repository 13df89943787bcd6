"""`releaser doctor`: host checks with pass/fail and a fix, on this real host."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from releaser.cli import app

from .conftest import EXAMPLE

runner = CliRunner()

# the probe from the TCP-AO deployment spec (reference 000, section 4), run as its own process
REFERENCE_PROBE = """
import socket
TCP_AO_INFO = 40
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.getsockopt(socket.IPPROTO_TCP, TCP_AO_INFO, 64)
    print("TCP-AO runtime available")
except OSError as e:
    print("TCP-AO runtime unavailable:", e)
"""


def doctor(*args: str) -> tuple[int, dict[str, dict[str, object]], str]:
    result = runner.invoke(app, ["doctor", *args, "--json"], catch_exceptions=False)
    doc = json.loads(result.output)
    checks = (doc.get("result") or doc.get("error") or {}).get("checks", [])
    return result.exit_code, {c["name"]: c for c in checks}, result.output


def test_tcp_ao_probe_agrees_with_the_reference_probe() -> None:
    reference = subprocess.run([sys.executable, "-c", REFERENCE_PROBE], capture_output=True, text=True).stdout
    code, checks, _ = doctor(str(EXAMPLE))
    tcpao = checks["tcp-ao"]
    if "unavailable" in reference:
        assert tcpao["status"] == "fail" and "lacks CONFIG_TCP_AO" in str(tcpao["detail"])
        assert "--skip tcp-ao" in str(tcpao["fix"]) and code == 8
    else:
        assert tcpao["status"] == "pass"


def test_a_taken_port_is_named_with_its_service(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        d = tmp_path / "r"
        d.mkdir()
        doc = {
            "apiVersion": "releaser.dev/v1alpha1",
            "kind": "Release",
            "metadata": {"name": "r", "version": "1.0.0"},
            "images": {"web": {"ref": "registry.example.org/web:1"}},
            "services": {
                "web": {
                    "image": "web",
                    "ports": [{"name": "http", "port": 8080, "exposure": "public", "hostPort": port}],
                }
            },
        }
        (d / "release.yaml").write_text(yaml.safe_dump(doc))
        code, checks, _ = doctor(str(d))
    check = checks[f"port-{port}"]
    assert code == 8 and check["status"] == "fail"
    assert f"127.0.0.1:{port}/tcp for web.http is in use" == check["detail"]
    assert "tcp-ao" not in checks  # no sidecars, no kernel check


def test_a_host_network_port_is_checked_on_every_address_with_a_lock(tmp_path: Path) -> None:
    """With a current lock, doctor checks exactly what the quickstart would: a host-network
    service binds its own port, so a socket on any address (here loopback only) is in the way."""
    import shutil

    from .conftest import ROOT

    d = tmp_path / "ks"
    shutil.copytree(ROOT / "tests/fixtures/kitchen-sink", d)  # locked; `agent` is on the host network
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        text = (d / "release.yaml").read_text()
        assert text.count("port: 9100}") == 2
        (d / "release.yaml").write_text(text.replace("port: 9100}", f"port: {port}}}"))
        code, checks, _ = doctor(str(d), "--skip", "engine", "--skip", "engine-reachable")
    check = checks[f"port-{port}"]
    assert code == 8 and check["status"] == "fail"
    assert check["detail"] == f"0.0.0.0:{port}/tcp for agent.node-metrics (host network) is in use"
    assert "which .env cannot move" in str(check["fix"])
    assert checks["port-9443"]["detail"].startswith(
        "127.0.0.1:9443/tcp for api.https"
    )  # published: BIND_ADDRESS


def test_skip_is_explicit_and_reported(tmp_path: Path) -> None:
    _, checks, _ = doctor(str(EXAMPLE), "--skip", "tcp-ao", "--skip", "disk")
    assert checks["tcp-ao"]["status"] == "skipped" and checks["disk"]["status"] == "skipped"
    assert str(checks["tcp-ao"]["detail"]).startswith("skipped on request")


def test_missing_engine_says_what_was_found_and_how_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()  # a PATH with no engine on it
    unset: dict[str, str | None] = {"DOCKER_HOST": None, "DOCKER_CONTEXT": None, "RELEASER_ENGINE": None}
    result = runner.invoke(
        app, ["doctor", "--json"], catch_exceptions=False, env={**unset, "PATH": str(empty)}
    )
    checks = {c["name"]: c for c in json.loads(result.output)["error"]["checks"]}
    assert result.exit_code == 8
    assert checks["engine"]["detail"] == (  # podman first: the container security posture's order
        "no container engine with Compose found (found: none of podman, podman-compose, docker, "
        "docker-compose)"
    )
    # packages that exist: Docker's compose plugin, podman-compose from PyPI
    fix = str(checks["engine"]["fix"])
    assert "docker-compose-plugin" in fix and "pip install podman-compose" in fix
    assert "engine-reachable" not in checks
    # a Docker engine named in the environment is an explicit choice: Docker first
    for extra, order in (
        ({"DOCKER_HOST": "unix:///nowhere.sock"}, "docker, docker-compose, podman, podman-compose"),
        ({"RELEASER_ENGINE": "podman"}, "podman"),
    ):
        result = runner.invoke(
            app, ["doctor", "--json"], catch_exceptions=False, env={**unset, "PATH": str(empty), **extra}
        )
        checks = {c["name"]: c for c in json.loads(result.output)["error"]["checks"]}
        assert f"(found: none of {order})" in checks["engine"]["detail"], (extra, checks["engine"])


def test_unknown_engine_is_a_usage_error() -> None:
    result = runner.invoke(app, ["doctor", "--engine", "lxc"], catch_exceptions=False)
    assert (
        result.exit_code == 2 and "not one of podman, podman-compose, docker, docker-compose" in result.output
    )
    result = runner.invoke(app, ["doctor", "--json"], catch_exceptions=False, env={"RELEASER_ENGINE": "lxc"})
    error = json.loads(result.output)["error"]
    assert result.exit_code == 2 and "$RELEASER_ENGINE='lxc' is not one of" in error["message"], error


def test_json_envelope_keys() -> None:
    _, checks, out = doctor(str(EXAMPLE))
    doc = json.loads(out)
    assert set(doc) - {"format", "version"} in ({"ok", "command", "result"}, {"ok", "command", "error"})
    for c in checks.values():
        assert set(c) == {"name", "status", "detail", "fix"}
    assert {"engine", "disk", "tcp-ao", "port-8080"} <= set(checks)
    assert "net-admin" not in checks  # only a sidecar with tcpao.runAsRoot asks for NET_ADMIN


def test_subordinate_id_ranges_are_counted_by_user_name_or_number(tmp_path: Path) -> None:
    from releaser.quickstart.doctor import _subordinate_ranges

    db = tmp_path / "subuid"
    db.write_text("alice:100000:65536\n1001:300000:1000\nbob:200000:65536\nbroken line\nalice:400000:x\n")
    assert _subordinate_ranges(db, "alice", 1000) == 65536
    assert _subordinate_ranges(db, "carol", 1001) == 1000
    assert _subordinate_ranges(db, "dave", 1002) == 0
    assert _subordinate_ranges(tmp_path / "missing", "alice", 1000) == 0


def test_the_host_facts_engines_depend_on_are_reported() -> None:
    """cgroup version and SELinux mode, read from /sys as the engines read them; facts, never failures."""
    _, checks, _ = doctor(str(EXAMPLE))
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    assert checks["cgroup"]["status"] == "pass"
    assert str(checks["cgroup"]["detail"]).startswith("cgroup v2" if v2 else "cgroup v1")
    enforce = Path("/sys/fs/selinux/enforce")
    want = (
        ("SELinux enforcing" if enforce.read_text().strip() == "1" else "SELinux permissive")
        if enforce.exists()
        else "SELinux disabled (no /sys/fs/selinux)"
    )
    assert checks["selinux"]["status"] == "pass" and str(checks["selinux"]["detail"]).startswith(want)


def test_a_skipped_rootless_tcpao_check_is_recorded_as_a_plain_tcp_wire() -> None:
    """`--skip tcp-ao-rootless` (rootless podman, whose user-mode network carries no TCP-AO) is
    recorded and shown as the sidecars' wire leg running over plain TCP, as `--skip tcp-ao` is."""
    from releaser.commands.quickstart import _preflight_warnings
    from releaser.pipeline import load_plan
    from releaser.quickstart.doctor import ROOTLESS_TCPAO, Check

    plan, _ = load_plan(EXAMPLE)
    skipped = Check(
        name="tcp-ao-rootless", status="skipped", detail=f"skipped on request ({ROOTLESS_TCPAO[0]})"
    )
    for skip in (("tcp-ao-rootless",), ("tcp-ao",)):
        warnings, plain = _preflight_warnings([skipped], plan, skip)
        assert plain and any("PLAIN TCP" in w for w in warnings), warnings
    assert _preflight_warnings([], plan, ())[1] is False
