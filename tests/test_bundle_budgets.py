"""Crafted bundles against the budgets of releaser/budgets.py: each ends in a verification
problem that names the bundle and the budget (exit 1), quickly, in bounded memory, never a
traceback. The head is re-signed with the publisher's key, so the limits are met past the
signature, where only the budgets stand between the file and the machine."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from releaser import budgets

from .support.bundles import World, cli, members, repack, resigned

pytestmark = pytest.mark.registry


def _verify(world: World, bundle: Path) -> str:
    code, out = cli("airgap", "verify", str(bundle), "--key", str(world.pub))
    assert code == 1 and "Traceback" not in out and "internal error" not in out, out
    return out


def _pax(name: str, records: dict[str, str]) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.pax_headers = records
    return info


def test_the_resigned_control_verifies(world: World, tmp_path: Path) -> None:
    """The helper itself: the world's members, re-signed, are a bundle that verifies."""
    bundle = resigned(world, members(world.bundle), tmp_path / "same.tar.zst")
    code, out = cli("airgap", "verify", str(bundle), "--key", str(world.pub))
    assert code == 0, out


def test_more_data_than_the_signed_head_declares_is_not_read(world: World, tmp_path: Path) -> None:
    """A decompression bomb after a valid head: 64 MiB of zeros (a few KiB compressed) the head
    does not declare. Reading stops at the declared size."""
    ms = members(world.bundle)
    bundle = repack([*ms, (tarfile.TarInfo("zeros"), bytes(64 << 20))], tmp_path / "bomb.tar.zst")
    assert bundle.stat().st_size < world.bundle.stat().st_size + (64 << 10)
    assert "more data than its head declares" in _verify(world, bundle)


def test_more_members_than_the_head_declares_stop_the_reading(world: World, tmp_path: Path) -> None:
    ms = members(world.bundle)
    extra = [(tarfile.TarInfo(f"x{i}"), b"") for i in range(budgets.MAX_EXTRA_MEMBERS + 10)]
    out = _verify(world, repack([*ms, *extra], tmp_path / "many.tar.zst"))
    assert "more members than its head declares" in out and "x0: not listed in checksums.txt" in out


@pytest.mark.parametrize(
    ("label", "member", "expected"),
    [
        ("long-name", _pax("a" * (budgets.MAX_NAME_BYTES + 1), {}), "a member name longer than 4096 bytes"),
        ("big-pax", _pax("p", {"comment": "x" * (budgets.MAX_PAX_BYTES + 1)}), "larger than 65536 bytes"),
        ("pax-size", _pax("s", {"size": "9" * 5000}), "a pax header with size"),
    ],
)
def test_tar_headers_over_budget(
    world: World, tmp_path: Path, label: str, member: tarfile.TarInfo, expected: str
) -> None:
    ms = members(world.bundle)
    out = _verify(world, resigned(world, [*ms, (member, b"x")], tmp_path / f"{label}.tar.zst"))
    assert expected in out


def test_a_zstd_window_beyond_the_budget_is_refused(world: World, tmp_path: Path) -> None:
    """A frame that asks for a 256 MiB window: zstd would allocate it; the reader refuses."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members(world.bundle):
            tar.addfile(info, io.BytesIO(data))
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=28)
    out = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(out, closefd=False) as w:
        w.write(raw.getvalue())  # streamed: the frame declares its window, not its size
    bundle = tmp_path / "window.tar.zst"
    bundle.write_bytes(out.getvalue())
    assert "requires too much memory" in _verify(world, bundle)


@pytest.mark.parametrize(
    ("label", "index", "expected"),
    [
        ("deep", b"[" * 10_000 + b"]" * 10_000, "index.json: JSON nested deeper than 64 levels"),
        (
            "nested",
            b'{"manifests": ' + b"[" * 100 + b"]" * 100 + b"}",
            "index.json: JSON nested deeper than 64",
        ),
        ("list", b"[]", "index.json $: expected an object, found list"),
        ("huge-int", b'{"manifests": [{"size": ' + b"9" * 5000 + b"}]}", "index.json: not JSON"),
    ],
)
def test_index_json_over_budget_or_malformed(
    world: World, tmp_path: Path, label: str, index: bytes, expected: str
) -> None:
    ms = [(m, index if m.name == "index.json" else d) for m, d in members(world.bundle)]
    assert expected in _verify(world, resigned(world, ms, tmp_path / f"{label}.tar.zst"))
