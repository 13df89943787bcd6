"""Loading bundles into real registries: digests preserved (skopeo, helm pull), the dry run, credentials,
the re-run fast path, `check --bundle`, and progress that counts every byte once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import yaml

from .support import images
from .support.bundles import PASS, World, cli, load, members, repack, tampered
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry


def test_verify_then_load_preserves_digests(world: World, tmp_path: Path, helm3: str) -> None:
    code, out = cli("airgap", "verify", str(world.bundle), "--key", str(world.pub), "--json")
    assert code == 0, out
    assert set(json.loads(out)["result"]) == {
        "path",
        "release",
        "version",
        "files",
        "bytes",
        "images",
        "signer",
        "delta",
        "problems",
        "trust",
    }  # docs/cli.md
    out_dir = tmp_path / "out"
    code, out = load(world, f"{world.dst.host}/mirror", out_dir, "--json")
    assert code == 0, out
    result = json.loads(out)["result"]
    assert set(result) == {
        "target",
        "release",
        "version",
        "images",
        "chart",
        "valuesFile",
        "composeOverride",
        "registriesConf",
        "helmInstall",
        "stats",
        "dryRun",
        "plan",
        "trust",
    }
    assert set(result["stats"]) == {
        "blobs_pushed",
        "blobs_skipped",
        "blobs_mounted",
        "bytes_pushed",
        "bytes_skipped",
        "manifests_pushed",
        "manifests_skipped",
        "tags",
        "attachments_merged",
        "attachments_kept",
        "resumed",
        "blobs_sent_again",
        "relied",
        "in_place",
        "verified",
    }  # docs/cli.md
    lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
    for name, repo in (("gobmp", "bmp/gobmp"), ("nats", "library/nats")):
        assert images.skopeo_digest(f"{world.dst.host}/mirror/{repo}:v1") == lock["images"][name]["digest"]
    assert yaml.safe_load((out_dir / "values-airgap.yaml").read_text()) == {
        "global": {"imageRegistry": f"{world.dst.host}/mirror"}
    }
    override = yaml.safe_load((out_dir / "compose.airgap.yaml").read_text())
    assert (
        override["services"]["bus"]["image"]
        == f"{world.dst.host}/mirror/library/nats@{lock['images']['nats']['digest']}"
    )
    # podman's registries.conf drop-in: each repository the units name, from the private registry
    conf = tomllib.loads((out_dir / "registries-airgap.conf").read_text())
    by_prefix = {r["prefix"]: r for r in conf["registry"]}
    nats = lock["images"]["nats"]["repository"]
    assert by_prefix[nats] == {
        "prefix": nats,
        "location": f"{world.dst.host}/mirror/library/nats",
        "insecure": True,  # the test's private registry speaks HTTP
    }
    assert result["registriesConf"] == str(out_dir / "registries-airgap.conf")
    assert "helm install demo oci://" in result["helmInstall"]
    # helm pulls the chart the load pushed, and it is the bundle's package byte for byte
    pull = tmp_path / "pull"
    pull.mkdir()
    proc = subprocess.run(
        [
            helm3,
            "pull",
            f"oci://{world.dst.host}/mirror/charts/demo",
            "--version",
            "1.0.0",
            "--plain-http",
            "-d",
            str(pull),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    packaged = dict((m.name, d) for m, d in members(world.bundle))["chart/demo-1.0.0.tgz"]
    assert (pull / "demo-1.0.0.tgz").read_bytes() == packaged
    # the chart installs the same digests from the private registry
    proc = subprocess.run(
        [helm3, "template", "demo", str(pull / "demo-1.0.0.tgz"), "-f", str(out_dir / "values-airgap.yaml")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{world.dst.host}/mirror/library/nats@{lock['images']['nats']['digest']}" in proc.stdout
    # a second load transfers nothing
    code, out = load(world, f"{world.dst.host}/mirror", out_dir, "--json")
    stats = json.loads(out)["result"]["stats"]
    assert (stats["bytes_pushed"], stats["manifests_pushed"]) == (0, 0)


def test_a_dry_run_says_what_a_load_would_write_and_writes_nothing(world: World, tmp_path: Path) -> None:
    import requests

    target, out_dir = f"{world.dst.host}/dry", tmp_path / "out"

    def dry(*extra: str) -> tuple[int, str]:
        return load(world, target, out_dir, "--dry-run", *extra)

    def repos() -> list[str]:
        listed = requests.get(f"http://{world.dst.host}/v2/_catalog", timeout=10).json()["repositories"]
        return [r for r in listed if r.startswith("dry/")]

    code, out = dry()
    assert code == 0 and out.startswith("ok: dry run, nothing written: loading demo 1.0.0 into " + target), (
        out
    )
    assert f"create  {target}/bmp/gobmp:v1: sha256:" in out
    assert repos() == [] and not out_dir.exists()  # nothing in the registry, no values files
    code, out = dry("--json")
    result = json.loads(out)["result"]
    plan = result["plan"]
    assert code == 0 and result["dryRun"] is True and plan["blobsPresent"] == plan["manifestsPresent"] == 0
    assert {t["action"] for t in plan["tags"]} == {"create"}
    assert repos() == []

    code, out = load(world, target, out_dir, "--json")
    stats = json.loads(out)["result"]["stats"]
    assert code == 0 and json.loads(out)["result"]["dryRun"] is False
    # the load did what the dry run said
    assert stats["bytes_pushed"] == plan["bytesToSend"]
    assert stats["blobs_pushed"] + stats["blobs_mounted"] == plan["blobsMissing"]
    assert stats["manifests_pushed"] == plan["manifestsMissing"]
    assert sorted(stats["tags"]) == sorted(t["ref"] for t in plan["tags"])

    # after it, nothing to do; a tag someone moved is named with where it points now
    lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
    child = lock["images"]["gobmp"]["platforms"]["linux/amd64"]
    body = requests.get(
        f"http://{world.dst.host}/v2/dry/bmp/gobmp/manifests/{child['digest']}",
        timeout=10,
        headers={"Accept": child["mediaType"]},
    ).content
    assert (
        requests.put(
            f"http://{world.dst.host}/v2/dry/bmp/gobmp/manifests/v1",
            data=body,
            timeout=10,
            headers={"Content-Type": child["mediaType"]},
        ).status_code
        == 201
    )
    code, out = dry("--json")
    plan = json.loads(out)["result"]["plan"]
    assert plan["blobsMissing"] == plan["manifestsMissing"] == plan["bytesToSend"] == 0
    assert [(t["ref"], t["action"], t["current"]) for t in plan["tags"] if t["action"] != "keep"] == [
        (f"{target}/bmp/gobmp:v1", "move", child["digest"])
    ]
    code, out = dry()
    assert f"move  {target}/bmp/gobmp:v1: {child['digest']} -> {lock['images']['gobmp']['digest']}" in out, (
        out
    )
    assert images.skopeo_digest(f"{target}/bmp/gobmp:v1") == child["digest"]  # still moved: nothing written


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_load_into_a_registry_that_needs_credentials(world: World, tmp_path: Path, auth: str) -> None:
    from .support.registry import PASSWORD, USER

    target = RegistryServer(tmp_path / auth, auth=auth).start()
    try:
        code, out = load(world, target.host, tmp_path)
        assert code == 7 and f"docker login {target.host}" in out, out
        # credentials from the environment, per registry
        code, out = load(
            world, target.host, tmp_path, env={"RELEASER_REGISTRY_AUTH": f"{target.host}={USER}:{PASSWORD}"}
        )
        assert code == 0, out
        assert PASSWORD not in out
        lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
        creds = f"{USER}:{PASSWORD}"
        assert (
            images.skopeo_digest(f"{target.host}/library/nats:v1", creds=creds)
            == lock["images"]["nats"]["digest"]
        )
        if target.token is not None:  # a push asks for a push scope, not the pull-only token it had
            assert "repository:library/nats:pull,push" in target.token.requests
    finally:
        target.stop()


def test_reload_of_a_loaded_bundle_reads_only_the_signed_head(world: World, tmp_path: Path) -> None:
    target = RegistryServer(tmp_path / "again").start()
    try:
        for _ in range(2):
            code, out = load(world, target.host, tmp_path, "--json")
            assert code == 0, out
        stats = json.loads(out)["result"]["stats"]
        assert stats["verified"].startswith("signature and metadata") and stats["bytes_pushed"] == 0
        # the fast path never trusts an unsigned change: a bundle with a bad signature is fully checked
        bad = tampered(world, "releaser.json", tmp_path / "bad.tar.zst")
        code, out = load(world, target.host, tmp_path, bundle=bad)
        assert code == 1 and "the signature does not verify" in out
    finally:
        target.stop()


def test_check_compares_the_bundle_too(world: World, tmp_path: Path, helm3: str) -> None:
    out = tmp_path / "out"
    assert cli("render", str(world.release), "--out-dir", str(out))[0] == 0
    code, text = cli(
        "check", str(world.release), "--out-dir", str(out), "--helm", helm3, "--bundle", str(world.bundle)
    )
    assert code == 0, text
    assert "checked bundle demo.tar.zst: 2 reference(s)" in text
    # a bundle made from another lock names other digests: check says so, exit 4
    other = tmp_path / "other.tar.zst"
    ms = members(world.bundle)
    i = [m.name for m, _ in ms].index("index.json")
    index = json.loads(ms[i][1])
    index["manifests"][0]["digest"] = "sha256:" + "0" * 64
    ms[i] = (ms[i][0], json.dumps(index).encode())
    repack(ms, other)
    code, text = cli(
        "check", str(world.release), "--out-dir", str(out), "--helm", helm3, "--bundle", str(other)
    )
    assert code == 4 and "which the lock does not pin" in text and f"bundle {other.name}" in text
    # the bundle of another release is the wrong file, said once, not a list of mismatches
    i = [m.name for m, _ in ms].index("releaser.json")
    meta = json.loads(ms[i][1])
    meta["release"]["name"] = "another"
    ms[i] = (ms[i][0], json.dumps(meta).encode())
    repack(ms, other)
    code, text = cli(
        "check", str(world.release), "--out-dir", str(out), "--helm", helm3, "--bundle", str(other)
    )
    assert code == 1 and "is the bundle of another 1.0.0, not of demo 1.0.0" in text, text
    assert "mismatch" not in text


# ---------------------------------------------------------------- progress


class _Recorder:
    """A progress sink with the CLI's interface: set_totals({name: bytes}), then (name, more bytes)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.steps: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def set_totals(self, totals: dict[str, int]) -> None:
        assert not self.totals and not self.steps  # once, before any byte
        self.totals = dict(totals)

    def __call__(self, name: str, n: int) -> None:
        with self.lock:
            self.steps.append((name, n))

    def shown(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, n in self.steps:
            out[name] = out.get(name, 0) + n
        return out


def test_progress_counts_every_byte_once_and_never_goes_backwards(world: World, tmp_path: Path) -> None:
    from releaser.commands.load import load_bundle
    from releaser.errors import ReleaserError
    from releaser.registry import RegistryOptions

    from .support.faults import CutAfterFirstPatch

    target = RegistryServer(tmp_path / "progress").start()
    proxy = CutAfterFirstPatch(target.port)
    opts = RegistryOptions(chunk_mb=8)
    try:
        cut = _Recorder()
        with pytest.raises(ReleaserError):
            load_bundle(
                world.bundle, to=f"{proxy.host}/p", key=world.pub, out=tmp_path, registries=opts, progress=cut
            )
        assert proxy.cut.is_set()
        assert cut.totals and all(n > 0 for _, n in cut.steps)
        assert all(cut.shown().get(k, 0) <= t for k, t in cut.totals.items()), (cut.shown(), cut.totals)
        proxy.allow()
        again = _Recorder()
        result = load_bundle(
            world.bundle, to=f"{proxy.host}/p", key=world.pub, out=tmp_path, registries=opts, progress=again
        )
        assert result.stats.resumed == 1
        assert all(n > 0 for _, n in again.steps)
        assert again.shown() == again.totals  # every byte of every image once, none twice
        # the resumed layer is shown from the registry's offset at once, not from zero
        nats = [n for name, n in again.steps if name == "nats"]
        assert max(nats) >= 8 << 20, nats
    finally:
        proxy.close()
        target.stop()


def test_a_blob_sent_twice_is_shown_once() -> None:
    from releaser.bundle.load import _Shown

    rec = _Recorder()
    shown = _Shown(rec, {"r/app": "app"})
    first = shown.blob("r/app", "sha256:a", 100)
    assert first is not None
    first(60)  # the frame fails here; the sequential pass sends the blob again from byte 0
    second = shown.blob("r/app", "sha256:a", 100)
    assert second is not None
    for n in (30, 30, 30, 30):
        second(n)
    shown.done("r/app", "sha256:a", 100)
    assert rec.steps == [("app", 60), ("app", 30), ("app", 10)]


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MOVES = re.compile(
    r"\x1b\[[0-9;?]*[A-LN-Za-ln-z]"
)  # cursor moves and erasures: a new line; colours (m): nothing
_UNITS = {"bytes": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run argv with stderr on a pseudo-terminal (120x40); return its exit code and what it drew."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    reader.join(10)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def _total_line(drawn: str, label: str) -> list[tuple[float, float]]:
    """(done, total) in bytes from every drawn `<label> total` line, in order."""
    out = []
    for line in re.split(r"[\r\n]", _ANSI.sub("", _MOVES.sub("\n", drawn))):
        if line.strip().startswith(f"{label} total"):
            m = re.search(r"([\d.]+)/([\d.]+) (bytes|kB|MB|GB)", line)
            if m:
                out.append((float(m[1]) * _UNITS[m[3]], float(m[2]) * _UNITS[m[3]]))
    return out


@pytest.mark.parametrize("step", ["bundle", "load", "verify", "dry-run"])
def test_progress_is_drawn_on_a_terminal_and_nowhere_else(world: World, tmp_path: Path, step: str) -> None:

    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "RELEASER_KEY_PASSPHRASE": PASS,
        "RELEASER_CACHE": str(tmp_path / "cache"),
    }  # a cold cache: the bundle fetches every blob
    target = RegistryServer(tmp_path / "tty").start()
    try:

        def argv(n: int) -> list[str]:
            if step == "bundle":
                return [
                    sys.executable,
                    "-m",
                    "releaser",
                    "bundle",
                    str(world.release),
                    "--signing-key",
                    str(world.key),
                    "--out-file",
                    str(tmp_path / f"b{n}.tar.zst"),
                    "--no-installer",
                ]
            if step == "verify":
                return [
                    sys.executable,
                    "-m",
                    "releaser",
                    "airgap",
                    "verify",
                    str(world.bundle),
                    "--key",
                    str(world.pub),
                ]
            return [
                sys.executable,
                "-m",
                "releaser",
                "airgap",
                str(world.bundle),
                "--to",
                f"{target.host}/t{n}",
                "--key",
                str(world.pub),
                "--out-dir",
                str(tmp_path),
                *(["--dry-run"] if step == "dry-run" else []),
            ]

        code, drawn = _on_a_terminal(argv(1), env)
        assert code == 0, drawn
        label = {"bundle": "bundle", "load": "load"}.get(step, "verify")
        totals = _total_line(drawn, label)
        assert totals, drawn
        done = [d for d, _ in totals]
        assert done == sorted(done)  # never backwards
        assert {t for _, t in totals} == {totals[-1][1]}  # the total is known from the first frame drawn
        assert done[-1] == totals[-1][1]  # and reached
        if step in ("bundle", "load"):
            assert "nats" in _ANSI.sub("", drawn) and "gobmp" in _ANSI.sub("", drawn)
        else:  # the long silent step of verify and the dry run: hashing what the signed head declares
            assert world.bundle.name in _ANSI.sub("", drawn)
        if step == "load":
            assert PASS not in drawn
        # not a terminal: no bars at all, only the summary
        env_pipe = {**env, "RELEASER_CACHE": str(tmp_path / "cache2")}
        proc = subprocess.run(argv(2), env=env_pipe, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"{label} total" not in proc.stderr + proc.stdout and "\x1b[" not in proc.stderr
    finally:
        target.stop()
