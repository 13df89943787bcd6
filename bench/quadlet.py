#!/usr/bin/env python3
"""Benchmark: time to ready of examples/platform as Quadlet units under systemd (podman 5.4).

    .venv/bin/python bench/quadlet.py [--rounds 3]

Each round boots a fresh Quadlet host (tests/support/quadlet_host.py: Debian trixie, podman 5.4.2,
systemd 257 as PID 1, in a container of a private Docker engine; nothing pulled), with the
platform's runnable stand-ins in a registry inside it, and measures:

  cold      README's commands, then until every container runs and every check is healthy
            (images pulled, the job run, each service after what it depends on)
  restart   the README's upgrade line (systemctl restart of the jobs and pods: every container
            made anew, the job again first), until ready
  reboot    the host restarted (systemd shut down and booted again) until ready

The baseline is the floor the release itself sets: its checks and the order they impose (the store's
check first passes at its first interval, 10 s; the migration and the API wait for it, the console
and the worker for the API's). Wall time only: the processes are systemd's and podman's inside the
host, so there is no peak RSS of one process tree to report. No assertions.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import images  # noqa: E402 - after sys.path
from tests.support.engine import DockerEngine  # noqa: E402
from tests.support.quadlet_host import WORK, QuadletHost  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402
from tests.test_quadlet import quote, readme_block, ready, units  # noqa: E402

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")


def until_ready(state: dict[str, object], timeout: float = 300) -> float:
    start = time.monotonic()
    while not ready(state):
        if time.monotonic() - start > timeout:
            raise SystemExit(f"not ready after {timeout:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - start


def one_round(engine: DockerEngine, n: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-quadlet-{n}-", dir="/tmp"))
    publisher = RegistryServer(work / "publisher").start()
    try:
        rel = images.platform_release(work, publisher.host)
        subprocess.run([RELEASER, "lock", str(rel)], capture_output=True, check=True)
        subprocess.run(
            [RELEASER, "render", str(rel), "--out-dir", str(work / "out")], capture_output=True, check=True
        )
    finally:
        publisher.stop()
    h = QuadletHost(engine, work, name=f"bench-quadlet-{n}")
    try:
        h.boot()
        h.serve_registry(publisher.config, publisher.host)
        readme = work / "out" / "quadlet" / "platform" / "README.md"
        state: dict[str, object] = {"h": h, "expected": units(work / "out" / "quadlet" / "platform")}
        t = time.monotonic()
        h.sh(
            f"cd {WORK}/out/quadlet/platform && bash -euo pipefail -c {quote(readme_block(readme))}",
            timeout=600,
        )
        cold = time.monotonic() - t + until_ready(state)
        restart_line = readme.read_text().split("## Upgrade", 1)[1].split("```text\n", 1)[1].split("\n", 1)[0]
        t = time.monotonic()
        h.sh(restart_line, timeout=600)
        restart = time.monotonic() - t + until_ready(state)
        t = time.monotonic()
        h.restart()
        reboot = time.monotonic() - t + until_ready(state)
        return {"cold": cold, "restart": restart, "reboot": reboot}
    finally:
        h.remove()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    engine = DockerEngine().start()
    try:
        rounds = [one_round(engine, n) for n in range(args.rounds)]
    finally:
        engine.stop()
    print("| step | median | rounds |")
    print("|---|---|---|")
    for step in ("cold", "restart", "reboot"):
        values = [r[step] for r in rounds]
        print(f"| {step} | {statistics.median(values):.2f} s | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
