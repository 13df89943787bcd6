"""Build the kernel the TCP-AO tests boot under qemu: Debian trixie's linux-source-6.12 (this host's
kernel and Debian's own are built without CONFIG_TCP_AO), with scripts/ao-kernel/ao.config merged
into tinyconfig. The source package comes from Debian's trixie suite through a private apt
configuration (the system's sources stay as they are), pinned by version and sha256; the bzImage
is cached outside the repository by that version and the config's hash, and linked as
.tools/ao-kernel/bzImage.

    python scripts/build_ao_kernel.py [--force]

Cold: the 153 MB download, unpacking, and a tinyconfig build (a few minutes on two CPUs); warm:
nothing is done.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from build_go_tools import link  # this script's directory is on sys.path

ROOT = Path(__file__).resolve().parent.parent
FRAGMENT = ROOT / "scripts" / "ao-kernel" / "ao.config"
LINK = ROOT / ".tools" / "ao-kernel" / "bzImage"
PACKAGE = "linux-source-6.12"
VERSION = "6.12.117-1"
SHA256 = "9141325315c7f1eca682113d185a8c77c82814aa6e32f7e127e61d6106403835"
MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def cache_dir() -> Path:
    return Path(os.environ.get("RELEASER_KERNEL_CACHE") or Path.home() / ".cache" / "releaser" / "kernel")


def config_hash() -> str:
    return hashlib.sha256(FRAGMENT.read_bytes()).hexdigest()[:12]


def kernel_path() -> Path:
    return cache_dir() / f"bzImage-{VERSION}-{config_hash()}"


def _run(cmd: list[str], what: str, cwd: Path | None = None, log: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        sys.exit(f"build_ao_kernel: {what} failed:\n{tail}")


def source_deb() -> Path:
    """The source package, downloaded through a private apt configuration and checked by sha256."""
    debs = cache_dir() / "debs"
    deb = debs / f"{PACKAGE}_{VERSION}_all.deb"
    if deb.exists() and hashlib.sha256(deb.read_bytes()).hexdigest() == SHA256:
        return deb
    apt = cache_dir() / "apt"
    for d in (apt / "lists" / "partial", apt / "cache" / "archives" / "partial", debs):
        d.mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} {SUITE} main\n")
    opts = [
        f"-oDir::Etc::sourcelist={apt / 'sources.list'}",
        "-oDir::Etc::sourceparts=-",
        f"-oDir::State::Lists={apt / 'lists'}",
        f"-oDir::Cache={apt / 'cache'}",
        "-oAPT::Sandbox::User=root",
    ]
    _run(["apt-get", *opts, "update"], f"apt-get update ({SUITE})")
    tmp = Path(tempfile.mkdtemp(dir=debs))
    try:
        _run(
            ["apt-get", *opts, "download", f"{PACKAGE}={VERSION}"],
            f"downloading {PACKAGE}={VERSION}",
            cwd=tmp,
        )
        got = tmp / deb.name
        digest = hashlib.sha256(got.read_bytes()).hexdigest()
        if digest != SHA256:
            sys.exit(
                f"build_ao_kernel: {deb.name} has sha256 {digest}, pinned {SHA256}. Fix: check the package "
                f"registry, or the pin in {__file__}"
            )
        got.rename(deb)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return deb


def build(force: bool) -> tuple[Path, float]:
    target = kernel_path()
    if target.exists() and not force:
        return target, 0.0
    for tool in ("make", "gcc", "bc", "flex", "bison", "dpkg-deb", "tar", "xz"):
        if shutil.which(tool) is None:
            sys.exit(f"build_ao_kernel: needs {tool} (scripts/setup.sh installs it)")
    t = time.monotonic()
    deb = source_deb()
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir()))
    try:
        _run(["dpkg-deb", "-x", str(deb), str(staging / "pkg")], "unpacking the source package")
        tarball = staging / "pkg" / "usr" / "src" / f"{PACKAGE}.tar.xz"
        _run(["tar", "-xf", str(tarball), "-C", str(staging)], "unpacking the kernel source")
        src = staging / PACKAGE
        make = ["make", "-C", str(src), "ARCH=x86_64", f"-j{os.cpu_count() or 2}"]
        _run([*make, "tinyconfig"], "make tinyconfig")
        _run(
            [
                str(src / "scripts" / "kconfig" / "merge_config.sh"),
                "-m",
                "-O",
                str(src),
                str(src / ".config"),
                str(FRAGMENT),
            ],
            "merging ao.config",
            cwd=src,
        )
        _run([*make, "olddefconfig"], "make olddefconfig")
        config = set((src / ".config").read_text().splitlines())
        lost = [
            line
            for line in FRAGMENT.read_text().splitlines()
            if line.startswith("CONFIG_") and line not in config
        ]
        if lost:
            sys.exit(
                f"build_ao_kernel: olddefconfig dropped {', '.join(lost)}: a dependency is missing in {FRAGMENT}"
            )
        _run([*make, "bzImage"], "make bzImage", log=staging / "build.log")
        built = src / "arch" / "x86" / "boot" / "bzImage"
        partial = target.with_suffix(".partial")
        shutil.copyfile(built, partial)
        partial.rename(target)  # whole or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, time.monotonic() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="build again even when cached")
    args = ap.parse_args()
    cache_dir().mkdir(parents=True, exist_ok=True)
    kernel, took = build(args.force)
    LINK.parent.mkdir(parents=True, exist_ok=True)
    link(LINK, kernel)
    print(
        f"ao-kernel: {PACKAGE} {VERSION} + ao.config {config_hash()}"
        + (f", built in {took:.0f} s" if took else ", cached")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
