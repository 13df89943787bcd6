"""Host preflight for the Compose quickstart: every check says pass or fail, and how to fix it.

Checks: a container engine (in `engine_order`: podman first, as the container security posture
asks, then Docker; an explicit choice always wins), the engine answering, the Compose version;
on podman, how it runs here (rootless or rootful, and for rootless the user's subordinate ID
ranges and newuidmap), and on any engine the cgroup version and SELinux mode; the release's
published ports being free, disk space, and for releases with TCP-AO sidecars the kernel's TCP-AO
support (setsockopt TCP_AO_INFO; ENOPROTOOPT means the kernel lacks CONFIG_TCP_AO) and
CAP_NET_ADMIN.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..tcpao import MAX_KEY_BYTES, key_problems

TCP_AO_INFO = 40  # include/uapi/linux/tcp.h
TCP_AO_INFO_SIZE = 48  # sizeof(struct tcp_ao_info_opt)
CAP_NET_ADMIN = 12
MIN_FREE_BYTES = 2 << 30
ENGINES = ("podman", "podman-compose", "docker", "docker-compose")  # the order tried (engine_order)
DOCKER_FIRST = ("docker", "docker-compose", "podman", "podman-compose")
ENGINE_VARIABLE = "RELEASER_ENGINE"


def engine_order(preferred: str | None = None) -> tuple[tuple[str, ...], str]:
    """The engines to try, in order, and why: `--engine`, else $RELEASER_ENGINE, each alone; else
    Docker first when $DOCKER_HOST or $DOCKER_CONTEXT names a Docker engine (an explicit setting);
    else podman first (daemonless, rootless by design: the container security posture's order)."""
    if preferred:
        return (preferred,), "--engine"
    chosen = os.environ.get(ENGINE_VARIABLE, "").strip()
    if chosen:
        if chosen not in ENGINES:
            raise UsageError(
                f"${ENGINE_VARIABLE}={chosen!r} is not one of {', '.join(ENGINES)}",
                fix=f"set {ENGINE_VARIABLE} to one of them, or unset it to let releaser choose",
            )
        return (chosen,), f"${ENGINE_VARIABLE}"
    for variable in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        if os.environ.get(variable):
            return DOCKER_FIRST, f"Docker first: ${variable} is set"
    return ENGINES, "podman first, then Docker"


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    status: str  # pass | fail | skipped
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def is_podman(kind: str | None) -> bool:
    """Whether an engine kind runs on podman (whose CLI, ps output, cp and networks differ)."""
    return kind in ("podman", "podman-compose")


def engine_cli(kind: str | None) -> str:
    """The engine's own CLI for an engine kind: podman or docker."""
    return "podman" if is_podman(kind) else "docker"


@dataclass(frozen=True, kw_only=True)
class Engine:
    kind: str  # docker | podman | podman-compose | docker-compose
    compose: tuple[str, ...]  # the compose command
    info: tuple[str, ...]  # a command that needs the engine to answer
    compose_version: str

    @property
    def podman(self) -> bool:
        return is_podman(self.kind)

    @property
    def cli(self) -> str:
        return engine_cli(self.kind)


def _run(cmd: list[str], timeout: float = 15) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, (proc.stdout.strip() or proc.stderr.strip())


def detect_engine(preferred: str | None = None) -> tuple[Engine | None, list[str]]:
    """The first engine with a working compose in `engine_order`, and what was looked at (for the
    message)."""
    seen: list[str] = []
    for kind in engine_order(preferred)[0]:
        if kind == "docker" and shutil.which("docker"):
            code, out = _run(["docker", "compose", "version", "--short"])
            if code == 0:
                return Engine(
                    kind=kind,
                    compose=("docker", "compose"),
                    info=("docker", "info", "--format", "{{.ServerVersion}}"),
                    compose_version=out.lstrip("v"),
                ), seen
            seen.append("docker (but not its Compose v2 plugin)")
        elif kind == "podman" and shutil.which("podman"):
            code, out = _run(["podman", "compose", "version"])
            if code == 0:
                return Engine(
                    kind=kind,
                    compose=("podman", "compose"),
                    info=("podman", "info", "--format", "{{.Version.Version}}"),
                    compose_version=out.splitlines()[-1] if out else "?",
                ), seen
            seen.append("podman (without `podman compose`)")
        elif kind == "podman-compose" and shutil.which("podman-compose"):
            code, out = _run(["podman-compose", "--version"])
            if code == 0:
                return Engine(
                    kind=kind,
                    compose=("podman-compose",),
                    info=("podman", "info", "--format", "{{.Version.Version}}"),
                    compose_version=_podman_compose_version(out),
                ), seen
            seen.append("podman-compose (not working)")
        elif kind == "docker-compose" and shutil.which("docker-compose"):
            code, out = _run(["docker-compose", "version", "--short"])
            if code == 0:
                return Engine(
                    kind=kind, compose=("docker-compose",), info=("docker", "info"), compose_version=out
                ), seen
            seen.append("docker-compose (not working)")
    return None, seen


def _podman_compose_version(out: str) -> str:
    """podman-compose's own version from `podman-compose --version` (which also prints podman's)."""
    for line in out.splitlines():
        if line.startswith("podman-compose version "):
            return line.split()[-1]
    return out.splitlines()[0] if out else "?"


Fact = tuple[str, bool, str, str]  # check name, passed, what was found, the fix

# Rootless podman reaches the outside through a user-mode network (slirp4netns, or pasta on podman
# 5), which carries a container's outbound TCP connection by making it anew from a socket of its
# own on the host: the TCP-AO option a sidecar sets on its socket protects only the leg to that
# user-mode stack, and the peer receives plain TCP.
ROOTLESS_TCPAO = (
    "rootless podman: the TCP-AO wire leg would leave through its user-mode network (slirp4netns or "
    "pasta), which makes each outbound TCP connection anew from a host socket of its own, without "
    "TCP-AO: the peer would receive plain TCP (a peer that requires TCP-AO refuses it)",
    "run the stack with rootful podman (as root) or Docker; or pass --skip tcp-ao-rootless to run it "
    "rootless anyway with the wire leg NOT protected, for a lab only",
)


def podman_mode() -> list[Fact]:
    """How podman runs here: rootful, or rootless with what a rootless user needs (subordinate UID
    and GID ranges in /etc/subuid and /etc/subgid, and newuidmap/newgidmap from the uidmap
    package). Read from `podman info`, as the engine itself sees it."""
    code, out = _run(["podman", "info", "--format", "{{.Host.Security.Rootless}}"])
    if code != 0:
        return []
    if out.strip() != "true":
        return [("podman-mode", True, "rootful (podman runs as root)", "")]
    user = _user_name()
    facts: list[Fact] = [("podman-mode", True, f"rootless (as {user})", "")]
    for db in ("subuid", "subgid"):
        ranges = _subordinate_ranges(Path("/etc") / db, user, os.getuid())
        facts.append(
            (
                f"podman-{db}",
                ranges > 0,
                f"/etc/{db} gives {user} {ranges} subordinate IDs"
                if ranges
                else f"/etc/{db} gives {user} no subordinate IDs",
                f"rootless podman maps container users into them: usermod --add-subuids 100000-165535 "
                f"--add-subgids 100000-165535 {user} (as root), then podman system migrate",
            )
        )
    facts += _rootless_runtime()
    for tool in ("newuidmap", "newgidmap"):
        facts.append(
            (
                f"podman-{tool}",
                shutil.which(tool) is not None,
                f"{tool} is " + ("installed" if shutil.which(tool) else "not installed"),
                f"install the uidmap package (apt-get install uidmap; dnf install shadow-utils): rootless "
                f"podman needs {tool} to map more than one user",
            )
        )
    return facts


def _rootless_runtime() -> list[Fact]:
    """What rootless podman 4.3 needs of the session to start a container on a network (found by
    starting one where these were missing): XDG_RUNTIME_DIR on a mount of its own, as
    systemd-logind makes it at login (podman bind-mounts it into its rootless network namespace:
    "failed to mount runtime directory for rootless netns" otherwise), and /dev/net/tun open to the
    user (slirp4netns makes the namespace's interface with it: "open(/dev/net/tun): Permission
    denied" otherwise)."""
    facts: list[Fact] = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    uid, gid = os.getuid(), os.getgid()
    mounted = bool(runtime) and _is_mount_point(Path(runtime))
    facts.append(
        (
            "podman-runtime-dir",
            mounted,
            f"XDG_RUNTIME_DIR={runtime} is a mount of its own"
            if mounted
            else (
                f"XDG_RUNTIME_DIR={runtime} is not a mount of its own"
                if runtime
                else "XDG_RUNTIME_DIR is not set"
            ),
            "log in through a session that makes it (ssh, machinectl shell USER@, su -l with pam_systemd), or "
            f"as root: mkdir -p /run/user/{uid} && mount -t tmpfs -o mode=700,uid={uid},gid={gid} tmpfs "
            f"/run/user/{uid}; then export XDG_RUNTIME_DIR=/run/user/{uid}",
        )
    )
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
        tun, detail = True, "/dev/net/tun opens for reading and writing"
    except OSError as exc:
        tun, detail = False, f"/dev/net/tun does not open: {exc.strerror}"
    facts.append(
        (
            "podman-tun",
            tun,
            detail,
            "rootless networking (slirp4netns) needs it: as root, chmod 0666 /dev/net/tun (udev's default "
            "mode; a container or chroot without udev leaves it 0600)",
        )
    )
    return facts


def _is_mount_point(path: Path) -> bool:
    """Whether `path` is where a file system is mounted (from /proc/self/mountinfo)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return os.path.ismount(path)
    target = str(path.resolve())
    return any(line.split(" ")[4] == target for line in lines if len(line.split(" ")) > 4)


def _user_name() -> str:
    """The name of the user this runs as, as /etc/subuid names it ($USER can be stale under sudo)."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry (a container's arbitrary UID): /etc/subuid may use the number
        return str(os.getuid())


def _subordinate_ranges(path: Path, user: str, uid: int) -> int:
    """How many subordinate IDs /etc/subuid (or subgid) gives the user (by name or by number)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    total = 0
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[2].isdigit():
            total += int(parts[2])
    return total


def host_security() -> list[Fact]:
    """The cgroup version and SELinux mode, facts the engines depend on (never failing checks)."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    cgroup = "v2 (unified)" if v2 else "v1: rootless podman cannot apply the services' resource limits on it"
    enforce = Path("/sys/fs/selinux/enforce")
    try:
        mode = "enforcing" if enforce.read_text().strip() == "1" else "permissive"
    except OSError:
        mode = "disabled (no /sys/fs/selinux)"
    selinux = f"SELinux {mode}" + (
        ": compose.podman.yaml relabels every file it mounts (:Z/:z); Docker labels nothing unless its "
        "daemon sets selinux-enabled (docs/quickstart.md#podman)"
        if mode == "enforcing"
        else ""
    )
    return [("cgroup", True, f"cgroup {cgroup}", ""), ("selinux", True, selinux, "")]


def tcp_ao_supported() -> tuple[bool, str]:
    """Probe the kernel: setsockopt(IPPROTO_TCP, TCP_AO_INFO) with an all-zero struct tcp_ao_info_opt
    on a fresh socket, which a TCP-AO kernel accepts (it only gives the socket its TCP-AO state) and
    any other refuses with ENOPROTOOPT. (getsockopt would hand the kernel an uninitialised buffer,
    whose reserved fields it refuses.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, TCP_AO_INFO, bytes(TCP_AO_INFO_SIZE))
        except OSError as exc:
            if exc.errno == errno.ENOPROTOOPT:
                return (
                    False,
                    f"this kernel ({os.uname().release}) lacks CONFIG_TCP_AO (setsockopt TCP_AO_INFO: ENOPROTOOPT)",
                )
            return True, f"TCP-AO socket option answered ({exc.strerror}); the kernel knows TCP-AO"
    return True, f"TCP-AO available (kernel {os.uname().release})"


def has_net_admin() -> bool:
    """Is CAP_NET_ADMIN in this process's bounding set (what an engine could grant a container)?"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return False


def port_free(address: str, port: int, proto: str = "TCP") -> bool:
    kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        # as servers do (docker-proxy included): connections closing in TIME_WAIT do not hold the port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def run_checks(
    *,
    ports: list[tuple[str, int, str, str | None]],
    tcpao: bool,
    engine: str | None = None,
    skip: frozenset[str] = frozenset(),
    bind_address: str = "127.0.0.1",
    disk_path: Path = Path("."),
    min_free: int = MIN_FREE_BYTES,
    registries: list[str] | None = None,
    subnet: str | None = None,
    own_interfaces: frozenset[str] = frozenset(),
    tcpao_root: bool = False,
    tcpao_keys: Sequence[Path] = (),
    cmac_keys: Collection[Path] = (),
) -> list[Check]:
    """Every check, in order; `ports` is [(service.port-name, host port, protocol, address)], an
    address of None meaning `bind_address`; `registries` are the hosts images must still be
    pulled from; `tcpao_root`: a sidecar runs as root with NET_ADMIN (tcpao.runAsRoot);
    `tcpao_keys`: the TCP-AO key files the sidecars will read (those not there yet are generated);
    `cmac_keys`: those of them a sidecar uses with cmac-aes (AES keys: 16, 24 or 32 bytes)."""
    out: list[Check] = []

    def add(name: str, ok: bool, detail: str, fix: str | None = None) -> None:
        if name in skip:
            out.append(Check(name=name, status="skipped", detail=f"skipped on request ({detail})"))
        else:
            out.append(
                Check(name=name, status="pass" if ok else "fail", detail=detail, fix=None if ok else fix)
            )

    found, seen = detect_engine(engine)
    looked = ", ".join(seen) if seen else "none of " + ", ".join(engine_order(engine)[0])
    if found is None:
        add(
            "engine",
            False,
            f"no container engine with Compose found (found: {looked})",
            "install podman with podman-compose (apt-get install podman; pip install podman-compose), or "
            "Docker Engine with the Compose v2 plugin (Docker's apt repository: docker-ce and "
            "docker-compose-plugin); --engine (or $RELEASER_ENGINE) picks one",
        )
    else:
        order, why = engine_order(engine)
        add(
            "engine",
            True,
            f"{found.kind} with Compose {found.compose_version} (order: {', '.join(order)}; {why})",
        )
        code, text = _run(list(found.info))
        first = text.splitlines()[0] if text else ""
        add(
            "engine-reachable",
            code == 0,
            f"{found.kind} engine {first}" if code == 0 else f"{found.kind} does not answer: {first}",
            "start the engine (systemctl start docker) or point DOCKER_HOST at a running one",
        )
        if code == 0 and found.podman:
            facts = podman_mode()
            for name, ok, detail, fix in facts:
                add(name, ok, detail, fix)
            if tcpao and any(n == "podman-mode" and d.startswith("rootless") for n, _, d, _ in facts):
                add("tcp-ao-rootless", False, *ROOTLESS_TCPAO)
    for name, ok, detail, fix in host_security():
        add(name, ok, detail, fix)
    for where, port, proto, address in ports:
        at = address or bind_address
        free = port_free(at, port, proto)
        add(
            f"port-{port}",
            free,
            f"{at}:{port}/{proto.lower()} for {where} is {'free' if free else 'in use'}",
            f"stop what listens on {port} (ss -{'u' if proto == 'UDP' else 't'}lnp 'sport = :{port}')"
            + (
                ", or choose another host port in .env"
                if address is None
                else "; a host-network service binds its own port, which .env cannot move"
            ),
        )
    if subnet:
        clashes = routed_elsewhere(subnet, own_interfaces)
        add(
            "subnet",
            not clashes,
            f"{subnet} (network.subnet) "
            + (
                "is routed to " + ", ".join(f"{i} ({r})" for i, r in clashes) + " already"
                if clashes
                else "is not used by another network on this host"
            ),
            "a network on this host already uses it, so the stack's traffic would go astray: remove it if it "
            "is stale (docker network prune; ip link delete "
            + (clashes[0][0] if clashes else "IFACE")
            + "), or choose another network.subnet in release.yaml",
        )
    for host in registries or []:
        ok, detail = registry_reachable(host)
        add(
            f"registry-{host}",
            ok,
            detail,
            f"images not yet on this host come from {host}: check the network or proxy, log in "
            "(docker login), or load them first (releaser airgap BUNDLE --to HOST)",
        )
    disk_free = shutil.disk_usage(disk_path if disk_path.exists() else Path(".")).free
    add(
        "disk",
        disk_free >= min_free,
        f"{disk_free / (1 << 30):.1f} GiB free under {disk_path.resolve()}",
        f"free at least {min_free / (1 << 30):.0f} GiB for images and volumes",
    )
    if tcpao:
        ok, detail = tcp_ao_supported()
        add(
            "tcp-ao",
            ok,
            detail,
            "use a Linux >= 6.7 kernel built with CONFIG_TCP_AO=y; or pass --skip tcp-ao to run the wire leg "
            "over plain TCP (NOT protected), for a lab only",
        )
    if tcpao and tcpao_root:
        add(
            "net-admin",
            has_net_admin(),
            "CAP_NET_ADMIN is "
            + ("available" if has_net_admin() else "not in this host's bounding set")
            + " (a sidecar has tcpao.runAsRoot)",
            "run the engine as root (rootless engines cannot grant NET_ADMIN to the sidecars), or drop "
            "tcpao.runAsRoot: the proxy needs no privilege",
        )
    for path in tcpao_keys:
        checked = _key_check(path, cmac=path in cmac_keys)
        if checked is not None:
            add(f"tcpao-key-{path.name}", *checked)
    return out


def _key_check(path: Path, *, cmac: bool = False) -> tuple[bool, str, str] | None:
    """(ok, detail, fix) of a TCP-AO key file as the proxy will read it; None when it is not there
    yet (the quickstart generates one that is right)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            key = f.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return (
            False,
            f"{path}: cannot be read ({exc.strerror})",
            "make it readable by the user running releaser",
        )
    problems, warnings = key_problems(key, size, cmac=cmac)
    detail = f"{path}: " + ("; ".join(problems) if problems else f"{size} bytes")
    detail += "".join(f"; note: it {w}" for w in warnings)
    fix = (
        (
            "write a key of 16 bytes (24 or 32 between Linux peers)"
            if cmac
            else f"write a key of 1-{MAX_KEY_BYTES} bytes"
        )
        + f", the same on both ends, into {path} "
        "(printf %s KEY > FILE); or delete the file to have a random one generated"
    )
    return not problems, detail, fix


def registry_reachable(host: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Does a TCP connection to the registry HOST[:PORT] (443 by default) open?"""
    name, sep, port = host.rpartition(":")
    if not sep or not port.isdigit():
        name, port = host, "443"
    try:
        with socket.create_connection((name, int(port)), timeout=timeout):
            return True, f"registry {host} answers"
    except OSError as exc:
        return False, f"registry {host} is not reachable ({exc.strerror or exc})"


def routed_elsewhere(subnet: str, own: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(interface, route) of the host's IPv4 routes that overlap `subnet`, on interfaces other
    than `own` (the stack's own bridge on a re-run). The default route is not counted."""
    import ipaddress
    import struct

    net = ipaddress.ip_network(subnet, strict=False)
    out = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        f = line.split()
        if len(f) < 8 or f[0] in own:
            continue
        dest = ipaddress.IPv4Address(struct.pack("<I", int(f[1], 16)))
        mask = ipaddress.IPv4Address(struct.pack("<I", int(f[7], 16)))
        if int(mask) == 0:
            continue
        route = ipaddress.ip_network(f"{dest}/{mask}", strict=False)
        if route.overlaps(net):
            out.append((f[0], str(route)))
    return out
