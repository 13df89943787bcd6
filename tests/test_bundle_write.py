"""Writing bundles: the documented member order, sha256sum -c and openssl on the result, skopeo reading
the layout, byte-identical rebuilds, and the failures that must leave no file behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .support import images
from .support.bundles import PASS, World, cli, extract, members
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry


def test_bundle_is_a_plain_tar_zst_with_the_documented_order(world: World) -> None:
    listing = subprocess.run(f"zstd -dc {world.bundle} | tar -t", shell=True, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    names = listing.stdout.split()
    assert names[:9] == [
        *("releaser.json", "releaser.json.sig", "checksums.txt"),  # the signed head
        *("INSTALL.md", "images.md", "images.json", "load.sh"),  # what the customer reads first
        *("oci-layout", "index.json"),
    ]
    blobs = [n for n in names if n.startswith("blobs/")]
    assert names[9 : 9 + len(blobs)] == blobs  # blobs before chart, compose and release files
    assert "chart/demo-1.0.0.tgz" in names and "compose/demo/compose.yaml" in names
    assert names[-2:] == ["release/release.lock.yaml", "release/release.yaml"]
    for info, _ in members(world.bundle):
        assert (info.uid, info.gid, info.mtime) == (0, 0, 0)


def test_sha256sum_checks_every_file_and_openssl_verifies_the_signature(world: World, tmp_path: Path) -> None:
    d = extract(world.bundle, tmp_path / "x")
    proc = subprocess.run(
        ["sha256sum", "-c", "--strict", "checksums.txt"], cwd=d, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = json.loads((d / "releaser.json").read_text())
    assert meta["checksums"]["sha256"] == hashlib.sha256((d / "checksums.txt").read_bytes()).hexdigest()
    (tmp_path / "sig.der").write_bytes(base64.b64decode((d / "releaser.json.sig").read_bytes()))
    proc = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(world.pub),
            "-signature",
            str(tmp_path / "sig.der"),
            str(d / "releaser.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "Verified OK" in proc.stdout, proc.stderr


def test_skopeo_reads_the_layout_unmodified(world: World, tmp_path: Path) -> None:
    d = extract(world.bundle, tmp_path / "x")
    lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
    for name, repo in (("gobmp", "bmp/gobmp"), ("nats", "library/nats")):
        ref = f"oci:{d}:{world.src.host}/{repo}:v1"
        proc = subprocess.run(["skopeo", "inspect", "--raw", ref], capture_output=True)
        assert proc.returncode == 0, proc.stderr
        assert images.sha(proc.stdout) == lock["images"][name]["digest"]
    # a shared base layer is stored once
    layers = [p.name for p in (d / "blobs/sha256").iterdir()]
    assert len(layers) == len(set(layers))
    base = images.base_layer()[0]
    assert (d / "blobs/sha256" / hashlib.sha256(base).hexdigest()).exists()


def test_same_inputs_give_a_byte_identical_bundle(world: World, tmp_path: Path) -> None:
    again = tmp_path / "again.tar.zst"
    code, out = cli(
        "bundle", str(world.release), "--signing-key", str(world.key), "--out-file", str(again), "--json"
    )
    assert code == 0, out
    result = json.loads(out)["result"]
    assert again.read_bytes() == world.bundle.read_bytes()
    assert result["fetched"] == 0  # everything came from the local blob cache
    # the reported sha256 and size (hashed while writing) are those of the file
    assert (result["sha256"], result["size"]) == (
        hashlib.sha256(again.read_bytes()).hexdigest(),
        again.stat().st_size,
    )


def test_images_gathered_one_at_a_time_give_the_same_bundle(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images (manifests and attachment lookups) are gathered side by side and merged in the
    release's order: one at a time, the bundle is the same, byte for byte."""
    import functools

    from releaser.bundle import write

    monkeypatch.setattr(write, "assemble", functools.partial(write.assemble, concurrency=1))
    one = tmp_path / "one.tar.zst"
    code, out = cli("bundle", str(world.release), "--signing-key", str(world.key), "--out-file", str(one))
    assert code == 0, out
    assert one.read_bytes() == world.bundle.read_bytes()


def test_no_secret_in_outputs(world: World) -> None:
    for _, data in members(world.bundle):
        assert PASS.encode() not in data
    assert b"ENCRYPTED PRIVATE KEY" not in world.bundle.read_bytes()


def test_an_unreachable_source_names_the_image_and_leaves_no_file(world: World, tmp_path: Path) -> None:
    import shutil

    rel = tmp_path / "rel"
    shutil.copytree(world.release, rel)
    for name in ("release.yaml", "release.lock.yaml"):  # a current lock whose registry is gone
        (rel / name).write_text((rel / name).read_text().replace(world.src.host, "127.0.0.1:9"))
    out = tmp_path / "out" / "b.tar.zst"
    code, text = cli(
        "bundle", str(rel), "--signing-key", str(world.key), "--out-file", str(out), "--no-cache"
    )
    assert code == 6 and "127.0.0.1:9 is unreachable" in text, text
    assert "error: images.gobmp (127.0.0.1:9/bmp/gobmp@sha256:" in text and "from release.lock.yaml" in text
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_source_blob_that_does_not_match_its_digest_is_refused(world: World, tmp_path: Path) -> None:
    """Blobs are checked on a thread beside the stream; a mismatch still fails the bundle,
    names the image and the blob, and leaves no file."""
    import shutil

    bad = RegistryServer(tmp_path / "bad")
    shutil.copytree(world.src.storage, bad.storage)
    data = max((bad.storage / "docker/registry/v2/blobs").rglob("data"), key=lambda p: p.stat().st_size)
    with data.open("r+b") as f:  # one flipped byte in the middle of the biggest layer
        f.seek(data.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    blob = f"sha256:{data.parent.name}"
    rel = tmp_path / "rel"
    shutil.copytree(world.release, rel)
    for name in ("release.yaml", "release.lock.yaml"):
        (rel / name).write_text((rel / name).read_text().replace(world.src.host, bad.host))
    out = tmp_path / "out" / "b.tar.zst"
    bad.start()
    try:
        code, text = cli(
            "bundle", str(rel), "--signing-key", str(world.key), "--out-file", str(out), "--no-cache"
        )
    finally:
        bad.stop()
    assert code == 6, text
    assert f"blob {blob}" in text and "arrived hashing to sha256:" in text and "images.nats" in text, text
    assert list(out.parent.iterdir()) == []


def test_a_bundle_that_cannot_be_written_names_the_file_and_leaves_nothing(
    world: World, tmp_path: Path
) -> None:
    """The archive is hashed and written on a thread of its own; a write refused by the file
    system (here: a 4 MB file-size limit) still stops the bundle with the path named."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    out = tmp_path / "out" / "b.tar.zst"
    out.parent.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "releaser",
            "bundle",
            str(world.release),
            "--signing-key",
            str(world.key),
            "--out-file",
            str(out),
            "--no-cache",
            "--no-installer",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "RELEASER_KEY_PASSPHRASE": PASS},
        preexec_fn=limit,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"error: {out}: File too large" in proc.stderr and "free space" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(out.parent.iterdir()) == []


def test_zstd_level_and_bad_key(world: World, tmp_path: Path) -> None:
    code, out = cli(
        "bundle",
        str(world.release),
        "--signing-key",
        str(world.key),
        "--out-file",
        str(tmp_path / "b"),
        "--zstd-level",
        "42",
    )
    assert code == 2 and "out of range" in out  # a bad option value: usage (docs/cli.md)
    code, out = cli(
        "bundle",
        str(world.release),
        "--signing-key",
        str(world.key),
        "--out-file",
        str(tmp_path / "b"),
        env={"RELEASER_KEY_PASSPHRASE": "Tr0ub4dor&3-x"},
    )
    assert code == 1 and "cannot decrypt signing key" in out and "Tr0ub4dor" not in out
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------- verify + load


def test_the_archive_writeback_is_really_started(tmp_path: Path) -> None:
    """The bundle starts the disk writing its archive as it goes (sync_file_range), so that the
    final fsync has little left: the call is made for real (Python's os module has no binding for
    it, and an earlier version looked for one there and so never made it), and refused where the
    kernel cannot (a pipe) without raising."""
    from releaser.fs import start_writeback

    f = tmp_path / "a"
    with f.open("wb") as fh:
        fh.write(b"x" * (1 << 20))
        fh.flush()
        assert start_writeback(fh.fileno(), 0, 1 << 20) is True
    r, w = os.pipe()
    try:
        assert start_writeback(w, 0, 1) is False
    finally:
        os.close(r)
        os.close(w)
