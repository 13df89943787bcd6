"""The bundle world the bundle tests share: a source registry with stand-in images (and what is
attached to them), a release locked against it, a key pair, a bundle, and an empty target registry.
Built once per test session (tests/conftest.py registers the fixture); tests only read it."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
import zstandard
from typer.testing import CliRunner

from releaser.bundle.sign import load_private_key, sign
from releaser.cli import app

from ..conftest import missing_component
from . import images
from .registry import RegistryServer

PASS = "correct horse battery staple"
runner = CliRunner()


DEFAULT_INSTALLER = "<default installer>"  # a cli() argument: pass neither --installer nor --no-installer


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """releaser in-process. `bundle` gets --no-installer unless the test says --installer (or
    DEFAULT_INSTALLER: neither flag, releaser's default): only test_bundle_installer.py needs the
    wheels, and the world's bundle is written without them."""
    creating = args[:1] == ("bundle",) and args[1:2] not in (("split",), ("join",), ("merge",))
    if DEFAULT_INSTALLER in args:
        args = tuple(a for a in args if a != DEFAULT_INSTALLER)
    elif creating and not {"--installer", "--no-installer"} & set(args):
        args = (*args, "--no-installer")
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


@pytest.fixture(scope="session")
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
    code, out = cli(  # the offline installer is tested on a bundle of its own (test_bundle_installer.py)
        "bundle",
        str(rel),
        "--signing-key",
        str(root / "keys/releaser.key"),
        "--out-file",
        str(bundle),
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


def tampered(world: World, kind: str, out: Path, frames: str = "one") -> Path:
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


def load(
    world: World,
    to: str,
    out_dir: Path,
    *extra: str,
    bundle: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """`releaser airgap BUNDLE --to TO --key PUB --out-dir OUT_DIR EXTRA...`: the world's bundle
    (unless `bundle`) with the publisher's key."""
    args = [
        "airgap",
        str(bundle or world.bundle),
        "--to",
        to,
        "--key",
        str(world.pub),
        "--out-dir",
        str(out_dir),
    ]
    return cli(*args, *extra, env=env)


def resigned(
    world: World | None,
    ms: list[tuple[tarfile.TarInfo, bytes]],
    out: Path,
    *,
    key: Path | None = None,
    passphrase: bytes = PASS.encode(),
) -> Path:
    """A bundle of these members (the first three, the head, are rewritten) signed with the
    publisher's key (the world's, or `key`): its checksums.txt lists every later member and
    releaser.json declares them, so what the head says verifies and everything else is as crafted."""
    body = ms[3:]
    checksums = "".join(f"{hashlib.sha256(d).hexdigest()}  {m.name}\n" for m, d in body if m.isreg()).encode()
    meta = json.loads(ms[0][1])
    meta["checksums"].update(
        sha256=hashlib.sha256(checksums).hexdigest(),
        files=sum(1 for m, _ in body if m.isreg()),
        bytes=sum(len(d) for m, d in body if m.isreg()),
    )
    raw = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    signer = key if key is not None else world.key if world is not None else None
    assert signer is not None, "a world or a key"
    sig = sign(load_private_key(signer, passphrase), raw)
    head = [(ms[0][0], raw), (ms[1][0], sig), (ms[2][0], checksums)]
    return repack(head + body, out)


@dataclass
class Upgrade:
    """Release 1.1.0 of the world's release: nats re-built with a changed top layer, gobmp as it was."""

    release: Path  # 1.1.0's release directory
    old_lock: Path  # 1.0.0's lock, as the publisher kept it
    full: Path  # the full 1.1.0 bundle
    changed_layer: tuple[str, int]  # (digest, size) of nats' new top layer


@pytest.fixture(scope="session")
def upgrade(world: World, tmp_path_factory: pytest.TempPathFactory) -> Upgrade:
    root = tmp_path_factory.mktemp("upgrade")
    lay = root / "layout"
    desc = images.build(lay, "nats", "nats", size_pad=2 << 20, extra={"etc/nats-version": b"1.1.0\n"})
    images.push(lay, "nats", f"{world.src.host}/library/nats:v2")
    manifest = json.loads((lay / "blobs/sha256" / str(desc["digest"]).split(":")[1]).read_text())
    top = manifest["layers"][-1]
    rel = root / "rel"
    rel.mkdir()
    doc = yaml.safe_load((world.release / "release.yaml").read_text())
    doc["metadata"]["version"] = "1.1.0"
    doc["images"]["nats"]["ref"] = f"{world.src.host}/library/nats:v2"
    (rel / "release.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli("lock", str(rel))[0] == 0
    old_lock = root / "1.0.0.lock.yaml"
    shutil.copy(world.release / "release.lock.yaml", old_lock)
    full = root / "demo-1.1.0.tar.zst"
    code, out = cli("bundle", str(rel), "--signing-key", str(world.key), "--out-file", str(full))
    assert code == 0, out
    return Upgrade(release=rel, old_lock=old_lock, full=full, changed_layer=(top["digest"], top["size"]))
