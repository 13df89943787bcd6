#!/usr/bin/env python3
"""Benchmark: what the trust policy costs at the site, and its share of `releaser airgap`.

    .venv/bin/python bench/trust.py [--mb 60] [--images 8] [--rounds 5] [--keyless]

A release of N images (the first a two-platform index, every image ~MB/N of incompressible
layers) in a local registry, each signed and CycloneDX-attested with cosign 3 (Sigstore bundles
as referrers, a signature and an attestation per image), with a trust policy requiring both. One
signed bundle; then, per round, in this process: the policy's verdicts from the verified bundle
(`at_site`: reading the signature and attestation payloads, the DSSE and signature checks) timed
alone, and `releaser airgap BUNDLE --to R` (verification, the policy, the push) into a fresh
registry as a process. Reports medians. Nothing asserts.

--keyless: signed and attested keyless instead, through a private Sigstore (tests/support/sigstore.py:
Fulcio, TesseraCT, Rekor v2, a timestamp authority), the policy naming the signer's identity and the
instance's trusted root; the services are stopped before the site's rounds. The first round is
reported too: it pays for importing sigstore-python, as every `releaser airgap` process does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from releaser.bundle.policy import at_site  # noqa: E402 - after sys.path
from releaser.bundle.verify import verify_bundle  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")
COSIGN = str(ROOT / ".tools" / "bin" / "cosign3")


def run(*cmd: str, env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=60)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keyless", action="store_true", help="keyless signatures through a private Sigstore")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="releaser-bench-trust-") as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "HOME": str(work / "home"),
            "COSIGN_PASSWORD": "bench-only",
            "RELEASER_KEY_PASSPHRASE": "bench-only",
            "RELEASER_CACHE": str(work / "cache"),
        }
        src = RegistryServer(work / "src").start()
        sigstore = None
        if args.keyless:
            from tests.support.sigstore import PrivateSigstore

            sigstore = PrivateSigstore(work / "sigstore")
        try:
            lay = work / "layout"
            pad = max(1, (args.mb << 20) // args.images)
            (work / "vendor").mkdir()
            run(COSIGN, "generate-key-pair", env=env, cwd=work / "vendor")
            sbom = work / "sbom.json"
            sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}))
            refs = []
            for n in range(args.images):
                platforms = ("amd64", "arm64") if n == 0 else ("amd64",)
                images.build(lay, f"img{n}", f"img{n}:1", platforms=platforms, size_pad=pad // len(platforms))
                images.push(lay, f"img{n}:1", f"{src.host}/bench/img{n}:1")
                digest = images.skopeo_digest(f"{src.host}/bench/img{n}:1")
                ref = f"{src.host}/bench/img{n}@{digest}"
                flags = ["--key", str(work / "vendor/cosign.key"), "--tlog-upload=false",
                         "--use-signing-config=false", "--allow-http-registry", "-y"]  # fmt: skip
                if sigstore is not None:
                    flags = [*sigstore.keyless_flags("release@bench.example"), "--allow-http-registry", "-y"]
                run(COSIGN, "sign", *flags, ref, env=sigstore.env if sigstore else env)
                if sigstore is not None:
                    flags = [*sigstore.keyless_flags("release@bench.example"), "--allow-http-registry", "-y"]
                run(COSIGN, "attest", *flags, "--type", "cyclonedx", "--predicate", str(sbom), ref,
                    env=sigstore.env if sigstore else env)  # fmt: skip
                refs.append(ref)
            rel = work / "rel"
            rel.mkdir()
            (rel / "vendor.pub").write_bytes((work / "vendor/cosign.pub").read_bytes())
            svc = "{requests: {cpu: 10m, memory: 8Mi}, limits: {cpu: 50m, memory: 16Mi}}"
            (rel / "release.yaml").write_text(
                "apiVersion: releaser.dev/v1alpha1\nkind: Release\nmetadata: {name: bench, version: 1.0.0}\n"
                "images:\n"
                + "".join(f"  img{n}: {{ref: {src.host}/bench/img{n}:1}}\n" for n in range(args.images))
                + (
                    "trust:\n  trustedRoot: trusted_root.json\n  default: {keyless: {issuer: "
                    f'"{sigstore.issuer.url}", identity: "^release@bench[.]example$"}}, attestations: [cyclonedx]}}\n'
                    if sigstore is not None
                    else "trust:\n  default: {keys: [vendor.pub], attestations: [cyclonedx]}\n"
                )
                + "services:\n"
                + "".join(f"  s{n}: {{image: img{n}, resources: {svc}}}\n" for n in range(args.images))
            )
            if sigstore is not None:
                (rel / "trusted_root.json").write_bytes(sigstore.trusted_root.read_bytes())
            run(RELEASER, "lock", str(rel), env=env)
            run(RELEASER, "keygen", "--out-dir", str(work / "keys"), env=env)
            bundle = work / "bench.tar.zst"
            run(RELEASER, "bundle", str(rel), "--signing-key", str(work / "keys/releaser.key"),
                "--out-file", str(bundle), "--no-installer", env=env)  # fmt: skip
        finally:
            src.stop()
            if sigstore is not None:
                sigstore.stop()  # the site verifies with no Sigstore service answering
        pub = work / "keys/releaser.pub"
        v = verify_bundle(bundle, pub)
        policy, loads = [], []
        for r in range(args.rounds):
            t = time.perf_counter()
            verdicts = at_site(v.metadata.trust, v.metadata.images, bundle, v.small_json)
            policy.append(time.perf_counter() - t)
            assert all(x.ok for x in verdicts)
            site = RegistryServer(work / f"site{r}").start()
            try:
                t = time.perf_counter()
                run(RELEASER, "airgap", str(bundle), "--to", site.host, "--key", str(pub),
                    "--out-dir", str(work / f"out{r}"), env=env)  # fmt: skip
                loads.append(time.perf_counter() - t)
            finally:
                site.stop()
        size = bundle.stat().st_size
        result = {
            "images": args.images,
            "bundleBytes": size,
            "bundleSha256": hashlib.sha256(bundle.read_bytes()).hexdigest()[:16],
            "keyless": args.keyless,
            "policyFirstSeconds": policy[0],
            "policySeconds": statistics.median(policy),
            "airgapSeconds": statistics.median(loads),
            "share": statistics.median(policy) / statistics.median(loads),
            "signaturesChecked": sum(len(x.found) for x in verdicts),
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        "| signatures | images | bundle | policy at the site: first, median | `releaser airgap` (median) | share |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {'keyless' if args.keyless else 'keyed'} | {result['images']} (one of 2 platforms), "
        f"{result['signaturesChecked']} signatures and attestations | {size / (1 << 20):.1f} MiB "
        f"| {result['policyFirstSeconds'] * 1000:.1f} ms, {result['policySeconds'] * 1000:.1f} ms "
        f"| {result['airgapSeconds']:.2f} s | {result['share'] * 100:.2f} % |"
    )


if __name__ == "__main__":
    main()
