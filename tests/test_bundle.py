"""Bundles end to end against real registries, checked by independent tools:
skopeo (reads the extracted OCI layout; inspects what was loaded), sha256sum -c,
zstd -d | tar t, openssl dgst -verify, helm pull of the loaded chart. Tamper
tests leave the target registry unchanged; a registry killed mid-load is
restarted and the re-run completes with identical content.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard
from typer.testing import CliRunner

from releaser.cli import app

from .conftest import missing_component
from .support import images
from .support.registry import RegistryServer

PASS = "correct horse battery staple"
runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(
        app, list(args), catch_exceptions=False, env={"RELEASER_KEY_PASSPHRASE": PASS, **(env or {})}
    )
    return result.exit_code, result.output


@dataclass
class World:
    root: Path
    src: RegistryServer
    dst: RegistryServer
    release: Path
    key: Path
    pub: Path
    bundle: Path
    cache: Path
    # image name -> {tag attached to one of its digests: digest the source registry serves for it}
    attached: dict[str, dict[str, str]]
    cosign_pub: Path  # the key the stand-in cosign signatures verify with


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    gone = images.have_tools()
    if gone:
        missing_component(", ".join(gone))
    root = tmp_path_factory.mktemp("bundle")
    os.environ["RELEASER_CACHE"] = str(root / "cache")
    src = RegistryServer(root / "src").start()
    dst = RegistryServer(root / "dst").start()
    lay = root / "layout"
    # two images share the busybox base layer; one is a two-platform index
    gobmp = images.build(lay, "gobmp", "gobmp", platforms=("amd64", "arm64"))
    nats = images.build(
        lay, "nats", "nats", size_pad=18 << 20
    )  # with --chunk-size 8: three resumable PATCHes
    images.push(lay, "gobmp", f"{src.host}/bmp/gobmp:v1")
    images.push(lay, "nats", f"{src.host}/library/nats:v1")
    # attached to them: cosign signatures of the index and of its amd64 child (cosign sign --recursive),
    # an attestation of nats, and an SBOM for nats in the OCI referrers tag schema
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cosign_key = ec.generate_private_key(ec.SECP256R1())
    cosign_pub = root / "cosign.pub"
    cosign_pub.write_bytes(
        cosign_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    amd64 = json.loads((lay / "blobs/sha256" / str(gobmp["digest"]).split(":")[1]).read_text())["manifests"][
        0
    ]
    att = root / "attached"
    pushes = {
        "gobmp": [
            images.cosign_signature(att, str(gobmp["digest"]), f"{src.host}/bmp/gobmp", cosign_key)[0],
            images.cosign_signature(att, amd64["digest"], f"{src.host}/bmp/gobmp", cosign_key)[0],
        ],
        "nats": [
            images.cosign_attestation(att, str(nats["digest"])),
            images.referrers_sbom(att, {k: nats[k] for k in ("mediaType", "digest", "size")}),
        ],
    }
    repos = {"gobmp": "bmp/gobmp", "nats": "library/nats"}
    attached: dict[str, dict[str, str]] = {}
    for name, tags in pushes.items():
        for tag in tags:
            if tag.endswith((".sig", ".att")):
                images.push(att, tag, f"{src.host}/{repos[name]}:{tag}")
            else:  # an index of OCI 1.1 artifacts, which skopeo 1.9 will not copy unchanged
                images.put_raw(att, tag, src.host, repos[name])
            attached.setdefault(name, {})[tag] = images.skopeo_digest(f"{src.host}/{repos[name]}:{tag}")
    rel = root / "rel"
    rel.mkdir()
    doc = {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "demo", "version": "1.0.0"},
        "images": {
            "gobmp": {"ref": f"{src.host}/bmp/gobmp:v1"},
            "nats": {"ref": f"{src.host}/library/nats:v1"},
        },
        "services": {
            "collector": {"image": "gobmp", "ports": [{"name": "bmp", "port": 11019}]},
            "bus": {"image": "nats", "replicas": 2, "ports": [{"name": "client", "port": 4222}]},
        },
    }
    (rel / "release.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli("lock", str(rel))[0] == 0
    assert cli("keygen", "--out-dir", str(root / "keys"))[0] == 0
    bundle = root / "demo.tar.zst"
    code, out = cli(
        "bundle", str(rel), "--signing-key", str(root / "keys/releaser.key"), "--out-file", str(bundle)
    )
    assert code == 0, out
    yield World(
        root=root,
        src=src,
        dst=dst,
        release=rel,
        key=root / "keys/releaser.key",
        pub=root / "keys/releaser.pub",
        bundle=bundle,
        cache=root / "cache",
        attached=attached,
        cosign_pub=cosign_pub,
    )
    src.stop()
    dst.stop()
    os.environ.pop("RELEASER_CACHE", None)


def extract(bundle: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(f"zstd -dc {bundle} | tar -x -C {dest}", shell=True, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return dest


def members(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    raw = zstandard.ZstdDecompressor().stream_reader(bundle.open("rb"), read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def repack(members_: list[tuple[tarfile.TarInfo, bytes]], out: Path, frames: str = "one") -> Path:
    """A tar.zst of these members: in one zstd frame (as `tar | zstd` makes it), in frames cut at
    every member boundary (as `releaser bundle` cuts them), or in frames cut every 100 KiB,
    wherever that falls (as a parallel recompressor would)."""
    raw = io.BytesIO()
    cuts = [0]
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members_:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
            cuts.append(tar.offset)
    stream = raw.getvalue()
    if frames == "one":
        cuts = [0]
    elif frames == "arbitrary":
        cuts = list(range(0, len(stream), 100 << 10))
    bounds = [*cuts, len(stream)]
    z = zstandard.ZstdCompressor(write_checksum=True)
    out.write_bytes(b"".join(z.compress(stream[a:b]) for a, b in itertools.pairwise(bounds) if b > a))
    return out


# ---------------------------------------------------------------- the bundle


def test_bundle_is_a_plain_tar_zst_with_the_documented_order(world: World) -> None:
    listing = subprocess.run(f"zstd -dc {world.bundle} | tar -t", shell=True, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    names = listing.stdout.split()
    assert names[:5] == ["releaser.json", "releaser.json.sig", "checksums.txt", "oci-layout", "index.json"]
    blobs = [n for n in names if n.startswith("blobs/")]
    assert names[5 : 5 + len(blobs)] == blobs  # blobs before chart, compose and release files
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
        "problems",
    }  # docs/cli.md
    out_dir = tmp_path / "out"
    code, out = cli(
        "airgap",
        str(world.bundle),
        "--to",
        f"{world.dst.host}/mirror",
        "--key",
        str(world.pub),
        "--out-dir",
        str(out_dir),
        "--json",
    )
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
        "helmInstall",
        "stats",
        "dryRun",
        "plan",
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
    code, out = cli(
        "airgap",
        str(world.bundle),
        "--to",
        f"{world.dst.host}/mirror",
        "--key",
        str(world.pub),
        "--out-dir",
        str(out_dir),
        "--json",
    )
    stats = json.loads(out)["result"]["stats"]
    assert (stats["bytes_pushed"], stats["manifests_pushed"]) == (0, 0)


def test_signatures_attestations_and_sboms_travel_with_their_images(world: World, tmp_path: Path) -> None:
    """What is attached to a pinned digest by tag (cosign .sig/.att, the OCI referrers tag
    schema) is in the bundle, loaded under the same tags with the same digests, and a cosign
    signature still verifies (openssl) against the payload the private registry serves."""
    want = {tag: digest for tags in world.attached.values() for tag, digest in tags.items()}
    lay = extract(world.bundle, tmp_path / "x")
    index = json.loads((lay / "index.json").read_text())["manifests"]
    attached = {
        e["annotations"]["org.opencontainers.image.ref.name"]: e
        for e in index
        if "dev.releaser.subject" in e["annotations"]
    }
    assert {ref.rsplit(":", 1)[1]: e["digest"] for ref, e in attached.items()} == want
    for ref, entry in attached.items():  # skopeo reads each from the layout, byte for byte
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{lay}:{ref}"], capture_output=True, check=True
        )
        assert images.sha(raw.stdout) == entry["digest"]
        assert ref.rsplit(":", 1)[1].startswith("sha256-" + entry["annotations"]["dev.releaser.subject"][7:])
    code, out = cli("airgap", "inspect", str(world.bundle), "--json")
    assert {t for i in json.loads(out)["result"]["images"] for t in i["attachments"]} == set(want)

    target = f"{world.dst.host}/att"
    code, out = cli(
        "airgap", str(world.bundle), "--to", target, "--key", str(world.pub), "--out-dir", str(tmp_path)
    )
    assert code == 0, out
    repos = {"gobmp": "bmp/gobmp", "nats": "library/nats"}
    for name, tags in world.attached.items():
        for tag, digest in tags.items():
            assert images.skopeo_digest(f"{target}/{repos[name]}:{tag}") == digest
    lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
    sig_tag = images.attached_tag(lock["images"]["gobmp"]["digest"], ".sig")
    manifest = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", f"docker://{target}/bmp/gobmp:{sig_tag}", "--tls-verify=false"],
            capture_output=True,
            check=True,
        ).stdout
    )
    layer = manifest["layers"][0]
    payload = subprocess.run(
        ["curl", "-sf", f"http://{world.dst.host}/v2/att/bmp/gobmp/blobs/{layer['digest']}"],
        capture_output=True,
        check=True,
    ).stdout
    assert (
        json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
        == lock["images"]["gobmp"]["digest"]
    )
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig.der").write_bytes(
        base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    )
    proc = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(world.cosign_pub),
            "-signature",
            str(tmp_path / "sig.der"),
            str(tmp_path / "payload"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "Verified OK" in proc.stdout, proc.stdout + proc.stderr

    # a re-run notices a missing signature (the fast path checks attached tags too) and puts it back
    gone = world.attached["gobmp"][sig_tag]
    import requests

    assert (
        requests.delete(f"http://{world.dst.host}/v2/att/bmp/gobmp/manifests/{gone}", timeout=10).status_code
        == 202
    )
    code, out = cli(
        "airgap",
        str(world.bundle),
        "--to",
        target,
        "--key",
        str(world.pub),
        "--out-dir",
        str(tmp_path),
        "--json",
    )
    assert code == 0 and json.loads(out)["result"]["stats"]["manifests_pushed"] == 1, out
    assert images.skopeo_digest(f"{target}/bmp/gobmp:{sig_tag}") == gone

    # --no-attachments leaves them out
    plain = tmp_path / "plain.tar.zst"
    code, out = cli(
        "bundle",
        str(world.release),
        "--signing-key",
        str(world.key),
        "--out-file",
        str(plain),
        "--no-attachments",
        "--json",
    )
    assert code == 0 and json.loads(out)["result"]["attachments"] == [], out
    code, out = cli("airgap", "inspect", str(plain), "--json")
    assert all(i["attachments"] == [] for i in json.loads(out)["result"]["images"])


def _cosign_verifies(layer: dict[str, Any], payload: bytes, pub: Path, tmp: Path) -> bool:
    (tmp / "payload").write_bytes(payload)
    (tmp / "sig.der").write_bytes(
        base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    )
    proc = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(pub),
            "-signature",
            str(tmp / "sig.der"),
            str(tmp / "payload"),
        ],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0 and "Verified OK" in proc.stdout


def test_attachments_the_target_already_has_are_merged_not_replaced(world: World, tmp_path: Path) -> None:
    """The site signed gobmp with its own key and filed its own SBOM for nats before the load;
    the load merges the bundle's signature and SBOM into those tags as cosign and the referrers
    tag schema do (both signatures verify afterwards), keeps a tag it cannot merge (and says so),
    and a re-run neither merges twice nor writes anything once all is in place."""
    import requests
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
    gobmp, nats = lock["images"]["gobmp"], lock["images"]["nats"]
    host, target = world.dst.host, f"{world.dst.host}/site"
    site_key = ec.generate_private_key(ec.SECP256R1())
    site_pub = tmp_path / "site.pub"
    site_pub.write_bytes(
        site_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    site = tmp_path / "site-layout"
    sig_tag, site_payload, _ = images.cosign_signature(site, gobmp["digest"], f"{target}/bmp/gobmp", site_key)
    images.push(site, sig_tag, f"{target}/bmp/gobmp:{sig_tag}")
    site_sig = images.skopeo_digest(f"{target}/bmp/gobmp:{sig_tag}")
    sbom_tag = images.referrers_sbom(site, {k: nats[k] for k in ("mediaType", "digest", "size")}, name="site")
    images.put_raw(site, sbom_tag, host, "site/library/nats")
    site_index = images.skopeo_digest(f"{target}/library/nats:{sbom_tag}")
    # an .att tag that holds an index: nothing it could be merged with
    att_tag = images.attached_tag(nats["digest"], ".att")
    body = requests.get(
        f"http://{host}/v2/site/library/nats/manifests/{sbom_tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        timeout=10,
    ).content
    assert (
        requests.put(
            f"http://{host}/v2/site/library/nats/manifests/{att_tag}",
            data=body,
            timeout=10,
            headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
        ).status_code
        == 201
    )

    code, out = cli(
        "airgap", str(world.bundle), "--to", target, "--key", str(world.pub), "--out-dir", str(tmp_path)
    )
    assert code == 0, out
    assert f"merged with what the target had: {target}/bmp/gobmp:{sig_tag}: the target's {site_sig}" in out, (
        out
    )
    assert (
        f"merged with what the target had: {target}/library/nats:{sbom_tag}: the target's {site_index}" in out
    )
    assert (
        f"warning: {target}/library/nats:{att_tag}: kept the target's {site_index} (the target's is an index, "
        "the bundle's a manifest)" in out
    ), out

    def manifest(repo: str, tag: str) -> dict[str, Any]:
        return json.loads(
            subprocess.run(
                ["skopeo", "inspect", "--raw", f"docker://{target}/{repo}:{tag}", "--tls-verify=false"],
                capture_output=True,
                check=True,
            ).stdout
        )

    def blob(repo: str, digest: str) -> bytes:
        return requests.get(f"http://{host}/v2/site/{repo}/blobs/{digest}", timeout=10).content

    sig = manifest("bmp/gobmp", sig_tag)  # the site's signature first, then the publisher's: both verify
    assert len(sig["layers"]) == 2
    assert _cosign_verifies(sig["layers"][0], site_payload, site_pub, tmp_path)
    assert _cosign_verifies(
        sig["layers"][1], blob("bmp/gobmp", sig["layers"][1]["digest"]), world.cosign_pub, tmp_path
    )
    config = json.loads(blob("bmp/gobmp", sig["config"]["digest"]))
    assert (
        config["rootfs"]["diff_ids"] == [d["digest"] for d in sig["layers"]] and len(config["history"]) == 2
    )
    referrers = manifest("library/nats", sbom_tag)["manifests"]  # the site's SBOM, then the publisher's
    ours = json.loads(
        subprocess.run(
            [
                "skopeo",
                "inspect",
                "--raw",
                f"docker://{world.src.host}/library/nats:{sbom_tag}",
                "--tls-verify=false",
            ],
            capture_output=True,
            check=True,
        ).stdout
    )
    site_sbom = requests.get(
        f"http://{host}/v2/site/library/nats/manifests/{site_index}",
        timeout=10,
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
    ).json()["manifests"][0]
    assert [d["digest"] for d in referrers] == [site_sbom["digest"], ours["manifests"][0]["digest"]]
    assert images.skopeo_digest(f"{target}/library/nats:{att_tag}") == site_index  # kept as it was

    # a re-run (the kept tag forces the full pass) merges nothing twice
    merged = {
        t: images.skopeo_digest(f"{target}/{r}:{t}")
        for r, t in (("bmp/gobmp", sig_tag), ("library/nats", sbom_tag))
    }
    code, out = cli(
        "airgap",
        str(world.bundle),
        "--to",
        target,
        "--key",
        str(world.pub),
        "--out-dir",
        str(tmp_path),
        "--json",
    )
    stats = json.loads(out)["result"]["stats"]
    assert code == 0 and stats["attachments_merged"] == [] and len(stats["attachments_kept"]) == 1, out
    assert {
        t: images.skopeo_digest(f"{target}/{r}:{t}")
        for r, t in (("bmp/gobmp", sig_tag), ("library/nats", sbom_tag))
    } == merged
    # the site removes its odd .att tag: the next run puts the bundle's there, and the one after
    # finds everything in place from the signed head alone, merged tags included
    assert (
        requests.delete(f"http://{host}/v2/site/library/nats/manifests/{site_index}", timeout=10).status_code
        == 202
    )
    code, out = cli(
        "airgap", str(world.bundle), "--to", target, "--key", str(world.pub), "--out-dir", str(tmp_path)
    )
    assert code == 0 and "warning" not in out, out
    assert images.skopeo_digest(f"{target}/library/nats:{att_tag}") == world.attached["nats"][att_tag]
    code, out = cli(
        "airgap",
        str(world.bundle),
        "--to",
        target,
        "--key",
        str(world.pub),
        "--out-dir",
        str(tmp_path),
        "--json",
    )
    stats = json.loads(out)["result"]["stats"]
    assert stats["verified"].startswith("signature and metadata; every signed digest already"), stats
    assert {
        t: images.skopeo_digest(f"{target}/{r}:{t}")
        for r, t in (("bmp/gobmp", sig_tag), ("library/nats", sbom_tag))
    } == merged


def test_a_dry_run_says_what_a_load_would_write_and_writes_nothing(world: World, tmp_path: Path) -> None:
    import requests

    target, out_dir = f"{world.dst.host}/dry", tmp_path / "out"

    def dry(*extra: str) -> tuple[int, str]:
        return cli(
            "airgap",
            str(world.bundle),
            "--to",
            target,
            "--key",
            str(world.pub),
            "--out-dir",
            str(out_dir),
            "--dry-run",
            *extra,
        )

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

    code, out = cli(
        "airgap",
        str(world.bundle),
        "--to",
        target,
        "--key",
        str(world.pub),
        "--out-dir",
        str(out_dir),
        "--json",
    )
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


TAMPERS = {
    "blob": "blobs/sha256/ is not its name",
    "manifest": "does not match checksums.txt",
    "releaser.json": "the signature does not verify",
    "checksums.txt": "does not match the aggregate checksum",
    "extra": "not listed in checksums.txt (unlisted file)",
    "missing": "listed in checksums.txt but missing from the bundle",
    "dotdot": "unsafe member '../evil': '..' in the path",
    "symlink": "unsafe member 'link': a link",
    "truncated": "damaged or truncated",
}


def _tampered(world: World, kind: str, out: Path, frames: str = "one") -> Path:
    ms = members(world.bundle)
    names = [m.name for m, _ in ms]
    lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
    if kind == "truncated":
        data = repack(ms, out, frames).read_bytes()
        out.write_bytes(data[: len(data) // 2])
        return out
    if kind in ("blob", "manifest", "releaser.json", "checksums.txt"):
        if kind == "blob":
            target = next(n for m, d in ms if (n := m.name).startswith("blobs/") and len(d) > 1 << 20)
        elif kind == "manifest":
            target = "blobs/sha256/" + lock["images"]["nats"]["digest"].split(":")[1]
        else:
            target = kind
        i = names.index(target)
        data = bytearray(ms[i][1])
        data[len(data) // 2] ^= 0x01
        ms[i] = (ms[i][0], bytes(data))
    elif kind == "extra":
        ms.append((tarfile.TarInfo("extra.txt"), b"not from the publisher\n"))
    elif kind == "missing":
        del ms[names.index("compose/demo/compose.yaml")]
    elif kind == "dotdot":
        ms.append((tarfile.TarInfo("../evil"), b"x"))
    elif kind == "symlink":
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        ms.append((link, b""))
    return repack(ms, out, frames)


@pytest.mark.parametrize("frames", ["one", "members"])
@pytest.mark.parametrize("kind", sorted(TAMPERS))
def test_tampered_bundles_are_refused_and_push_nothing(
    world: World, tmp_path: Path, kind: str, frames: str
) -> None:
    """Each tamper in a one-frame archive (read in one pass) and in member-aligned frames (read
    side by side): the same refusal."""
    bad = _tampered(world, kind, tmp_path / f"{kind}.tar.zst", frames)
    before = world.dst.snapshot()
    code, out = cli(
        "airgap",
        str(bad),
        "--to",
        f"{world.dst.host}/tamper",
        "--key",
        str(world.pub),
        "--out-dir",
        str(tmp_path),
    )
    assert code == 1, out
    expected = TAMPERS[kind]
    if kind == "blob":
        assert "blob content hashes to" in out
    else:
        assert expected in out, out
    assert "nothing was pushed" in out
    assert world.dst.snapshot() == before
    assert not (tmp_path / "values-airgap.yaml").exists()


def test_frames_are_read_side_by_side_exactly_like_one_pass(world: World) -> None:
    """The bundle's zstd frames, each read on its own, give the members of one sequential pass,
    byte for byte; verification proves them so and hands them to the loader."""
    from releaser.bundle.archive import iter_members, zstd_frames
    from releaser.bundle.verify import verify_bundle

    frames = zstd_frames(world.bundle)
    assert len(frames) >= 2
    assert frames[0][0] == 0 and all(a + n <= b for (a, n), (b, _) in itertools.pairwise(frames))

    def digest(reader: object) -> str:
        return hashlib.sha256(reader.read()).hexdigest()  # type: ignore[attr-defined]

    one = [(m.name, m.size, digest(r)) for m, r in iter_members(world.bundle)]
    side = [
        (m.name, m.size, digest(r))
        for i, f in enumerate(frames)
        for m, r in iter_members(world.bundle, frame=f, last=i == len(frames) - 1)
    ]
    assert side == one
    assert verify_bundle(world.bundle, world.pub).frames == frames


@pytest.mark.parametrize("frames", ["one", "arbitrary", "members"])
def test_a_recompressed_bundle_still_verifies_and_loads(world: World, tmp_path: Path, frames: str) -> None:
    """Frames cut anywhere (another tool recompressed the bundle) are read in one pass; the
    signature covers the members, not the compression, so the bundle is still good."""
    from releaser.bundle.verify import verify_bundle

    again = repack(members(world.bundle), tmp_path / f"{frames}.tar.zst", frames)
    assert again.read_bytes() != world.bundle.read_bytes()
    assert bool(verify_bundle(again, world.pub).frames) == (frames == "members")
    target = RegistryServer(tmp_path / "reg").start()
    try:
        code, out = cli(
            "airgap", str(again), "--to", target.host, "--key", str(world.pub), "--out-dir", str(tmp_path)
        )
        assert code == 0, out
        lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
        for name, repo in (("gobmp", "bmp/gobmp"), ("nats", "library/nats")):
            assert images.skopeo_digest(f"{target.host}/{repo}:v1") == lock["images"][name]["digest"]
    finally:
        target.stop()


def test_an_end_marker_before_the_last_frame_means_one_pass(world: World, tmp_path: Path) -> None:
    """Frames appended after the end-of-archive marker are not part of the archive for tar, so
    not for the side-by-side reader either: it falls back to one pass, which stops at the marker."""
    from releaser.bundle.archive import iter_members
    from releaser.bundle.verify import verify_bundle

    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("blobs/sha256/" + "0" * 64)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    appended = tmp_path / "appended.tar.zst"
    appended.write_bytes(world.bundle.read_bytes() + zstandard.ZstdCompressor().compress(extra.getvalue()))
    assert [m.name for m, _ in iter_members(appended)] == [m.name for m, _ in iter_members(world.bundle)]
    assert verify_bundle(appended, world.pub).frames == []


def test_a_wrong_key_is_refused(world: World, tmp_path: Path) -> None:
    assert cli("keygen", "--out-dir", str(tmp_path / "other"))[0] == 0
    code, out = cli("airgap", "verify", str(world.bundle), "--key", str(tmp_path / "other/releaser.pub"))
    assert code == 1 and "the signature does not verify with the given public key" in out


def test_inspect_shows_the_signed_pins_from_the_head_alone(world: World, tmp_path: Path) -> None:
    lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())["images"]
    code, out = cli("airgap", "inspect", str(world.bundle), "--key", str(world.pub), "--json")
    assert code == 0, out
    r = json.loads(out)["result"]
    assert set(r) == {
        "path",
        "size",
        "release",
        "version",
        "tool",
        "formatVersion",
        "signer",
        "signatureChecked",
        "files",
        "bytes",
        "images",
        "chart",
    }  # docs/cli.md
    assert r["signatureChecked"] is True and (r["release"], r["version"]) == ("demo", "1.0.0")
    assert {i["name"]: i["reference"] for i in r["images"]} == {
        n: f"{p['repository']}@{p['digest']}" for n, p in lock.items()
    }
    assert {i["name"]: i["platforms"] for i in r["images"]} == {
        "gobmp": ["linux/amd64", "linux/arm64"],
        "nats": ["linux/amd64"],
    }
    assert r["chart"]["ref"] == "charts/demo:1.0.0" and r["size"] == world.bundle.stat().st_size
    # it reads the head only: a bundle cut after it still inspects, while verify refuses it
    cut = tmp_path / "cut.tar.zst"
    cut.write_bytes(world.bundle.read_bytes()[: world.bundle.stat().st_size // 2])
    code, text = cli("airgap", "inspect", str(cut), "--key", str(world.pub))
    assert code == 0 and "signature and aggregate checksum verified with the given key" in text, text
    assert all(f"= {i['reference']}" in text for i in r["images"]) and "checks every byte" in text
    assert cli("airgap", "verify", str(cut), "--key", str(world.pub))[0] == 1
    # without a key it says plainly that nothing was verified
    code, text = cli("airgap", "inspect", str(world.bundle))
    assert code == 0 and "NOT verified (no --key)" in text, text


def test_inspect_refuses_a_wrong_key_and_what_is_not_a_bundle(world: World, tmp_path: Path) -> None:
    assert cli("keygen", "--out-dir", str(tmp_path / "other"))[0] == 0
    code, out = cli("airgap", "inspect", str(world.bundle), "--key", str(tmp_path / "other/releaser.pub"))
    assert code == 1 and "the signature does not verify" in out and "the metadata cannot be trusted" in out, (
        out
    )
    heads = members(world.bundle)
    other = repack([m for m in heads if m[0].name != "releaser.json.sig"], tmp_path / "nosig.tar.zst")
    code, out = cli("airgap", "inspect", str(other))
    assert code == 1 and "not a releaser bundle: it does not start with releaser.json.sig" in out, out
    junk = tmp_path / "junk.tar.zst"
    junk.write_bytes(b"not zstd at all" * 100)
    code, out = cli("airgap", "inspect", str(junk))
    assert code == 1 and str(junk) in out and "Traceback" not in out, out
    code, out = cli("airgap", "inspect")
    assert code == 2 and "Missing argument 'bundle'" in out and "releaser airgap inspect --help" in out, out


def test_a_bundle_that_is_not_there_is_a_wrong_path_not_a_damaged_bundle(
    world: World, tmp_path: Path
) -> None:
    for args in (
        ["airgap", "verify", str(tmp_path / "nope.tar.zst")],
        ["airgap", str(tmp_path / "nope.tar.zst"), "--to", world.dst.host],
        ["airgap", "verify", str(tmp_path)],
    ):
        code, out = cli(*args, "--key", str(world.pub))
        assert code == 1 and ("no such file" in out or "is a directory" in out), out
        assert "verification problems" not in out and "pass the bundle file" in out


def test_a_target_no_client_could_pull_from_is_refused_before_reading_the_bundle(world: World) -> None:
    # a registry may store "Air/..." but docker, containerd and helm refuse such names
    for to, fix in (
        (f"{world.dst.host}/Air", f"--to {world.dst.host}/air"),
        (f"{world.dst.host}/a b", f"--to {world.dst.host}/a-b"),
        ("reg_istry:5000", "HOST[:PORT]"),
    ):
        code, out = cli("airgap", str(world.bundle), "--to", to, "--key", str(world.pub))
        assert code == 2 and f"--to {to!r}" in out and fix in out, out  # a bad option value: usage
        assert "verif" not in out  # refused before the bundle is read


def test_killed_registry_mid_load_then_rerun_completes(world: World, tmp_path: Path) -> None:
    target = RegistryServer(tmp_path / "flaky").start()
    try:
        killer = threading.Thread(target=_kill_when_uploading, args=(target,), daemon=True)
        killer.start()
        code, out = cli(
            "airgap",
            str(world.bundle),
            "--to",
            f"{target.host}/x",
            "--key",
            str(world.pub),
            "--out-dir",
            str(tmp_path),
            "--chunk-size",
            "8",
        )
        killer.join()
        assert code == 6 and "unreachable" in out, (code, out)
        target.start()  # same storage, same port
        code, out = cli(
            "airgap",
            str(world.bundle),
            "--to",
            f"{target.host}/x",
            "--key",
            str(world.pub),
            "--out-dir",
            str(tmp_path),
            "--json",
        )
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
    import sys

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
        code, out = cli(
            "airgap",
            str(world.bundle),
            "--to",
            f"{proxy.host}/r",
            "--key",
            str(world.pub),
            "--out-dir",
            str(tmp_path),
            "--chunk-size",
            "8",
        )
        assert proxy.cut.is_set() and code == 6, out
        proxy.allow()
        code, out = cli(
            "airgap",
            str(world.bundle),
            "--to",
            f"{proxy.host}/r",
            "--key",
            str(world.pub),
            "--out-dir",
            str(tmp_path),
            "--json",
            "--chunk-size",
            "8",
        )
        assert code == 0, out
        stats = json.loads(out)["result"]["stats"]
        assert stats["resumed"] == 1, stats  # the big layer continued at the registry's offset
        lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
        assert images.skopeo_digest(f"{target.host}/r/library/nats:v1") == lock["images"]["nats"]["digest"]
    finally:
        proxy.close()
        target.stop()


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_load_into_a_registry_that_needs_credentials(world: World, tmp_path: Path, auth: str) -> None:
    from .support.registry import PASSWORD, USER

    target = RegistryServer(tmp_path / auth, auth=auth).start()
    try:
        code, out = cli(
            "airgap",
            str(world.bundle),
            "--to",
            target.host,
            "--key",
            str(world.pub),
            "--out-dir",
            str(tmp_path),
        )
        assert code == 7 and f"docker login {target.host}" in out, out
        # credentials from the environment, per registry
        code, out = cli(
            "airgap",
            str(world.bundle),
            "--to",
            target.host,
            "--key",
            str(world.pub),
            "--out-dir",
            str(tmp_path),
            env={"RELEASER_REGISTRY_AUTH": f"{target.host}={USER}:{PASSWORD}"},
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
            code, out = cli(
                "airgap",
                str(world.bundle),
                "--to",
                target.host,
                "--key",
                str(world.pub),
                "--out-dir",
                str(tmp_path),
                "--json",
            )
            assert code == 0, out
        stats = json.loads(out)["result"]["stats"]
        assert stats["verified"].startswith("signature and metadata") and stats["bytes_pushed"] == 0
        # the fast path never trusts an unsigned change: a bundle with a bad signature is fully checked
        bad = _tampered(world, "releaser.json", tmp_path / "bad.tar.zst")
        code, out = cli(
            "airgap", str(bad), "--to", target.host, "--key", str(world.pub), "--out-dir", str(tmp_path)
        )
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
    from releaser.commands.airgap import load_bundle
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


@pytest.mark.parametrize("step", ["bundle", "load"])
def test_progress_is_drawn_on_a_terminal_and_nowhere_else(world: World, tmp_path: Path, step: str) -> None:
    import sys

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
            ]

        code, drawn = _on_a_terminal(argv(1), env)
        assert code == 0, drawn
        label = "bundle" if step == "bundle" else "load"
        totals = _total_line(drawn, label)
        assert totals, drawn
        done = [d for d, _ in totals]
        assert done == sorted(done)  # never backwards
        assert {t for _, t in totals} == {totals[-1][1]}  # the total is known from the first frame drawn
        assert done[-1] == totals[-1][1]  # and reached
        assert "nats" in _ANSI.sub("", drawn) and "gobmp" in _ANSI.sub("", drawn)
        if step == "load":
            assert PASS not in drawn
        # not a terminal: no bars at all, only the summary
        env_pipe = {**env, "RELEASER_CACHE": str(tmp_path / "cache2")}
        proc = subprocess.run(argv(2), env=env_pipe, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"{label} total" not in proc.stderr + proc.stdout and "\x1b[" not in proc.stderr
    finally:
        target.stop()
