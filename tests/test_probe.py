"""releaser's probe image: built reproducibly, published with `releaser probe push`, and the
http/tcp checks of a Compose quickstart run from it, so images without a shell, wget or nc pass
them: a busybox image (whose nc has no -z), a distroless-like image (one static binary and
/etc/passwd, no shell) and a scratch image (one file). A check that fails for real fails the
quickstart naming the service and what the probe saw; `docker compose up --wait` needs no releaser.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from releaser.commands.probe import push
from releaser.probe import image
from releaser.registry import RegistryOptions
from tests.conftest import ROOT, TOOLS, missing_component
from tests.support import engine as engine_mod
from tests.support import images
from tests.support.cluster_build import _image as single_layer_image
from tests.support.registry import RegistryServer, free_port

pytestmark = pytest.mark.engine

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def _platform_images(layout: Path, digest: str) -> dict[str, tuple[dict[str, Any], dict[str, Any], bytes]]:
    """arch -> (manifest, config, layer tar) of the probe index `digest`."""
    out = {}
    for child in json.loads(_blob(layout, digest))["manifests"]:
        manifest = json.loads(_blob(layout, child["digest"]))
        config = json.loads(_blob(layout, manifest["config"]["digest"]))
        (layer,) = manifest["layers"]
        out[child["platform"]["architecture"]] = (
            manifest,
            config,
            gzip.decompress(_blob(layout, layer["digest"])),
        )
    return out


def _probe_binary(tmp: Path) -> Path:
    p = image()
    _, _, tar = _platform_images(p.layout, p.digest)["amd64"]
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        member = t.extractfile("probe")
        assert member is not None
        path = tmp / "probe"
        path.write_bytes(member.read())
    path.chmod(0o755)
    return path


# ------------------------------------------------------------------ the image itself


def test_the_image_is_rebuilt_byte_for_byte_from_its_source(tmp_path: Path) -> None:
    """Two builds with one Go version give the same digest: the packaged image is what probe/ says."""
    if shutil.which("go") is None:
        missing_component("Go (the probe's build)")
    out = tmp_path / "image"
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "scripts/build_probe.py", "--force", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    packaged = image()
    rebuilt = json.loads((out / "build.json").read_text())
    assert rebuilt["go"] == packaged.go, f"the package's probe was built with {packaged.go}: run make setup"
    assert rebuilt["digest"] == packaged.digest
    assert packaged.platforms == ("linux/amd64", "linux/arm64")


def test_the_image_holds_one_static_binary_and_runs_as_non_root() -> None:
    p = image()
    for arch, (_, config, tar) in _platform_images(p.layout, p.digest).items():
        assert config["architecture"] == arch and config["os"] == "linux"
        assert config["config"]["User"] == "65532:65532"
        assert config["config"]["Entrypoint"] == ["/probe"]
        assert "created" not in config  # no date: the digest depends on the source and Go only
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            members = t.getmembers()
        assert [(m.name, m.mode, m.uid, m.mtime) for m in members] == [("probe", 0o755, 0, 0)]
        # the checks alone took 2.3 MB; `probe jobs` reads the API server over TLS (crypto/tls, x509,
        # JSON: +2.6 MB, without net/http, which would add as much again)
        assert members[0].size < 6 << 20


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = {"/ok": 200, "/moved": 302, "/broken": 500}.get(self.path, 404)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()


def test_the_checks_pass_fail_and_refuse_as_documented(tmp_path: Path, http_server: int) -> None:
    probe = str(_probe_binary(tmp_path))
    closed = free_port()
    at = f"127.0.0.1:{http_server}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([probe, *args], capture_output=True, text=True, timeout=30, check=False)

    ok = run(f"http://{at}/ok", f"http://{at}/moved", f"tcp://{at}", f"!tcp://127.0.0.1:{closed}")
    assert ok.returncode == 0 and ok.stdout.count("ok   ") == 4, ok.stdout + ok.stderr
    for check, said in (
        (f"http://{at}/missing", "HTTP 404"),
        (f"http://{at}/broken", "HTTP 500"),
        (f"tcp://127.0.0.1:{closed}", "connection refused"),
        (f"!tcp://{at}", "connected, where the flow must be refused"),
    ):
        bad = run("--quiet", check)
        assert bad.returncode == 1 and f"FAIL {check}: " in bad.stderr and said in bad.stderr, bad.stderr
    for args in (
        (),
        ("ftp://x:1",),
        ("tcp://x",),
        ("tcp://x:0",),
        ("--timeout", "0", "tcp://x:1"),
        ("tcp://x:1/p",),
    ):
        bad = run(*args)
        assert bad.returncode == 2 and bad.stderr.startswith(("probe: ", "usage: ")), (args, bad.stderr)


def test_the_leg_check_reads_the_kernels_connections(tmp_path: Path) -> None:
    """leg://PEER:PORT, a TCP-AO sidecar's health: an established connection with PEER on PORT (either
    end's port). This kernel has no TCP-AO, so a leg that is up is plain TCP and said so; the guest
    with TCP-AO checks the rest (tests/test_tcpao_kernel.py)."""
    probe = str(_probe_binary(tmp_path))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([probe, *args], capture_output=True, text=True, timeout=30, check=False)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        down = run(f"leg://127.0.0.1:{port}")
        assert down.returncode == 1 and "no established connection with 127.0.0.1" in down.stderr, down.stderr
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                up = run(f"leg://127.0.0.1:{port}")
                assert up.returncode == 0, up.stderr
                assert "plain TCP: this kernel has no TCP-AO" in up.stdout, up.stdout
                other = run(f"leg://192.0.2.1:{port}")  # not the peer of that connection
                assert other.returncode == 1, other.stdout
                assert client.fileno() > 0
    for args in (("leg://bus:1790",), ("leg://10.0.0.1",), ("leg://10.0.0.1:1790/x",)):
        bad = run(*args)
        assert bad.returncode == 2 and bad.stderr.startswith("probe: "), (args, bad.stderr)


def test_wait_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    """PID 1 of a probe container: `docker stop` need not wait out the grace period."""
    proc = subprocess.Popen([str(_probe_binary(tmp_path)), "wait"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()


def test_push_is_byte_for_byte_and_a_second_push_sends_nothing(tmp_path: Path) -> None:
    if images.have_tools():
        missing_component(", ".join(images.have_tools()))
    reg = RegistryServer(tmp_path / "reg").start()
    try:
        ref = f"{reg.host}/acme/releaser-probe:1"
        first = push(ref, RegistryOptions())
        assert (first.blobs_pushed, first.blobs_present) == (4, 0)  # a config and a layer per platform
        assert first.reference == f"{ref}@{image().digest}"
        again = push(ref, RegistryOptions())
        assert (again.blobs_pushed, again.blobs_present) == (0, 4)
        assert images.skopeo_digest(ref) == image().digest  # an independent client reads what we pinned
        cli = subprocess.run(
            [RELEASER, "probe", "push", f"{reg.host}/acme/releaser-probe@{image().digest}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert cli.returncode == 2 and "expected REGISTRY/PATH:TAG" in cli.stderr, cli.stderr
    finally:
        reg.stop()


# ------------------------------------------------------------------ Compose, on a real engine

WWW = {"www/healthz": b"ok\n"}
PASSWD = {"etc/passwd": b"root:x:0:0::/:/nonexistent\nnonroot:x:65532:65532::/:/nonexistent\n"}


def _httpd(binary: str) -> list[str]:
    return [binary, "httpd", "-f", "-p", "8080", "-h", "/www"]


def _release(host: str, check_path: str = "/healthz") -> str:
    return f"""apiVersion: releaser.dev/v1alpha1
kind: Release
metadata: {{name: probed, version: 1.0.0}}
images:
  busybox: {{ref: {host}/probed/busybox:1}}
  distroless: {{ref: {host}/probed/distroless:1}}
  scratch: {{ref: {host}/probed/scratch:1}}
  probe: {{ref: {host}/probed/releaser-probe:1}}
probe: {{image: probe}}
services:
  bb:
    image: busybox
    ports: [{{name: http, port: 8080}}]
    health: {{tcp: {{port: http}}, intervalSeconds: 2, startSeconds: 2}}
    stopGracePeriodSeconds: 1
    volumes: [{{name: data, mountPath: /data, size: 64Mi}}]   # the image has no /data
  dl:
    image: distroless
    ports: [{{name: http, port: 8080}}]
    health: {{http: {{path: /healthz, port: http}}, intervalSeconds: 2, startSeconds: 2}}
    dependsOn: [bb]
    stopGracePeriodSeconds: 1
  sc:
    image: scratch
    ports: [{{name: http, port: 8080}}]
    health: {{http: {{path: {check_path}, port: http}}, intervalSeconds: 2, startSeconds: 2, retries: 2}}
    dependsOn: [dl]
    stopGracePeriodSeconds: 1
"""


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    missing = engine_mod.available()
    if missing or images.have_tools():
        missing_component(f"Docker engine ({', '.join(missing + images.have_tools())})")
    if not (TOOLS / "docker" / "cli-plugins" / "docker-compose").exists():
        missing_component("Docker Compose v2")
    work = tmp_path_factory.mktemp("probe")
    with engine_mod.DockerEngine() as eng:
        reg = RegistryServer(work / "publisher").start()
        try:
            layout = work / "layout"
            images.build(layout, "bb", "bb", entrypoint=_httpd("/bin/busybox"), extra=WWW)
            busybox = images.BUSYBOX.read_bytes()
            # images of one layer and no base: no /bin/sh, no nc, no wget (the cluster's image writer)
            dl_files = {"usr/bin/busybox": busybox, **PASSWD, **WWW}
            single_layer_image(
                layout, "dl", dl_files, entrypoint=_httpd("/usr/bin/busybox"), user="65532:65532"
            )
            sc_files = {"busybox": busybox, **WWW}
            single_layer_image(layout, "sc", sc_files, entrypoint=_httpd("/busybox"), user="65532:65532")
            for tag, repo in (("bb", "busybox"), ("dl", "distroless"), ("sc", "scratch")):
                images.push(layout, tag, f"{reg.host}/probed/{repo}:1")
            images.push_probe(f"{reg.host}/probed/releaser-probe:1")
            env = {
                **eng.env,
                "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}",
                "DOCKER_CONFIG": str(TOOLS / "docker"),
                "RELEASER_CACHE": str(work / "cache"),
            }
            yield {"work": work, "host": reg.host, "env": env}
        finally:
            reg.stop()


def _releaser(
    env: dict[str, str], *args: str, expect: int | None = 0, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [RELEASER, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert expect is None or proc.returncode == expect, (
        f"releaser {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def _made(w: dict[str, Any], name: str, check_path: str = "/healthz") -> Path:
    rel = w["work"] / name
    rel.mkdir()
    (rel / "release.yaml").write_text(_release(w["host"], check_path))
    _releaser(w["env"], "lock", str(rel))
    return rel


def test_images_without_shell_wget_or_nc_pass_their_checks(probed: dict[str, Any]) -> None:
    rel = _made(probed, "passing")
    env = {**probed["env"], "RELEASER_QUICKSTART_DIR": str(probed["work"] / "passing-stack")}
    try:
        up = json.loads(_releaser(env, "quickstart", str(rel), "--json", "--timeout", "120").stdout)["result"]
        states = {s["service"]: s for s in up["services"]}
        # the probe containers are their services' health; bb-volumes ran once before bb
        assert set(states) == {"bb", "bb-volumes", "dl", "sc"}
        assert states.pop("bb-volumes")["state"] == "exited"
        assert all(s["state"] == "running" and s["health"] == "healthy" for s in states.values()), states
        # the volume the image has no directory for belongs to the service's user: it writes there
        wrote = subprocess.run(
            [
                "docker",
                "exec",
                states["bb"]["container"],
                "sh",
                "-c",
                "echo boot > /data/boots && ls -lnd /data",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert wrote.returncode == 0 and wrote.stdout.split()[2:4] == ["65532", "65532"], (
            wrote.stdout + wrote.stderr
        )
        status = _releaser(env, "quickstart", "status")
        assert "sc" in status.stdout and "-probe" not in status.stdout, status.stdout
        spec = yaml.safe_load((probed["work"] / "passing-stack" / "compose.yaml").read_text())
        probe = spec["services"]["sc-probe"]
        assert probe["user"] == "65532:65532" and probe["read_only"] is True and probe["cap_drop"] == ["ALL"]
        assert probe["network_mode"] == "service:sc" and "cap_add" not in probe
        assert spec["services"]["sc"].get("healthcheck") is None
    finally:
        _releaser(env, "quickstart", "reset", "--yes")


def test_compose_up_wait_alone_needs_no_releaser(probed: dict[str, Any]) -> None:
    """The rendered compose.yaml as a user runs it: `docker compose up --wait` returns when every
    probe container is healthy, and fails when a check fails."""
    for name, path, code in (("alone", "/healthz", 0), ("alone-failing", "/missing", 1)):
        rel = _made(probed, name, path)
        _releaser(probed["env"], "render", str(rel), "--out-dir", str(rel))
        compose = ["docker", "compose", "-f", str(rel / "compose/probed/compose.yaml"), "-p", name]
        try:
            proc = subprocess.run(
                [*compose, "up", "-d", "--wait"],
                env=probed["env"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert (proc.returncode == 0) == (code == 0), proc.stdout + proc.stderr
        finally:
            subprocess.run(
                [*compose, "down", "-v", "-t", "1"], env=probed["env"], capture_output=True, check=False
            )


def test_a_check_that_fails_names_the_service_and_a_rerun_after_the_fix_comes_up(
    probed: dict[str, Any],
) -> None:
    """The first-run path: a check fails for real (the quickstart names the service and what the probe
    saw), the user fixes release.yaml and runs the same command again in the same stack: the earlier
    run's unhealthy container does not count, and the stack comes up."""
    rel = _made(probed, "failing", "/missing")
    env = {**probed["env"], "RELEASER_QUICKSTART_DIR": str(probed["work"] / "failing-stack")}
    try:
        proc = _releaser(env, "quickstart", str(rel), "--timeout", "120", expect=9)
        assert "error: sc is unhealthy" in proc.stderr, proc.stderr
        assert "FAIL http://127.0.0.1:8080/missing: HTTP 404" in proc.stderr, proc.stderr
        text = (rel / "release.yaml").read_text().replace("path: /missing", "path: /healthz")
        (rel / "release.yaml").write_text(text)
        _releaser(env, "lock", str(rel))
        again = _releaser(env, "quickstart", str(rel), "--timeout", "120")
        assert "sc: healthy" in again.stderr + again.stdout, again.stderr
    finally:
        _releaser(env, "quickstart", "reset", "--yes")


def test_one_stack_of_a_release_per_host_and_status_never_reports_another(probed: dict[str, Any]) -> None:
    """A second stack of a running release is refused before anything starts (it would recreate the
    first one's containers, which share the Compose project); once the first is down the second may
    start, and the first one's status then says whose containers those are, and `stopped` after down."""
    rel = _made(probed, "twice")
    first, second = probed["work"] / "first-stack", probed["work"] / "second-stack"
    env1 = {**probed["env"], "RELEASER_QUICKSTART_DIR": str(first)}
    env2 = {**probed["env"], "RELEASER_QUICKSTART_DIR": str(second)}
    try:
        _releaser(env1, "quickstart", str(rel), "--timeout", "120")
        refused = _releaser(env2, "quickstart", str(rel), "--timeout", "120", expect=8)
        assert f"already runs as a quickstart stack in {first}" in refused.stderr, refused.stderr
        assert f"releaser quickstart down --stack {first}" in refused.stderr, refused.stderr
        assert _releaser(env1, "quickstart", "status").returncode == 0
        down = _releaser(env1, "quickstart", "down")
        # busybox httpd as PID 1 ignores SIGTERM: each was killed after its grace period, and down says
        # so with the fix (docs/quickstart.md#stopping); the probe containers stopped at once
        assert (
            "warning: bb, dl, sc did not stop on their stop signal and were killed"
            in down.stderr + down.stdout
        )
        assert "`init: true`" in down.stderr + down.stdout
        stopped = _releaser(env1, "quickstart", "status", "--json", expect=9)
        assert json.loads(stopped.stdout)["result"]["stopped"] is True
        _releaser(env2, "quickstart", str(rel), "--timeout", "120")
        other = _releaser(env1, "quickstart", "status", expect=9)
        assert f"containers are the stack in {second}" in other.stdout, other.stdout
        assert "healthy" not in other.stdout, other.stdout
    finally:
        _releaser(env2, "quickstart", "reset", "--yes", expect=None)
        _releaser(env1, "quickstart", "reset", "--yes", expect=None)


def test_validate_warns_when_the_lock_pins_another_probe(tmp_path: Path) -> None:
    """An image named as the probe that is not this releaser's (another image, or an older probe)
    is said by validate, with the way to publish this one."""
    rel = tmp_path / "platform"
    shutil.copytree(ROOT / "examples/platform", rel)
    lock = rel / "release.lock.yaml"
    lock.write_text(lock.read_text().replace(image().digest, "sha256:" + "a" * 64))
    proc = subprocess.run([RELEASER, "validate", str(rel)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr  # warnings come with the result, on stdout
    assert "warning: $.images.probe: the probe image pinned (sha256:aaaa" in said, said
    assert "releaser probe push REF" in said
    same = subprocess.run(
        [RELEASER, "validate", "examples/platform"], cwd=ROOT, capture_output=True, text=True
    )
    assert "$.images.probe" not in same.stdout + same.stderr, same.stdout
