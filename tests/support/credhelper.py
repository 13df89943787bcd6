"""A real Docker credential helper for tests: docker-credential-pass (Debian's
golang-docker-credential-helpers) over `pass` with a throwaway gpg key, so the client
is exercised through the same protocol Docker Desktop, osxkeychain, ecr-login or
gcloud helpers speak (`get`: the server URL on stdin, {"Username", "Secret"} out).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HELPER = "docker-credential-pass"


def missing() -> list[str]:
    return [p for p in (HELPER, "pass", "gpg", "gpgconf") if shutil.which(p) is None]


@contextmanager
def pass_store(root: Path) -> Iterator[dict[str, str]]:
    """An initialised password store; yields the environment that selects it."""
    home = root / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    env = {"GNUPGHOME": str(home), "PASSWORD_STORE_DIR": str(root / "store")}
    run = {"env": {**_base_env(), **env}, "capture_output": True, "text": True, "check": True, "timeout": 60}
    try:
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                "releaser test <test@releaser.invalid>",
                "default",
                "default",
                "never",
            ],
            **run,
        )
        keys = subprocess.run(["gpg", "--list-keys", "--with-colons"], **run).stdout
        fpr = next(line.split(":")[9] for line in keys.splitlines() if line.startswith("fpr:"))
        subprocess.run(["pass", "init", fpr], **run)
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**_base_env(), **env}, capture_output=True)


def store(env: dict[str, str], server: str, user: str, secret: str) -> None:
    """`docker login` with this helper configured does exactly this."""
    subprocess.run(
        [HELPER, "store"],
        input=json.dumps({"ServerURL": server, "Username": user, "Secret": secret}),
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)
