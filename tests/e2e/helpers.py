"""Helpers of the end-to-end tests: commands on the host, at the site, and Helm against the cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT, TOOLS
from tests.support.cluster import Cluster

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")
HELM3 = str(TOOLS / "bin" / "helm3")
HELM4 = str(TOOLS / "bin" / "helm4")


def sh(
    *cmd: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
    stdin: str | None = None,
) -> str:
    proc = subprocess.run(
        list(cmd), env=env, capture_output=True, text=True, check=False, timeout=timeout, input=stdin
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def site(
    c: Cluster, *cmd: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> str:
    """A command on the site's admin host, where registry.local is the cluster's registry."""
    return sh(*c.site_cmd(*cmd), env=env, check=check, timeout=timeout)


def helm_env(c: Cluster) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(c.kubeconfig), "HELM_CACHE_HOME": str(c.state / "helm-cache")}


def helm(c: Cluster, binary: str, *args: str, check: bool = True, timeout: float = 600) -> str:
    """Helm against the cluster, pulling charts from registry.local:5000 over TLS from the cluster's CA."""
    return site(c, binary, *args, env=helm_env(c), check=check, timeout=timeout)


def helm_refused(
    c: Cluster, binary: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Helm as `helm()` runs it, for a refusal a test expects: its exit status and both streams."""
    return subprocess.run(
        c.site_cmd(binary, *args),
        env=helm_env(c),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def releaser_env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RELEASER_CACHE": str(work / "cache"),
        "RELEASER_KEY_PASSPHRASE": "e2e-only-passphrase",
    }


def airgap_load(c: Cluster, bundle: Path, pub: str, out_dir: Path, env: dict[str, str]) -> Path:
    """`releaser airgap BUNDLE --to registry.local:5000` at the site; returns values-airgap.yaml."""
    site(
        c,
        RELEASER,
        *("airgap", str(bundle), "--to", "registry.local:5000", "--key", pub),
        *("--ca-file", str(c.ca), "--out-dir", str(out_dir)),
        env=env,
    )
    return out_dir / "values-airgap.yaml"


def tempdir(c: Cluster, name: str) -> Path:
    d = c.state / "work" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def publish(work: Path, rel: Path, bundle: Path, env: dict[str, str]) -> tuple[str, str]:
    """The publisher's side of a release whose stand-ins are in a registry: lock, a key pair in
    work/keys, a signed bundle. Returns (private key, public key) paths."""
    sh(RELEASER, "lock", str(rel), env=env)
    if not (work / "keys/releaser.key").exists():
        sh(RELEASER, "keygen", "--out-dir", str(work / "keys"), env=env)
    key, pub = str(work / "keys/releaser.key"), str(work / "keys/releaser.pub")
    bundle.parent.mkdir(parents=True, exist_ok=True)
    sh(
        RELEASER,
        "bundle",
        str(rel),
        "--signing-key",
        key,
        "--out-file",
        str(bundle),
        "--no-installer",
        env=env,
    )
    return key, pub
