"""The test cluster's components, built here from their Go modules and cached by version.

Everything the cluster runs is upstream at a pinned version, built from its module with the
module's own go.sum (and the module itself checked against the h1: hash below, which the Go
checksum database vouches for): Kubernetes and etcd from the wrapper module in
tests/cluster/kube (k8s.io/kubernetes lists its staging modules at v0.0.0; the wrapper replaces
each with its release), containerd 2 and runc as the runtime, the CNI plugins, CoreDNS, a
NetworkPolicy enforcer, a storage provisioner, and Kubernetes' own pause.c compiled statically.
Images the cluster itself needs (pause, CoreDNS, the provisioner, a busybox for its helper pods)
are written as OCI layouts from those binaries, byte for byte reproducible.

The cache lives outside the repository (`$RELEASER_CLUSTER_CACHE`, default
~/.cache/releaser/cluster/<key>), keyed by everything that decides its bytes: this file, the
wrapper's go.mod/go.sum and the Go version. A warm run only checks that the key's directory is
complete. `python -m tests.support.cluster_build` builds (or finds) it and prints the timings.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import images

ROOT = Path(__file__).resolve().parents[2]
KUBE_MODULE = ROOT / "tests" / "cluster" / "kube"

KUBERNETES = "v1.37.2"  # the newest release served; cgroup v1 hosts need failCgroupV1: false
ETCD = "v3.7.3"
COREDNS = "v1.15.0"
PAUSE = "3.10.2"  # the tag k8s.io/kubernetes' build/pause/Makefile gives pause.c at this release
LOCAL_PATH = "v0.0.30"


@dataclass(frozen=True)
class Module:
    """One upstream Go module at a pinned version, and the programs built from it."""

    path: str
    version: str
    h1: str  # the module zip's hash (go.sum form), as the Go checksum database records it
    packages: tuple[str, ...]  # package paths relative to the module, "" for the root
    cgo: bool = False
    tags: str = ""
    why: str = ""


MODULES = (
    Module(
        "github.com/containerd/containerd/v2",
        "v2.4.2",
        "h1:p6Qg+xbEz8lvwdhHDx0U469xENvp4LgGBx+E7djXkGw=",
        ("cmd/containerd", "cmd/containerd-shim-runc-v2"),
        tags="no_btrfs no_devmapper no_zfs no_aufs",
        why="the container runtime (CRI); kubelet 1.36+ needs containerd 2",
    ),
    Module(
        "github.com/opencontainers/runc",
        "v1.5.3",
        "h1:y3GUIW7J0Gxd+tCFfWR6L1YDnhHiNR1BGRx1J50+VnA=",
        ("",),
        cgo=True,
        tags="seccomp",
        why="the OCI runtime under containerd (with seccomp: restricted pods ask for RuntimeDefault)",
    ),
    Module(
        "github.com/containernetworking/plugins",
        "v1.10.0",
        "h1:4lwzpgsn5NdIneXrag/EEfKzhNSriJc1zTxZxfdfPLQ=",
        ("plugins/main/ptp", "plugins/ipam/host-local", "plugins/meta/portmap"),
        why="pod networking: a routed veth per pod, so every packet crosses the node's netfilter",
    ),
    Module(
        "github.com/cloudnativelabs/kube-router/v2",
        "v2.1.0",
        "h1:xWsptKtmZ44L+NjwFKoFAFlVdxCz8fka9A/eYJe95Ok=",
        ("cmd/kube-router",),
        why="NetworkPolicy enforcer (iptables + ipset), run with its firewall only; see docs/testing.md",
    ),
    Module(
        "github.com/coredns/coredns",
        COREDNS,
        "h1:OBT+OEyHVdUiVxPhrNlC5XZVq3RkSxzQXfZQ76gm5ck=",
        ("",),
        why="cluster DNS",
    ),
    Module(
        "github.com/rancher/local-path-provisioner",
        LOCAL_PATH,
        "h1:OkiuofkCSscddl7tma/B9Ox1wu+JEVSrP7IcZI65Ggo=",
        ("",),
        why="dynamic PersistentVolumes for claims (a directory per claim on the node)",
    ),
)
KUBE_PROGRAMS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
KUBE_H1 = "h1:A2VDEiObzkYqFTKhSsn0ZEb0RlLEXpHWj93gi2HqEwE="

# Images the cluster pulls for itself, from the same registry as the release (its only source).
INFRA_IMAGES = {
    "pause": f"cluster/pause:{PAUSE}",
    "coredns": f"cluster/coredns:{COREDNS}",
    "local-path-provisioner": f"cluster/local-path-provisioner:{LOCAL_PATH}",
    "busybox": "cluster/busybox:1",
}


class BuildError(RuntimeError):
    pass


def _go_env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=readonly -trimpath",
        "CGO_ENABLED": "0",
        "GOBIN": str(work),
    }


def cache_key() -> str:
    h = hashlib.sha256()
    for f in (
        Path(__file__),
        KUBE_MODULE / "go.mod",
        KUBE_MODULE / "go.sum",
        KUBE_MODULE / "cmd/etcd/main.go",
    ):
        h.update(f.read_bytes())
    go = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=False).stdout
    h.update(go.encode())
    return f"k8s-{KUBERNETES}-{h.hexdigest()[:12]}"


def cache_root() -> Path:
    base = os.environ.get("RELEASER_CLUSTER_CACHE") or str(Path.home() / ".cache" / "releaser" / "cluster")
    return Path(base)


def cached() -> Path | None:
    d = cache_root() / cache_key()
    return d if (d / "COMPLETE").exists() else None


def _run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, what: str) -> None:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise BuildError(f"building {what} failed ({' '.join(cmd[:3])} ...):\n{tail}")


def _check_module_hash(m: Module, env: dict[str, str]) -> None:
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{m.path}@{m.version}"],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        got = json.loads(proc.stdout).get("Sum")
    except json.JSONDecodeError:
        got = None
    if got != m.h1:
        raise BuildError(
            f"{m.path}@{m.version}: the Go module proxy serves {got or 'nothing'} ({proc.stderr.strip()[-300:]}); "
            f"pinned {m.h1}. Fix: check the proxy (GOPROXY) or update the pin in {__file__}"
        )


def _build_go(out: Path, log: dict[str, float]) -> None:
    bin_dir = out / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = _go_env(bin_dir)
    t = time.monotonic()
    targets = ["./cmd/etcd", *[f"k8s.io/kubernetes/cmd/{p}" for p in KUBE_PROGRAMS]]
    # the version stamp hack/lib/version.sh gives a release build (else they say v0.0.0-master)
    major, minor, _ = KUBERNETES.lstrip("v").split(".")
    stamp = {
        "gitVersion": KUBERNETES,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": f"k8s.io/kubernetes@{KUBERNETES}",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    x = [
        f"-X k8s.io/{pkg}.{k}={v}"
        for pkg in ("component-base/version", "client-go/pkg/version")
        for k, v in stamp.items()
    ]
    _run(
        ["go", "build", f"-ldflags=-s -w {' '.join(x)}", "-o", str(bin_dir) + "/", *targets],
        env=env,
        cwd=KUBE_MODULE,
        what=f"Kubernetes {KUBERNETES} and etcd {ETCD} (tests/cluster/kube)",
    )
    log["kubernetes+etcd"] = time.monotonic() - t
    for m in MODULES:
        t = time.monotonic()
        _check_module_hash(m, env)
        menv = {**env, "CGO_ENABLED": "1" if m.cgo else "0", "GOFLAGS": "-trimpath"}
        pkgs = [f"{m.path}/{p}@{m.version}" if p else f"{m.path}@{m.version}" for p in m.packages]
        cmd = ["go", "install", "-ldflags=-s -w", *(["-tags", m.tags] if m.tags else []), *pkgs]
        _run(cmd, env=menv, cwd=Path(tempfile.gettempdir()), what=f"{m.path}@{m.version}")
        log[m.path.split("/")[-1] if not m.path.endswith("/v2") else m.path.split("/")[-2]] = (
            time.monotonic() - t
        )
    cni = out / "cni"
    cni.mkdir(exist_ok=True)
    for p in ("ptp", "host-local", "portmap"):
        shutil.move(str(bin_dir / p), cni / p)


def _build_pause(out: Path, log: dict[str, float]) -> Path:
    t = time.monotonic()
    src = _module_dir("k8s.io/kubernetes", KUBERNETES) / "build" / "pause" / "linux" / "pause.c"
    dest = out / "bin" / "pause"
    _run(
        [
            "gcc",
            "-Os",
            "-Wall",
            "-Werror",
            "-static",
            f"-DVERSION=v{PAUSE}-releaser",
            "-o",
            str(dest),
            str(src),
        ],
        what="pause (pause.c from k8s.io/kubernetes)",
    )
    _run(["strip", str(dest)], what="pause")
    log["pause"] = time.monotonic() - t
    return dest


def _module_dir(path: str, version: str) -> Path:
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{path}@{version}"],
        cwd=tempfile.gettempdir(),
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise BuildError(f"go mod download {path}@{version}: {proc.stderr.strip()}") from e
    if info.get("Sum") != KUBE_H1 and path == "k8s.io/kubernetes":
        raise BuildError(f"k8s.io/kubernetes@{version}: served {info.get('Sum')}, pinned {KUBE_H1}")
    return Path(info["Dir"])


def _image(
    layout: Path,
    tag: str,
    files: dict[str, bytes],
    *,
    links: dict[str, str] | None = None,
    entrypoint: list[str] | None = None,
    user: str = "",
) -> None:
    """A single-layer amd64 image of static binaries, reproducible to the byte."""
    lay = images.Layout(layout)
    if (layout / "index.json").exists():
        lay.index = json.loads((layout / "index.json").read_text())["manifests"]
    gz, diff_id = images.layer(files, links)
    run: dict[str, object] = {"Env": ["PATH=/bin:/usr/bin"]}
    run.update({"Entrypoint": entrypoint} if entrypoint else {"Cmd": ["/bin/sh"]})
    if user:
        run["User"] = user
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": images.OCI_MANIFEST,
            "config": {"mediaType": images.OCI_CONFIG, "digest": lay.blob(cfg), "size": len(cfg)},
            "layers": [{"mediaType": images.OCI_LAYER, "digest": lay.blob(gz), "size": len(gz)}],
        },
        separators=(",", ":"),
    ).encode()
    lay.index = [
        d for d in lay.index if d.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    lay.index.append(
        {
            "mediaType": images.OCI_MANIFEST,
            "digest": lay.blob(manifest),
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    lay.finish()


def _build_images(out: Path, log: dict[str, float]) -> None:
    t = time.monotonic()
    layout = out / "images"
    b = out / "bin"
    _image(layout, "pause", {"pause": (b / "pause").read_bytes()}, entrypoint=["/pause"], user="65535:65535")
    _image(
        layout,
        "coredns",
        {"coredns": (b / "coredns").read_bytes()},
        entrypoint=["/coredns"],
        user="65532:65532",
    )
    lpp = "usr/bin/local-path-provisioner"
    _image(
        layout,
        "local-path-provisioner",
        {lpp: (b / "local-path-provisioner").read_bytes()},
        entrypoint=[f"/{lpp}"],
    )
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    _image(
        layout,
        "busybox",
        {"bin/busybox": images.BUSYBOX.read_bytes()},
        links={f"bin/{a}": "busybox" for a in applets if a != "busybox"},
    )
    log["images"] = time.monotonic() - t


def ensure_built(progress: bool = False) -> Path:
    """The cache directory of this key, built first if absent (a half-built one is never used)."""
    done = cached()
    if done is not None:
        return done
    for tool in ("go", "gcc", "strip"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} not found: the cluster is built from source (Go 1.26, gcc); install it")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / cache_key()
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    log: dict[str, float] = {}
    t = time.monotonic()
    try:
        if progress:
            print(
                f"cluster: building Kubernetes {KUBERNETES} and its components into {final} ...", flush=True
            )
        _build_go(work, log)
        _build_pause(work, log)
        _build_images(work, log)
        log["total"] = time.monotonic() - t
        (work / "build-times.json").write_text(json.dumps({k: round(v, 1) for k, v in log.items()}, indent=1))
        (work / "COMPLETE").write_text(cache_key() + "\n")
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # older keys are kept out of the way: only the newest build is ever needed
    for old in root.glob("k8s-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def main() -> int:
    t = time.monotonic()
    try:
        out = ensure_built(progress=True)
    except BuildError as e:
        print(f"cluster build: error: {e}", file=sys.stderr)
        return 5
    times = json.loads((out / "build-times.json").read_text())
    now = time.monotonic() - t
    built = f"built in {now:.1f} s" if now > 5 else f"cached; its build took {times['total']} s"
    print(f"cluster components: {out} ({built}: {', '.join(f'{k} {v} s' for k, v in times.items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
