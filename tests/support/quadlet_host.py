"""A podman 5.4 host with systemd as PID 1, for the Quadlet units: Debian trixie's root file system
(scripts/build_quadlet_host.py) imported into a private Docker engine and booted as a container.

The container has every capability this machine grants (all but CAP_SYS_RESOURCE, which the
sandbox withholds, so `--privileged` cannot be used), no seccomp or AppArmor profile, every device,
the host's cgroup hierarchy writable (cgroup v1 here: systemd 257 boots on it only when told
SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1, which a container's systemd reads from its own command line),
and no network but its own loopback: the pods' bridges and firewall rules stay inside it. The
images come from a registry started inside it on the publisher's address, from the publisher's
storage, so the units pull exactly the references the lock pins.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from .engine import DockerEngine

ROOT = Path(__file__).resolve().parents[2]
TAR = ROOT / ".tools" / "quadlet-host.tar"
REGISTRY_BIN = "/usr/bin/docker-registry"
WORK = "/srv/work"  # where the test's work directory is mounted inside


class QuadletHost:
    def __init__(
        self, engine: DockerEngine, work: Path, name: str = "quadlet-host", *, network: str = "none"
    ) -> None:
        """`network`: the container's network in the private engine (none: its own loopback only)."""
        self.engine = engine
        self.work = work
        self.name = name
        self.network = network

    def docker(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["docker", *args],
            env=self.engine.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def boot(self) -> QuadletHost:
        from ..conftest import missing_component

        if not TAR.exists():
            missing_component(
                "the Quadlet host's root file system (make setup: scripts/build_quadlet_host.py)"
            )
        # tagged by the root's recipe (the cached tar's name), so a changed recipe is imported anew
        image = f"releaser-quadlet-host:{TAR.resolve().stem}"
        if self.docker("image", "inspect", image, check=False).returncode != 0:
            with TAR.open("rb") as f:
                subprocess.run(
                    ["docker", "import", "-", image],
                    stdin=f,
                    env=self.engine.env,
                    capture_output=True,
                    check=True,
                )
        self.docker(
            "run", "-d", "--name", self.name,
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--security-opt", "systempaths=unconfined", "--security-opt", "label=disable",
            "--device-cgroup-rule", "a *:* rwm",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host",
            "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--network", self.network,
            "-e", "PODMAN_IGNORE_CGROUPSV1_WARNING=1",  # the processes `docker exec` starts
            "--stop-signal", "SIGRTMIN+3", "--stop-timeout", "60",  # systemd's own signal to shut down
            "-v", f"{self.name}-storage:/var/lib/containers",
            "-v", f"{self.work}:{WORK}",
            "-v", f"{REGISTRY_BIN}:/usr/local/bin/docker-registry:ro",
            image, "/sbin/init", "SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1",
        )  # fmt: skip
        self.wait_booted()
        return self

    def wait_booted(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise AssertionError(f"systemd in {self.name} did not finish booting ({state!r}):\n{self.units()}")

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self.docker("exec", self.name, "bash", "-c", script, check=check, timeout=timeout)

    def serve_registry(self, config: Path, host: str) -> None:
        """docker-registry inside, from the publisher's storage and on its address; podman told it is
        plain HTTP."""
        cfg = json.loads(config.read_text())
        storage = Path(cfg["storage"]["filesystem"]["rootdirectory"])
        cfg["storage"]["filesystem"]["rootdirectory"] = f"{WORK}/{storage.relative_to(self.work)}"
        inside = config.parent / "config-inside.yml"
        inside.write_text(json.dumps(cfg))
        self.sh(
            f"printf '[[registry]]\\nlocation = \"{host}\"\\ninsecure = true\\n' "
            f"> /etc/containers/registries.conf.d/40-{host.replace(':', '-')}.conf"
        )
        self.docker(
            "exec",
            "-d",
            self.name,
            "/usr/local/bin/docker-registry",
            "serve",
            f"{WORK}/{inside.relative_to(self.work)}",
        )
        deadline = time.monotonic() + 20
        while self.sh(f"exec 3<>/dev/tcp/{host.replace(':', '/')}", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"the registry inside {self.name} did not start on {host}")
            time.sleep(0.2)

    def restart(self) -> None:
        """The host rebooted: the container stopped (systemd shuts down) and started again."""
        self.docker("restart", "-t", "30", self.name, timeout=120)
        self.wait_booted()

    def units(self) -> str:
        return self.sh(
            "systemctl list-units --all --no-pager --plain 'platform-*' 'bmp-*'", check=False
        ).stdout

    def remove(self) -> None:
        self.docker("rm", "-f", "-v", self.name, check=False)
        self.docker("volume", "rm", "-f", f"{self.name}-storage", check=False)
