"""Delta bundles against real registries: `bundle --since` an older bundle, an older lock or an
inventory of the site registry (`airgap inventory`); the load checks, before pushing anything,
that the site really holds every layer the delta leaves out; tampered deltas are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from .support.bundles import Upgrade, World, cli, load, members, resigned
from .support.hostile import HeadOnlyCache
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry

FULL = ("full/releaser.json", "full/releaser.json.sig", "full/checksums.txt", "full/load.sh")


@pytest.fixture()
def site(world: World, tmp_path: Path) -> Iterator[RegistryServer]:
    """The customer's registry, holding release 1.0.0 (loaded from the full bundle)."""
    server = RegistryServer(tmp_path / "site").start()
    code, out = load(world, server.host, tmp_path / "v1")
    assert code == 0, out
    yield server
    server.stop()


def delta(world: World, upgrade: Upgrade, since: Path, out: Path, *extra: str) -> dict[str, object]:
    code, text = cli(
        "bundle",
        str(upgrade.release),
        "--signing-key",
        str(world.key),
        "--since",
        str(since),
        "--out-file",
        str(out),
        "--json",
        *extra,
    )
    assert code == 0, text
    result = json.loads(text)["result"]
    assert isinstance(result, dict)
    return result


def relied(bundle: Path) -> list[dict[str, object]]:
    meta = json.loads(members(bundle)[0][1])
    return list(meta["delta"]["relies"])


def test_a_delta_since_the_old_bundle_carries_the_changed_layer_and_loads_onto_the_old_release(
    world: World, upgrade: Upgrade, site: RegistryServer, tmp_path: Path
) -> None:
    out = tmp_path / "demo-1.1.0-delta.tar.zst"
    result = delta(world, upgrade, world.bundle, out)
    d = result["delta"]
    assert isinstance(d, dict)
    assert d["base"]["kind"] == "bundle" and d["base"]["version"] == "1.0.0"
    # what is left out: every layer of 1.1.0 that 1.0.0 carried; what is carried: the changed one
    names = {m.name for m, _ in members(out)}
    digest, _ = upgrade.changed_layer
    assert f"blobs/sha256/{digest.split(':')[1]}" in names
    left_out = {f"blobs/sha256/{str(r['digest']).split(':')[1]}" for r in relied(out)}
    assert left_out and left_out <= {m.name for m, _ in members(world.bundle)}
    # everything else of the full bundle is there, and the full bundle's head for `bundle merge`
    full_names = {m.name for m, _ in members(upgrade.full)}
    assert names - set(FULL) == full_names - left_out
    assert set(FULL) <= names
    assert out.stat().st_size < upgrade.full.stat().st_size
    # it verifies on its own and says it is a delta, as inspect does; it loads onto the site holding
    # 1.0.0, and what it says to run next is an upgrade
    code, text = cli("airgap", "verify", str(out), "--key", str(world.pub))
    assert code == 0, text
    assert "a DELTA bundle against bundle demo 1.0.0 (sha256:" in text, text
    code, text = cli("airgap", "inspect", str(out), "--json")
    assert code == 0 and json.loads(text)["result"]["delta"]["version"] == "1.0.0", text
    code, text = load(world, site.host, tmp_path / "v2", "--json", bundle=out)
    assert code == 0, text
    assert json.loads(text)["result"]["helmInstall"].startswith("helm upgrade demo "), text
    stats = json.loads(text)["result"]["stats"]
    assert stats["relied"] >= len(left_out)  # one per (repository, layer): the base layer is shared
    # what the site serves now is all of 1.1.0: the full bundle's own check agrees, and skopeo
    # copies the new image out of it (every blob read)
    code, text = cli("airgap", "check", str(upgrade.full), "--to", site.host, "--key", str(world.pub))
    assert code == 0, text
    lock = yaml.safe_load((upgrade.release / "release.lock.yaml").read_text())
    copied = tmp_path / "copied"
    proc = subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            "--src-tls-verify=false",
            f"docker://{site.host}/library/nats@{lock['images']['nats']['digest']}",
            f"oci:{copied}:nats",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_deltas_since_the_old_lock_and_since_the_sites_inventory_leave_out_the_same_layers(
    world: World, upgrade: Upgrade, site: RegistryServer, tmp_path: Path
) -> None:
    by_bundle = tmp_path / "a.tar.zst"
    delta(world, upgrade, world.bundle, by_bundle)
    by_lock = tmp_path / "b.tar.zst"
    result = delta(world, upgrade, upgrade.old_lock, by_lock)
    assert result["delta"]["base"]["kind"] == "lock"  # type: ignore[index]
    inventory = tmp_path / "site.inventory.json"
    code, text = cli("airgap", "inventory", "--from", site.host, "--out-file", str(inventory), "--json")
    assert code == 0, text
    summary = json.loads(text)["result"]
    doc = json.loads(inventory.read_text())
    assert doc["kind"] == "ReleaserInventory" and set(doc["repositories"]) == {
        "bmp/gobmp",
        "library/nats",
        "charts/demo",
    }
    assert summary["blobs"] > 0 and summary["manifests"] >= 10
    by_inventory = tmp_path / "c.tar.zst"
    result = delta(world, upgrade, inventory, by_inventory)
    assert result["delta"]["base"]["kind"] == "inventory"  # type: ignore[index]
    assert relied(by_bundle) == relied(by_lock) == relied(by_inventory)
    code, text = load(world, site.host, tmp_path / "v2", bundle=by_inventory)
    assert code == 0, text


def test_a_delta_is_refused_with_nothing_pushed_when_the_site_lacks_its_base(
    world: World, upgrade: Upgrade, tmp_path: Path
) -> None:
    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    empty = RegistryServer(tmp_path / "empty").start()
    try:
        code, text = load(world, empty.host, tmp_path / "o", "--json", bundle=out)
        doc = json.loads(text)
        assert code == 4, text
        assert doc["error"]["error"] == "BaseMissing"
        assert "load its base first (bundle demo 1.0.0" in doc["error"]["fix"]
        named = {m.split("@")[1].split(":", 1)[1].split(":")[0] for m in doc["error"]["missing"]}
        assert {"sha256:" + n for n in named} == {r["digest"] for r in relied(out)}  # per repository
        # nothing pushed: the registry lists no repository, no values file was written
        catalog = requests.get(f"http://{empty.host}/v2/_catalog", timeout=10).json()
        assert catalog["repositories"] in ([], None)
        assert not (tmp_path / "o" / "values-airgap.yaml").exists()
        code, text = load(world, empty.host, tmp_path / "o", "--dry-run", bundle=out)
        assert code == 4 and "relies on" in text
    finally:
        empty.stop()


def test_a_relied_blob_the_site_lost_is_named_and_nothing_is_pushed(
    world: World, upgrade: Upgrade, site: RegistryServer, tmp_path: Path
) -> None:
    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    lost = str(relied(out)[0]["digest"])
    for repo in ("bmp/gobmp", "library/nats"):
        requests.delete(f"http://{site.host}/v2/{repo}/blobs/{lost}", timeout=10)
    before = requests.get(f"http://{site.host}/v2/library/nats/tags/list", timeout=10).json()["tags"]
    code, text = load(world, site.host, tmp_path / "o", bundle=out)
    assert code == 4, text
    assert lost in text and "relied on by this delta" in text
    after = requests.get(f"http://{site.host}/v2/library/nats/tags/list", timeout=10).json()["tags"]
    assert before == after and "v2" not in after


def test_a_relied_blob_a_cache_only_answers_head_for_is_caught_by_the_sample(
    world: World, upgrade: Upgrade, site: RegistryServer, tmp_path: Path
) -> None:
    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    cache = HeadOnlyCache(site.host).start()
    try:
        cache.lost.update(str(r["digest"]) for r in relied(out))
        code, text = load(world, cache.host, tmp_path / "o", bundle=out)
        assert code == 4 and "answers HEAD but not GET" in text, text
    finally:
        cache.stop()


def test_a_tampered_or_foreign_delta_is_refused(
    world: World, upgrade: Upgrade, site: RegistryServer, tmp_path: Path
) -> None:
    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    ms = members(out)
    # a head that names another base (edited after signing): the signature fails
    meta = json.loads(ms[0][1])
    meta["delta"]["base"]["digest"] = "sha256:" + "0" * 64
    raw = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    ms[0][0].size = len(raw)
    from .support.bundles import repack

    edited = repack([(ms[0][0], raw), *ms[1:]], tmp_path / "edited.tar.zst")
    code, text = load(world, site.host, tmp_path / "o", bundle=edited)
    assert code == 1 and "signature does not verify" in text, text
    # a delta that relies on a blob without saying so (its relied list emptied, re-signed by the
    # publisher): verification names the missing layer
    meta = json.loads(ms[0][1])
    meta["delta"]["relies"] = []
    raw = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    ms2 = [(ms[0][0], raw), *ms[1:]]
    ms2[0][0].size = len(raw)
    quiet = resigned(world, ms2, tmp_path / "quiet.tar.zst")
    code, text = load(world, site.host, tmp_path / "o", bundle=quiet)
    assert code == 1 and "which is not in the bundle" in text, text
    # a delta signed by another key
    other = tmp_path / "other"
    assert cli("keygen", "--out-dir", str(other))[0] == 0
    foreign = tmp_path / "foreign.tar.zst"
    code, text = cli(
        "bundle",
        str(upgrade.release),
        "--signing-key",
        str(other / "releaser.key"),
        "--since",
        str(world.bundle),
        "--out-file",
        str(foreign),
    )
    assert code == 0, text
    code, text = load(world, site.host, tmp_path / "o", bundle=foreign)
    assert code == 1 and "signature does not verify" in text, text
    tags = requests.get(f"http://{site.host}/v2/library/nats/tags/list", timeout=10).json()["tags"]
    assert "v2" not in tags


def test_an_inventory_names_what_is_wrong_with_a_file_given_as_one(
    world: World, upgrade: Upgrade, tmp_path: Path
) -> None:
    for content, said in (
        (b"{", "not JSON"),
        (b'{"kind": "Other"}', "$.kind"),
        (b'{"kind": "ReleaserInventory", "version": 9}', "$.version"),
        (
            b'{"kind": "ReleaserInventory", "version": 1, "registry": "r", "repositories": {"a": {"blobs": ["x"]}}}',
            "$.repositories['a'].blobs",
        ),
    ):
        bad = tmp_path / "bad.json"
        bad.write_bytes(content)
        code, text = cli(
            "bundle",
            str(upgrade.release),
            "--signing-key",
            str(world.key),
            "--since",
            str(bad),
            "--out-file",
            str(tmp_path / "x.tar.zst"),
        )
        assert code == 1 and said in text and "releaser airgap inventory" in text, text
        assert not (tmp_path / "x.tar.zst").exists()


def test_a_relied_layer_held_only_by_another_repository_of_the_release_is_mounted(
    world: World, upgrade: Upgrade, site: RegistryServer, tmp_path: Path
) -> None:
    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    # the base layer both images share, unlinked from nats' repository: gobmp's still has it
    shared = next(
        str(r["digest"])
        for r in relied(out)
        if requests.head(f"http://{site.host}/v2/library/nats/blobs/{r['digest']}", timeout=10).ok
    )
    assert (
        requests.delete(f"http://{site.host}/v2/library/nats/blobs/{shared}", timeout=10).status_code == 202
    )
    code, text = load(world, site.host, tmp_path / "o", "--json", bundle=out)
    assert code == 0, text
    assert json.loads(text)["result"]["stats"]["blobs_mounted"] >= 1
    assert requests.head(f"http://{site.host}/v2/library/nats/blobs/{shared}", timeout=10).ok


def test_merge_rebuilds_the_full_bundle_byte_for_byte(world: World, upgrade: Upgrade, tmp_path: Path) -> None:
    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    merged = tmp_path / "merged.tar.zst"
    code, text = cli(
        "bundle",
        "merge",
        str(world.bundle),
        str(out),
        "--key",
        str(world.pub),
        "--out-file",
        str(merged),
        "--json",
    )
    assert code == 0, text
    result = json.loads(text)["result"]
    assert result["fromBase"] == len(relied(out)) and result["version"] == "1.1.0"
    assert merged.read_bytes() == upgrade.full.read_bytes()
    # OLD that is not the delta's base, and a full bundle given as the delta: refused, nothing written
    other = tmp_path / "other.tar.zst"
    code, text = cli(
        "bundle", "merge", str(upgrade.full), str(out), "--key", str(world.pub), "--out-file", str(other)
    )
    assert code == 1 and "not the base this delta was made against" in text, text
    code, text = cli(
        "bundle",
        "merge",
        str(world.bundle),
        str(upgrade.full),
        "--key",
        str(world.pub),
        "--out-file",
        str(other),
    )
    assert code == 1 and "not a delta bundle" in text, text
    assert not other.exists()


def test_diff_of_two_bundles_and_of_a_lock_and_a_release_agree_and_match_the_delta(
    world: World, upgrade: Upgrade, tmp_path: Path
) -> None:
    code, text = cli("diff", str(world.bundle), str(upgrade.full), "--json", "--offline")
    assert code == 0, text
    by_bundles = json.loads(text)["result"]
    assert by_bundles["versions"] == {"old": "1.0.0", "new": "1.1.0"}
    assert [(i["name"], i["change"]) for i in by_bundles["images"]] == [("nats", "repinned")]
    assert by_bundles["services"]["changed"] == ["bus"] and by_bundles["serviceFields"]["bus"] == ["image"]
    assert (
        by_bundles["compose"]["changed"] == [".env.example"]
        or "compose.yaml" in by_bundles["compose"]["changed"]
    )
    assert set(by_bundles["compared"]) == {"images", "bytes", "services", "values", "compose"}
    size = by_bundles["bytes"]
    # a delta carries the changed layer, nats' new config and manifest: within 2 % of the layer
    _, layer = upgrade.changed_layer
    assert layer <= size["delta"] <= layer * 1.02
    assert size["delta"] < size["imageLevel"] < size["full"]
    # the same from the old lock and the new release directory (manifests from the registry)
    code, text = cli("diff", str(upgrade.old_lock), str(upgrade.release), "--json")
    assert code == 0, text
    by_lock = json.loads(text)["result"]
    assert by_lock["bytes"] == size and by_lock["images"] == by_bundles["images"]
    assert by_lock["compared"] == ["images", "bytes"]
    # and the delta bundle itself carries exactly those bytes of image blobs (besides the chart's)
    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    ms = {m.name: data for m, data in members(out)}
    chart = str(json.loads(ms["releaser.json"])["chart"]["digest"])
    chart_manifest = json.loads(ms[f"blobs/sha256/{chart.split(':')[1]}"])
    chart_blobs = {
        chart,
        chart_manifest["config"]["digest"],
        *(x["digest"] for x in chart_manifest["layers"]),
    }
    old_names = {m.name for m, _ in members(world.bundle)}
    carried = sum(
        len(data)
        for name, data in ms.items()
        if name.startswith("blobs/")
        and name not in old_names
        and "sha256:" + name.rsplit("/", 1)[1] not in chart_blobs
    )
    assert carried == size["delta"]
    # --exit-code: 1 when something differs, 0 when nothing does
    assert cli("diff", str(world.bundle), str(upgrade.full), "--offline", "--exit-code")[0] == 1
    code, text = cli("diff", str(world.bundle), str(world.bundle), "--offline", "--exit-code")
    assert code == 0 and "no change" in text, text


def test_diff_names_what_needs_care(tmp_path: Path) -> None:
    """Services and values through the one plan (no registry: --offline): a removed volume, a
    moved port, a job added, a Deployment that becomes a StatefulSet."""
    src = Path(__file__).parent.parent / "examples" / "platform"
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(src, old)
    shutil.copytree(src, new)
    doc = yaml.safe_load((new / "release.yaml").read_text())
    services = doc["services"]
    name = next(
        n for n, s in services.items() if s.get("ports") and not s.get("job") and not s.get("stateful")
    )
    services[name]["ports"][0]["port"] += 1
    (new / "release.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    code, text = cli("diff", str(old), str(new), "--offline")
    assert code == 0, text
    assert f"service changed: {name} (ports" in text and f"care: service {name}: port" in text, text


def test_load_sh_of_a_delta_verifies_then_refuses_and_copies_nothing(
    world: World, upgrade: Upgrade, tmp_path: Path
) -> None:
    from .support.bundles import extract
    from .test_bundle_customer import load_sh, only_tools

    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    d = extract(out, tmp_path / "x")
    target = RegistryServer(tmp_path / "target").start()
    try:
        proc = load_sh(d, only_tools(tmp_path), "--key", str(world.pub), "--to", target.host, "--insecure")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "verified" in proc.stdout and "this is a delta bundle" in proc.stderr
        assert "releaser bundle merge" in proc.stderr and "Nothing was copied" in proc.stderr
        assert requests.get(f"http://{target.host}/v2/_catalog", timeout=10).json()["repositories"] in (
            [],
            None,
        )
    finally:
        target.stop()
    if shutil.which("shellcheck"):
        check = subprocess.run(
            ["shellcheck", "--shell=sh", "--severity=style", str(d / "load.sh")],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout


def test_diff_reads_a_release_directory_as_git_holds_it_at_a_revision(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "platform", repo / "platform")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "2.3.0"], check=True)
    subprocess.run([*git, "tag", "v2.3.0"], check=True)
    config = repo / "platform/config/api.yaml"
    config.write_text(config.read_text() + "# changed\n")
    code, text = cli("diff", f"{repo / 'platform'}@v2.3.0", str(repo / "platform"), "--offline", "--json")
    assert code == 0, text
    result = json.loads(text)["result"]
    assert result["serviceFields"] == {"api": ["configs"]} and result["images"] == []
    code, text = cli("diff", f"{repo / 'platform'}@no-such-tag", str(repo / "platform"), "--offline")
    assert code == 1 and "git cannot give the directory" in text and "DIR@v2.3.0" in text, text


def test_a_delta_may_leave_out_layers_only(world: World, upgrade: Upgrade, tmp_path: Path) -> None:
    """A config left out and listed in `relies` (re-signed by the publisher) is still refused:
    the load needs every config and manifest from the bundle itself."""
    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    ms = members(out)
    nats = json.loads(ms[0][1])["lock"]["images"]["nats"]["digest"]
    manifest = json.loads(next(d for m, d in ms if m.name == f"blobs/sha256/{nats.split(':')[1]}"))
    config = manifest["config"]
    meta = json.loads(ms[0][1])
    meta["delta"]["relies"].append({"digest": config["digest"], "size": config["size"]})
    raw = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    ms[0][0].size = len(raw)
    kept = [
        (ms[0][0], raw),
        *(x for x in ms[1:] if x[0].name != f"blobs/sha256/{config['digest'].split(':')[1]}"),
    ]
    bad = resigned(world, kept, tmp_path / "bad.tar.zst")
    code, text = cli("airgap", "verify", str(bad), "--key", str(world.pub))
    assert code == 1 and f"references {config['digest']}, which is not in the bundle" in text, text


def test_merge_writes_bundles_name_version_by_default_and_diff_names_a_missing_directory(
    world: World, upgrade: Upgrade, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "d.tar.zst"
    delta(world, upgrade, world.bundle, out)
    monkeypatch.chdir(tmp_path)  # no bundles/ here yet
    code, text = cli("bundle", "merge", str(world.bundle), str(out), "--key", str(world.pub))
    assert code == 0, text
    assert (tmp_path / "bundles/demo-1.1.0.tar.zst").read_bytes() == upgrade.full.read_bytes()
    code, text = cli("diff", "nowhere@v1.0.0", str(world.bundle), "--offline")
    assert code == 1 and "nowhere is not a directory" in text, text
