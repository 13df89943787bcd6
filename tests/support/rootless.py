"""A real unprivileged user with rootless podman, for tests/test_podman_rootless.py and
bench/engines.py: created with useradd, subordinate UID and GID ranges (usermod), Debian's
newuidmap/newgidmap; releaser in a venv of the system Python that user can read; examples/platform
from a publisher registry of its own. The runtime directory and /dev/net/tun are left as this host
has them (no systemd-logind, no udev): `doctor` names both, and `prepare` does what its fixes say."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import images
from .registry import RegistryServer, free_port

ROOT = Path(__file__).resolve().parents[2]
USER = "releaser-rootless"
SYSTEM_PYTHON = "/usr/bin/python3"


def as_user(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`args` as the unprivileged user, with exactly `env` (runuser: no password, no session)."""
    return subprocess.run(
        ["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def prepare(user: dict[str, Any]) -> None:
    """What doctor's fixes say, done as root: the tmpfs logind would mount as the user's runtime
    directory, and the mode udev would give /dev/net/tun."""
    if subprocess.run(["mountpoint", "-q", str(user["runtime"])], check=False).returncode != 0:
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"mode=700,uid={user['uid']},gid={user['gid']}",
                "tmpfs",
                str(user["runtime"]),
            ],
            check=True,
        )
    os.chmod("/dev/net/tun", 0o666)


@contextmanager
def rootless_user() -> Iterator[dict[str, Any]]:
    """The user, its environment and examples/platform (not yet locked); everything undone after."""
    if subprocess.run(["id", USER], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    uid = int(subprocess.check_output(["id", "-u", USER]))
    gid = int(subprocess.check_output(["id", "-g", USER]))
    home = Path(f"/home/{USER}")
    if f"{USER}:" not in Path("/etc/subuid").read_text():
        subprocess.run(
            ["usermod", "--add-subuids", "400000-465535", "--add-subgids", "400000-465535", USER], check=True
        )
    work = Path(tempfile.mkdtemp(prefix="rq-rootless-", dir="/tmp"))
    work.chmod(0o755)  # the user reads the venv and the release from here
    runtime = Path(f"/run/user/{uid}")
    tun_mode = os.stat("/dev/net/tun").st_mode & 0o777
    publisher = RegistryServer(work / "publisher").start()
    env: dict[str, str] = {}
    try:
        venv = work / "venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "--require-hashes", "-r", str(ROOT / "requirements/dev.lock")], check=True)
        subprocess.run([*pip, "--no-deps", "--no-build-isolation", str(ROOT)], check=True, cwd=work)
        rel = images.platform_release(work, publisher.host)
        conf = home / ".config/containers"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "containers.conf").write_text(  # runc and cgroupfs, as tests/support/podman.py says
            '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
        )
        (conf / "registries.conf").write_text(
            f'unqualified-search-registries = []\n[[registry]]\nlocation = "{publisher.host}"\ninsecure = true\n'
        )
        subprocess.run(["chown", "-R", f"{USER}:", str(home), str(rel)], check=True)
        env = {
            "HOME": str(home),
            "USER": USER,
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            "XDG_RUNTIME_DIR": str(runtime),
            "RELEASER_QUICKSTART_DIR": str(home / "stack"),
            "RELEASER_CACHE": str(home / ".cache/releaser"),
            "CONSOLE_HTTP_PORT": str(free_port()),
        }
        runtime.mkdir(parents=True, exist_ok=True)
        os.chown(runtime, uid, gid)
        runtime.chmod(0o700)
        yield {"env": env, "rel": rel, "runtime": runtime, "uid": uid, "gid": gid, "tun_mode": tun_mode}
    finally:
        if env:
            as_user(env, "releaser", "quickstart", "reset", "--yes")
            as_user(env, "podman", "system", "reset", "--force")
        subprocess.run(["umount", str(runtime)], capture_output=True, check=False)
        subprocess.run(["pkill", "-u", USER], capture_output=True, check=False)
        os.chmod("/dev/net/tun", tun_mode)
        publisher.stop()
        shutil.rmtree(work, ignore_errors=True)
