"""The quickstart as an unprivileged user with rootless podman 4.3.1 and podman-compose 1.6.0:
examples/platform (a job, a config file, a secret, a volume; no TCP-AO sidecars).

The user is real: created here (useradd), with subordinate UID and GID ranges (usermod) and
Debian's newuidmap/newgidmap; releaser runs from a venv of the system Python that user can read.
`doctor` first finds, as the user, what this host lacks for rootless podman (no systemd-logind
here: no XDG_RUNTIME_DIR of its own; no udev: /dev/net/tun left 0600), each with its fix; the
fixture then does what the fixes say (the tmpfs logind would mount, the mode udev would set) and
puts the device back as it found it at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, needs_service
from tests.support import podman as podman_mod
from tests.support import tcpsig
from tests.support.rootless import SYSTEM_PYTHON, USER, as_user, prepare, rootless_user

# by itself, after the parallel suite (tests/conftest.py: alone)
pytestmark = [pytest.mark.engine, pytest.mark.alone]


def releaser(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = as_user(env, "releaser", *args)
    assert proc.returncode == expect, (
        f"releaser {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def checks(env: dict[str, str], rel: Path) -> dict[str, dict[str, Any]]:
    proc = as_user(
        env, "releaser", "doctor", str(rel), "--engine", "podman-compose", "--skip", "disk", "--json"
    )
    doc = json.loads(proc.stdout)
    return {c["name"]: c for c in (doc.get("result") or doc.get("error"))["checks"]}


@pytest.fixture(scope="module")
def rootless() -> Iterator[dict[str, Any]]:
    podman_mod.require("runuser", "useradd", "usermod", "newuidmap", "slirp4netns", SYSTEM_PYTHON)
    needs_service("a container engine (podman, rootless)")  # make test-quick: this module is marked engine
    with rootless_user() as user:
        yield user


def test_doctor_names_what_rootless_podman_lacks_here_and_the_fix_works(rootless: dict[str, Any]) -> None:
    env, rel = rootless["env"], rootless["rel"]
    os.chmod("/dev/net/tun", 0o600)  # as a host without udev leaves it
    found = checks(env, rel)
    assert found["podman-mode"]["detail"] == f"rootless (as {USER})"
    assert found["podman-subuid"]["status"] == "pass" and found["podman-newuidmap"]["status"] == "pass"
    assert found["podman-runtime-dir"]["status"] == "fail", found["podman-runtime-dir"]
    assert f"mount -t tmpfs -o mode=700,uid={rootless['uid']}" in found["podman-runtime-dir"]["fix"]
    assert found["podman-tun"] == {
        "name": "podman-tun",
        "status": "fail",
        "detail": "/dev/net/tun does not open: Permission denied",
        "fix": found["podman-tun"]["fix"],
    }
    assert "chmod 0666 /dev/net/tun" in found["podman-tun"]["fix"]
    prepare(rootless)  # what the fixes say, done as root
    found = checks(env, rel)
    failing = [c for c in found.values() if c["status"] == "fail"]
    assert not failing, failing


def test_the_platform_quickstart_runs_rootless_and_comes_back_from_a_backup(rootless: dict[str, Any]) -> None:
    env, rel = rootless["env"], rootless["rel"]
    releaser(env, "lock", str(rel))
    up = json.loads(releaser(env, "quickstart", str(rel), "--engine", "podman-compose", "--json").stdout)[
        "result"
    ]
    states = {s["service"]: s["state"] for s in up["services"]}
    assert states == {
        "console": "running",
        "api": "running",
        "migrate": "exited",
        "worker": "running",
        "store": "running",
    }
    # the API's process runs as its user (65532) mapped into the user's subordinate range: host UID
    # BASE + 65532 - 1 (container UID 0 is the user itself, 1.. the range from BASE)
    base = next(
        int(line.split(":")[1])
        for line in Path("/etc/subuid").read_text().splitlines()
        if line.startswith(f"{USER}:")
    )
    pid = as_user(env, "podman", "inspect", "--format", "{{.State.Pid}}", "platform_api_1").stdout.strip()
    uids = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
    )
    assert uids.split()[1] == str(base + 65532 - 1), uids
    api_log = releaser(env, "quickstart", "logs", "api").stdout
    assert "config /etc/api/api.yaml:" in api_log, api_log
    assert "the store password file is readable" in releaser(env, "quickstart", "logs", "migrate").stdout
    backup = Path(env["HOME"]) / "backup.tar.zst"
    releaser(env, "quickstart", "backup", "--out", str(backup))
    assert "every service is ready" in releaser(env, "quickstart", "status").stdout
    releaser(env, "quickstart", "reset", "--yes")
    releaser(env, "quickstart", "restore", str(backup))
    assert "every service is ready" in releaser(env, "quickstart", "status").stdout


def test_doctor_says_a_tcpao_wire_leg_cannot_be_protected_rootless(rootless: dict[str, Any]) -> None:
    """Rootless podman's user-mode network (slirp4netns here) makes each outbound TCP connection anew
    from a host socket of its own, without the sidecar's TCP-AO option: doctor (and so the
    quickstart's preflight) says so for a release with TCP-AO sidecars, and a release without
    them gets no such check."""
    env = rootless["env"]
    bmp = Path(env["HOME"]) / "bmp-tcpao"
    shutil.copytree(ROOT / "examples" / "bmp-tcpao", bmp, dirs_exist_ok=True)
    subprocess.run(["chown", "-R", f"{USER}:", str(bmp)], check=True)
    found = checks(env, bmp)
    assert found["tcp-ao-rootless"]["status"] == "fail", found["tcp-ao-rootless"]
    assert "slirp4netns or pasta" in found["tcp-ao-rootless"]["detail"]
    assert "rootful podman" in found["tcp-ao-rootless"]["fix"]
    assert "tcp-ao-rootless" not in checks(env, rootless["rel"])  # examples/platform: no sidecars


def test_a_tcp_signature_set_in_a_rootless_container_never_reaches_the_wire(rootless: dict[str, Any]) -> None:
    """What doctor's `tcp-ao-rootless` says, measured with TCP-MD5 (this kernel has no TCP-AO; both
    are options the kernel adds to the segments of the socket they are set on): a client in a
    rootless container (slirp4netns) sets the key for the host's address and connects to it. A
    listener that requires the key never sees the connection, and one that does not sees it come
    from the host's own address: slirp4netns made it anew from a socket of its own."""
    prepare(rootless)
    env = rootless["env"]
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    )
    host = out.stdout.split()[3].split("/")[0]  # this host's first global address
    root = Path(env["HOME"]) / "pyroot"  # the host's Python in the container: /usr mounted read-only
    for d in ("usr", "etc", "tmp", "proc", "dev", "sys", "run", "probe"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        if not (root / link).is_symlink():
            (root / link).symlink_to(f"usr/{link}")
    subprocess.run(["chown", "-R", f"{USER}:", str(root)], check=True)

    def attempt(require_key: bool) -> tuple[str, tuple[str, int] | None]:
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if require_key:
                tcpsig.set_md5(listener, host, b"the shared key")
            listener.bind((host, 0))
            listener.listen(1)
            listener.settimeout(15)
            client = as_user(
                env, "podman", "run", "--rm", "--network", "slirp4netns", "-v", "/usr:/usr:ro",
                "-v", f"{Path(tcpsig.__file__).parent}:/probe:ro", "--rootfs", str(root),
                "python3", "/probe/tcpsig.py", host, str(listener.getsockname()[1]), "the shared key",
                timeout=60,
            )  # fmt: skip
            try:
                _, peer = listener.accept()
            except TimeoutError:
                peer = None
        return client.stdout.strip(), peer

    said, peer = attempt(require_key=True)
    assert peer is None and said.startswith("connect failed"), (said, peer)
    said, peer = attempt(require_key=False)
    assert peer is not None and peer[0] == host, (said, peer)  # from the host, not 10.0.2.100
    assert said.startswith("connect failed"), said  # slirp's answer carries no signature either
