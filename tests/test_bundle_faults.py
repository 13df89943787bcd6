"""Faults during a load: a registry killed mid-load, Ctrl-C against a silent registry, an upload cut
between chunks; each re-run completes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from .support import images
from .support.bundles import PASS, World, load
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry


def test_killed_registry_mid_load_then_rerun_completes(world: World, tmp_path: Path) -> None:
    target = RegistryServer(tmp_path / "flaky").start()
    try:
        killer = threading.Thread(target=_kill_when_uploading, args=(target,), daemon=True)
        killer.start()
        code, out = load(world, f"{target.host}/x", tmp_path, "--chunk-size", "8")
        killer.join()
        assert code == 6 and "unreachable" in out, (code, out)
        target.start()  # same storage, same port
        code, out = load(world, f"{target.host}/x", tmp_path, "--json")
        assert code == 0, out
        # index + 2 platform manifests + nats + chart, and the attached: 2 signatures, an attestation,
        # the referrers index and its SBOM artifact (the kill came before any manifest)
        assert json.loads(out)["result"]["stats"]["manifests_pushed"] == 10
        lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
        for name, repo in (("gobmp", "bmp/gobmp"), ("nats", "library/nats")):
            assert images.skopeo_digest(f"{target.host}/x/{repo}:v1") == lock["images"][name]["digest"]
            for tag, digest in world.attached[name].items():
                assert images.skopeo_digest(f"{target.host}/x/{repo}:{tag}") == digest
    finally:
        target.stop()


def _kill_when_uploading(server: RegistryServer) -> None:
    """SIGKILL the registry once a chunked upload has more than one chunk stored."""
    repos = server.storage / "docker/registry/v2/repositories"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # the registry creates and removes upload directories while we walk them
            for data in repos.glob("**/_uploads/*/data") if repos.exists() else []:
                if data.stat().st_size > 8 << 20:
                    server.kill()
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    server.kill()


@pytest.mark.parametrize("step", ["load", "bundle"])
def test_ctrl_c_against_a_registry_that_stopped_answering_stops_at_once(
    world: World, tmp_path: Path, step: str
) -> None:
    """Workers blocked on a silent registry must not hold Ctrl-C for timeout x retries; nothing
    is left half written, and the message says a re-run finishes the job."""
    import shutil
    import signal

    from .support.faults import BlackHole

    hole = BlackHole()
    out = tmp_path / "out"
    if step == "load":
        argv = [
            "airgap",
            str(world.bundle),
            "--to",
            f"{hole.host}/x",
            "--key",
            str(world.pub),
            "--plain-http",
            "--out-dir",
            str(out),
        ]
    else:  # a current lock whose registry went silent
        rel = tmp_path / "rel"
        shutil.copytree(world.release, rel)
        for name in ("release.yaml", "release.lock.yaml"):
            (rel / name).write_text((rel / name).read_text().replace(world.src.host, hole.host))
        argv = [
            "bundle",
            str(rel),
            "--signing-key",
            str(world.key),
            "--out-file",
            str(out / "b.tar.zst"),
            "--no-cache",
            "--no-installer",
        ]
    import pty

    env = {
        **os.environ,
        "RELEASER_KEY_PASSPHRASE": PASS,
        "RELEASER_CACHE": str(tmp_path / "cache"),
        "TERM": "xterm",
    }
    master, slave = pty.openpty()  # stderr on a terminal: the progress display is up when Ctrl-C comes
    proc = subprocess.Popen(
        [sys.executable, "-m", "releaser", *argv], env=env, stdout=subprocess.DEVNULL, stderr=slave
    )
    os.close(slave)
    drawn: list[bytes] = []

    def drain() -> None:
        with contextlib.suppress(OSError):
            while data := os.read(master, 1 << 16):
                drawn.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert hole.accepted.wait(60), "the command never reached the registry"
        time.sleep(0.3)  # its requests are in flight, waiting for an answer that never comes
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)  # the request timeout alone is 60 s
        reader.join(5)
    finally:
        proc.kill()
        hole.close()
        os.close(master)
    raw = b"".join(drawn)
    err = raw.decode(errors="replace")
    assert proc.returncode == 130, err
    assert raw.rfind(b"\x1b[?25h") > raw.find(b"\x1b[?25l") >= 0  # the terminal gets its cursor back
    assert f"error: {'airgap' if step == 'load' else 'bundle'}: interrupted" in err and "re-run" in err
    assert "Traceback" not in err
    assert not out.exists() or [p.name for p in out.iterdir()] == []  # nothing half written


def test_an_upload_cut_between_chunks_resumes_from_the_registry_offset(world: World, tmp_path: Path) -> None:
    from .support.faults import CutAfterFirstPatch

    target = RegistryServer(tmp_path / "resume").start()
    proxy = CutAfterFirstPatch(target.port)
    try:
        code, out = load(world, f"{proxy.host}/r", tmp_path, "--chunk-size", "8")
        assert proxy.cut.is_set() and code == 6, out
        proxy.allow()
        code, out = load(world, f"{proxy.host}/r", tmp_path, "--json", "--chunk-size", "8")
        assert code == 0, out
        stats = json.loads(out)["result"]["stats"]
        assert stats["resumed"] == 1, stats  # the big layer continued at the registry's offset
        lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
        assert images.skopeo_digest(f"{target.host}/r/library/nats:v1") == lock["images"]["nats"]["digest"]
    finally:
        proxy.close()
        target.stop()


def test_loads_at_the_same_time_into_one_registry_all_succeed(world: World, tmp_path: Path) -> None:
    """Three loads of one bundle into one fresh registry at once, as separate processes sharing
    this host's upload state (the cache directory), with chunked uploads so that state is
    written: each finishes, and the registry serves exactly the locked digests."""
    target = RegistryServer(tmp_path / "shared").start()
    try:
        env = {**os.environ, "RELEASER_KEY_PASSPHRASE": PASS, "RELEASER_CACHE": str(tmp_path / "cache")}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "releaser",
                    "airgap",
                    str(world.bundle),
                    "--to",
                    f"{target.host}/x",
                    "--key",
                    str(world.pub),
                    "--out-dir",
                    str(tmp_path / f"out{i}"),
                    "--chunk-size",
                    "1",
                    "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(5)
        ]
        results = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, (out, err)
        lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
        for name, repo in (("gobmp", "bmp/gobmp"), ("nats", "library/nats")):
            assert images.skopeo_digest(f"{target.host}/x/{repo}:v1") == lock["images"][name]["digest"]
    finally:
        target.stop()


def test_a_blob_gone_from_its_repository_before_the_manifests_is_sent_again(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What concurrent loads can leave behind, made to happen: right after the blobs are in, one
    is unlinked from its repository (the registry's own DELETE). The registry refuses the manifest
    that references it (MANIFEST_BLOB_UNKNOWN); the load sends that blob again, puts the manifest,
    and the image can then be pulled whole."""
    from releaser.bundle import load as load_module

    target = RegistryServer(tmp_path / "target").start()
    original = load_module._Load.blobs
    gone: list[tuple[str, str]] = []

    def blobs_then_unlink(self: load_module._Load) -> None:
        original(self)
        repo, digest = sorted((r, d) for d, repos in self.need.items() for r in repos)[0]
        resp = requests.delete(f"http://{target.host}/v2/{repo}/blobs/{digest}", timeout=10)
        assert resp.status_code == 202, resp.text
        gone.append((repo, digest))

    monkeypatch.setattr(load_module._Load, "blobs", blobs_then_unlink)
    try:
        code, out = load(world, f"{target.host}/x", tmp_path, "--json")
        assert code == 0, out
        assert gone and json.loads(out)["result"]["stats"]["blobs_sent_again"] == 1, out
        repo = gone[0][0]
        proc = subprocess.run(
            [
                "skopeo",
                "copy",
                "--all",
                "--src-tls-verify=false",
                f"docker://{target.host}/{repo}:v1",
                f"dir:{tmp_path / 'pulled'}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr  # every blob of the image is served again
    finally:
        target.stop()
