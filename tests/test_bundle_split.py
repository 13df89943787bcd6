"""Split bundles for removable media: written split, cut from an existing bundle, joined; read
in sequence by verify, inspect, load and dry-run without a joined file; every missing, swapped,
truncated, damaged or extra part named, and nothing pushed; free space checked first."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from releaser.bundle.parts import part_path

from .conftest import IN_CI
from .support.bundles import World, cli, extract
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry

MIB = 1 << 20


@pytest.fixture(scope="module")
def split(world: World, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The world's release bundled in parts of 8 MiB (it is ~27 MB), into a directory not made yet
    (made, as for a bundle in one file)."""
    out = tmp_path_factory.mktemp("split") / "new" / "demo.tar.zst"
    code, text = cli(
        "bundle", str(world.release), "--signing-key", str(world.key), "--out-file", str(out),
        "--split-size", "8M", "--json",
    )  # fmt: skip
    assert code == 0, text
    result = json.loads(text)["result"]
    assert result["path"] == str(part_path(out, 1))
    return sorted(out.parent.glob("demo.tar.zst.*"))


def copy_parts(parts: list[Path], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, dest / p.name)) for p in parts]


def test_parts_are_cut_at_the_size_and_part_1_is_the_signed_head_listing_the_others(
    world: World, split: list[Path], tmp_path: Path
) -> None:
    assert [p.name for p in split] == [f"demo.tar.zst.{n:03d}" for n in range(1, len(split) + 1)]
    assert len(split) >= 4
    assert all(p.stat().st_size == 8 * MIB for p in split[1:-1]) and 0 < split[-1].stat().st_size <= 8 * MIB
    assert split[0].stat().st_size < 64 << 10  # the head alone
    listing = subprocess.run(
        f"zstd -dc {split[0]} | tar -t 2>/dev/null", shell=True, capture_output=True, text=True
    )
    assert listing.stdout.split() == ["releaser.json", "releaser.json.sig", "checksums.txt"]
    code, out = cli("airgap", "inspect", str(split[0]), "--key", str(world.pub), "--json")
    assert code == 0, out
    result = json.loads(out)["result"]
    assert result["size"] == sum(p.stat().st_size for p in split)
    assert [p["present"] for p in result["parts"]] == [True] * (len(split) - 1)
    code, out = cli("airgap", "inspect", str(split[0]), "--key", str(world.pub))
    assert f"parts: {len(split)} (part 1: the head); {len(split) - 1} of the {len(split) - 1} it lists" in out
    meta = json.loads(
        subprocess.run(
            f"zstd -dc {split[0]} | tar -xO releaser.json 2>/dev/null", shell=True, capture_output=True
        ).stdout
    )
    import hashlib

    assert [(p["number"], p["name"], p["size"], p["sha256"]) for p in meta["parts"]] == [
        (n, p.name, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for n, p in enumerate(split[1:], 2)
    ]
    # cat | zstd -d | tar -x gives the same files as the unsplit bundle, but releaser.json and its signature
    joined = extract_cat(split, tmp_path / "cat")
    whole = extract(world.bundle, tmp_path / "whole")
    assert tree(joined, skip={"releaser.json", "releaser.json.sig"}) == tree(
        whole, skip={"releaser.json", "releaser.json.sig"}
    )


def extract_cat(parts: list[Path], dest: Path) -> Path:
    dest.mkdir(parents=True)
    proc = subprocess.run(
        f"cat {' '.join(str(p) for p in parts)} | zstd -d | tar -x -C {dest}",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return dest


def tree(root: Path, skip: set[str]) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and str(p.relative_to(root)) not in skip
    }


def test_verify_inspect_dry_run_and_load_read_the_parts_in_sequence(
    world: World, split: list[Path], tmp_path: Path
) -> None:
    code, out = cli("airgap", "verify", str(split[0]), "--key", str(world.pub))
    assert code == 0 and "ok: " in out, out
    # the name without .001 finds the parts too
    code, out = cli("airgap", "verify", str(split[0].with_suffix("")), "--key", str(world.pub))
    assert code == 0, out
    target = RegistryServer(tmp_path / "target").start()
    try:
        code, out = cli("airgap", str(split[0]), "--to", target.host, "--key", str(world.pub), "--dry-run")
        assert code == 0 and "dry run" in out, out
        code, out = cli(
            "airgap", str(split[0]), "--to", target.host, "--key", str(world.pub), "--out-dir", str(tmp_path)
        )
        assert code == 0, out
        code, out = cli("airgap", "check", str(world.bundle), "--to", target.host, "--key", str(world.pub))
        assert code == 0, out  # what the split bundle loaded is all of the unsplit one
    finally:
        target.stop()
    assert not list(split[0].parent.glob("*.tar.zst")), "nothing joined on disk"


DAMAGES = {
    "missing": "demo.tar.zst.003: part 3 of",
    "truncated": "demo.tar.zst.002: 4,194,304 bytes, the signed head lists 8,388,608 (truncated)",
    "swapped": "demo.tar.zst.002: sha256",
    "damaged": "demo.tar.zst.003: sha256",
    "extra": "not a part of this bundle",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_wrong_part_is_named_and_nothing_is_pushed(
    world: World, split: list[Path], tmp_path: Path, damage: str
) -> None:
    parts = copy_parts(split, tmp_path / "parts")
    if damage == "missing":
        parts[2].unlink()
    elif damage == "truncated":
        with parts[1].open("r+b") as fh:
            fh.truncate(4 * MIB)
    elif damage == "swapped":
        a, b = parts[1].read_bytes(), parts[2].read_bytes()
        parts[1].write_bytes(b)
        parts[2].write_bytes(a)
    elif damage == "damaged":
        data = bytearray(parts[2].read_bytes())
        data[MIB] ^= 0xFF
        parts[2].write_bytes(bytes(data))
    else:
        shutil.copy(parts[-1], part_path(parts[0], len(parts) + 1))
    target = RegistryServer(tmp_path / "target").start()
    try:
        code, out = cli("airgap", str(parts[0]), "--to", target.host, "--key", str(world.pub))
        assert code == 1 and DAMAGES[damage] in out and "nothing was pushed" in out, out
        assert "fix: copy the parts named above again from the media" in out, out
        if damage == "swapped":
            assert "it holds part 3 (parts swapped or renamed?)" in out
        catalog = requests.get(f"http://{target.host}/v2/_catalog", timeout=10).json()
        assert catalog == {"repositories": []}
    finally:
        target.stop()


def test_split_and_join_an_existing_bundle(world: World, tmp_path: Path) -> None:
    code, out = cli(
        "bundle", "split", str(world.bundle), "--split-size", "10M", "--signing-key", str(world.key),
        "--out-file", str(tmp_path / "cut.tar.zst"), "--json",
    )  # fmt: skip
    assert code == 0, out
    result = json.loads(out)["result"]
    assert result["recompressed"] == 0  # the head has a zstd frame of its own: every other one is copied
    parts = sorted(tmp_path.glob("cut.tar.zst.*"))
    assert len(parts) == len(result["parts"]) + 1 >= 3
    code, out = cli("airgap", "verify", str(parts[0]), "--key", str(world.pub))
    assert code == 0, out
    # written again under one name in larger parts: no part of the longer run is left beside them
    counts = []
    for size in ("5M", "20M"):
        code, out = cli(
            "bundle", str(world.release), "--signing-key", str(world.key), "--split-size", size,
            "--out-file", str(tmp_path / "again.tar.zst"), "--json", "--force",
        )  # fmt: skip
        assert code == 0, out
        counts.append(len(json.loads(out)["result"]["parts"]) + 1)
        assert len(list(tmp_path.glob("again.tar.zst.*"))) == counts[-1], size
    assert counts[0] > counts[1]
    # the body's bytes are the unsplit bundle's, from the end of its head on
    body = b"".join(p.read_bytes() for p in parts[1:])
    assert world.bundle.read_bytes().endswith(body)
    code, out = cli("bundle", "join", str(parts[0]), "--key", str(world.pub), "--json")
    assert code == 0, out
    joined = tmp_path / "cut.tar.zst"
    assert json.loads(out)["result"]["path"] == str(joined)
    assert joined.read_bytes() == b"".join(p.read_bytes() for p in parts)
    code, out = cli("airgap", "verify", str(joined), "--key", str(world.pub))
    assert code == 0, out
    # join refuses a damaged part and writes nothing
    data = bytearray(parts[1].read_bytes())
    data[100] ^= 1
    parts[1].write_bytes(bytes(data))
    code, out = cli(
        "bundle", "join", str(parts[0]), "--key", str(world.pub), "--out-file", str(tmp_path / "j2")
    )
    assert code == 1 and "cut.tar.zst.002: sha256" in out and not (tmp_path / "j2").exists(), out


def test_only_the_signer_can_split_and_a_foreign_bundle_is_recompressed(world: World, tmp_path: Path) -> None:
    assert cli("keygen", "--out-dir", str(tmp_path / "other"))[0] == 0
    code, out = cli(
        "bundle", "split", str(world.bundle), "--split-size", "10M", "--signing-key", str(tmp_path / "other/releaser.key"),
        "--out-file", str(tmp_path / "x.tar.zst"),
    )  # fmt: skip
    assert code == 1 and "signature does not verify" in out and not list(tmp_path.glob("x.tar.zst*")), out
    # a bundle recompressed by zstd (one frame): every member is compressed again, still valid
    one = tmp_path / "one.tar.zst"
    subprocess.run(f"zstd -dc {world.bundle} | zstd -q -3 -o {one}", shell=True, check=True)
    code, out = cli(
        "bundle", "split", str(one), "--split-size", "10M", "--signing-key", str(world.key), "--json",
    )  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["result"]["recompressed"] > 10
    code, out = cli("airgap", "verify", str(tmp_path / "one.tar.zst.001"), "--key", str(world.pub))
    assert code == 0, out


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a real file system with too little room."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if proc.returncode != 0:  # CI runs as root on this machine: there a refusal is a failure
        why = f"cannot mount a 4 MiB tmpfs for the free-space test (needs root): {proc.stderr.strip()}"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(reason=why)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_free_space_is_checked_before_writing(world: World, split: list[Path], small_disk: Path) -> None:
    code, out = cli(
        "bundle",
        str(world.release),
        "--signing-key",
        str(world.key),
        "--out-file",
        str(small_disk / "b.tar.zst"),
    )
    assert code == 8 and f"{small_disk}: " in out and "bytes free, the bundle b.tar.zst needs up to" in out, (
        out
    )
    assert not list(small_disk.iterdir())
    code, out = cli(
        "bundle", "join", str(split[0]), "--key", str(world.pub), "--out-file", str(small_disk / "j")
    )
    assert code == 8 and "the joined j needs up to" in out and not list(small_disk.iterdir()), out


def test_the_quickstart_and_check_take_a_split_bundle(
    world: World, split: list[Path], helm3: str, tmp_path: Path
) -> None:
    """The quickstart knows a split bundle for a bundle (it then asks for --key and --to,
    as for one file), and `check --bundle` reads the digests of its parts."""
    code, out = cli("quickstart", str(split[0]))
    assert code == 2 and "a bundle needs --key" in out, out
    code, out = cli("quickstart", str(split[0].with_suffix("")))
    assert code == 2 and "a bundle needs --key" in out, out
    out_dir = tmp_path / "out"
    assert cli("render", str(world.release), "--out-dir", str(out_dir))[0] == 0
    code, out = cli(
        "check", str(world.release), "--out-dir", str(out_dir), "--helm", helm3, "--bundle", str(split[0])
    )
    assert code == 0 and f"checked bundle {split[0].name}: 2 reference(s)" in out, out
