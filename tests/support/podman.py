"""Podman 4.3 (Debian) for tests, configured through its environment variables only, so a
user's own containers.conf / storage.conf / registries.conf are never read or changed.

What podman 4.3 needs on these machines (crun fails here): runc, the cgroupfs manager, a
file events logger and explicit ulimits. Storage lives under a temp directory; loopback
test registries are marked insecure (plain HTTP).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def available() -> list[str]:
    missing = [b for b in ("podman", "runc") if shutil.which(b) is None]
    if not (ROOT / ".venv" / "bin" / "podman-compose").exists():
        missing.append("podman-compose (requirements/dev.lock)")
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def require(*more: str) -> None:
    """Fail (CI) or skip, naming what is missing, unless podman, podman-compose, the image tools and
    the programs `more` names are all here."""
    from ..conftest import missing_component
    from . import images

    missing = available() + images.have_tools() + [m for m in more if shutil.which(m) is None]
    if missing:
        missing_component(f"podman ({', '.join(missing)})")


class Podman:
    def __init__(self, registries: list[str]) -> None:
        from ..conftest import needs_service

        needs_service("a container engine (podman)")
        _forget_stale_addresses()
        self.root = Path(tempfile.mkdtemp(prefix="rq-podman-", dir="/tmp"))
        (self.root / "containers.conf").write_text(
            '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
        )
        (self.root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root}/storage"\nrunroot = "{self.root}/run"\n'
        )
        regs = "".join(f'[[registry]]\nlocation = "{r}"\ninsecure = true\n' for r in registries)
        (self.root / "registries.conf").write_text(f"unqualified-search-registries = []\n{regs}")
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.root / "registries.conf"),
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        }
        self.env.pop("DOCKER_HOST", None)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, check=False)

    def stop(self) -> None:
        self.run("rm", "-af", "-t", "1")
        self.run("pod", "rm", "-af")
        # through podman, which also drops each network's allocations from the host-wide address
        # database (removing the storage directory alone would leave them held)
        names = self.run("network", "ls", "--format", "{{.Name}}").stdout.split()
        for name in (n for n in names if n != "podman"):
            self.run("network", "rm", "-f", name)
        self.run("volume", "prune", "-f")
        self.run("network", "prune", "-f")
        self.run("system", "reset", "-f")
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.root))
        ]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


IPAM_DB = Path("/run/containers/networks/ipam.db")


def _forget_stale_addresses() -> None:
    """Rootful podman keeps the addresses it hands out in one database for the whole host
    (netavark's ipam.db under /run, whatever the storage root), so a run that died before its
    `stop` leaves addresses held that no later storage can release ("requested ip address ... is
    already allocated"). When no podman container runs on the host (no conmon), every allocation
    in it is stale: it is removed, and podman makes it anew."""
    if not IPAM_DB.exists():
        return
    running = subprocess.run(["pgrep", "-x", "conmon"], capture_output=True, check=False)
    if running.returncode == 1:  # none
        IPAM_DB.unlink(missing_ok=True)
