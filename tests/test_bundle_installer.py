"""The offline installer in the bundle: releaser's wheels for every supported CPython and Linux
machine, pinned with hashes, and install.sh. A fresh venv with the package index switched off
installs releaser from the extracted bundle alone, and that releaser loads the bundle into a
real registry."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from releaser import __version__
from releaser.bundle.installer import pinned

from .conftest import missing_component
from .support.bundles import DEFAULT_INSTALLER, Upgrade, World, cli, extract
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def with_installer(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("installer") / "demo.tar.zst"
    code, text = cli(
        "bundle", str(world.release), "--signing-key", str(world.key), "--out-file", str(out), "--json",
        "--installer",
    )  # fmt: skip  # the default (cli() adds --no-installer unless told): every CPython and machine
    assert code == 0, text
    return out, json.loads(text)["result"]


def base_python() -> str:
    """A CPython outside any venv (the one this venv was made from)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not base.exists():
        missing_component(f"{base} (the base interpreter of the test venv)")
    return str(base)


def test_the_bundle_carries_every_pinned_wheel_and_checksums_cover_them(
    world: World, with_installer: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    bundle, result = with_installer
    d = extract(bundle, tmp_path / "x")
    wheels = {p.name for p in (d / "installer/wheels").iterdir()}
    assert {w.file for w in pinned().wheels} | {f"releaser-{__version__}-py3-none-any.whl"} == wheels
    listed = (d / "checksums.txt").read_text()
    for name in (
        "installer/install.sh",
        "installer/requirements.txt",
        *(f"installer/wheels/{w}" for w in wheels),
    ):
        assert f"  {name}\n" in listed, name
    proc = subprocess.run(["sha256sum", "-c", "--quiet", "--strict", "checksums.txt"], cwd=d, check=False)
    assert proc.returncode == 0
    installer = result["installer"]
    assert isinstance(installer, dict)
    assert installer["targets"] == [f"cp3{m}-{a}" for m in (11, 12, 13, 14) for a in ("x86_64", "aarch64")]
    # what the installer adds to the bundle: the compressed difference, and what JSON reports
    assert installer["bytes"] == sum(p.stat().st_size for p in (d / "installer").rglob("*") if p.is_file())
    assert bundle.stat().st_size - world.bundle.stat().st_size > 0.9 * int(installer["bytes"])
    # deterministic: releaser's own wheel and the requirements are the same on a second bundle
    again = tmp_path / "again.tar.zst"
    code, text = cli(
        "bundle", str(world.release), "--signing-key", str(world.key), "--out-file", str(again), "--installer"
    )
    assert code == 0, text
    assert again.read_bytes() == bundle.read_bytes()


def test_install_sh_installs_releaser_with_no_index_and_it_loads_the_bundle(
    world: World, with_installer: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    bundle, _ = with_installer
    d = extract(bundle, tmp_path / "x")
    venv = tmp_path / "venv"
    python = base_python()
    env = {  # the index switched off, and nothing else to find wheels in but the bundle
        "PATH": f"{Path(python).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": "/dev/null",
    }
    proc = subprocess.run(
        ["sh", str(d / "installer/install.sh"), "--venv", str(venv), "--python", python],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ok: releaser installed: {venv}/bin/releaser" in proc.stdout
    target = RegistryServer(tmp_path / "target").start()
    releaser = str(venv / "bin/releaser")
    key = ("--key", str(world.pub))
    try:
        run_env = {**env, "RELEASER_CACHE": str(tmp_path / "cache")}
        load = subprocess.run(
            [releaser, "airgap", str(bundle), "--to", target.host, *key, "--out-dir", str(tmp_path / "out")],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert load.returncode == 0, load.stdout + load.stderr
        check = subprocess.run(
            [releaser, "airgap", "check", str(bundle), "--to", target.host, *key],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        target.stop()


def test_install_sh_refuses_a_changed_wheel_and_a_python_without_wheels(
    with_installer: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    bundle, _ = with_installer
    d = extract(bundle, tmp_path / "x")
    wheel = next((d / "installer/wheels").glob("jinja2-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed inside the archive
    wheel.write_bytes(bytes(data))
    python = base_python()
    env = {"PATH": f"{Path(python).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        ["sh", str(d / "installer/install.sh"), "--venv", str(tmp_path / "v"), "--python", python],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in proc.stderr and "nothing was downloaded" in proc.stderr
    fake = tmp_path / "bin/python3"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    proc = subprocess.run(
        ["sh", str(d / "installer/install.sh"), "--python", str(fake)],
        env={**env, "PATH": f"{fake.parent}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 5 and "is not CPython 3.14 3.13 3.12 3.11" in proc.stderr


def test_installer_choices_are_checked_before_anything_is_fetched(world: World, tmp_path: Path) -> None:
    code, out = cli(
        "bundle", str(world.release), "--signing-key", str(world.key), "--out-file", str(tmp_path / "b"),
        "--installer", "--installer-python", "3.9",
    )  # fmt: skip
    assert code == 2 and "--installer-python 3.9: the installer has wheels for 3.11, 3.12, 3.13, 3.14" in out
    assert not (tmp_path / "b").exists()
    code, out = cli(
        "bundle", str(world.release), "--signing-key", str(world.key), "--out-file", str(tmp_path / "c"),
        "--installer", "--installer-python", "3.12", "--installer-machine", "aarch64", "--json",
    )  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["result"]["installer"]["targets"] == ["cp312-aarch64"]


def test_a_wheel_is_taken_only_when_it_hashes_to_its_pin(tmp_path: Path) -> None:
    """RELEASER_INSTALLER_WHEELS, then the store, then the URL: a copy that is not the pinned wheel
    is passed over, and a download that is not it is refused, named, and not stored."""
    import hashlib
    import http.server
    import threading
    from dataclasses import replace

    import requests

    from releaser.bundle.installer import fetch
    from releaser.errors import DigestMismatch

    good = b"the pinned wheel"
    served = {"body": good}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(served["body"])))
            self.end_headers()
            self.wfile.write(served["body"])

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    wheel = replace(
        pinned().wheels[0],
        file="w-1-py3-none-any.whl",
        url=f"http://127.0.0.1:{httpd.server_port}/w-1-py3-none-any.whl",
        sha256=hashlib.sha256(good).hexdigest(),
    )
    local, store = tmp_path / "local", tmp_path / "store"
    local.mkdir()
    (local / wheel.file).write_bytes(b"someone else's wheel")
    old = os.environ.get("RELEASER_INSTALLER_WHEELS")
    os.environ["RELEASER_INSTALLER_WHEELS"] = str(local)
    try:
        with requests.Session() as session:
            got = fetch(wheel, store, session)  # the local copy does not hash: downloaded instead
            assert got == store / wheel.file and got.read_bytes() == good
            (local / wheel.file).write_bytes(good)
            assert fetch(wheel, store, session) == local / wheel.file  # a good local copy comes first
            (local / wheel.file).unlink()
            (store / wheel.file).unlink()
            served["body"] = b"a changed wheel"
            with pytest.raises(DigestMismatch) as exc:
                fetch(wheel, store, session)
            assert wheel.url in str(exc.value) and wheel.sha256 in str(exc.value)
            assert not list(store.iterdir())  # nothing half-written, nothing wrong kept
    finally:
        httpd.shutdown()
        if old is None:
            os.environ.pop("RELEASER_INSTALLER_WHEELS", None)
        else:
            os.environ["RELEASER_INSTALLER_WHEELS"] = old


@pytest.mark.parametrize("shipped", ["one file", "parts"])
def test_the_walk_through_in_install_md_runs_as_written(
    world: World, with_installer: tuple[Path, dict[str, object]], tmp_path: Path, shipped: str
) -> None:
    """Steps 1 to 3 of the bundle's INSTALL.md, line by line, in a directory holding only the bundle
    (one file, or parts of 16 MiB) and the publisher's key: verify with openssl and sha256sum,
    install releaser from the bundle, load with releaser and with load.sh. The registry is the
    test's (plain HTTP: load.sh gets --insecure)."""
    bundle, _ = with_installer
    work = tmp_path / "customer"
    work.mkdir()
    if shipped == "one file":
        shutil.copy(bundle, work / "demo-1.0.0.tar.zst")
    else:
        code, out = cli(
            "bundle", "split", str(bundle), "--split-size", "16M", "--signing-key", str(world.key),
            "--out-file", str(work / "demo-1.0.0.tar.zst"),
        )  # fmt: skip
        assert code == 0, out
        assert len(list(work.glob("demo-1.0.0.tar.zst.*"))) > 5 and not (work / "demo-1.0.0.tar.zst").exists()
    shutil.copy(world.pub, work / "publisher.pub")
    install = extract(bundle, tmp_path / "x") / "INSTALL.md"
    steps = re.findall(r"^## ([123])\..*?\n```\n(.*?)```", install.read_text(), re.S | re.M)
    assert [n for n, _ in steps] == ["1", "2", "3"]
    target = RegistryServer(tmp_path / "target").start()
    env = {
        "PATH": f"{Path(base_python()).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RELEASER_CACHE": str(tmp_path / "cache"),
    }
    try:
        for _, block in steps:
            for line in block.splitlines():
                command = line.split("   #")[0].strip()
                if not command or command.startswith("#"):
                    continue
                command = command.replace("registry.local:5000", target.host)
                if command.startswith("sh bundle/load.sh"):
                    command += " --insecure"
                proc = subprocess.run(
                    ["sh", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=600
                )
                assert proc.returncode == 0, f"{line}\n{proc.stdout}{proc.stderr}"
                if "openssl dgst" in command:
                    assert "Verified OK" in proc.stdout
        assert (work / "values-airgap.yaml").exists() and (work / "releaser-venv/bin/releaser").exists()
    finally:
        target.stop()


def test_a_delta_leaves_out_the_installer_the_base_carries_and_merge_puts_it_back(
    world: World, upgrade: Upgrade, with_installer: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    base, _ = with_installer
    full = tmp_path / "full.tar.zst"
    code, text = cli(
        "bundle",
        str(upgrade.release),
        "--signing-key",
        str(world.key),
        "--out-file",
        str(full),
        "--installer",
    )
    assert code == 0, text
    delta = tmp_path / "delta.tar.zst"
    code, text = cli(
        "bundle", str(upgrade.release), "--signing-key", str(world.key), "--since", str(base),
        "--out-file", str(delta), "--installer", "--json",
    )  # fmt: skip
    assert code == 0, text
    result = json.loads(text)["result"]
    assert result["delta"]["omittedFiles"] > 10 and result["installer"]["bytes"] == 0
    assert delta.stat().st_size < full.stat().st_size // 4
    merged = tmp_path / "merged.tar.zst"
    code, text = cli(
        "bundle", "merge", str(base), str(delta), "--key", str(world.pub), "--out-file", str(merged)
    )
    assert code == 0, text
    assert merged.read_bytes() == full.read_bytes()


def test_a_delta_against_a_lock_or_inventory_carries_the_installer_only_when_asked(
    world: World, upgrade: Upgrade, tmp_path: Path
) -> None:
    """A lock or an inventory does not say which installer the site has: the delta leaves it out
    and says so (a whole offline installer where a few MB changed was the upgrade path's cost);
    --installer carries it."""
    delta = tmp_path / "delta.tar.zst"
    code, text = cli(
        "bundle", str(upgrade.release), "--signing-key", str(world.key), "--since", str(upgrade.old_lock),
        "--out-file", str(delta), "--json", DEFAULT_INSTALLER,
    )  # fmt: skip
    assert code == 0, text
    installer = json.loads(text)["result"]["installer"]
    assert installer["bytes"] == 0 and installer["targets"] == []
    assert installer["note"].startswith("left out: the base (lock) does not say which installer"), installer
    assert not (extract(delta, tmp_path / "x") / "installer").exists()
    code, text = cli(
        "bundle", str(upgrade.release), "--signing-key", str(world.key), "--since", str(upgrade.old_lock),
        "--out-file", str(tmp_path / "with.tar.zst"), "--installer",
    )  # fmt: skip
    assert code == 0, text
    assert re.search(r"installer: [\d,]+ bytes of wheels and install.sh for cp", text), text
