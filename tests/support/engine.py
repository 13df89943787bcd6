"""A private Docker engine for tests and the rehearsal: Debian's containerd + dockerd (20.10),
started in the background with every path under one state directory, stopped by PID.

Nothing of the host's own Docker setup is used or touched: the engine listens on its own
unix socket (DOCKER_HOST), keeps images and volumes under the state directory, and runs
without the default bridge (Compose stacks bring their own networks). Loopback
registries (127.0.0.0/8) are trusted over plain HTTP by dockerd itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"


def available() -> list[str]:
    """What is missing to run an engine here (empty when it can run)."""
    missing = [p for p in (DOCKERD, CONTAINERD) if not Path(p).exists()]
    if os.geteuid() != 0:
        missing.append("root (dockerd needs it)")
    return missing


@contextlib.contextmanager
def _one_at_a_time() -> Iterator[None]:
    """One dockerd of this host starts or stops at a time (the suite runs engines on several
    workers): each sets up the host's shared iptables chains as it starts (DOCKER-ISOLATION-STAGE-2
    deleted and made again), and a second one doing so at the same moment fails with "No
    chain/target/match by that name"."""
    with open("/tmp/releaser-tests-dockerd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class DockerEngine:
    def __init__(self, state: Path | None = None) -> None:
        # unix socket paths must stay under 108 bytes: keep the state directory short
        self.state = state or Path(tempfile.mkdtemp(prefix="rq-engine-", dir="/tmp"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.host = f"unix://{self.state}/docker.sock"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def start(self, timeout: float = 30) -> DockerEngine:
        from ..conftest import needs_service

        needs_service("a container engine (dockerd)")
        with _one_at_a_time():
            return self._start(timeout)

    def _start(self, timeout: float) -> DockerEngine:
        s = self.state
        s.mkdir(parents=True, exist_ok=True)
        log = (s / "containerd.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [
                    CONTAINERD,
                    "--root",
                    str(s / "containerd"),
                    "--state",
                    str(s / "containerd-state"),
                    "--address",
                    str(s / "containerd.sock"),
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        )
        self._wait(lambda: (s / "containerd.sock").exists(), timeout, "containerd")
        log = (s / "dockerd.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [
                    DOCKERD,
                    "--data-root",
                    str(s / "data"),
                    "--exec-root",
                    str(s / "exec"),
                    "--pidfile",
                    str(s / "dockerd.pid"),
                    "-H",
                    self.host,
                    "--containerd",
                    str(s / "containerd.sock"),
                    "--bridge",
                    "none",
                    "--log-level",
                    "warn",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        )
        self._wait(self.ready, timeout, "dockerd")
        return self

    def ready(self) -> bool:
        proc = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=self.env,
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def _wait(self, ok: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(ok) and ok():
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.1)
        logs = "\n".join(
            (self.state / f).read_text(errors="replace")[-2000:]
            for f in ("containerd.log", "dockerd.log")
            if (self.state / f).exists()
        )
        self.stop()
        raise RuntimeError(f"{what} did not start:\n{logs}")

    def stop(self) -> None:
        """Remove every container and network, then stop dockerd and containerd; remove the state
        directory. Networks must go while dockerd runs: it leaves their bridges (and routes) in
        the kernel when it stops, and a stale route for a subnet breaks the next stack using it."""
        with _one_at_a_time():
            self._stop()

    def _stop(self) -> None:
        bridges: list[str] = []
        if self.procs and self.ready():
            ids = subprocess.run(
                ["docker", "ps", "-aq"], env=self.env, capture_output=True, text=True, check=False
            ).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], env=self.env, capture_output=True, check=False)
            nets = subprocess.run(
                ["docker", "network", "ls", "-q", "--filter", "type=custom"],
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            bridges = [f"br-{n[:12]}" for n in nets]
            subprocess.run(
                ["docker", "network", "prune", "-f"], env=self.env, capture_output=True, check=False
            )
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        for bridge in bridges:  # whatever prune could not remove
            if Path(f"/sys/class/net/{bridge}").exists():
                subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
        # dockerd unmounts its overlays on a clean stop; anything left is unmounted before removal
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.state))
        ]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)
        shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> DockerEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
