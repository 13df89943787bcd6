"""The chart's pods under `podman kube play` (its values-podman.yaml), for real: both examples on
Debian trixie's podman 5.4 (tests/support/quadlet_host.py, a host of its own with systemd, whose
timers run podman's health checks), each played by the command block of its chart's README, run
as written from the chart's directory (helm copied into the host).

The BMP example comes through the air gap (signed bundle, `releaser airgap --to` a private registry,
INSTALL.md's lines for kube play, the chart the bundle carries; its publisher never reachable from
the host), and puts every pod on the host's network (its TCP-AO peers must be there), and its
traffic crosses speaker -> initiator sidecar -> terminator sidecar -> collector (plain TCP: this
kernel has no TCP-AO). The platform example's pods are on a network of their own, where each answers
by its service's name. Every pod runs the lock's digests with the chart's security context, and
each probe container becomes healthy. Taken down by the README's lines, nothing of the release is
left: no pod, no secret, no volume.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import images
from tests.support.engine import DockerEngine
from tests.support.engine import available as docker_missing
from tests.support.quadlet_host import WORK, QuadletHost
from tests.support.registry import RegistryServer
from tests.support.stack import seqs
from tests.test_quadlet import airgap
from tests.test_quickstart import RELEASER

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[1]
KEY = "kube-play-test-tcpao-key-0123456789"  # the TCP-AO key file's content


def releaser(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([RELEASER, *args], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (
        f"releaser {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def readme_blocks(readme: Path) -> tuple[str, str]:
    """The chart README's "podman kube play" section: its play block and its take-down block."""
    text = readme.read_text()
    section = text[text.index("## podman kube play") : text.index("## Values")]
    play, down = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return play, down


def wait_healthy(h: QuadletHost, pods: list[str], timeout: float = 240) -> dict[str, str]:
    """Every pod's probe container healthy (podman's health check, run by systemd's timers)."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = h.sh("podman ps -a --format '{{.Names}} {{.Status}}'", check=False).stdout
        states = dict(line.split(" ", 1) for line in out.splitlines() if line.strip())
        if all("(healthy)" in states.get(f"{p}-probe", "") for p in pods):
            return states
        time.sleep(2)
    raise AssertionError(f"not every pod became healthy in {timeout:.0f} s:\n{json.dumps(states, indent=1)}")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.conftest import missing_component

    if docker_missing():
        missing_component(f"a container engine ({', '.join(docker_missing())})")
    work = tmp_path_factory.mktemp("kubeplay")
    publisher = RegistryServer(work / "publisher").start()  # the platform's and edge's, served inside
    bmp_publisher = RegistryServer(work / "bmp-publisher").start()  # never reachable from the host
    private = RegistryServer(work / "private").start()  # the site's, served inside
    try:
        plat = images.platform_release(work, publisher.host)
        bmp = images.standin_release(work / "b", bmp_publisher.host, subnet="10.81.0")
        edge = edge_release(work, plat)
        twin = edge_release(work, plat, "twin", 8182)  # another release whose one service is `web` too
        for rel in (plat, bmp, edge, twin):
            releaser("lock", str(rel))
            releaser("render", str(rel), "--out-dir", str(work / "out"))
        bundle = airgap(work, bmp, private)  # BMP through the air gap, as INSTALL.md says
    finally:
        publisher.stop()
        bmp_publisher.stop()
        private.stop()
    engine = DockerEngine().start()
    h = QuadletHost(engine, work, name="kube-play-host")
    try:
        h.boot()
        h.serve_registry(publisher.config, publisher.host)
        h.serve_registry(private.config, private.host)
        for line in install_md_kube_play(bundle / "INSTALL.md"):  # from the site directory, as written
            h.sh(f"cd {WORK}/site && {line}")
        h.docker("cp", str((ROOT / ".tools/bin/helm").resolve()), f"{h.name}:/usr/local/bin/helm")
        (work / "tcpao-key").write_text(KEY)
        played: dict[str, Any] = {}
        for name, rel in (("platform", plat), ("bmp-tcpao", bmp), ("edge", edge), ("twin", twin)):
            chart = work / "out" / "charts" / name
            if name == "bmp-tcpao":  # the chart the bundle carries, at the site
                chart = bundle / "chart" / name
            play, down = readme_blocks(chart / "README.md")
            inside = f"{WORK}/{chart.relative_to(work)}"
            run = f"cd {inside} && BMP_TCPAO_KEY_FILE={WORK}/tcpao-key bash -euo pipefail -c "
            h.sh(run + shlex.quote(play), timeout=600)
            lock = yaml.safe_load((rel / "release.lock.yaml").read_text())
            played[name] = {
                "chart": chart,
                "play": run + shlex.quote(play),
                "down": run + shlex.quote(down),
                "lock": lock,
                "rel": rel,
            }
        yield {"h": h, "work": work, "played": played}
    finally:
        h.remove()
        engine.stop()


def install_md_kube_play(install_md: Path) -> list[str]:
    """INSTALL.md's lines for `podman kube play`: the block after its paragraph."""
    section = install_md.read_text().split("(`podman kube play` of the chart)", 1)[1]
    (block,) = re.findall(r"```\n(.*?)```", section, flags=re.S)[:1]
    return [line for line in block.splitlines() if line.strip()]


def test_the_docs_play_the_platform_as_its_chart_readme_does(host: dict[str, Any]) -> None:
    """docs/kubernetes.md's example is the platform chart README's block, which the fixture ran."""
    from tests.support.docs import walk_through

    play, _ = readme_blocks(host["played"]["platform"]["chart"] / "README.md")
    assert walk_through(ROOT / "docs" / "kubernetes.md", "tests/test_kube_play.py") == [
        line for line in play.splitlines() if line.strip()
    ]


def edge_release(work: Path, plat: Path, name: str = "edge", port: int = 8181) -> Path:
    """A release of our own beside the examples: the console stand-in with a public port and a tcp
    check, which the preset publishes on the host's loopback."""
    images_ = yaml.safe_load((plat / "release.yaml").read_text())["images"]
    web = {
        "args": [f"--listen=:{port}"],
        "ports": [{"name": "http", "port": port, "exposure": "public"}],
        "health": {"tcp": {"port": "http"}},
    }
    return images.edge_release(work, {"web": images_["console"], "probe": images_["probe"]}, web, name=name)


def pods_of(host: dict[str, Any], name: str) -> list[str]:
    """The pods of a played release that have a probe container (a service with an http or tcp check)."""
    values = yaml.safe_load((host["played"][name]["chart"] / "values.yaml").read_text())
    return sorted(
        f"{name}-{s}"
        for s, v in values["services"].items()
        if v["kind"] != "Job" and v["probes"]["readiness"] and not v["probes"]["readiness"].get("exec")
    )


def test_every_pod_runs_the_locked_digests_with_the_chart_hardening(host: dict[str, Any]) -> None:
    h: QuadletHost = host["h"]
    wait_healthy(h, [p for n in host["played"] for p in pods_of(host, n)])
    for name, played in host["played"].items():
        values = yaml.safe_load((played["chart"] / "values.yaml").read_text())
        pinned = {f"{i['registry']}/{i['repository']}@{i['digest']}" for i in values["images"].values()}
        for service, svc in values["services"].items():
            containers = [service, "probe"] + (["tcpao"] if svc["tcpao"]["enabled"] else [])
            if svc["kind"] == "Job":
                containers = [service]
            for c in containers:
                got = json.loads(h.sh(f"podman inspect {name}-{service}-{c}").stdout)[0]
                where = f"{name}-{service}-{c}"
                assert got["ImageName"] in pinned, f"{where} runs {got['ImageName']}, not a locked digest"
                assert got["Config"]["User"] != "" and not got["Config"]["User"].startswith("0"), where
                assert got["HostConfig"]["ReadonlyRootfs"] is True, where
                assert got["EffectiveCaps"] in ([], None), f"{where}: capabilities {got['EffectiveCaps']}"
                assert "no-new-privileges" in got["HostConfig"]["SecurityOpt"], where
        # `releaser check` renders the chart with the preset too and compares its images with the lock
        check = json.loads(
            releaser("check", str(played["rel"]), "--out-dir", str(host["work"] / "out"), "--json").stdout
        )
        assert check["result"]["sources"]["chart under podman kube play (rendered)"] > 0
        job = [s for s, v in values["services"].items() if v["kind"] == "Job"]
        for service in job:  # the platform's migration: run once, exit 0
            state = json.loads(h.sh(f"podman inspect {name}-{service}-{service}").stdout)[0]["State"]
            assert state["Status"] == "exited" and state["ExitCode"] == 0, f"{name}: {service} {state}"


def test_the_bmp_traffic_crosses_the_sidecars_on_the_hosts_network(host: dict[str, Any]) -> None:
    h: QuadletHost = host["h"]
    wait_healthy(h, pods_of(host, "bmp-tcpao"))
    for c in ("collector-collector", "speaker-speaker", "speaker-tcpao", "collector-tcpao"):
        c = f"bmp-tcpao-{c}"
        mode = h.sh(f"podman inspect {c} --format '{{{{.HostConfig.NetworkMode}}}}'").stdout.strip()
        assert mode == "host", f"{c} is on {mode!r}, not the host's network"

    def received() -> list[int]:
        out = h.sh(
            "podman exec bmp-tcpao-collector-collector wget -qO- http://127.0.0.1:8080/received", check=False
        )
        return seqs(out.stdout.splitlines())

    deadline = time.monotonic() + 120
    while len(received()) < 3 and time.monotonic() < deadline:
        time.sleep(2)
    got = received()
    assert len(got) >= 3 and got == sorted(got), f"the collector received {got}"
    logs = h.sh("podman logs bmp-tcpao-collector-tcpao 2>&1; podman logs bmp-tcpao-speaker-tcpao 2>&1").stdout
    assert KEY not in logs
    # each end's wire leg is judged healthy by its pod's tcpao-leg container (the probe's leg:// check)
    legs = ("bmp-tcpao-collector-tcpao-leg", "bmp-tcpao-speaker-tcpao-leg")

    def statuses() -> dict[str, str]:
        out = h.sh("podman ps -a --format '{{.Names}} {{.Status}}'", check=False).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())

    deadline = time.monotonic() + 120
    while not all("(healthy)" in statuses().get(c, "") for c in legs) and time.monotonic() < deadline:
        time.sleep(2)
    assert all("(healthy)" in statuses().get(c, "") for c in legs), statuses()


def test_the_platform_services_answer_by_name_on_their_network(host: dict[str, Any]) -> None:
    h: QuadletHost = host["h"]
    wait_healthy(h, pods_of(host, "platform"))
    values = yaml.safe_load((host["played"]["platform"]["chart"] / "values.yaml").read_text())
    probe = values["images"][values["probe"]["image"]]
    ref = f"{probe['registry']}/{probe['repository']}@{probe['digest']}"
    checks = [c["check"] for c in values["tests"]["checks"]]
    assert checks, "the platform chart has no checks"
    out = h.sh(f"podman run --rm --network platform {ref} --attempts 10 {' '.join(checks)}", check=False)
    assert out.returncode == 0, f"{checks}:\n{out.stdout}\n{out.stderr}"


def test_a_public_port_is_published_on_the_hosts_loopback(host: dict[str, Any]) -> None:
    """As Compose publishes it (BIND_ADDRESS 127.0.0.1): the edge release's web on 127.0.0.1:8181."""
    h: QuadletHost = host["h"]
    wait_healthy(h, pods_of(host, "edge"))
    bindings = json.loads(
        h.sh("podman pod inspect edge-web --format '{{json .InfraConfig.PortBindings}}'").stdout
    )
    assert bindings == {"8181/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8181"}]}, bindings
    values = yaml.safe_load((host["played"]["edge"]["chart"] / "values.yaml").read_text())
    probe = values["images"][values["probe"]["image"]]
    ref = f"{probe['registry']}/{probe['repository']}@{probe['digest']}"
    out = h.sh(f"podman run --rm --network host {ref} --attempts 10 tcp://127.0.0.1:8181", check=False)
    assert out.returncode == 0, f"the public port is not on the host's loopback:\n{out.stderr}"


def test_two_releases_with_one_service_name_keep_their_own_pods(host: dict[str, Any]) -> None:
    """edge and twin both have a service `web`: played one after the other on one host, each keeps
    its own pod (`<release>-web`), healthy, on its own port."""
    h: QuadletHost = host["h"]
    wait_healthy(h, pods_of(host, "edge") + pods_of(host, "twin"))
    pods = h.sh("podman pod ls --format '{{.Name}}'").stdout.split()
    assert {"edge-web", "twin-web"} <= set(pods), pods
    for port in (8181, 8182):
        assert h.sh(f"exec 3<>/dev/tcp/127.0.0.1/{port}", check=False).returncode == 0, port


def test_the_readme_run_again_replaces_the_pods_and_keeps_the_secrets(host: dict[str, Any]) -> None:
    """An upgrade, or a rerun: the same block again. The pods are made anew; the Secret the release
    generates keeps its value (a store initialised with it would refuse another)."""
    h: QuadletHost = host["h"]
    wait_healthy(h, pods_of(host, "platform"))

    def state() -> tuple[str, str]:
        secret = h.sh(
            "podman secret inspect --showsecret --format '{{.SecretData}}' platform-db-password"
        ).stdout
        pod = h.sh("podman pod inspect platform-store --format '{{.Id}}'").stdout.strip()
        return secret, pod

    before = state()
    h.sh(host["played"]["platform"]["play"], timeout=600)
    after = state()
    assert after[0] == before[0] and "db-password" in after[0], "the generated Secret changed"
    assert after[1] != before[1], "the store's pod was not made anew"
    wait_healthy(h, pods_of(host, "platform"))


def test_taken_down_by_the_readme_nothing_is_left(host: dict[str, Any]) -> None:
    h: QuadletHost = host["h"]
    for name in host["played"]:
        h.sh(host["played"][name]["down"], timeout=300)
    assert h.sh("podman pod ls -q").stdout.strip() == ""
    assert h.sh("podman secret ls --format '{{.Name}}'").stdout.strip() == ""
    assert h.sh("podman volume ls -q").stdout.strip() == ""
