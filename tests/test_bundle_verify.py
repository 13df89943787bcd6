"""Verification: nine tamper cases (one-frame and member-framed), frames read side by side, recompressed
bundles, wrong keys, inspect from the head alone, bad paths and targets refused before reading.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import tarfile
from pathlib import Path

import pytest
import yaml
import zstandard

from .support import images
from .support.bundles import TAMPERS, World, cli, load, members, repack, tampered
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry


@pytest.mark.parametrize("frames", ["one", "members"])
@pytest.mark.parametrize("kind", sorted(TAMPERS))
def test_tampered_bundles_are_refused_and_push_nothing(
    world: World, tmp_path: Path, kind: str, frames: str
) -> None:
    """Each tamper in a one-frame archive (read in one pass) and in member-aligned frames (read
    side by side): the same refusal."""
    bad = tampered(world, kind, tmp_path / f"{kind}.tar.zst", frames)
    before = world.dst.snapshot()
    code, out = load(world, f"{world.dst.host}/tamper", tmp_path, bundle=bad)
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
        code, out = load(world, target.host, tmp_path, bundle=again)
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
    # both fingerprints, to compare with what the publisher says; verify pushes nothing, so says not so
    given = json.loads(cli("keygen", "--out-dir", str(tmp_path / "other"), "--force", "--json")[1])
    code, out = cli("airgap", "verify", str(world.bundle), "--key", str(tmp_path / "other/releaser.pub"))
    signer = json.loads(cli("airgap", "inspect", str(world.bundle), "--json")[1])["result"]["signer"]
    assert f"the given key is {given['result']['fingerprint']}" in out, out
    assert f"the bundle says it was signed by {signer}" in out and "do not use it" in out, out
    assert "nothing was pushed" not in out


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
        "parts",
        "delta",
        "trustedRoot",
    }  # docs/cli.md
    assert r["parts"] == [] and r["delta"] is None  # one file, a full bundle
    assert r["trustedRoot"] is None  # no keyless rule
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


def test_malformed_metadata_is_a_problem_not_a_crash(world: World, tmp_path: Path) -> None:
    """releaser.json is untrusted input on the trust path: every shape error is named by JSON path."""
    heads = members(world.bundle)
    i = [m.name for m, _ in heads].index("releaser.json")
    for label, body, where in (
        ("list", b"[]", "$: expected an object, found list"),
        ("images", json.dumps({**json.loads(heads[i][1]), "images": [1, 2]}).encode(), "$.images[0]"),
        ("release", json.dumps({**json.loads(heads[i][1]), "release": "x"}).encode(), "$.release"),
    ):
        ms = list(heads)
        ms[i] = (ms[i][0], body)
        bad = repack(ms, tmp_path / f"{label}.tar.zst")
        for args in (
            ["airgap", "verify", str(bad), "--key", str(world.pub)],
            ["airgap", "inspect", str(bad)],
        ):
            code, out = cli(*args)
            assert code == 1 and where in out and "Traceback" not in out and "internal error" not in out, (
                label,
                args,
                out,
            )
