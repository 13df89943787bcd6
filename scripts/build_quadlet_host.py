"""Build the podman host the Quadlet tests boot (tests/test_quadlet.py): a Debian trixie root file
system (podman 5.4 and systemd 257; Debian bookworm's podman 4.3 has no Quadlet) made by
debootstrap from Debian's package registry, whose signed Release files apt checks against the
system's archive keyring. The versions of podman and systemd are pinned: a suite that has moved on
stops the build, naming both versions. The root is kept as a tar file outside the repository, by
the hash of this script's package list and configuration, and linked as .tools/quadlet-host.tar;
podman's Quadlet generator from it (a Go program that needs only libc) as .tools/bin/quadlet, which
the offline tests run on every rendered unit (`quadlet -dryrun`).

    python scripts/build_quadlet_host.py [--force]

Cold: about 75 s of debootstrap (some 150 MB of packages) and a tar; warm: nothing is done.
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
LINK = ROOT / ".tools" / "quadlet-host.tar"
GENERATOR = ROOT / ".tools" / "bin" / "quadlet"
GENERATOR_IN_ROOT = "usr/libexec/podman/quadlet"
MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PINNED = {"podman": "5.4.2+ds1-2+b2", "systemd": "257.13-1~deb13u1"}
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "podman",
    "catatonit",  # podman --init (RunInit=)
    "netavark",
    "aardvark-dns",  # names on the release network
    "nftables",  # netavark's firewall driver calls nft
    "iproute2",
    "ca-certificates",
    "procps",
    "uidmap",  # newuidmap/newgidmap: rootless podman (tests/test_rootless_pasta.py)
    "passt",  # pasta, rootless podman 5's network
    "python3-minimal",  # the TCP-MD5 client a rootless container runs (tests/support/tcpsig.py)
)
# Units a container has no use for: kernel modules (the host's), a tmpfs on /tmp (the tests mount
# their work there), consoles.
MASKED = ("systemd-modules-load.service", "tmp.mount", "console-getty.service", "getty.target")
CONFIG = {
    # the host's cgroup v1 hierarchy: podman 5 warns on every call without this
    "etc/environment": "PODMAN_IGNORE_CGROUPSV1_WARNING=1\n",
    "etc/systemd/system.conf.d/10-releaser.conf": "[Manager]\nDefaultEnvironment=PODMAN_IGNORE_CGROUPSV1_WARNING=1\n",
    # podman's systemd cgroup manager cannot make a pod's slice on a cgroup v1 hierarchy ("Unit
    # machine-libpod_pod_....slice was already loaded or has a fragment file"); on cgroup v2, every
    # current distribution's default, it can, and nothing here is needed
    "etc/containers/containers.conf.d/50-cgroupfs.conf": '[engine]\ncgroup_manager = "cgroupfs"\n',
}


def cache_dir() -> Path:
    return Path(
        os.environ.get("RELEASER_QUADLET_CACHE") or Path.home() / ".cache" / "releaser" / "quadlet-host"
    )


def recipe_hash() -> str:
    text = repr((SUITE, sorted(PINNED.items()), PACKAGES, MASKED, sorted(CONFIG.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def tar_path() -> Path:
    return cache_dir() / f"trixie-{recipe_hash()}.tar"


def generator_path() -> Path:
    return cache_dir() / f"quadlet-{recipe_hash()}"


def extract_generator(tar: Path) -> Path:
    """podman's Quadlet generator out of the root's tar, next to it in the cache."""
    target = generator_path()
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            _run(
                ["tar", "-xf", str(tar), "-C", tmp, f"./{GENERATOR_IN_ROOT}"],
                "extracting the Quadlet generator",
            )
            Path(tmp, GENERATOR_IN_ROOT).rename(target)
    return target


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        sys.exit(f"build_quadlet_host: {what} failed:\n{tail}")
    return proc.stdout


def build(force: bool) -> tuple[Path, float]:
    target = tar_path()
    if target.exists() and not force:
        return target, 0.0
    if shutil.which("debootstrap") is None:
        sys.exit("build_quadlet_host: needs debootstrap (scripts/setup.sh installs it)")
    t = time.monotonic()
    cache_dir().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir()))
    try:
        root = staging / "root"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                f"--keyring={KEYRING}",
                SUITE,
                str(root),
                MIRROR,
            ],
            f"debootstrap {SUITE}",
        )
        got = dict(
            line.split("\t", 1)
            for line in _run(
                ["chroot", str(root), "dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *PINNED],
                "reading the installed versions",
            ).splitlines()
        )
        moved = [f"{p} {got.get(p, 'missing')} (pinned {v})" for p, v in PINNED.items() if got.get(p) != v]
        if moved:
            sys.exit(
                f"build_quadlet_host: Debian {SUITE} now has {', '.join(moved)}. Fix: check the release notes "
                f"of the new versions and update PINNED in {__file__}"
            )
        for unit in MASKED:
            (root / "etc" / "systemd" / "system" / unit).unlink(missing_ok=True)
            (root / "etc" / "systemd" / "system" / unit).symlink_to("/dev/null")
        for rel, text in CONFIG.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        partial = target.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], "packing the root")
        partial.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="build again even if cached")
    args = ap.parse_args()
    target, took = build(args.force)
    LINK.parent.mkdir(parents=True, exist_ok=True)
    link(LINK, target)
    GENERATOR.parent.mkdir(parents=True, exist_ok=True)
    link(GENERATOR, extract_generator(target))
    for old in cache_dir().glob("*"):  # the roots of earlier recipes: 358 MB each
        if old.is_file() and old not in (target, generator_path()):
            old.unlink()
    pinned = ", ".join(f"{p} {v}" for p, v in PINNED.items())
    print(f"quadlet-host: Debian {SUITE} ({pinned}) " + (f"built in {took:.0f} s" if took else "cached"))


if __name__ == "__main__":
    main()
