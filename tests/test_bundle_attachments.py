"""Signatures, attestations and SBOMs travel with their images, and merge with what the target has."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import images
from .support.bundles import World, cli, extract, load

pytestmark = pytest.mark.registry


def test_signatures_attestations_and_sboms_travel_with_their_images(world: World, tmp_path: Path) -> None:
    """What is attached to a pinned digest by tag (cosign .sig/.att, the OCI referrers tag
    schema) is in the bundle, loaded under the same tags with the same digests, and a cosign
    signature still verifies (openssl) against the payload the private registry serves."""
    want = {tag: digest for tags in world.attached.values() for tag, digest in tags.items()}
    lay = extract(world.bundle, tmp_path / "x")
    index = json.loads((lay / "index.json").read_text())["manifests"]
    attached = {
        e["annotations"]["org.opencontainers.image.ref.name"]: e
        for e in index
        if "dev.releaser.subject" in e["annotations"]
    }
    assert {ref.rsplit(":", 1)[1]: e["digest"] for ref, e in attached.items()} == want
    for ref, entry in attached.items():  # skopeo reads each from the layout, byte for byte
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{lay}:{ref}"], capture_output=True, check=True
        )
        assert images.sha(raw.stdout) == entry["digest"]
        assert ref.rsplit(":", 1)[1].startswith("sha256-" + entry["annotations"]["dev.releaser.subject"][7:])
    code, out = cli("airgap", "inspect", str(world.bundle), "--json")
    assert {t for i in json.loads(out)["result"]["images"] for t in i["attachments"]} == set(want)

    target = f"{world.dst.host}/att"
    code, out = load(world, target, tmp_path)
    assert code == 0, out
    repos = {"gobmp": "bmp/gobmp", "nats": "library/nats"}
    for name, tags in world.attached.items():
        for tag, digest in tags.items():
            assert images.skopeo_digest(f"{target}/{repos[name]}:{tag}") == digest
    lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
    sig_tag = images.attached_tag(lock["images"]["gobmp"]["digest"], ".sig")
    manifest = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", f"docker://{target}/bmp/gobmp:{sig_tag}", "--tls-verify=false"],
            capture_output=True,
            check=True,
        ).stdout
    )
    layer = manifest["layers"][0]
    payload = subprocess.run(
        ["curl", "-sf", f"http://{world.dst.host}/v2/att/bmp/gobmp/blobs/{layer['digest']}"],
        capture_output=True,
        check=True,
    ).stdout
    assert (
        json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
        == lock["images"]["gobmp"]["digest"]
    )
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig.der").write_bytes(
        base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    )
    proc = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(world.cosign_pub),
            "-signature",
            str(tmp_path / "sig.der"),
            str(tmp_path / "payload"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "Verified OK" in proc.stdout, proc.stdout + proc.stderr

    # a re-run notices a missing signature (the fast path checks attached tags too) and puts it back
    gone = world.attached["gobmp"][sig_tag]
    import requests

    assert (
        requests.delete(f"http://{world.dst.host}/v2/att/bmp/gobmp/manifests/{gone}", timeout=10).status_code
        == 202
    )
    code, out = load(world, target, tmp_path, "--json")
    assert code == 0 and json.loads(out)["result"]["stats"]["manifests_pushed"] == 1, out
    assert images.skopeo_digest(f"{target}/bmp/gobmp:{sig_tag}") == gone

    # --no-attachments leaves them out
    plain = tmp_path / "plain.tar.zst"
    code, out = cli(
        "bundle",
        str(world.release),
        "--signing-key",
        str(world.key),
        "--out-file",
        str(plain),
        "--no-attachments",
        "--json",
    )
    assert code == 0 and json.loads(out)["result"]["attachments"] == [], out
    code, out = cli("airgap", "inspect", str(plain), "--json")
    assert all(i["attachments"] == [] for i in json.loads(out)["result"]["images"])


def test_attachments_are_found_the_same_where_tags_cannot_be_listed(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidate attachment tags come from one tag listing per repository; a registry that will
    not list them (or a repository with more tags than one page) gets a HEAD per candidate, and
    the bundle carries the same attachments either way."""
    from releaser.registry import Registry

    src = Registry(world.src.host)
    listed = src.tags_if_few("bmp/gobmp")
    assert listed is not None and set(world.attached["gobmp"]) <= listed
    assert src.tags_if_few("bmp/gobmp", most=1) is None  # more than one page: not listed
    assert src.tags_if_few("no/such/repository") is None  # 404: asked for by name instead

    def carried(bundle: Path) -> dict[str, str]:
        code, out = cli("airgap", "inspect", str(bundle), "--json")
        assert code == 0, out
        return {t: i["name"] for i in json.loads(out)["result"]["images"] for t in i["attachments"]}

    monkeypatch.setattr(Registry, "tags_if_few", lambda self, repo, most=1000: None)
    unlisted = tmp_path / "unlisted.tar.zst"
    code, out = cli(
        "bundle", str(world.release), "--signing-key", str(world.key), "--out-file", str(unlisted)
    )
    assert code == 0, out
    assert carried(unlisted) == carried(world.bundle)
    assert set(carried(unlisted)) == {t for tags in world.attached.values() for t in tags}


def _cosign_verifies(layer: dict[str, Any], payload: bytes, pub: Path, tmp: Path) -> bool:
    (tmp / "payload").write_bytes(payload)
    (tmp / "sig.der").write_bytes(
        base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    )
    proc = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(pub),
            "-signature",
            str(tmp / "sig.der"),
            str(tmp / "payload"),
        ],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0 and "Verified OK" in proc.stdout


def test_attachments_the_target_already_has_are_merged_not_replaced(world: World, tmp_path: Path) -> None:
    """The site signed gobmp with its own key and filed its own SBOM for nats before the load;
    the load merges the bundle's signature and SBOM into those tags as cosign and the referrers
    tag schema do (both signatures verify afterwards), keeps a tag it cannot merge (and says so),
    and a re-run neither merges twice nor writes anything once all is in place."""
    import requests
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    lock = yaml.safe_load((world.release / "release.lock.yaml").read_text())
    gobmp, nats = lock["images"]["gobmp"], lock["images"]["nats"]
    host, target = world.dst.host, f"{world.dst.host}/site"
    site_key = ec.generate_private_key(ec.SECP256R1())
    site_pub = tmp_path / "site.pub"
    site_pub.write_bytes(
        site_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    site = tmp_path / "site-layout"
    sig_tag, site_payload, _ = images.cosign_signature(site, gobmp["digest"], f"{target}/bmp/gobmp", site_key)
    images.push(site, sig_tag, f"{target}/bmp/gobmp:{sig_tag}")
    site_sig = images.skopeo_digest(f"{target}/bmp/gobmp:{sig_tag}")
    sbom_tag = images.referrers_sbom(site, {k: nats[k] for k in ("mediaType", "digest", "size")}, name="site")
    images.put_raw(site, sbom_tag, host, "site/library/nats")
    site_index = images.skopeo_digest(f"{target}/library/nats:{sbom_tag}")
    # an .att tag that holds an index: nothing it could be merged with
    att_tag = images.attached_tag(nats["digest"], ".att")
    body = requests.get(
        f"http://{host}/v2/site/library/nats/manifests/{sbom_tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        timeout=10,
    ).content
    assert (
        requests.put(
            f"http://{host}/v2/site/library/nats/manifests/{att_tag}",
            data=body,
            timeout=10,
            headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
        ).status_code
        == 201
    )

    code, out = load(world, target, tmp_path)
    assert code == 0, out
    assert f"merged with what the target had: {target}/bmp/gobmp:{sig_tag}: the target's {site_sig}" in out, (
        out
    )
    assert (
        f"merged with what the target had: {target}/library/nats:{sbom_tag}: the target's {site_index}" in out
    )
    assert (
        f"warning: {target}/library/nats:{att_tag}: kept the target's {site_index} (the target's is an index, "
        "the bundle's a manifest)" in out
    ), out

    def manifest(repo: str, tag: str) -> dict[str, Any]:
        return json.loads(
            subprocess.run(
                ["skopeo", "inspect", "--raw", f"docker://{target}/{repo}:{tag}", "--tls-verify=false"],
                capture_output=True,
                check=True,
            ).stdout
        )

    def blob(repo: str, digest: str) -> bytes:
        return requests.get(f"http://{host}/v2/site/{repo}/blobs/{digest}", timeout=10).content

    sig = manifest("bmp/gobmp", sig_tag)  # the site's signature first, then the publisher's: both verify
    assert len(sig["layers"]) == 2
    assert _cosign_verifies(sig["layers"][0], site_payload, site_pub, tmp_path)
    assert _cosign_verifies(
        sig["layers"][1], blob("bmp/gobmp", sig["layers"][1]["digest"]), world.cosign_pub, tmp_path
    )
    config = json.loads(blob("bmp/gobmp", sig["config"]["digest"]))
    assert (
        config["rootfs"]["diff_ids"] == [d["digest"] for d in sig["layers"]] and len(config["history"]) == 2
    )
    referrers = manifest("library/nats", sbom_tag)["manifests"]  # the site's SBOM, then the publisher's
    ours = json.loads(
        subprocess.run(
            [
                "skopeo",
                "inspect",
                "--raw",
                f"docker://{world.src.host}/library/nats:{sbom_tag}",
                "--tls-verify=false",
            ],
            capture_output=True,
            check=True,
        ).stdout
    )
    site_sbom = requests.get(
        f"http://{host}/v2/site/library/nats/manifests/{site_index}",
        timeout=10,
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
    ).json()["manifests"][0]
    assert [d["digest"] for d in referrers] == [site_sbom["digest"], ours["manifests"][0]["digest"]]
    assert images.skopeo_digest(f"{target}/library/nats:{att_tag}") == site_index  # kept as it was

    # a re-run (the kept tag forces the full pass) merges nothing twice
    merged = {
        t: images.skopeo_digest(f"{target}/{r}:{t}")
        for r, t in (("bmp/gobmp", sig_tag), ("library/nats", sbom_tag))
    }
    code, out = load(world, target, tmp_path, "--json")
    stats = json.loads(out)["result"]["stats"]
    assert code == 0 and stats["attachments_merged"] == [] and len(stats["attachments_kept"]) == 1, out
    assert {
        t: images.skopeo_digest(f"{target}/{r}:{t}")
        for r, t in (("bmp/gobmp", sig_tag), ("library/nats", sbom_tag))
    } == merged
    # the site removes its odd .att tag: the next run puts the bundle's there, and the one after
    # finds everything in place from the signed head alone, merged tags included
    assert (
        requests.delete(f"http://{host}/v2/site/library/nats/manifests/{site_index}", timeout=10).status_code
        == 202
    )
    code, out = load(world, target, tmp_path)
    assert code == 0 and "warning" not in out, out
    assert images.skopeo_digest(f"{target}/library/nats:{att_tag}") == world.attached["nats"][att_tag]
    code, out = load(world, target, tmp_path, "--json")
    stats = json.loads(out)["result"]["stats"]
    assert stats["in_place"] and stats["verified"].startswith(
        "signature and metadata; every signed digest"
    ), stats
    assert {
        t: images.skopeo_digest(f"{target}/{r}:{t}")
        for r, t in (("bmp/gobmp", sig_tag), ("library/nats", sbom_tag))
    } == merged
