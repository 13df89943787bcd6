"""The Quadlet units (quadlet/<release>/) for real: both examples on Debian trixie's podman 5.4 with
systemd 257 as PID 1 (tests/support/quadlet_host.py), on one host, installed by their README's own
command block: podman's generator makes the services, every container starts in dependency order
with the lock's digests and the release's hardening, the BMP pipeline's traffic crosses the TCP-AO
sidecars in their pods (plain TCP: this kernel has no TCP-AO), and after a reboot the stacks come
back by themselves.

examples/platform comes straight from its publisher's registry, its units as `releaser render`
writes them; its console moves to another host port by the README's own drop-in, as a site would,
so that the two releases' published ports do not collide. examples/bmp-tcpao comes through the air
gap: signed bundle, `releaser airgap --to` a private registry, then INSTALL.md's Quadlet lines (its
registries-airgap.conf) and the units the bundle carries; its publisher's registry is never reachable
from the host, so every one of its images came from the private registry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.support import images
from tests.support.engine import DockerEngine
from tests.support.engine import available as docker_missing
from tests.support.quadlet_host import WORK, QuadletHost
from tests.support.registry import RegistryServer
from tests.support.stack import seqs
from tests.test_quickstart import RELEASER

pytestmark = pytest.mark.engine

T = TypeVar("T")
CONSOLE_PORT = 9090  # the platform console, moved off the collector's 8080 by a drop-in
# what systemd would otherwise expand (`$`, `%`) or split (spaces, quotes, backslashes): a value of
# release.yaml reaches the container as written
AWKWARD = """price is $5, ${HOME} and $$; 50% off %h; "double" 'single' back\\slash"""
KEY = "quadlet-test-tcpao-key-0123456789"  # the TCP-AO key file's content (any 1-80 bytes)


def releaser(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([RELEASER, *args], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (
        f"releaser {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def wait_for(probe: Callable[[], T], *, timeout: float = 180, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def units(directory: Path) -> dict[str, dict[str, Any]]:
    """ContainerName -> what its .container unit says: image, job (oneshot), healthy (has a check)."""
    out = {}
    for f in sorted(directory.glob("*.container")):
        text = f.read_text()
        keys = dict(re.findall(r"^(ContainerName|Image|Type)=(.*)$", text, flags=re.M))
        out[keys["ContainerName"]] = {
            "unit": f.stem + ".service",
            "image": keys["Image"],
            "job": keys.get("Type") == "oneshot",
            "check": "HealthCmd=" in text,
        }
    return out


def readme_block(readme: Path) -> str:
    (block,) = re.findall(r"```sh\n(.*?)```", readme.read_text(), flags=re.S)
    return str(block)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.conftest import missing_component

    if docker_missing():
        missing_component(f"a container engine ({', '.join(docker_missing())})")
    work = tmp_path_factory.mktemp("quadlet")
    publisher = RegistryServer(work / "publisher").start()  # examples/platform's, served inside
    bmp_publisher = RegistryServer(work / "bmp-publisher").start()  # never reachable from the host
    private = RegistryServer(work / "private").start()  # the site's, served inside
    try:
        plat = images.platform_release(work, publisher.host)
        releaser("lock", str(plat))
        releaser("render", str(plat), "--out-dir", str(work / "out"))
        edge = edge_release(work, publisher.host)
        releaser("lock", str(edge))
        releaser("render", str(edge), "--out-dir", str(work / "out"))
        bmp = images.standin_release(work / "b", bmp_publisher.host, subnet="10.79.0")
        releaser("lock", str(bmp))
        releaser("render", str(bmp), "--out-dir", str(work / "b" / "out"))  # for `check` below
        bundle = airgap(work, bmp, private)
    finally:
        publisher.stop()
        bmp_publisher.stop()
        private.stop()
    engine = DockerEngine().start()
    h = QuadletHost(engine, work)
    try:
        h.boot()
        h.serve_registry(publisher.config, publisher.host)
        h.serve_registry(private.config, private.host)
        (work / "tcpao-key").write_text(KEY)
        dropin = "/etc/containers/systemd/platform/platform-console.pod.d"
        h.sh(
            f"mkdir -p {dropin} && printf '[Pod]\\nPublishPort=\\nPublishPort=127.0.0.1:{CONSOLE_PORT}:8080/tcp\\n'"
            f" > {dropin}/site.conf"
        )
        site = f"{WORK}/site"
        for line in install_md_quadlet(bundle / "INSTALL.md"):  # from the site directory, as written
            h.sh(f"cd {site} && {line}")
        block = readme_block(bundle / "quadlet" / "bmp-tcpao" / "README.md")
        h.sh(
            f"cd {site}/bundle/quadlet/bmp-tcpao && BMP_TCPAO_KEY_FILE={WORK}/tcpao-key "
            f"bash -euo pipefail -c {quote(block)}",
            timeout=600,
        )
        for name in ("platform", "edge"):
            block = readme_block(work / "out" / "quadlet" / name / "README.md")
            h.sh(f"cd {WORK}/out/quadlet/{name} && bash -euo pipefail -c {quote(block)}", timeout=600)
        expected = {
            **units(work / "out/quadlet/platform"),
            **units(work / "out/quadlet/edge"),
            **units(bundle / "quadlet/bmp-tcpao"),
        }
        state = {
            "h": h,
            "work": work,
            "expected": expected,
            "rels": [(plat, work / "out"), (bmp, work / "b" / "out"), (edge, work / "out")],
            "private": private.host,
        }
        wait_ready(state)
        yield state
    finally:
        h.remove()
        engine.stop()


def edge_release(work: Path, host: str) -> Path:
    """A release of our own beside the examples: the console stand-in, whose argument and environment
    hold AWKWARD."""
    web = {"args": ["--listen=:8181", f"--note={AWKWARD}"], "env": {"GREETING": AWKWARD}}
    return images.edge_release(work, {"web": {"ref": f"{host}/platform/console:2.3.0"}}, web)


def airgap(work: Path, rel: Path, private: RegistryServer) -> Path:
    """The release bundled, signed, loaded into `private` as a site does (`releaser airgap --to`, from
    work/site, where it writes registries-airgap.conf); returns the bundle unpacked as INSTALL.md's
    step 1 leaves it (work/site/bundle)."""
    site = work / "site"
    site.mkdir()
    env = {"RELEASER_KEY_PASSPHRASE": "quadlet-test"}
    run = {"capture_output": True, "text": True, "timeout": 300, "check": True}
    subprocess.run([RELEASER, "keygen", "--out-dir", str(work / "keys")], env={**os.environ, **env}, **run)
    out = work / "bmp.tar.zst"
    subprocess.run(
        [RELEASER, "bundle", str(rel), "--signing-key", str(work / "keys/releaser.key"), "--out-file", str(out),
         "--no-installer"],
        env={**os.environ, **env}, **run,
    )  # fmt: skip
    releaser_in(site, "airgap", str(out), "--to", private.host, "--key", str(work / "keys/releaser.pub"))
    (site / "bundle").mkdir()
    subprocess.run(f"zstd -dc {out} | tar -x -C {site / 'bundle'}", shell=True, check=True)
    return site / "bundle"


def releaser_in(cwd: Path, *args: str) -> None:
    proc = subprocess.run(
        [RELEASER, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, (
        f"releaser {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )


def install_md_quadlet(install_md: Path) -> list[str]:
    """INSTALL.md's Quadlet lines: the block after "One host with podman 5.0 or later"."""
    section = install_md.read_text().split("One host with podman 5.0 or later", 1)[1]
    (block,) = re.findall(r"```\n(.*?)```", section, flags=re.S)[:1]
    return [line for line in block.splitlines() if line.strip()]


def quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def containers(h: QuadletHost) -> dict[str, dict[str, Any]]:
    proc = h.sh("podman ps -a --format json", check=False)
    return {c["Names"][0]: c for c in json.loads(proc.stdout or "[]")}


def ready(state: dict[str, Any]) -> bool:
    got = containers(state["h"])
    for name, u in state["expected"].items():
        c = got.get(name)
        if u["job"]:
            continue  # a job's container is removed when it exits (--rm): its unit says how it ended
        if c is None or c["State"] != "running" or (u["check"] and "(healthy)" not in c["Status"]):
            return False
    return True


def wait_ready(state: dict[str, Any]) -> None:
    try:
        wait_for(lambda: ready(state), timeout=240, what="every container running and every check healthy")
    except AssertionError:
        h = state["h"]
        raise AssertionError(
            f"{h.units()}\n{h.sh('podman ps -a', check=False).stdout}\n"
            f"{h.sh('journalctl -b --no-pager -n 80', check=False).stdout}"
        ) from None


def show(h: QuadletHost, unit: str, prop: str) -> str:
    return h.sh(f"systemctl show -p {prop} --value {unit}").stdout.strip()


def received(h: QuadletHost) -> list[str]:
    """The collector stand-in's /received on its published port, inside the host."""
    proc = h.sh(
        "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /received HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
        check=False,
    )
    body = proc.stdout.replace("\r\n", "\n").split("\n\n", 1)
    return body[1].splitlines() if len(body) == 2 and " 200 " in body[0] else []


def test_the_readme_starts_every_container_after_what_it_depends_on(host: dict[str, Any]) -> None:
    h = host["h"]
    # the job ran once, to exit 0, and its dependents started after it ended
    assert show(h, "platform-migrate.service", "Result") == "success"
    assert show(h, "platform-migrate.service", "ExecMainStatus") == "0"
    ended = int(show(h, "platform-migrate.service", "ExecMainExitTimestampMonotonic"))
    assert 0 < ended <= int(show(h, "platform-api.service", "ExecMainStartTimestampMonotonic"))
    # a service with a check is active once healthy (Notify=healthy); its dependents start after that
    for dependency, dependent in (
        ("platform-store-probe", "platform-migrate"),
        ("platform-api-probe", "platform-console"),
        ("bmp-tcpao-bus-probe", "bmp-tcpao-collector"),
    ):
        healthy = int(show(h, f"{dependency}.service", "ActiveEnterTimestampMonotonic"))
        started = int(show(h, f"{dependent}.service", "ExecMainStartTimestampMonotonic"))
        assert 0 < healthy <= started, f"{dependent} started before {dependency} was healthy"
    assert (
        h.sh("systemctl list-units --failed --plain --no-legend 'platform-*' 'bmp-tcpao-*'").stdout.strip()
        == ""
    )


def test_every_container_runs_the_locked_digest_with_the_release_hardening(host: dict[str, Any]) -> None:
    h, expected = host["h"], host["expected"]
    pinned = set()
    for rel, _ in host["rels"]:
        lock = yaml.safe_load((rel / "release.lock.yaml").read_text())
        pinned |= {f"{i['repository']}@{i['digest']}" for i in lock["images"].values()}
    running = [n for n, u in expected.items() if not u["job"]]
    info = {c["Name"]: c for c in json.loads(h.sh(f"podman inspect {' '.join(running)}").stdout)}
    for name in running:
        c, u = info[name], expected[name]
        assert c["ImageName"] == u["image"] and u["image"] in pinned, name
        assert c["Config"]["User"] in ("65532:65532",), name
        assert c["HostConfig"]["ReadonlyRootfs"] is True, name
        assert c["EffectiveCaps"] in (None, []), f"{name}: {c['EffectiveCaps']}"
        assert "no-new-privileges" in c["HostConfig"]["SecurityOpt"], name
    # `releaser check` compares the units' images with the lock, rendered and as written
    for rel, out in host["rels"]:
        check = json.loads(releaser("check", str(rel), "--out-dir", str(out), "--json").stdout)
        assert check["result"]["sources"]["quadlet (committed)"] > 0


def test_values_reach_the_container_as_written(host: dict[str, Any]) -> None:
    h = host["h"]
    env = h.sh("podman exec edge-web cat /proc/1/environ").stdout.split("\0")
    assert f"GREETING={AWKWARD}" in env, env
    argv = h.sh("podman exec edge-web cat /proc/1/cmdline").stdout.split("\0")
    assert f"--note={AWKWARD}" in argv, argv


def test_secrets_are_podman_secrets_and_in_no_unit(host: dict[str, Any]) -> None:
    h = host["h"]
    token = h.sh(
        "podman secret inspect --showsecret --format '{{.SecretData}}' bmp-tcpao-nats-token"
    ).stdout.strip()
    assert len(token) == 32 and token.isalnum()
    assert h.sh(f"grep -rlF {token} /etc/containers/systemd /run/systemd/generator", check=False).stdout == ""
    # the service reads it as a file of its own user, mode 0400
    got = h.sh("podman exec bmp-tcpao-collector stat -c '%u:%g %a' /run/secrets/nats-token", check=False)
    if got.returncode == 0:  # the stand-in image has stat (busybox)
        assert got.stdout.strip() == "65532:65532 400"


def test_traffic_crosses_the_tcpao_sidecars_in_their_pods(host: dict[str, Any]) -> None:
    h = host["h"]
    lines = wait_for(
        lambda: len(seqs(received(h))) >= 3 and received(h), what="the speaker's lines at the collector"
    )
    assert seqs(lines)
    # the sidecars share their service's pod (network namespace): the same pod, the fixed addresses
    pods = dict(
        line.split()
        for line in h.sh("podman ps --pod --format '{{.Names}} {{.PodName}}'").stdout.splitlines()
    )
    assert pods["bmp-tcpao-collector-tcpao"] == pods["bmp-tcpao-collector"] == "bmp-tcpao-collector"
    assert pods["bmp-tcpao-speaker-tcpao"] == pods["bmp-tcpao-speaker"] == "bmp-tcpao-speaker"
    # the console answers on the port the site's drop-in chose
    reply = h.sh(
        f"exec 3<>/dev/tcp/127.0.0.1/{CONSOLE_PORT} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3"
    )
    assert " 200 " in reply.stdout


def test_the_readme_run_again_keeps_secrets_and_its_restart_makes_the_containers_anew(
    host: dict[str, Any],
) -> None:
    """A second run of the install commands changes nothing that is there; the README's upgrade line
    (`systemctl restart` of the jobs and pods) runs the job again first and makes every container anew."""
    h, work = host["h"], host["work"]
    secret = "podman secret inspect --showsecret --format '{{.SecretData}}' platform-db-password"
    before = h.sh(secret).stdout
    readme = work / "out" / "quadlet" / "platform" / "README.md"
    h.sh(
        f"cd {WORK}/out/quadlet/platform && bash -euo pipefail -c {quote(readme_block(readme))}", timeout=600
    )
    assert h.sh(secret).stdout == before
    ids = {n: c["Id"] for n, c in containers(h).items() if n.startswith("platform-")}
    migrated = show(h, "platform-migrate.service", "ExecMainStartTimestampMonotonic")
    (restart,) = re.findall(r"## Upgrade.*?```text\n(.*?)\n```", readme.read_text(), flags=re.S)
    h.sh(restart, timeout=600)
    wait_ready(host)
    assert show(h, "platform-migrate.service", "ExecMainStartTimestampMonotonic") != migrated
    assert show(h, "platform-migrate.service", "Result") == "success"
    ended = int(show(h, "platform-migrate.service", "ExecMainExitTimestampMonotonic"))
    assert ended <= int(show(h, "platform-api.service", "ExecMainStartTimestampMonotonic"))
    after = {n: c["Id"] for n, c in containers(h).items() if n.startswith("platform-")}
    assert set(after) == set(ids) and not set(after.values()) & set(ids.values())


def test_after_a_reboot_both_stacks_come_back_by_themselves(host: dict[str, Any]) -> None:
    h = host["h"]
    before = max(wait_for(lambda: seqs(received(h)), what="traffic before the reboot"))
    h.restart()
    wait_ready(host)
    # the speaker's counter lives in its volume: it goes on from where it was
    after = wait_for(lambda: [s for s in seqs(received(h)) if s > before], what="traffic after the reboot")
    assert min(after) > before
    assert show(h, "platform-migrate.service", "Result") == "success"  # the job ran again, to exit 0
