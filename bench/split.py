#!/usr/bin/env python3
"""Benchmark: a split bundle's verify and load against the same bundle in one file, side by side.

    .venv/bin/python bench/split.py [--mb 500] [--images 8] [--rounds 5] [--sizes 64M,8M]

Generates the release of bench/airgap.py (N images of random bytes sharing a base layer, in a
local docker-registry), bundles it once (--no-installer), cuts it with `releaser bundle split`
into parts of each --sizes, then runs, --rounds times and alternating:

  verify   releaser airgap verify  of the one file   vs  of its parts
  load     releaser airgap --to    of the one file   vs  of its parts   (each into a fresh registry)

reporting medians, the ratio parts/one file (the target: within 5 %) and each process's peak RSS
(wait4), which should not grow with the number of parts. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.airgap import RELEASER, Sample, run, setup  # noqa: E402 - after sys.path
from tests.support.registry import RegistryServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="64M,8M", help="part sizes to compare, comma-separated")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    env = {**os.environ, "RELEASER_KEY_PASSPHRASE": "benchmark passphrase"}
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    samples: dict[str, dict[str, list[Sample]]] = {}
    parts_of: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="releaser-bench-") as tmp:
        work = Path(tmp)
        src, rel, _ = setup(work, args.images, args.mb)
        env["RELEASER_CACHE"] = str(work / "cache")
        keys = work / "keys"
        pub = str(keys / "releaser.pub")
        try:
            subprocess.run([RELEASER, "lock", str(rel)], check=True, env=env, capture_output=True)
            subprocess.run(
                [RELEASER, "keygen", "--out-dir", str(keys)], check=True, env=env, capture_output=True
            )
            one = work / "one.tar.zst"
            subprocess.run(
                [RELEASER, "bundle", str(rel), "--signing-key", str(keys / "releaser.key"), "--out-file", str(one),
                 "--no-installer"],
                check=True, env=env, capture_output=True,
            )  # fmt: skip
            sources = {"one file": str(one)}
            for size in sizes:
                base = work / f"split-{size}.tar.zst"
                subprocess.run(
                    [RELEASER, "bundle", "split", str(one), "--split-size", size, "--signing-key",
                     str(keys / "releaser.key"), "--out-file", str(base)],
                    check=True, env=env, capture_output=True,
                )  # fmt: skip
                parts = sorted(work.glob(f"split-{size}.tar.zst.*"))
                parts_of[size] = len(parts)
                sources[f"{size} parts"] = str(parts[0])
            for r in range(args.rounds):
                for label, path in sources.items():
                    s = samples.setdefault(label, {"verify": [], "load": []})
                    s["verify"].append(run([RELEASER, "airgap", "verify", path, "--key", pub], env=env))
                    dst = RegistryServer(work / f"dst-{r}-{label.replace(' ', '-')}").start()
                    try:
                        argv = [
                            RELEASER,
                            "airgap",
                            path,
                            "--to",
                            dst.host,
                            "--key",
                            pub,
                            "--out-dir",
                            str(work / "out"),
                        ]
                        cache = str(work / f"cache-{r}-{label.replace(' ', '-')}")
                        s["load"].append(run(argv, env={**env, "RELEASER_CACHE": cache}))
                    finally:
                        dst.stop()
            size_one = one.stat().st_size
        finally:
            src.stop()
    result = {
        "mb": args.mb,
        "bundle": size_one,
        "rounds": args.rounds,
        "parts": parts_of,
        "runs": {k: {step: [x[0] for x in v] for step, v in s.items()} for k, s in samples.items()},
        "rss": {k: {step: max(x[1] for x in v) for step, v in s.items()} for k, s in samples.items()},
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"bundle {size_one / 1e6:.0f} MB; median of {args.rounds} rounds, alternating; largest peak RSS\n")
    print("| bundle | verify | peak RSS | vs one file | load | peak RSS | vs one file |")
    print("|---|---|---|---|---|---|---|")
    base_v = statistics.median(x[0] for x in samples["one file"]["verify"])
    base_l = statistics.median(x[0] for x in samples["one file"]["load"])
    for label, s in samples.items():
        v = statistics.median(x[0] for x in s["verify"])
        ld = statistics.median(x[0] for x in s["load"])
        n = f" ({parts_of[label.split()[0]]} files)" if label != "one file" else ""
        print(
            f"| {label}{n} | {v:.2f} s | {max(x[1] for x in s['verify'])} MB | {(v / base_v - 1) * 100:+.1f} % "
            f"| {ld:.2f} s | {max(x[1] for x in s['load'])} MB | {(ld / base_l - 1) * 100:+.1f} % |"
        )
    print("\nevery run (s):")
    for label, runs in result["runs"].items():  # type: ignore[attr-defined]
        print(f"  {label}: verify {runs['verify']}; load {runs['load']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
