"""Keyless signatures across the air gap, with a private Sigstore whose every service is the real one
(Fulcio, TesseraCT, Rekor v2, the timestamp authority: tests/support/sigstore.py) and cosign 3
signing keyless through it. The policy names an OIDC issuer and an identity pattern and the
instance's trusted root; `lock` and `bundle` verify against it, the bundle carries it in its signed
head, and at the site `airgap verify` and `airgap` verify again with every Sigstore service stopped:
the certificate chain, its SCT, the signed timestamp, the log's inclusion proof and checkpoint, the
identity, all offline. cosign verifies the loaded images in the site registry with the same root.
Refused, with nothing written or pushed: a keyless signature by an identity the policy does not
name, and a bundle whose carried trusted root was swapped for another instance's (head re-signed
with the publisher's own releaser key)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from releaser.bundle.sign import load_private_key, sign

from .conftest import TOOLS, missing_component
from .support import images
from .support.bundles import members, repack
from .support.registry import RegistryServer
from .support.sigstore import PrivateSigstore, _fulcio_ca, missing
from .support.trusttools import RELEASER, run, signed_bundle

pytestmark = pytest.mark.registry

COSIGN3 = TOOLS / "bin" / "cosign3"
PASS = "keyless-test-only"
SIGNER = "release@acme.example"

RELEASE = """apiVersion: releaser.dev/v1alpha1
kind: Release
metadata: {{name: keyless, version: 1.0.0}}
images:
  app: {{ref: {host}/acme/app:1}}
  multi: {{ref: {host}/acme/multi:1}}
trust:
  trustedRoot: trusted_root.json
  default: {{keyless: {{issuer: "{issuer}", identity: "^release@acme\\\\.example$"}}}}
  images:
    app: {{keyless: [{{issuer: "{issuer}", identity: "^release@acme\\\\.example$"}}], attestations: [cyclonedx]}}
services:
  app: {{image: app, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
  multi: {{image: multi, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if missing():
        missing_component(
            f"the private Sigstore ({', '.join(missing())}: scripts/build_go_tools.py, run by make setup)"
        )
    work = tmp_path_factory.mktemp("keyless")
    src = RegistryServer(work / "src").start()
    sigstore = PrivateSigstore(work / "sigstore")
    env = {
        **os.environ,
        "HOME": str(work / "home"),
        "RELEASER_KEY_PASSPHRASE": PASS,
        "RELEASER_CACHE": str(work / "cache"),
    }
    try:
        lay = work / "layout"
        images.build(lay, "app", "app:1")
        images.build(lay, "multi", "multi:1", platforms=("amd64", "arm64"))
        images.build(lay, "rogue", "rogue:1", extra={"etc/rogue": b"rogue\n"})
        refs = {}
        for name in ("app", "multi", "rogue"):
            images.push(lay, f"{name}:1", f"{src.host}/acme/{name}:1")
            refs[name] = f"{src.host}/acme/{name}@{images.skopeo_digest(f'{src.host}/acme/{name}:1')}"
        sbom = work / "sbom.json"
        sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}))
        http = ["--allow-http-registry", "-y"]
        for name, who in (("app", SIGNER), ("multi", SIGNER), ("rogue", "intruder@elsewhere.example")):
            run(COSIGN3, "sign", *sigstore.keyless_flags(who), *http, refs[name], env=sigstore.env)
        run(
            COSIGN3, "attest", *sigstore.keyless_flags(SIGNER), *http, "--type", "cyclonedx",
            "--predicate", sbom, refs["app"], env=sigstore.env,
        )  # fmt: skip
        run(RELEASER, "keygen", "--out-dir", work / "rkeys", env=env)
        yield {"work": work, "src": src, "sigstore": sigstore, "env": env, "refs": refs}
    finally:
        sigstore.stop()
        src.stop()


def release(w: dict[str, Any], name: str, *, text: str | None = None, lock: int = 0) -> Path:
    d = w["work"] / name
    d.mkdir()
    body = text or RELEASE.format(host=w["src"].host, issuer=w["sigstore"].issuer.url)
    (d / "release.yaml").write_text(body)
    (d / "trusted_root.json").write_bytes(w["sigstore"].trusted_root.read_bytes())
    shown = run(RELEASER, "lock", d, "--json", env=w["env"], expect=lock)
    if lock:
        assert not (d / "release.lock.yaml").exists(), shown
        w.setdefault("refusals", {})[name] = json.loads(shown[shown.index("{") :])
    return d


def bundle(w: dict[str, Any], rel: Path, out: Path, expect: int = 0) -> tuple[dict[str, Any], str]:
    return signed_bundle(w["work"], w["env"], rel, out, expect)


def test_keyless_signatures_pass_at_both_ends_offline_and_cosign_verifies_them_at_the_site(
    world: dict[str, Any],
) -> None:
    w = world
    rel = release(w, "good")
    good = w["work"] / "good.tar.zst"
    doc, _ = bundle(w, rel, good)
    verdicts = {v["image"]: v for v in doc["result"]["trust"]}
    issuer = w["sigstore"].issuer.url
    for name in ("app", "multi"):
        assert verdicts[name]["ok"], verdicts[name]
        assert verdicts[name]["signers"] == [f"{SIGNER} (keyless, {issuer})"], verdicts[name]
        assert verdicts[name]["trustedRoot"]["source"] == "trusted_root.json"
        assert verdicts[name]["trustedRoot"]["timestampAuthorities"] == 1
    assert verdicts["app"]["attested"] == ["https://cyclonedx.org/bom"]

    # the site: no Sigstore service answers any more; everything is checked from the bundle's bytes
    w["sigstore"].stop()
    pub = w["work"] / "rkeys/releaser.pub"
    shown = run(RELEASER, "airgap", "verify", good, "--key", pub, env=w["env"])
    assert "keyless signatures verified offline against the trusted root trusted_root.json" in shown, shown
    assert f"signed by {SIGNER} (keyless, {issuer})" in shown, shown
    shown = run(RELEASER, "airgap", "inspect", good, "--key", pub, env=w["env"])
    assert f"! trust policy: signed by keyless /^release@acme\\.example$/ from {issuer}" in shown, shown
    assert "checked against the Sigstore trusted root trusted_root.json: 1 certificate authorities" in shown
    site = RegistryServer(w["work"] / "site").start()
    try:
        out = run(
            RELEASER, "airgap", good, "--to", site.host, "--key", pub, "--out-dir", w["work"] / "site-out",
            "--json", env=w["env"],
        )  # fmt: skip
        loaded = json.loads(out[out.index("{") :])["result"]
        assert all(v["ok"] for v in loaded["trust"]), loaded["trust"]
        flags = [
            "--trusted-root", str(rel / "trusted_root.json"), "--certificate-oidc-issuer", issuer,
            "--certificate-identity-regexp", "^release@acme\\.example$", "--allow-http-registry",
        ]  # fmt: skip
        for name in ("app", "multi"):
            run(COSIGN3, "verify", *flags, w["refs"][name].replace(w["src"].host, site.host), env=w["env"])
        site_app = w["refs"]["app"].replace(w["src"].host, site.host)
        run(COSIGN3, "verify-attestation", *flags, "--type", "cyclonedx", site_app, env=w["env"])
    finally:
        site.stop()


def test_a_keyless_signature_by_an_identity_the_policy_does_not_name_is_refused(
    world: dict[str, Any],
) -> None:
    w = world
    text = RELEASE.format(host=w["src"].host, issuer=w["sigstore"].issuer.url).replace(
        "acme/multi:1", "acme/rogue:1"
    )
    release(w, "rogue", text=text, lock=4)
    problems = "\n".join(w["refusals"]["rogue"]["error"]["problems"])
    digest = w["refs"]["rogue"].split("@")[1]
    assert f"multi ({digest}): no signature of {digest} by keyless /^release@acme\\.example$/" in problems
    assert "signed by intruder@elsewhere.example (keyless, http://127.0.0.1:" in problems, problems
    assert "which no keyless identity of the policy names" in problems, problems


def test_a_trusted_root_of_another_instance_swapped_into_a_resigned_bundle_is_refused_with_nothing_pushed(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """The releaser key signs the head; the trusted root is another trust domain: a bundle whose
    carried root names another certificate authority (the head re-signed with the publisher's own
    key) verifies no keyless signature at the site, and nothing is pushed."""
    w = world
    rel = release(w, "swap")
    good = tmp_path / "swap.tar.zst"
    bundle(w, rel, good)
    ms = members(good)
    meta = json.loads(ms[0][1])
    root = json.loads(meta["trust"]["trustedRoot"]["json"])
    chain, _ = _fulcio_ca()  # another CA, as another Sigstore instance has
    import base64

    from cryptography import x509

    root["certificateAuthorities"][0]["certChain"]["certificates"] = [
        {"rawBytes": base64.b64encode(c.public_bytes(serialization_der())).decode()}
        for c in x509.load_pem_x509_certificates(chain)
    ]
    meta["trust"]["trustedRoot"]["json"] = json.dumps(root)
    raw = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    sig = sign(load_private_key(w["work"] / "rkeys/releaser.key", PASS.encode()), raw)
    swapped = repack([(ms[0][0], raw), (ms[1][0], sig), *ms[2:]], tmp_path / "swapped.tar.zst")
    pub = w["work"] / "rkeys/releaser.pub"
    shown = run(RELEASER, "airgap", "verify", swapped, "--key", pub, env=w["env"], expect=4)
    assert "not met; do not use it" in shown, shown
    assert "does not verify against the trusted root trusted_root.json" in shown, shown
    site = RegistryServer(tmp_path / "site").start()
    try:
        shown = run(
            RELEASER, "airgap", swapped, "--to", site.host, "--key", pub, "--out-dir", tmp_path / "out",
            env=w["env"], expect=4,
        )  # fmt: skip
        assert "nothing was pushed" in shown, shown
        catalog = subprocess.run(
            ["curl", "-s", f"http://{site.host}/v2/_catalog"], capture_output=True, text=True, check=True
        ).stdout
        assert json.loads(catalog)["repositories"] == [], catalog
    finally:
        site.stop()


def serialization_der() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.DER
