"""`releaser airgap check`: what a registry really serves of a bundle, against real registries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from .support.bundles import World, cli, load
from .support.hostile import HeadOnlyCache
from .support.registry import RegistryServer

pytestmark = pytest.mark.registry


def check(world: World, to: str, *extra: str) -> tuple[int, dict[str, object]]:
    code, out = cli(
        "airgap", "check", str(world.bundle), "--to", to, "--key", str(world.pub), "--json", *extra
    )
    return code, json.loads(out)


def test_a_loaded_registry_serves_all_of_the_bundle_and_what_goes_missing_is_named(
    world: World, tmp_path: Path
) -> None:
    target = RegistryServer(tmp_path / "target").start()
    try:
        code, out = load(world, f"{target.host}/x", tmp_path)
        assert code == 0, out
        code, doc = check(world, f"{target.host}/x")
        assert code == 0, doc
        result = doc["result"]
        assert isinstance(result, dict)
        # the two images with their index children and attachments, and the chart: 10 manifests
        assert result["manifests"] == 10 and result["blobs"] >= 10 and result["sampled"] == 8
        assert result["tags"] >= 7 and result["missing"] == []
        # a blob unlinked from its repository, and a tag deleted with its manifest: both named
        blob_repo, blob = "x/library/nats", _a_layer(target, "x/library/nats")
        assert (
            requests.delete(f"http://{target.host}/v2/{blob_repo}/blobs/{blob}", timeout=10).status_code
            == 202
        )
        code, doc = check(world, f"{target.host}/x")
        error = doc["error"]
        assert isinstance(error, dict)
        assert code == 4 and f"{target.host}/{blob_repo}@{blob}: blob missing" in error["mismatches"], doc
        assert f"the bundle and what {target.host}/x serves" in error["message"]
        assert "releaser airgap" in error["fix"] and "--to" in error["fix"]
        # the load puts it back, and the check agrees
        code, out = load(world, f"{target.host}/x", tmp_path)
        assert code == 0, out
        assert check(world, f"{target.host}/x")[0] == 0
        # nothing of it in another prefix: every manifest, blob and tag missing, exit 4
        code, doc = check(world, f"{target.host}/empty")
        assert code == 4 and len(doc["error"]["mismatches"]) > 20  # type: ignore[index, arg-type]
    finally:
        target.stop()


def test_a_blob_that_answers_head_but_not_get_is_caught_by_the_sample(world: World, tmp_path: Path) -> None:
    """The pull-through cache trap: HEAD says 200, GET says 404. `--sample` large enough to read
    every blob finds it."""
    target = RegistryServer(tmp_path / "target").start()
    cache = HeadOnlyCache(target.host).start()
    try:
        assert load(world, f"{target.host}/x", tmp_path)[0] == 0
        cache.lost.add(_a_layer(target, "x/library/nats"))
        code, doc = check(world, f"{cache.host}/x", "--sample", "1000")
        mismatches = doc["error"]["mismatches"]  # type: ignore[index]
        assert code == 4 and any("answers HEAD but not GET" in m for m in mismatches), doc
    finally:
        cache.stop()
        target.stop()


def _a_layer(target: RegistryServer, repo: str) -> str:
    manifest = requests.get(
        f"http://{target.host}/v2/{repo}/manifests/v1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    ).json()
    return str(manifest["layers"][0]["digest"])
