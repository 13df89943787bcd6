#!/usr/bin/env python3
"""Benchmark: `releaser quickstart` against `docker compose up -d --wait` of the same files.

    .venv/bin/python bench/quickstart.py [--rounds 3] [--tree DIR]

On a private Docker 20.10 engine (tests/support/engine.py) with the example's runnable
stand-ins in a local registry, each round measures, side by side:

  up (cold)   releaser quickstart RELEASE (images not yet pulled)  vs  docker compose up -d --wait (cold)
  up (warm)   releaser quickstart RELEASE again (stack running)     vs  docker compose up -d --wait again
  status      releaser quickstart status                            vs  docker compose ps --format json
  backup      releaser quickstart backup                            (no baseline: compose has none)
  upgrade     releaser quickstart upgrade PLATFORM-2.4.0 (examples/platform's stand-ins, 2.3.0
              running; its API's config changed)                    vs  docker compose up -d --wait of
                                                                        2.4.0's files over 2.3.0's
  down        releaser quickstart down (platform)                   vs  docker compose down

The releaser side does more (preflight, secrets, live status); the ratio says what
that costs. Time to ready is dominated by the example's health-check interval (10 s),
which both sides wait for. Wall time and peak RSS (wait4) per command; no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.airgap import run  # noqa: E402 - after sys.path
from tests.support import engine as engine_mod  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

RELEASER = [str(ROOT / ".venv" / "bin" / "releaser")]  # --tree: python -P -m releaser from that tree


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--tree",
        type=Path,
        help="run releaser from this source tree (e.g. `git worktree add /tmp/prev REV`) with this venv's "
        "Python, to compare a commit with today's on the same stand-ins and engines",
    )
    args = ap.parse_args()
    if args.tree:
        RELEASER[:] = [sys.executable, "-P", "-m", "releaser"]
        os.environ["PYTHONPATH"] = str(args.tree.resolve())
    work = Path(tempfile.mkdtemp(prefix="releaser-bench-qs-"))
    publisher = RegistryServer(work / "publisher").start()
    results: dict[str, list[tuple[float, ...]]] = {}

    def add(name: str, value: tuple[float, ...]) -> None:
        results.setdefault(name, []).append(value)

    try:
        rel = images.standin_release(work, publisher.host)
        base_env = {
            **os.environ,
            "PATH": f"{ROOT / '.tools/bin'}:{os.environ['PATH']}",
            "DOCKER_CONFIG": str(ROOT / ".tools/docker"),
        }
        subprocess.run([*RELEASER, "lock", str(rel)], env=base_env, check=True, capture_output=True)
        subprocess.run(
            [*RELEASER, "render", str(rel), "--out-dir", str(work / "out")],
            env=base_env,
            check=True,
            capture_output=True,
        )
        plain = work / "out" / "compose" / "bmp-tcpao"
        secrets = plain / ".secrets"
        secrets.mkdir(mode=0o700)
        for name in ("nats-token", "bmp-tcpao-key"):  # as INSTALL.md's "Compose alone" makes them
            (secrets / name).write_text(os.urandom(16).hex())
            os.chmod(secrets / name, 0o444)
        for i in range(args.rounds):
            # a fresh engine per round: both sides start cold (nothing pulled)
            with engine_mod.DockerEngine() as eng:
                env = {
                    **base_env,
                    "DOCKER_HOST": eng.host,
                    "RELEASER_QUICKSTART_DIR": str(work / f"stack{i}"),
                }
                compose = ["docker", "compose", "-f", str(plain / "compose.yaml"), "-p", "bmp-tcpao"]
                add(
                    "compose up (cold)",
                    run([*compose, "up", "-d", "--wait", "--wait-timeout", "300"], env=env),
                )
                add(
                    "compose up (warm)",
                    run([*compose, "up", "-d", "--wait", "--wait-timeout", "300"], env=env),
                )
                add("compose ps", run([*compose, "ps", "--format", "json"], env=env))
                subprocess.run([*compose, "down", "-v"], env=env, check=True, capture_output=True)
                subprocess.run(["docker", "image", "prune", "-af"], env=env, check=True, capture_output=True)
                add(
                    "quickstart (cold)", run([*RELEASER, "quickstart", str(rel), "--skip", "tcp-ao"], env=env)
                )
                add(
                    "quickstart (warm)", run([*RELEASER, "quickstart", str(rel), "--skip", "tcp-ao"], env=env)
                )
                add("quickstart status", run([*RELEASER, "quickstart", "status"], env=env))
                add(
                    "quickstart backup",
                    run(
                        [*RELEASER, "quickstart", "backup", "--out-file", str(work / f"backup{i}.tar.zst")],
                        env=env,
                    ),
                )
                subprocess.run([*RELEASER, "quickstart", "reset", "--yes"], env=env, capture_output=True)
            with engine_mod.DockerEngine() as eng:
                _platform_upgrade(
                    work / f"platform{i}", publisher.host, {**base_env, "DOCKER_HOST": eng.host}, add
                )
    finally:
        publisher.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)

    med = {k: (statistics.median(w for w, *_ in v), max(r for _, r, *_ in v)) for k, v in results.items()}
    if args.json:
        print(json.dumps({k: {"seconds": w, "peakRssMb": r} for k, (w, r) in med.items()}, indent=2))
        return
    rows = [
        ("up, images not pulled", "quickstart (cold)", "compose up (cold)"),
        ("up again, stack running", "quickstart (warm)", "compose up (warm)"),
        ("status", "quickstart status", "compose ps"),
        ("backup (stop, copy, start)", "quickstart backup", None),
        ("upgrade, platform 2.3.0 -> 2.4.0", "quickstart upgrade", "compose up (upgrade)"),
        ("down, platform", "quickstart down", "compose down"),
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


def _platform_upgrade(work: Path, host: str, env: dict[str, str], add: Any) -> None:
    """examples/platform's stand-ins: 2.3.0 up, then 2.4.0 (the API's config file changed) with
    `quickstart upgrade` (stop, back up the store's volume, start the new files, wait) and with
    compose (up -d --wait of the new files: it recreates what changed), then down on both sides."""
    v1 = images.platform_release(work, host)
    subprocess.run([*RELEASER, "lock", str(v1)], env=env, check=True, capture_output=True)
    v2 = work / "platform-2.4.0"
    shutil.copytree(v1, v2)
    text = (v2 / "release.yaml").read_text().replace("version: 2.3.0", "version: 2.4.0", 1)
    (v2 / "release.yaml").write_text(text)
    (v2 / "config/api.yaml").write_text((v2 / "config/api.yaml").read_text() + "# 2.4.0\n")
    (v2 / "release.lock.yaml").unlink()
    subprocess.run([*RELEASER, "lock", str(v2)], env=env, check=True, capture_output=True)
    dirs = []
    for rel in (v1, v2):
        out = work / f"out-{rel.name}"
        subprocess.run(
            [*RELEASER, "render", str(rel), "--out-dir", str(out)], env=env, check=True, capture_output=True
        )
        plain = out / "compose" / "platform"
        (plain / ".secrets").mkdir(mode=0o700)
        secret = plain / ".secrets" / "db-password"
        secret.write_text("the same password on both sides")
        os.chmod(secret, 0o444)
        dirs.append(plain)
    compose = ["docker", "compose", "-p", "platform"]
    subprocess.run(
        [*compose, "-f", str(dirs[0] / "compose.yaml"), "up", "-d", "--wait", "--wait-timeout", "300"],
        env=env,
        check=True,
        capture_output=True,
    )
    add(
        "compose up (upgrade)",
        run(
            [*compose, "-f", str(dirs[1] / "compose.yaml"), "up", "-d", "--wait", "--wait-timeout", "300"],
            env=env,
        ),
    )
    add("compose down", run([*compose, "-f", str(dirs[1] / "compose.yaml"), "down"], env=env))
    subprocess.run(
        [*compose, "-f", str(dirs[1] / "compose.yaml"), "down", "-v"], env=env, capture_output=True
    )
    qenv = {**env, "RELEASER_QUICKSTART_DIR": str(work / "stack")}
    subprocess.run([*RELEASER, "quickstart", str(v1)], env=qenv, check=True, capture_output=True)
    add("quickstart upgrade", run([*RELEASER, "quickstart", "upgrade", str(v2)], env=qenv))
    add("quickstart down", run([*RELEASER, "quickstart", "down"], env=qenv))
    subprocess.run([*RELEASER, "quickstart", "reset", "--yes"], env=qenv, capture_output=True)


if __name__ == "__main__":
    main()
