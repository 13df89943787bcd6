#!/usr/bin/env python3
"""Benchmark: time to ready of examples/platform with `releaser quickstart` on Docker, rootful
podman and rootless podman, side by side.

    .venv/bin/python bench/engines.py [--rounds 3]

Each round starts every engine with nothing pulled: a fresh private Docker 20.10 engine
(tests/support/engine.py); podman 4.3.1 with podman-compose 1.6.0 as root, in a storage of its own
(tests/support/podman.py); and the same as a real unprivileged user (tests/support/rootless.py: its
storage reset between rounds). The runnable stand-ins come from a local registry; each side runs
`releaser quickstart` (which waits for every check and the job) and `quickstart reset`. Wall time
and peak RSS of the process tree (wait4; the engines' own processes are not in it). No assertions.
The Quadlet units' time to ready is bench/quadlet.py's (podman 5.4 under systemd).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.airgap import Sample, run  # noqa: E402 - after sys.path
from tests.support import engine as engine_mod  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support import podman as podman_mod  # noqa: E402
from tests.support.registry import RegistryServer, free_port  # noqa: E402
from tests.support.rootless import USER, as_user, prepare, rootless_user  # noqa: E402

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="releaser-bench-engines-"))
    publisher = RegistryServer(work / "publisher").start()
    results: dict[str, list[Sample]] = {}
    base = {
        **os.environ,
        "PATH": f"{ROOT / '.tools/bin'}:{os.environ['PATH']}",
        "DOCKER_CONFIG": str(ROOT / ".tools/docker"),
        "CONSOLE_HTTP_PORT": str(free_port()),
    }
    try:
        rel = images.platform_release(work, publisher.host)
        subprocess.run([RELEASER, "lock", str(rel)], env=base, check=True, capture_output=True)
        with rootless_user() as user:
            prepare(user)
            env_user = user["env"]
            if as_user(env_user, "releaser", "lock", str(user["rel"])).returncode != 0:
                raise SystemExit("lock as the rootless user failed")
            for i in range(args.rounds):
                with engine_mod.DockerEngine() as eng:
                    env = {
                        **base,
                        "DOCKER_HOST": eng.host,
                        "RELEASER_QUICKSTART_DIR": str(work / f"docker{i}"),
                    }
                    results.setdefault("docker", []).append(run([RELEASER, "quickstart", str(rel)], env=env))
                    subprocess.run([RELEASER, "quickstart", "reset", "--yes"], env=env, capture_output=True)
                pod = podman_mod.Podman([publisher.host])
                try:
                    env = {**pod.env, "CONSOLE_HTTP_PORT": base["CONSOLE_HTTP_PORT"]}
                    env["RELEASER_QUICKSTART_DIR"] = str(work / f"podman{i}")
                    cmd = [RELEASER, "quickstart", str(rel), "--engine", "podman-compose"]
                    results.setdefault("podman rootful", []).append(run(cmd, env=env))
                    subprocess.run([RELEASER, "quickstart", "reset", "--yes"], env=env, capture_output=True)
                finally:
                    pod.stop()
                as_user(env_user, "podman", "system", "reset", "--force")  # nothing pulled
                cmd = ["releaser", "quickstart", str(user["rel"]), "--engine", "podman-compose"]
                flat = " ".join(f"{k}={v}" for k, v in env_user.items())
                results.setdefault("podman rootless", []).append(
                    run(f"runuser -u {USER} -- env -i {flat} {' '.join(cmd)}", shell=True)
                )
                as_user(env_user, "releaser", "quickstart", "reset", "--yes")
    finally:
        publisher.stop()
        shutil.rmtree(work, ignore_errors=True)
    docker = statistics.median(w for w, _, _ in results["docker"])
    print(
        f"examples/platform, `releaser quickstart` until ready, nothing pulled; median of {args.rounds} rounds\n"
    )
    print("| engine | time to ready | rounds | against Docker | peak RSS |")
    print("|---|---|---|---|---|")
    for name in ("docker", "podman rootful", "podman rootless"):
        walls = [w for w, _, _ in results[name]]
        med = statistics.median(walls)
        rss = max(r for _, r, _ in results[name])
        print(
            f"| {name} | {med:.2f} s | {', '.join(f'{w:.2f}' for w in walls)} | {med / docker:.2f}x | {rss} MB |"
        )


if __name__ == "__main__":
    main()
