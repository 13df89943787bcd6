"""Referrers through the OCI referrers API (distribution spec 1.1), on a registry that has it
(go-containerregistry's, tests/support/referrers_registry): cosign 3 attaches its Sigstore bundles
there through the API alone (no `sha256-<hex>` tag is written), so `lock` and `bundle` find them only
by asking the API. The bundle carries them as the tag schema's index (what a registry without the
API serves); the load into another registry with the API makes them referrers there, which
`oras discover` lists through the API and `cosign verify` checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import TOOLS, missing_component
from .support import images
from .support.registry import free_port
from .support.trusttools import RELEASER, run, signed_bundle

pytestmark = pytest.mark.registry

COSIGN3, ORAS, SERVER = (
    TOOLS / "bin" / "cosign3",
    TOOLS / "bin" / "oras",
    TOOLS / "bin" / "referrers-registry",
)
PASS = "referrers-test-only"

RELEASE = """apiVersion: releaser.dev/v1alpha1
kind: Release
metadata: {{name: refs, version: 1.0.0}}
images:
  app: {{ref: {host}/acme/app:1}}
  multi: {{ref: {host}/acme/multi:1}}
trust:
  default: {{keys: [vendor.pub]}}
  images:
    app: {{keys: [vendor.pub], attestations: [cyclonedx]}}
services:
  app: {{image: app, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
  multi: {{image: multi, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
"""


class ReferrersRegistry:
    """go-containerregistry's registry with the referrers API, on 127.0.0.1 (plain HTTP)."""

    def __init__(self, work: Path) -> None:
        self.host = f"127.0.0.1:{free_port()}"
        self.log = (work / "registry.log").open("wb")
        self.proc = subprocess.Popen(
            [str(SERVER), "-address", self.host, "-disk", str(work / "blobs")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the referrers registry did not start: {work / 'registry.log'}"
                    ) from None
                time.sleep(0.1)

    def tags(self, repo: str) -> list[str]:
        with urllib.request.urlopen(f"http://{self.host}/v2/{repo}/tags/list", timeout=10) as r:
            return list(json.load(r).get("tags") or [])

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not all(p.exists() for p in (COSIGN3, ORAS, SERVER)):
        missing_component(
            "cosign 3, oras and the referrers registry (scripts/build_go_tools.py, run by make setup)"
        )
    work = tmp_path_factory.mktemp("referrers")
    (work / "src").mkdir()
    src = ReferrersRegistry(work / "src")
    env = {
        **os.environ,
        "HOME": str(work / "home"),
        "COSIGN_PASSWORD": PASS,
        "RELEASER_KEY_PASSPHRASE": PASS,
        "RELEASER_CACHE": str(work / "cache"),
    }
    try:
        lay = work / "layout"
        images.build(lay, "app", "app:1")
        images.build(lay, "multi", "multi:1", platforms=("amd64", "arm64"))
        refs = {}
        for name in ("app", "multi"):
            images.push(lay, f"{name}:1", f"{src.host}/acme/{name}:1")
            refs[name] = f"{src.host}/acme/{name}@{images.skopeo_digest(f'{src.host}/acme/{name}:1')}"
        (work / "keys").mkdir()
        subprocess.run(
            [str(COSIGN3), "generate-key-pair"], cwd=work / "keys", env=env, check=True, capture_output=True
        )
        key = work / "keys" / "cosign.key"
        sbom = work / "sbom.json"
        sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}))
        flags = ["--use-signing-config=false", "--tlog-upload=false", "--allow-http-registry", "-y"]
        for name in ("app", "multi"):
            run(COSIGN3, "sign", *flags, "--key", key, refs[name], env=env)
        run(
            COSIGN3,
            "attest",
            *flags,
            "--key",
            key,
            "--type",
            "cyclonedx",
            "--predicate",
            sbom,
            refs["app"],
            env=env,
        )
        run(RELEASER, "keygen", "--out-dir", work / "rkeys", env=env)
        yield {"work": work, "src": src, "env": env, "refs": refs, "key": key}
    finally:
        src.stop()


def test_referrers_only_the_api_lists_are_locked_bundled_and_loaded_as_referrers(
    world: dict[str, Any],
) -> None:
    w = world
    # cosign 3 wrote no tag: what it attached is reachable through the referrers API alone
    for name in ("app", "multi"):
        assert not [t for t in w["src"].tags(f"acme/{name}") if t.startswith("sha256-")], w["src"].tags(
            f"acme/{name}"
        )
    rel = w["work"] / "release"
    rel.mkdir()
    (rel / "release.yaml").write_text(RELEASE.format(host=w["src"].host))
    (rel / "vendor.pub").write_bytes((w["key"].parent / "cosign.pub").read_bytes())
    shown = run(RELEASER, "lock", rel, "--json", env=w["env"])
    locked = {v["image"]: v for v in json.loads(shown[shown.index("{") :])["result"]["trust"]}
    assert all(v["ok"] for v in locked.values()), locked
    out = w["work"] / "refs.tar.zst"
    doc, _ = signed_bundle(w["work"], w["env"], rel, out)
    verdicts = {v["image"]: v for v in doc["result"]["trust"]}
    assert verdicts["app"]["ok"] and verdicts["app"]["attested"] == ["https://cyclonedx.org/bom"], verdicts
    assert verdicts["multi"]["ok"] and {f["form"] for f in verdicts["multi"]["found"]} == {"sigstore bundle"}
    # the same bytes again: the index made from the API's answer is reproducible
    again = w["work"] / "again.tar.zst"
    signed_bundle(w["work"], w["env"], rel, again)
    assert again.read_bytes() == out.read_bytes()

    (w["work"] / "site").mkdir()
    site = ReferrersRegistry(w["work"] / "site")
    try:
        pub = w["work"] / "rkeys/releaser.pub"
        run(
            RELEASER,
            "airgap",
            out,
            "--to",
            site.host,
            "--key",
            pub,
            "--out-dir",
            w["work"] / "site-out",
            env=w["env"],
        )
        for name, count in (("app", 2), ("multi", 1)):
            ref = w["refs"][name].replace(w["src"].host, site.host)
            listed = json.loads(run(ORAS, "discover", "--plain-http", "--format", "json", ref, env=w["env"]))
            assert len(listed["referrers"]) == count, listed
            run(
                COSIGN3, "verify", "--key", w["key"].parent / "cosign.pub", "--insecure-ignore-tlog=true",
                "--allow-http-registry", ref, env=w["env"],
            )  # fmt: skip
    finally:
        site.stop()
