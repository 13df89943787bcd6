"""A qemu guest on a kernel with TCP-AO (scripts/build_ao_kernel.py), running this host's own
programs: the guest's initramfs is busybox alone; it mounts the host's root file system read-only
over 9p (virtio), and the test's work directory read-write at the
same path, and runs one script there in a chroot (with a tmpfs over /run only: a checkout or a
work directory under /tmp stays visible). Software emulation (TCG), one CPU: slow, but
nothing here needs /dev/kvm.

    out = run_guest(work, "python3 /path/to/scenario.py ...")   # its exit code and output
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KERNEL = ROOT / ".tools" / "ao-kernel" / "bzImage"

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /host
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
work=$(sed -n 's/.*releaser.work=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose hostroot /host || echo "guest: no 9p root"
mount -t tmpfs tmpfs /host/run  # not /tmp: the host's files there (a clone, the work) stay in sight
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p "/host$work"
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none work "/host$work" || echo "guest: no 9p work"
chroot /host /bin/sh -c "ip link set lo up; cd $work && exec /bin/sh $work/guest.sh" >"/host$work/guest.out" 2>&1
echo $? >"/host$work/guest.exit"
sync
reboot -f
"""


def missing() -> list[str]:
    out = [t for t in ("qemu-system-x86_64", "cpio") if shutil.which(t) is None]
    if not KERNEL.exists():
        out.append(f"the TCP-AO kernel ({KERNEL}: scripts/build_ao_kernel.py)")
    return out


def initramfs(work: Path) -> Path:
    """busybox (static, this host's) and the init above, as a gzip'd newc cpio."""
    tree = work / "initramfs"
    (tree / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", tree / "bin" / "busybox")
    (tree / "init").write_text(INIT)
    (tree / "init").chmod(0o755)
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    proc = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"],
        input="\n".join(names).encode(),
        cwd=tree,
        capture_output=True,
        check=True,
    )
    out = work / "initramfs.cpio.gz"
    out.write_bytes(gzip.compress(proc.stdout, mtime=0))
    return out


@dataclass(frozen=True)
class GuestRun:
    code: int | None  # the script's exit code; None when the guest never said (a crash, the timeout)
    output: str  # what the script printed
    console: str  # what the kernel and init printed
    seconds: float


def run_guest(work: Path, script: str, *, timeout: float = 600, memory_mb: int = 1024) -> GuestRun:
    """Boot the guest and run `script` (sh) in `work` (an absolute path; the guest sees the host's
    files at their own paths, read-only but for `work`)."""
    work = work.resolve()
    (work / "guest.sh").write_text(script)
    for f in ("guest.out", "guest.exit"):
        (work / f).unlink(missing_ok=True)
    image = initramfs(work)
    cmd = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", str(memory_mb), "-smp", "1", "-nographic", "-no-reboot",
        "-kernel", str(KERNEL), "-initrd", str(image),
        "-append", f"console=ttyS0 panic=-1 quiet rdinit=/init releaser.work={work}",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={work},mount_tag=work,security_model=none,multidevs=remap",
    ]  # fmt: skip
    t = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
        console = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        console = (
            (exc.stdout or b"").decode(errors="replace")
            if isinstance(exc.stdout, bytes)
            else str(exc.stdout or "")
        )
        console += f"\n(qemu killed after {timeout:.0f} s)"
    took = time.monotonic() - t
    exit_file = work / "guest.exit"
    code = (
        int(exit_file.read_text().strip()) if exit_file.exists() and exit_file.read_text().strip() else None
    )
    output = (work / "guest.out").read_text(errors="replace") if (work / "guest.out").exists() else ""
    return GuestRun(code=code, output=output, console=console, seconds=took)
