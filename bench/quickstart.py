#!/usr/bin/env python3
"""Benchmark: `releaser quickstart` against `docker compose up -d --wait` of the same files.

    .venv/bin/python bench/quickstart.py [--rounds 3]

On a private Docker 20.10 engine (tests/support/engine.py) with the example's runnable
stand-ins in a local registry, each round measures, side by side:

  up (cold)   releaser quickstart RELEASE (images not yet pulled)  vs  docker compose up -d --wait (cold)
  up (warm)   releaser quickstart RELEASE again (stack running)     vs  docker compose up -d --wait again
  status      releaser quickstart status                            vs  docker compose ps --format json
  backup      releaser quickstart backup                            (no baseline: compose has none)

The releaser side does more (preflight, secrets, live status); the ratio says what
that costs. Time to ready is dominated by the example's health-check interval (10 s),
which both sides wait for. Wall time and peak RSS (wait4) per command; no assertions.
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

from bench.airgap import run  # noqa: E402 - after sys.path
from tests.support import engine as engine_mod  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="releaser-bench-qs-"))
    publisher = RegistryServer(work / "publisher").start()
    results: dict[str, list[tuple[float, int]]] = {}

    def add(name: str, value: tuple[float, int]) -> None:
        results.setdefault(name, []).append(value)

    try:
        rel = images.standin_release(work, publisher.host)
        base_env = {
            **os.environ,
            "PATH": f"{ROOT / '.tools/bin'}:{os.environ['PATH']}",
            "DOCKER_CONFIG": str(ROOT / ".tools/docker"),
        }
        subprocess.run([RELEASER, "lock", str(rel)], env=base_env, check=True, capture_output=True)
        subprocess.run(
            [RELEASER, "render", str(rel), "--out-dir", str(work / "out")],
            env=base_env,
            check=True,
            capture_output=True,
        )
        plain = work / "out" / "compose" / "bmp-tcpao"
        secrets = plain / ".secrets"
        secrets.mkdir(mode=0o700)
        for name, owner in (("nats-token", 65532), ("bmp-tcpao-key", 0)):
            (secrets / name).write_text(os.urandom(16).hex())
            os.chown(secrets / name, owner, owner)
            os.chmod(secrets / name, 0o400)
        for i in range(args.rounds):
            # a fresh engine per round: both sides start cold (nothing pulled)
            with engine_mod.DockerEngine() as eng:
                env = {
                    **base_env,
                    "DOCKER_HOST": eng.host,
                    "RELEASER_QUICKSTART_DIR": str(work / f"stack{i}"),
                }
                compose = ["docker", "compose", "-f", str(plain / "compose.yaml"), "-p", "bmp-tcpao"]
                add("compose up (cold)", run([*compose, "up", "-d", "--wait"], env=env))
                add("compose up (warm)", run([*compose, "up", "-d", "--wait"], env=env))
                add("compose ps", run([*compose, "ps", "--format", "json"], env=env))
                subprocess.run([*compose, "down", "-v"], env=env, check=True, capture_output=True)
                subprocess.run(["docker", "image", "prune", "-af"], env=env, check=True, capture_output=True)
                add("quickstart (cold)", run([RELEASER, "quickstart", str(rel), "--skip", "tcp-ao"], env=env))
                add("quickstart (warm)", run([RELEASER, "quickstart", str(rel), "--skip", "tcp-ao"], env=env))
                add("quickstart status", run([RELEASER, "quickstart", "status"], env=env))
                add(
                    "quickstart backup",
                    run(
                        [RELEASER, "quickstart", "backup", "--out-file", str(work / f"backup{i}.tar.zst")],
                        env=env,
                    ),
                )
                subprocess.run([RELEASER, "quickstart", "reset", "--yes"], env=env, capture_output=True)
    finally:
        publisher.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)

    med = {k: (statistics.median(w for w, _ in v), max(r for _, r in v)) for k, v in results.items()}
    if args.json:
        print(json.dumps({k: {"seconds": w, "peakRssMb": r} for k, (w, r) in med.items()}, indent=2))
        return
    rows = [
        ("up, images not pulled", "quickstart (cold)", "compose up (cold)"),
        ("up again, stack running", "quickstart (warm)", "compose up (warm)"),
        ("status", "quickstart status", "compose ps"),
        ("backup (stop, copy, start)", "quickstart backup", None),
    ]
    print(f"median of {args.rounds} rounds\n")
    print("| step | releaser | baseline | baseline / releaser | releaser peak RSS | baseline peak RSS |")
    print("|---|---|---|---|---|---|")
    for label, ours, theirs in rows:
        w, r = med[ours]
        if theirs:
            bw, br = med[theirs]
            print(f"| {label} | {w:.2f} s | {bw:.2f} s | {bw / w:.2f}x | {r} MB | {br} MB |")
        else:
            print(f"| {label} | {w:.2f} s | (none) | | {r} MB | |")


if __name__ == "__main__":
    main()
