#!/usr/bin/env python3
"""Benchmark: a delta bundle against a full bundle and a per-image differential, side by side.

    .venv/bin/python bench/delta.py [--images 8] [--mb 60] [--top 10] [--rounds 3]

Release 1.0.0: N images of about --mb MB each (a lower layer and a --top MB top layer, random
bytes, so nothing compresses away) in a local docker-registry. Release 1.1.0 changes one image's
top layer. Then, --rounds times and alternating:

  bundle   releaser bundle 1.1.0 (full)  vs  --since the 1.0.0 bundle (delta)  vs  a bundle of the
           changed image alone (what an image-level differential, e.g. Zarf's, carries)
  load     releaser airgap of the full 1.1.0 bundle  vs  of the delta, each into a fresh registry
           that holds 1.0.0 (loaded untimed first)

reporting medians, sizes, the delta's size against the changed layer's bytes (the target: within
2 % of the layer plus metadata) and each process's peak RSS (wait4). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.airgap import LAYER, RELEASER, Sample, run, write_layer  # noqa: E402 - after sys.path
from tests.support.images import OCI_CONFIG, OCI_MANIFEST, Layout  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402


def image(lay: Layout, tag: str, layers: list[tuple[str, int, str]]) -> None:
    cfg = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [x[2] for x in layers]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": lay.blob(cfg), "size": len(cfg)},
            "layers": [{"mediaType": LAYER, "digest": d, "size": n} for d, n, _ in layers],
        }
    ).encode()
    lay.index.append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": lay.blob(manifest),
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )


def setup(work: Path, n: int, mb: int, top: int) -> tuple[RegistryServer, dict[str, Path], int]:
    """The source registry with both releases' images, the three release directories, and the
    changed top layer's size in bytes."""
    import yaml

    rng = random.Random(mb * 1000 + n)
    lay = Layout(work / "gen")
    (lay.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    tops = []
    for i in range(n):
        lower = write_layer(lay, f"lower/{i}.bin", (mb - top) << 20, rng)
        tops.append(lower)
        image(lay, f"img{i}-v1", [lower, write_layer(lay, f"top/{i}.bin", top << 20, rng)])
    changed = write_layer(lay, "top/0.bin", top << 20, random.Random(7))
    image(lay, "img0-v2", [tops[0], changed])
    lay.finish()
    src = RegistryServer(work / "src").start()
    for tag in [f"img{i}-v1" for i in range(n)] + ["img0-v2"]:
        name, version = tag.split("-")
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{lay.root}:{tag}",
             f"docker://{src.host}/bench/{name}:{version}"],
            check=True,
        )  # fmt: skip
    rels = {}
    for label, version, images in (
        ("v1", "1.0.0", {f"img{i}": "v1" for i in range(n)}),
        ("v2", "1.1.0", {f"img{i}": ("v2" if i == 0 else "v1") for i in range(n)}),
        ("image", "1.1.0", {"img0": "v2"}),  # the changed image alone: an image-level differential
    ):
        rel = work / f"rel-{label}"
        rel.mkdir()
        doc = {
            "apiVersion": "releaser.dev/v1alpha1",
            "kind": "Release",
            "metadata": {"name": "bench", "version": version},
            "images": {k: {"ref": f"{src.host}/bench/{k}:{v}"} for k, v in images.items()},
            "services": {k: {"image": k} for k in images},
        }
        (rel / "release.yaml").write_text(yaml.safe_dump(doc))
        rels[label] = rel
    return src, rels, changed[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--mb", type=int, default=60, help="size of each image (MB)")
    ap.add_argument("--top", type=int, default=10, help="size of each image's top layer (MB)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    env = {**os.environ, "RELEASER_KEY_PASSPHRASE": "benchmark passphrase"}
    samples: dict[str, list[Sample]] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="releaser-bench-") as tmp:
        work = Path(tmp)
        env["RELEASER_CACHE"] = str(work / "cache")
        src, rels, changed = setup(work, args.images, args.mb, args.top)
        keys = work / "keys"
        key, pub = str(keys / "releaser.key"), str(keys / "releaser.pub")

        def releaser(*argv: str) -> None:
            subprocess.run([RELEASER, *argv], check=True, env=env, capture_output=True)

        try:
            releaser("keygen", "--out-dir", str(keys))
            for rel in rels.values():
                releaser("lock", str(rel))
            v1 = work / "v1.tar.zst"
            releaser("bundle", str(rels["v1"]), "--signing-key", key, "--out-file", str(v1), "--no-installer")
            outs = {
                "full": work / "full.tar.zst",
                "delta": work / "delta.tar.zst",
                "image": work / "image.tar.zst",
            }
            argvs = {
                "full": [str(rels["v2"])],
                "delta": [str(rels["v2"]), "--since", str(v1)],
                "image": [str(rels["image"])],
            }
            for r in range(args.rounds):
                for label in ("full", "delta", "image"):
                    argv = [RELEASER, "bundle", *argvs[label], "--signing-key", key, "--no-installer",
                            "--out-file", str(outs[label])]  # fmt: skip
                    samples.setdefault(f"bundle {label}", []).append(run(argv, env=env))
                for label in ("full", "delta"):
                    site = RegistryServer(work / f"site-{r}-{label}").start()
                    try:
                        releaser(
                            "airgap", str(v1), "--to", site.host, "--key", pub, "--out-dir", str(work / "o")
                        )
                        argv = [RELEASER, "airgap", str(outs[label]), "--to", site.host, "--key", pub,
                                "--out-dir", str(work / "o")]  # fmt: skip
                        samples.setdefault(f"load {label}", []).append(run(argv, env=env))
                    finally:
                        site.stop()
            sizes = {label: p.stat().st_size for label, p in outs.items()}
        finally:
            src.stop()
    result = {
        "images": args.images,
        "mb": args.mb,
        "changedLayer": changed,
        "sizes": sizes,
        "runs": {k: [x[0] for x in v] for k, v in samples.items()},
        "rss": {k: max(x[1] for x in v) for k, v in samples.items()},
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    med = {k: statistics.median(x[0] for x in v) for k, v in samples.items()}
    over = sizes["delta"] - changed
    print(
        f"{args.images} images of {args.mb} MB, one top layer of {changed:,} bytes changed; "
        f"median of {args.rounds} rounds, alternating; largest peak RSS\n"
    )
    print(
        "| bundle | size | vs changed layer | bundle time | peak RSS | load into a site holding 1.0.0 | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, what in (("full", "full 1.1.0"), ("image", "the changed image (per-image differential)"),
                        ("delta", "delta --since 1.0.0")):  # fmt: skip
        load = f"{med[f'load {label}']:.2f} s" if f"load {label}" in med else "-"
        rss = f"{result['rss'][f'load {label}']} MB" if f"load {label}" in med else "-"  # type: ignore[index]
        print(
            f"| {what} | {sizes[label]:,} B | {sizes[label] / changed:.3f}x | {med[f'bundle {label}']:.2f} s "
            f"| {result['rss'][f'bundle {label}']} MB | {load} | {rss} |"  # type: ignore[index]
        )
    print(f"\ndelta overhead beyond the changed layer: {over:,} bytes ({over / changed * 100:.2f} % of it)")
    print("every run (s):")
    for label, runs in result["runs"].items():  # type: ignore[attr-defined]
        print(f"  {label}: {runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
