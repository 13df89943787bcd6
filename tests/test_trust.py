"""The trust policy with real cosign (2 and 3, built from their modules: scripts/build_go_tools.py)
and real registries: images signed and attested in both formats the field uses (cosign 2's .sig/.att
tags, cosign 3's Sigstore bundles attached as referrers through the tag schema, distribution 2.8
having no referrers API) pass `lock`, `bundle`, `airgap verify` and `airgap` (the policy checked
offline at the site from what the bundle carries), and cosign itself verifies them in the site
registry. Each tamper is refused with exit 4 naming the image, its digest, what was required and
what was found, with nothing written (lock, bundle) or pushed (airgap): a signature by another key,
a signature for another digest, an attestation the policy requires and the image lacks, the
policy's key swapped in a bundle re-signed with the publisher's own releaser key."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from releaser.bundle.sign import load_private_key, sign

from .conftest import TOOLS, missing_component
from .support import images
from .support.bundles import members, repack, resigned
from .support.registry import RegistryServer
from .support.trusttools import RELEASER, run, signed_bundle

pytestmark = pytest.mark.registry

COSIGN2, COSIGN3 = TOOLS / "bin" / "cosign2", TOOLS / "bin" / "cosign3"
PASS = "trust-test-only"

RELEASE = """apiVersion: releaser.dev/v1alpha1
kind: Release
metadata: {{name: shop, version: 1.0.0}}
images:
  app: {{ref: {host}/acme/app:1}}
  multi: {{ref: {host}/acme/multi:1}}
  base: {{ref: {host}/library/base:1}}
trust:
  default: {{keys: [vendor.pub]}}
  images:
    app: {{keys: [vendor.pub], attestations: [{app_attestation}]}}
    multi: {{keys: [vendor.pub], attestations: [slsaprovenance1]}}
    base: {{exempt: "the upstream base image, signed by nobody we trust"}}
services:
  app: {{image: app, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
  multi: {{image: multi, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
  base: {{image: base, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
"""


def cosign(binary: Path, *args: str, env: dict[str, str]) -> str:
    extra = ["--use-signing-config=false"] if binary == COSIGN3 and args[0] in ("sign", "attest") else []
    return run(binary, args[0], *extra, *args[1:], env=env, timeout=120)


def digest_of(host: str, ref: str) -> str:
    return images.skopeo_digest(f"{host}/{ref}")


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not all(p.exists() for p in (COSIGN2, COSIGN3, TOOLS / "bin/oras")):
        missing_component("cosign 2 and 3, oras (scripts/build_go_tools.py, run by make setup)")
    work = tmp_path_factory.mktemp("trust")
    src = RegistryServer(work / "src").start()
    env = {
        **os.environ,
        "HOME": str(work / "home"),  # cosign keeps its own state there; nothing of the user's
        "COSIGN_PASSWORD": PASS,
        "RELEASER_KEY_PASSPHRASE": PASS,
        "RELEASER_CACHE": str(work / "cache"),
        "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}",
    }
    try:
        lay = work / "layout"
        images.build(lay, "app", "app:1")
        images.build(lay, "multi", "multi:1", platforms=("amd64", "arm64"))
        images.build(lay, "base", "base:1", extra={"etc/base": b"base\n"})
        images.build(lay, "victim", "victim:1", extra={"etc/victim": b"victim\n"})
        for tag, repo in (("app:1", "acme/app:1"), ("multi:1", "acme/multi:1"), ("base:1", "library/base:1")):
            images.push(lay, tag, f"{src.host}/{repo}")
        images.push(lay, "victim:1", f"{src.host}/acme/victim:1")
        keys = work / "keys"
        keys.mkdir()
        for name in ("vendor", "other"):  # generate-key-pair writes cosign.key/.pub where it runs
            (keys / name).mkdir()
            subprocess.run(
                [str(COSIGN3), "generate-key-pair"], cwd=keys / name, env=env, check=True, capture_output=True
            )
        vendor, other = keys / "vendor/cosign.key", keys / "other/cosign.key"
        app = f"{src.host}/acme/app@{digest_of(src.host, 'acme/app:1')}"
        multi = f"{src.host}/acme/multi@{digest_of(src.host, 'acme/multi:1')}"
        sbom = work / "sbom.json"
        sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}))
        provenance = work / "provenance.json"
        provenance.write_text(
            json.dumps({"buildDefinition": {"buildType": "https://example.org/t"}, "runDetails": {}})
        )
        http = ["--tlog-upload=false", "--allow-http-registry", "-y"]
        cosign(COSIGN2, "sign", "--key", str(vendor), *http, app, env=env)  # a .sig tag
        cosign(
            COSIGN2,
            "attest",
            "--key",
            str(vendor),
            *http,
            "--type",
            "cyclonedx",
            "--predicate",
            str(sbom),
            app,
            env=env,
        )
        cosign(COSIGN3, "sign", "--key", str(vendor), *http, multi, env=env)  # a Sigstore bundle referrer
        cosign(
            COSIGN3,
            "attest",
            "--key",
            str(vendor),
            *http,
            "--type",
            "slsaprovenance1",
            "--predicate",
            str(provenance),
            multi,
            env=env,
        )
        run(RELEASER, "keygen", "--out-dir", work / "rkeys", env=env)
        yield {
            "work": work,
            "src": src,
            "env": env,
            "vendor": vendor,
            "other": other,
            "app": app,
            "multi": multi,
            "http": http,
        }
    finally:
        src.stop()


def release(
    s: dict[str, Any],
    name: str,
    *,
    app_attestation: str = "cyclonedx",
    text: str | None = None,
    lock: int = 0,
) -> Path:
    """A release directory of the signed images, locked (`lock`: the exit the lock is expected to give;
    when the policy refuses it, the lock is written with the policy removed, so that `bundle` can be
    shown refusing too)."""
    d = s["work"] / name
    d.mkdir()
    body = text or RELEASE.format(host=s["src"].host, app_attestation=app_attestation)
    (d / "release.yaml").write_text(body)
    (d / "vendor.pub").write_bytes((s["vendor"].parent / "cosign.pub").read_bytes())
    shown = run(RELEASER, "lock", d, "--json", env=s["env"], expect=lock)
    if lock:
        assert not (d / "release.lock.yaml").exists() and "was not written" in shown, shown
        s.setdefault("lock_refusals", {})[name] = json.loads(shown[shown.index("{") :])
        (d / "release.yaml").write_text(body[: body.index("trust:")] + body[body.index("services:") :])
        run(RELEASER, "lock", d, env=s["env"])
        (d / "release.yaml").write_text(body)
    return d


def bundle(s: dict[str, Any], rel: Path, out: Path, expect: int = 0) -> tuple[dict[str, Any], str]:
    return signed_bundle(s["work"], s["env"], rel, out, expect)


def test_both_formats_pass_at_both_ends_and_cosign_verifies_them_at_the_site(signed: dict[str, Any]) -> None:
    s = signed
    rel = release(s, "good")
    doc, _ = bundle(s, rel, s["work"] / "good.tar.zst")
    verdicts = {v["image"]: v for v in doc["result"]["trust"]}
    assert verdicts["app"]["ok"] and verdicts["app"]["signers"] == ["vendor.pub"]
    assert verdicts["app"]["attested"] == ["https://cyclonedx.org/bom"]
    assert {f["form"] for f in verdicts["app"]["found"]} >= {"cosign .sig", "cosign .att"}
    assert verdicts["multi"]["ok"] and verdicts["multi"]["attested"] == ["https://slsa.dev/provenance/v1"]
    assert {f["form"] for f in verdicts["multi"]["found"]} == {"sigstore bundle"}
    assert verdicts["base"]["ok"] and verdicts["base"]["exempt"]
    pub = s["work"] / "rkeys/releaser.pub"
    shown = run(RELEASER, "airgap", "verify", s["work"] / "good.tar.zst", "--key", pub, env=s["env"])
    assert "trust: app sha256:" in shown and "signed by vendor.pub" in shown and "trust: base exempt" in shown
    shown = run(RELEASER, "airgap", "inspect", s["work"] / "good.tar.zst", "--key", pub, env=s["env"])
    assert "! trust policy: signed by vendor.pub; attested: https://cyclonedx.org/bom" in shown, shown
    assert "! trust policy: exempt: the upstream base image" in shown, shown
    site = RegistryServer(s["work"] / "site-good").start()
    try:
        out = run(
            RELEASER, "airgap", s["work"] / "good.tar.zst", "--to", site.host, "--key", pub,
            "--out-dir", s["work"] / "site-good-out", "--json", env=s["env"],
        )  # fmt: skip
        loaded = json.loads(out[out.index("{") :])["result"]
        assert all(v["ok"] for v in loaded["trust"]), loaded["trust"]
        key = str(s["vendor"].parent / "cosign.pub")
        flags = ["--insecure-ignore-tlog=true", "--allow-http-registry"]
        app = s["app"].replace(s["src"].host, site.host)
        multi = s["multi"].replace(s["src"].host, site.host)
        run(COSIGN2, "verify", "--key", key, *flags, app, env=s["env"])
        run(COSIGN2, "verify-attestation", "--key", key, *flags, "--type", "cyclonedx", app, env=s["env"])
        run(COSIGN3, "verify", "--key", key, *flags, multi, env=s["env"])
        run(
            COSIGN3,
            "verify-attestation",
            "--key",
            key,
            *flags,
            "--type",
            "slsaprovenance1",
            multi,
            env=s["env"],
        )
        # an independent client finds the referrers the load wrote (the tag schema: no referrers API here)
        shown = run(TOOLS / "bin/oras", "discover", "--plain-http", "--format", "json", multi, env=s["env"])
        referrers = json.loads(shown)["referrers"]
        assert len(referrers) == 2, referrers  # the signature and the attestation
        assert {r["artifactType"] for r in referrers} == {"application/vnd.dev.sigstore.bundle.v0.3+json"}
    finally:
        site.stop()


def test_a_signature_by_another_key_is_refused_and_no_bundle_is_written(signed: dict[str, Any]) -> None:
    s = signed
    victim = f"{s['src'].host}/acme/victim@{digest_of(s['src'].host, 'acme/victim:1')}"
    cosign(COSIGN2, "sign", "--key", str(s["other"]), *s["http"], victim, env=s["env"])
    text = RELEASE.format(host=s["src"].host, app_attestation="cyclonedx").replace(
        "acme/app:1", "acme/victim:1"
    )
    rel = release(s, "rogue", text=text, lock=4)
    locked = "\n".join(s["lock_refusals"]["rogue"]["error"]["problems"])
    assert "no key of the policy verifies its signature" in locked, locked
    out = s["work"] / "rogue.tar.zst"
    doc, shown = bundle(s, rel, out, expect=4)
    digest = victim.split("@")[1]
    problems = "\n".join(doc["error"]["problems"])
    assert f"app ({digest}): no signature of {digest} by vendor.pub" in problems, shown
    assert "cosign .sig: no key of the policy verifies its signature" in problems, shown
    assert not out.exists() and "no bundle was written" in doc["error"]["message"]


def test_a_signature_for_another_digest_is_refused(signed: dict[str, Any], tmp_path: Path) -> None:
    s = signed
    host = s["src"].host
    app_digest, victim_digest = digest_of(host, "acme/app:1"), digest_of(host, "library/base:1")
    # app's signature put where the base image's would be: valid, by the right key, for another digest
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
         f"docker://{host}/acme/app:{app_digest.replace(':', '-')}.sig",
         f"docker://{host}/library/base:{victim_digest.replace(':', '-')}.sig"],
        check=True, capture_output=True,
    )  # fmt: skip
    text = RELEASE.format(host=host, app_attestation="cyclonedx").replace(
        'base: {exempt: "the upstream base image, signed by nobody we trust"}', "base: {keys: [vendor.pub]}"
    )
    rel = release(s, "elsewhere", text=text, lock=4)
    doc, shown = bundle(s, rel, tmp_path / "elsewhere.tar.zst", expect=4)
    problems = "\n".join(doc["error"]["problems"])
    assert f"base ({victim_digest}): no signature of {victim_digest}" in problems, shown
    assert f"cosign .sig for another digest ({app_digest})" in problems, shown


def test_an_attestation_the_policy_requires_and_the_image_lacks_is_refused(
    signed: dict[str, Any], tmp_path: Path
) -> None:
    s = signed
    rel = release(s, "needs-spdx", app_attestation="spdx", lock=4)
    doc, shown = bundle(s, rel, tmp_path / "spdx.tar.zst", expect=4)
    problems = "\n".join(doc["error"]["problems"])
    assert "no https://spdx.dev/Document attestation of" in problems, shown
    assert "found: cosign .att https://cyclonedx.org/bom by vendor.pub" in problems, shown


def test_a_swapped_policy_key_in_a_resigned_bundle_is_refused_at_the_site_with_nothing_pushed(
    signed: dict[str, Any], tmp_path: Path
) -> None:
    """The releaser key signs the head; the policy's keys are another trust domain: a bundle whose
    policy key was swapped (and the head re-signed with the publisher's releaser key) fails the
    policy at the site, because the images are signed by the vendor's key, not the swapped one."""
    s = signed
    rel = release(s, "swap")
    good = tmp_path / "swap.tar.zst"
    bundle(s, rel, good)
    ms = members(good)
    meta = json.loads(ms[0][1])
    meta["trust"]["keys"]["vendor.pub"] = (s["other"].parent / "cosign.pub").read_text()
    raw = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    sig = sign(load_private_key(s["work"] / "rkeys/releaser.key", PASS.encode()), raw)
    swapped = repack([(ms[0][0], raw), (ms[1][0], sig), *ms[2:]], tmp_path / "swapped.tar.zst")
    pub = s["work"] / "rkeys/releaser.pub"
    shown = run(RELEASER, "airgap", "verify", swapped, "--key", pub, env=s["env"], expect=4)
    assert "not met; do not use it" in shown and "no key of the policy verifies its signature" in shown
    site = RegistryServer(tmp_path / "site").start()
    try:
        shown = run(
            RELEASER, "airgap", swapped, "--to", site.host, "--key", pub, "--out-dir", tmp_path / "out",
            env=s["env"], expect=4,
        )  # fmt: skip
        assert "nothing was pushed" in shown and "app (sha256:" in shown
        catalog = subprocess.run(
            ["curl", "-s", f"http://{site.host}/v2/_catalog"], capture_output=True, text=True, check=True
        ).stdout
        assert json.loads(catalog)["repositories"] == [], catalog
    finally:
        site.stop()


SBOM_RELEASE = """apiVersion: releaser.dev/v1alpha1
kind: Release
metadata: {{name: sboms, version: 1.0.0}}
images:
  app: {{ref: {host}/acme/app:1}}
  multi: {{ref: {host}/acme/multi:1}}
  bare: {{ref: {host}/library/base:1}}
services:
  app: {{image: app, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
  multi: {{image: multi, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
  bare: {{image: bare, resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{cpu: 50m, memory: 16Mi}}}}}}
"""


def test_sbom_makes_one_where_none_is_carried_and_cosign_verifies_it_at_the_site(
    signed: dict[str, Any], tmp_path: Path
) -> None:
    """`bundle --sbom`: the image with no attachment at all and the index with only a SLSA attestation
    get a CycloneDX SBOM from syft, attested with the releaser key; app's own CycloneDX attestation
    (cosign 2) is carried as it was, its .att manifest unchanged. Two runs give the same bytes."""
    s = signed
    if not (TOOLS / "bin/syft").exists():
        missing_component("syft (scripts/build_go_tools.py, run by make setup)")
    rel = s["work"] / "sboms"
    rel.mkdir(exist_ok=True)
    (rel / "release.yaml").write_text(SBOM_RELEASE.format(host=s["src"].host))
    run(RELEASER, "lock", rel, env=s["env"])
    env = {**s["env"], "RELEASER_SYFT": str(TOOLS / "bin/syft")}
    key = s["work"] / "rkeys/releaser.key"
    outs = []
    for n in range(2):
        out = tmp_path / f"sboms-{n}.tar.zst"
        shown = run(RELEASER, "bundle", rel, "--signing-key", key, "--out-file", out, "--no-installer", "--sbom",
                    "--json", env=env)  # fmt: skip
        outs.append(out)
    result = json.loads(shown[shown.index("{") :])["result"]
    assert result["sboms"] == ["bare", "multi"], result
    assert outs[0].read_bytes() == outs[1].read_bytes()  # syft's serial number and clock taken out
    host = s["src"].host
    app_att = f"sha256-{digest_of(host, 'acme/app:1').split(':')[1]}.att"
    carried = {a["tag"]: a["digest"] for i in json.loads(_head(outs[0]))["images"] for a in i["attachments"]}
    assert carried[app_att] == images.skopeo_digest(f"{host}/acme/app:{app_att}")  # never replaced
    pub = s["work"] / "rkeys/releaser.pub"
    site = RegistryServer(tmp_path / "site").start()
    try:
        run(
            RELEASER, "airgap", outs[0], "--to", site.host, "--key", pub, "--out-dir", tmp_path / "o", env=env
        )
        flags = [
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            "--new-bundle-format=false",
            "--type",
            "cyclonedx",
        ]
        for name, repo, cosign_ in (("bare", "library/base", COSIGN2), ("multi", "acme/multi", COSIGN3)):
            ref = f"{site.host}/{repo}@{digest_of(host, repo + ':1')}"
            shown = run(cosign_, "verify-attestation", "--key", str(pub), *flags, ref, env=s["env"])
            envelope = next(line for line in shown.splitlines() if line.startswith('{"payloadType"'))
            statement = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
            assert statement["predicateType"] == "https://cyclonedx.org/bom", name
            assert statement["predicate"]["bomFormat"] == "CycloneDX", name
            assert statement["predicate"]["metadata"]["tools"]["components"][0]["name"] == "syft", name
    finally:
        site.stop()


def _head(bundle: Path) -> bytes:
    return next(d for m, d in members(bundle) if m.name == "releaser.json")


def test_an_attachment_index_beyond_the_budget_is_refused_naming_it(
    signed: dict[str, Any], tmp_path: Path
) -> None:
    """A referrers tag listing more entries than budgets.MAX_REFERRERS (each would be one more request)
    stops `bundle` with exit 6 naming the tag and the count, before any of them is read."""
    s = signed
    host = s["src"].host
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
         f"docker://{host}/library/base:1", f"docker://{host}/acme/crowded:1"],
        check=True, capture_output=True,
    )  # fmt: skip
    digest = digest_of(host, "acme/crowded:1")
    child = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1}
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [child] * 1001,
        }
    ).encode()
    request = urllib.request.Request(
        f"http://{host}/v2/acme/crowded/manifests/sha256-{digest.split(':')[1]}",
        data=index,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 201
    rel = tmp_path / "crowded"
    rel.mkdir()
    (rel / "release.yaml").write_text(
        "apiVersion: releaser.dev/v1alpha1\nkind: Release\nmetadata: {name: crowded, version: 1.0.0}\n"
        f"images:\n  base: {{ref: {host}/acme/crowded:1}}\nservices:\n  base: {{image: base}}\n"
    )
    run(RELEASER, "lock", rel, env=s["env"])
    out = tmp_path / "crowded.tar.zst"
    shown = run(RELEASER, "bundle", rel, "--signing-key", s["work"] / "rkeys/releaser.key", "--out-file", out,
                "--no-installer", env=s["env"], expect=6)  # fmt: skip
    assert (
        f"acme/crowded:sha256-{digest.split(':')[1]} lists 1001 attachments, more than the 1000" in shown
    ), shown
    assert "cosign clean" in shown and not out.exists()


def _load_sh(
    bundle_: Path, work: Path, to: str, pub: Path, *, cosign_: Path | None, oras: bool = False
) -> subprocess.CompletedProcess[str]:
    """The bundle's load.sh as a customer without releaser runs it: unpacked, with the system's
    tools and, when given, `cosign_` on PATH as `cosign` (and with `oras`, the oras CLI)."""
    from .support.bundles import extract

    d = extract(bundle_, work / "unpacked")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    if cosign_ is not None:
        (bin_dir / "cosign").symlink_to(cosign_)
    if oras:
        (bin_dir / "oras").symlink_to(TOOLS / "bin/oras")
    return subprocess.run(
        ["sh", str(d / "load.sh"), "--key", str(pub), "--to", to, "--out-dir", str(work / "out")],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_load_sh_checks_the_carried_policy_with_cosign_and_says_so_without_it(
    signed: dict[str, Any], tmp_path: Path
) -> None:
    """load.sh (no releaser at the site) checks the trust policy the bundle carries with cosign, in
    the registry it loaded, before it writes the values files: cosign 2's .sig/.att pass; cosign 3's
    Sigstore bundles, which skopeo cannot copy with their digests kept (it leaves the referrers index
    out, naming it), fail the policy there: exit 4 naming the image and why, no values written; with
    oras installed, load.sh copies that index with it and the policy holds. Without cosign it loads
    and says the policy was not checked."""
    s = signed
    pub = s["work"] / "rkeys/releaser.pub"
    body = RELEASE.format(host=s["src"].host, app_attestation="cyclonedx")
    only_sig = body.replace(f"  multi: {{ref: {s['src'].host}/acme/multi:1}}\n", "").replace(
        "    multi: {keys: [vendor.pub], attestations: [slsaprovenance1]}\n", ""
    )
    only_sig = "\n".join(line for line in only_sig.splitlines() if not line.startswith("  multi:")) + "\n"
    bundles = {}
    for name, text in (("sig", only_sig), ("both", body)):
        rel = release(s, f"loadsh-{name}", text=text)
        bundles[name] = tmp_path / f"{name}.tar.zst"
        bundle(s, rel, bundles[name])
    site = RegistryServer(tmp_path / "site").start()
    try:
        proc = _load_sh(bundles["sig"], tmp_path / "sig", site.host, pub, cosign_=COSIGN3)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (
            f"ok: the trust policy holds for every image (checked by cosign: 2 before the copy, the rest in {site.host})"
            in (proc.stdout)
        )
        assert (tmp_path / "sig/out/values-airgap.yaml").exists()
        proc = _load_sh(bundles["both"], tmp_path / "both", site.host, pub, cosign_=COSIGN3)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        digest = s["multi"].split("@")[1]
        assert (
            f"  - multi: no signature of {digest} by vendor.pub verifies (an attachment of it was left out"
            in (proc.stderr)
        )
        assert (
            "  - app:" not in proc.stderr
            and "values-airgap.yaml, compose.airgap.yaml and registries-airgap.conf were not written"
            in (proc.stderr)
        )
        assert not (tmp_path / "both/out/values-airgap.yaml").exists()
        assert "oras, if installed, would copy it" in proc.stderr, proc.stderr
        # with oras on PATH, the referrers index skopeo cannot copy goes with oras, digest kept
        fresh = RegistryServer(tmp_path / "fresh").start()
        try:
            proc = _load_sh(bundles["both"], tmp_path / "oras", fresh.host, pub, cosign_=COSIGN3, oras=True)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "(with oras)" in proc.stdout and "left out" not in proc.stdout + proc.stderr
            assert "ok: the trust policy holds for every image" in proc.stdout, proc.stdout
            assert (tmp_path / "oras/out/values-airgap.yaml").exists()
            multi = f"{fresh.host}/acme/multi@{s['multi'].split('@')[1]}"
            shown = run(
                TOOLS / "bin/oras", "discover", "--plain-http", "--format", "json", multi, env=s["env"]
            )
            assert len(json.loads(shown)["referrers"]) == 2, shown
        finally:
            fresh.stop()
        # the vendor's key in load.sh swapped for another (the head re-signed with the publisher's key):
        # cosign refuses app's .sig on the bundle's own blobs, before anything is copied
        ms = members(bundles["sig"])
        vendor = (s["vendor"].parent / "cosign.pub").read_bytes()
        swapped = [
            (
                m,
                d.replace(vendor, (s["other"].parent / "cosign.pub").read_bytes())
                if m.name == "load.sh"
                else d,
            )
            for m, d in ms
        ]
        tampered = resigned(None, swapped, tmp_path / "swapped.tar.zst", key=s["work"] / "rkeys/releaser.key",
                            passphrase=PASS.encode())  # fmt: skip
        empty = RegistryServer(tmp_path / "empty").start()
        try:
            proc = _load_sh(tampered, tmp_path / "swapped", empty.host, pub, cosign_=COSIGN3)
            catalog = subprocess.run(
                ["curl", "-s", f"http://{empty.host}/v2/_catalog"], capture_output=True, text=True, check=True
            ).stdout
        finally:
            empty.stop()
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert "  - app: no signature of" in proc.stderr and "nothing was copied" in proc.stderr, proc.stderr
        assert json.loads(catalog)["repositories"] == [], catalog
        proc = _load_sh(bundles["both"], tmp_path / "without", site.host, pub, cosign_=None)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "warning: the trust policy was NOT checked: cosign is not installed" in proc.stderr
        shellcheck = shutil.which("shellcheck")
        if shellcheck is None:
            missing_component("shellcheck")
        sc = subprocess.run(
            [shellcheck, "--shell=sh", "--severity=style", str(tmp_path / "both/unpacked/load.sh")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert sc.returncode == 0, sc.stdout
    finally:
        site.stop()
