"""A loopback OCI registry the airgap quickstart starts for itself (`--to local`).

It runs Debian's `docker-registry` (CNCF distribution) as a background process, storage
and config under `<stack>/registry/`, listening on 127.0.0.1 only. The port is chosen
once and kept (compose.airgap.yaml names it), so a later `quickstart restore` or re-run
starts it on the same port. `down` and `reset` stop it; `reset --yes` also deletes its
storage.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ..errors import ToolError

BINARIES = ("docker-registry", "registry")
DIR = "registry"


def _binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise ToolError(
        "--to local needs the CNCF distribution registry binary (docker-registry), which is not installed",
        fix="install it (Debian/Ubuntu: apt-get install docker-registry), or pass --to HOST:PORT "
        "of a registry you run",
    )


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid(stack: Path) -> int | None:
    path = stack / DIR / "registry.pid"
    try:
        value = int(path.read_text())
        os.kill(value, 0)
        return value
    except (OSError, ValueError):
        return None


def start(stack: Path, port: int | None = None) -> str:
    """Start (or find running) the stack's registry; returns HOST:PORT."""
    root = stack / DIR
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    port = port or _free_port()
    if pid(stack) is not None and _answers(port):
        return f"127.0.0.1:{port}"
    if _answers(port):
        raise ToolError(
            f"127.0.0.1:{port}, where this stack's registry lives, is taken by another program",
            fix=f"stop what listens on {port} (ss -ltnp 'sport = :{port}'), then run the command again",
        )
    config = root / "config.yml"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n"
            f"  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
        )
    log = (root / "registry.log").open("ab")
    proc = subprocess.Popen(
        [_binary(), "serve", str(config)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (root / "registry.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers(port):
            return f"127.0.0.1:{port}"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(stack)
    tail = (root / "registry.log").read_text(errors="replace")[-800:]
    raise ToolError(
        f"the local registry did not start on 127.0.0.1:{port}: {tail.strip()}",
        fix="see the log above; or pass --to HOST:PORT of a registry you run",
    )


def stop(stack: Path) -> bool:
    """Stop the stack's registry if it runs; True when one was stopped."""
    value = pid(stack)
    (stack / DIR / "registry.pid").unlink(missing_ok=True)
    if value is None:
        return False
    os.kill(value, signal.SIGTERM)
    for _ in range(50):
        try:
            os.kill(value, 0)
        except OSError:
            return True
        time.sleep(0.1)
    os.kill(value, signal.SIGKILL)
    return True
