"""The customer's side of a bundle with nothing but the bundle: INSTALL.md and the image catalog
inside it (the same as `airgap inspect --catalog` and `render --docs`), and load.sh loading it
into a real registry with only POSIX sh, openssl, sha256sum and skopeo on the PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import missing_component
from .support.bundles import World, cli, extract
from .support.images import skopeo_digest
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry

# what load.sh may use: POSIX sh and utilities, openssl, sha256sum, skopeo (nothing else: no
# python, no releaser, no curl, no jq)
LOAD_SH_TOOLS = (
    "sh", "openssl", "sha256sum", "skopeo", "awk", "sed", "grep", "find", "sort", "comm", "mktemp",
    "wc", "tr", "cut", "cat", "mkdir", "mv", "rm", "dirname", "basename", "pwd", "printf",
)  # fmt: skip


def only_tools(tmp_path: Path) -> str:
    """A PATH holding only LOAD_SH_TOOLS (symlinks to the real ones)."""
    bin_dir = tmp_path / "only-bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in LOAD_SH_TOOLS:
        real = shutil.which(tool)
        if real is None:
            missing_component(tool)
        link = bin_dir / tool
        if not link.exists():
            link.symlink_to(real)
    return str(bin_dir)


def load_sh(d: Path, path: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(d / "load.sh"), *args],
        cwd=cwd or d.parent,
        env={"PATH": path, "HOME": str(d.parent), "TMPDIR": str(d.parent)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_catalog_in_the_bundle_is_what_inspect_catalog_and_render_docs_give(
    world: World, tmp_path: Path
) -> None:
    d = extract(world.bundle, tmp_path / "x")
    cat = json.loads((d / "images.json").read_text())
    code, out = cli("airgap", "inspect", str(world.bundle), "--key", str(world.pub), "--catalog", "--json")
    assert code == 0, out
    assert json.loads(out)["result"] == cat
    assert [i["name"] for i in cat["images"]] == ["gobmp", "nats"]
    gobmp, nats = cat["images"]
    assert gobmp["usedBy"] == ["collector"] and nats["usedBy"] == ["bus"]
    assert [p["platform"] for p in gobmp["platforms"]] == ["linux/amd64", "linux/arm64"]
    assert sorted(a["kind"] for a in gobmp["attachments"]) == ["signature", "signature"]
    assert sorted(a["kind"] for a in nats["attachments"]) == ["attestation", "referrers"]
    # sizes: what each image's manifests, config and layers take in the bundle
    listed = {
        line.split()[1]: (d / line.split()[1]).stat().st_size
        for line in (d / "checksums.txt").read_text().splitlines()
    }
    assert nats["size"] > 18 << 20 and cat["totalSize"] == gobmp["size"] + nats["size"]
    assert cat["totalSize"] <= sum(v for k, v in listed.items() if k.startswith("blobs/")) + gobmp["size"]
    assert cat["chart"]["ref"] == "charts/demo:1.0.0"
    # images.md says the same for people; INSTALL.md names the commands and the ports
    md = (d / "images.md").read_text()
    assert gobmp["digest"] in md and "| nats |" in md and "attestation, referrers" in md
    install = (d / "INSTALL.md").read_text()
    assert "releaser airgap demo-1.0.0.tar.zst --to registry.local:5000 --key publisher.pub" in install
    assert "sh bundle/load.sh --key" in install and "| bus | 4222 (client) | TCP |" in install
    assert "| **sum (x replicas)** | | - | - | - | - |" in install  # the demo sets no resources
    # render --docs: the same catalog before any bundle (no sizes, attachments or chart yet)
    code, out = cli("render", str(world.release), "--out-dir", str(tmp_path / "r"), "--docs")
    assert code == 0, out
    before = json.loads((tmp_path / "r/install/demo/images.json").read_text())
    assert [i["digest"] for i in before["images"]] == [i["digest"] for i in cat["images"]]
    assert before["totalSize"] is None and before["images"][0]["attachments"] is None
    assert (tmp_path / "r/install/demo/INSTALL.md").read_bytes() == (d / "INSTALL.md").read_bytes()


def test_render_docs_of_the_example_sums_resources_and_names_the_tcpao_prerequisites(tmp_path: Path) -> None:
    code, out = cli("render", "examples/bmp-tcpao", "--out-dir", str(tmp_path), "--docs")
    assert code == 0, out
    install = (tmp_path / "install/bmp-tcpao/INSTALL.md").read_text()
    # 3 bus + collector + speaker + two sidecars + their two leg probes: requests 640m / 640Mi, limits 5.1 CPU / 2240Mi
    assert "| **sum (x replicas)** | | 640m | 640Mi | 5.1 | 2240Mi |" in install
    assert "| speaker (TCP-AO leg probe) | 1 | 10m | 16Mi | 100m | 32Mi |" in install
    assert "| collector (TCP-AO sidecar) | 1 | 10m | 16Mi | 200m | 64Mi |" in install
    assert "## TCP-AO host prerequisites" in install and "releaser.dev/tcp-ao=true" in install
    assert "kubectl create secret generic bmp-tcpao-key --from-file=tcpao-key=./tcpao-key" in install
    assert "| collector (TCP-AO terminator) | 1790 | TCP |" in install
    cat = json.loads((tmp_path / "install/bmp-tcpao/images.json").read_text())
    assert {i["name"]: i["usedBy"] for i in cat["images"]}["tcpao-proxy"] == [
        "collector-tcpao",
        "speaker-tcpao",
    ]
    # deterministic: a second render changes nothing
    code, out = cli("render", "examples/bmp-tcpao", "--out-dir", str(tmp_path), "--docs", "--json")
    assert code == 0 and json.loads(out)["result"]["written"] == []


def test_load_sh_verifies_then_loads_with_skopeo_and_the_registry_serves_the_signed_digests(
    world: World, tmp_path: Path
) -> None:
    d = extract(world.bundle, tmp_path / "x")
    path = only_tools(tmp_path)
    target = RegistryServer(tmp_path / "target").start()
    try:
        to = f"{target.host}/site"
        # no --insecure: a loopback registry speaks plain HTTP, which both loaders allow by themselves
        proc = load_sh(d, path, "--key", str(world.pub), "--to", to, "--out-dir", "out")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"note: {target.host} is this host's loopback: plain HTTP allowed there" in proc.stdout
        assert "ok: demo 1.0.0 verified" in proc.stdout and f"ok: loaded demo 1.0.0 into {to}" in proc.stdout
        # every manifest and blob of the bundle is served, by the check `releaser airgap check` makes; but
        # for the SBOM in the referrers tag schema (an index of artifacts), which skopeo 1.9 will not copy
        # without converting it, and which load.sh leaves out with a warning naming it
        sbom = next(t for t in world.attached["nats"] if not t.endswith(".att"))
        assert f"library/nats:{sbom} unchanged" in proc.stderr and "1 attachment(s) left out" in proc.stdout
        code, out = cli("airgap", "check", str(world.bundle), "--to", to, "--key", str(world.pub), "--json")
        missing = json.loads(out)["error"]["mismatches"]
        sbom_digest = world.attached["nats"][sbom]
        assert code == 4 and missing and all(sbom in m or sbom_digest in m for m in missing), missing
        # the locked images themselves: each tag serves its pinned digest
        for name, repo in (("gobmp", "bmp/gobmp"), ("nats", "library/nats")):
            pin = yaml.safe_load((world.release / "release.lock.yaml").read_text())["images"][name]
            assert skopeo_digest(f"{to}/{repo}:v1") == pin["digest"]
        # the same values and compose override `releaser airgap` writes; loading after load.sh sends no blob
        # and pushes the one manifest load.sh left out, and then the registry serves all of the bundle
        code, out = cli(
            "airgap", str(world.bundle), "--to", to, "--key", str(world.pub), "--out-dir", str(tmp_path / "r")
        )
        assert code == 0 and "0 blobs pushed" in out and "1 manifests" in out, out
        assert cli("airgap", "check", str(world.bundle), "--to", to, "--key", str(world.pub))[0] == 0
        for name in ("values-airgap.yaml", "compose.airgap.yaml", "registries-airgap.conf"):
            assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "r" / name).read_bytes(), name
    finally:
        target.stop()


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("key", "does not verify with"),
        ("checksums", "the signed releaser.json says"),
        ("file", "do not match checksums.txt"),
        ("extra", "not in checksums.txt"),
    ],
)
def test_load_sh_stops_at_the_first_problem_and_copies_nothing(
    world: World, tmp_path: Path, damage: str, says: str
) -> None:
    d = extract(world.bundle, tmp_path / "x")
    key = world.pub
    if damage == "key":
        assert cli("keygen", "--out-dir", str(tmp_path / "other"))[0] == 0
        key = tmp_path / "other/releaser.pub"
    elif damage == "checksums":
        with (d / "checksums.txt").open("a") as fh:
            fh.write(f"{'0' * 64}  nothing\n")
    elif damage == "file":
        (d / "compose/demo/compose.yaml").write_text("services: {}\n")
    else:
        (d / "blobs/sha256" / ("e" * 64)).write_bytes(b"smuggled")
    target = RegistryServer(tmp_path / "target").start()
    try:
        proc = load_sh(d, only_tools(tmp_path), "--key", str(key), "--to", target.host, "--insecure")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert says in proc.stderr and "copy" not in proc.stdout
        assert json.loads(
            subprocess.run(
                ["curl", "-s", f"http://{target.host}/v2/_catalog"], capture_output=True, text=True
            ).stdout
        ) == {"repositories": []}
    finally:
        target.stop()


def test_load_sh_names_a_missing_tool_and_bad_arguments(world: World, tmp_path: Path) -> None:
    d = extract(world.bundle, tmp_path / "x")
    path = only_tools(tmp_path)
    (Path(path) / "skopeo").unlink()
    proc = load_sh(d, path, "--key", str(world.pub), "--to", "registry.local:5000")
    assert proc.returncode == 5 and "skopeo is not installed" in proc.stderr
    proc = load_sh(d, path, "--to", "registry.local:5000")
    assert proc.returncode == 2 and "--key PUBLISHER.pub is required" in proc.stderr
    proc = load_sh(d, path, "--key", str(world.pub), "--to", "Registry.local:5000/Air")
    assert proc.returncode == 2 and "lowercase path" in proc.stderr


def test_load_sh_and_install_sh_pass_shellcheck(world: World, tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        missing_component("shellcheck")
    d = extract(world.bundle, tmp_path / "x")
    from releaser.bundle.installer import choose, install_sh

    (d / "install.sh").write_bytes(install_sh(choose()))  # the world's bundle has no installer/
    proc = subprocess.run(
        ["shellcheck", "--shell=sh", "--severity=style", str(d / "load.sh"), str(d / "install.sh")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stdout


def test_the_walk_through_in_docs_airgap_is_the_example_install_md(tmp_path: Path) -> None:
    """docs/airgap.md shows the customer's walk-through for examples/bmp-tcpao: every line of it is a
    line of that release's INSTALL.md, which test_bundle_installer.py runs line by line."""
    from .conftest import ROOT
    from .support.docs import commands

    code, out = cli("render", "examples/bmp-tcpao", "--out-dir", str(tmp_path), "--docs")
    assert code == 0, out
    install = (tmp_path / "install/bmp-tcpao/INSTALL.md").read_text().splitlines()
    (block,) = commands(ROOT / "docs/airgap.md", "tests/test_bundle_customer.py")
    lines = block.lines()
    assert len(lines) >= 8
    for line in lines:
        assert line in install, line
