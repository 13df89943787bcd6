"""The TCP-AO wire leg of the BMP example, for real, inside the TCP-AO guest (tests/support/aoguest.py)
as root: the speaker's and the collector's network namespaces joined by a veth pair with the peer
addresses of the rendered configs; in each, the stand-in proxy's real mode (tcpao_ao.py) with the
rendered config and a key file at the path the config names; a sink behind the terminator, a client
in front of the initiator. Each case writes what it saw into the result file (JSON); the test on
the host judges it.

    python3 ao_scenario.py --speaker speaker.toml --collector collector.toml --out result.json \
        [--probe PROBE]

--probe: releaser's probe binary, whose `leg://PEER:PORT` check (the sidecars' health) is run in each
namespace while a session is held, after a sidecar is killed, and while a wrong key keeps the leg down.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROXY = HERE / "tcpao_ao.py"
PY = sys.executable
KEY = b"0123456789abcdef0123456789abcdef"  # 32 raw bytes, as the quickstart generates
WRONG = b"fedcba9876543210fedcba9876543210"


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def netstat(ns: str) -> dict[str, int]:
    """The namespace's TcpExt TCPAO* counters (/proc/net/netstat)."""
    lines = sh("ip", "netns", "exec", ns, "cat", "/proc/net/netstat").splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            pairs = dict(zip(head.split()[1:], values.split()[1:], strict=True))
            return {k: int(v) for k, v in pairs.items() if k.startswith("TCPAO")}
    return {}


def start(ns: str, mode: str, config: Path, key: bytes, work: Path, *extra: str) -> subprocess.Popen[bytes]:
    """The proxy in `ns`, its key file at the path the config names, in a mount namespace of its own
    (so that each side may read a different key at the same path)."""
    cfg = tomllib.loads(config.read_text())
    path = cfg["ao_policy"][0]["key_source"].split(":", 1)[1]
    own = work / f"{ns}-{mode}.key"
    own.write_bytes(key)
    inner = (
        f"mkdir -p {os.path.dirname(path)} && touch {path} && mount --bind {own} {path} && "
        f"exec {PY} {PROXY} --mode {mode} --config {config} {' '.join(extra)}"
    )
    log = (work / f"{ns}-{mode}.log").open("ab")
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", inner], stdout=log, stderr=subprocess.STDOUT
    )


def in_ns(ns: str, code: str, *args: str, timeout: float = 60) -> dict[str, object]:
    """Python `code` run in `ns`; it prints one JSON object."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, PY, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {"error": f"exit {out.returncode}: {out.stdout[-500:]} {out.stderr[-1500:]}"}


SINK = """
import socket, sys, json, threading
host, port = sys.argv[1].rsplit(":", 1)
srv = socket.create_server((host, int(port)))
def serve(c):
    with c:
        while data := c.recv(65536):
            c.sendall(data.upper())
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

CLIENT = """
import json, socket, struct, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
payload, dev, hold = sys.argv[2].encode(), sys.argv[3], float(sys.argv[4])
seen = {"segments": 0, "with_option_29": 0, "sample": ""}
stop = threading.Event()
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
cap.bind((dev, 0))
cap.settimeout(0.2)
def capture():
    while not stop.is_set():
        try:
            frame = cap.recv(65535)
        except OSError:
            continue
        ip = frame[14:]
        if len(ip) < 20 or ip[9] != 6:
            continue
        tcp = ip[(ip[0] & 15) * 4:]
        options = tcp[20:(tcp[12] >> 4) * 4]
        seen["segments"] += 1
        i = 0
        while i < len(options):
            kind = options[i]
            if kind in (0, 1):
                i += 1
                continue
            if i + 1 >= len(options) or options[i + 1] < 2:
                break
            if kind == 29:
                seen["with_option_29"] += 1
                seen["sample"] = options[i:i + options[i + 1]].hex()
            i += options[i + 1]
t = threading.Thread(target=capture, daemon=True)
t.start()
result = {"sent": payload.decode(), "received": "", "closed_by_peer": False, "error": ""}
try:
    c = socket.create_connection((host, int(port)), timeout=15)
    c.settimeout(15)
    c.sendall(payload)
    got = b""
    while len(got) < len(payload):
        data = c.recv(65536)
        if not data:
            result["closed_by_peer"] = True
            break
        got += data
    result["received"] = got.decode(errors="replace")
    if hold:
        print(json.dumps({"holding": True}), flush=True)
        c.settimeout(hold)
        start = time.monotonic()
        try:
            result["closed_by_peer"] = c.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            result["closed_by_peer"] = True
        except socket.timeout:
            pass
        result["closed_after"] = round(time.monotonic() - start, 2)
except OSError as exc:
    result["error"] = f"{type(exc).__name__}: {exc}"
time.sleep(0.5)
stop.set()
t.join()
result["capture"] = seen
print(json.dumps(result), flush=True)
"""


def wait_listening(ns: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = [
            line.split() for line in sh("ip", "netns", "exec", ns, "cat", "/proc/net/tcp").splitlines()[1:]
        ]
        if any(f[1].endswith(f":{port:04X}") and f[3] == "0A" for f in listening):  # st 0A: LISTEN
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} in {ns}")


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    procs.clear()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speaker", type=Path, required=True)
    ap.add_argument("--collector", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--probe", type=Path, help="releaser's probe binary: its leg:// check in each namespace")
    ap.add_argument(
        "--variant",
        nargs=3,
        action="append",
        default=[],
        metavar=("ALG", "SPEAKER", "COLLECTOR"),
        help="the configs rendered for another macAlgorithm",
    )
    args = ap.parse_args()
    work = args.out.parent
    speaker, collector = tomllib.loads(args.speaker.read_text()), tomllib.loads(args.collector.read_text())
    collector_ip = speaker["initiator"]["remote_ao"].rsplit(":", 1)[0]
    speaker_ip = collector["ao_policy"][0]["peer_ip"]
    plain_in = speaker["initiator"]["listen_plain"]
    ao_port = int(collector["terminator"]["listen_ao"].rsplit(":", 1)[1])
    forward = collector["terminator"]["forward_plain"]
    from releaser.quickstart.doctor import tcp_ao_supported

    result: dict[str, object] = {"kernel": os.uname().release, "doctor": list(tcp_ao_supported())}
    for ns in ("speaker", "collector"):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "veth-s", "type", "veth", "peer", "name", "veth-c")
    for dev, ns, ip in (("veth-s", "speaker", speaker_ip), ("veth-c", "collector", collector_ip)):
        sh("ip", "link", "set", dev, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    procs: list[subprocess.Popen[bytes]] = []
    sink = subprocess.Popen(["ip", "netns", "exec", "collector", PY, "-c", SINK, forward])
    plain_port = int(plain_in.rsplit(":", 1)[1])

    def client(name: str, hold: float = 0) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                "speaker",
                PY,
                "-c",
                CLIENT,
                plain_in,
                f"BMP-{name}",
                "veth-s",
                str(hold),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )

    def answer(proc: subprocess.Popen[str], first: str = "") -> dict[str, Any]:
        assert proc.stdout is not None
        rest = proc.stdout.read()
        proc.wait(timeout=120)
        try:
            return dict(json.loads((rest or first).strip().splitlines()[-1]))
        except (ValueError, IndexError):
            return {"error": f"client said {first!r} {rest!r}"}

    def legs() -> dict[str, dict[str, object]]:
        """The probe's leg check in each namespace: the sidecars' health, as their probe containers run it."""
        if args.probe is None:
            return {}
        peers = {"speaker": collector_ip, "collector": speaker_ip}
        out: dict[str, dict[str, object]] = {}
        for ns, peer in peers.items():
            proc = subprocess.run(
                ["ip", "netns", "exec", ns, str(args.probe), f"leg://{peer}:{ao_port}"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            out[ns] = {"code": proc.returncode, "said": (proc.stdout + proc.stderr).strip()}
        return out

    def case(
        name: str,
        speaker_key: bytes,
        collector_key: bytes,
        *,
        hold: float = 0,
        kill: str = "",
        configs: tuple[Path, Path] = (args.speaker, args.collector),
        terminator_late: float = 0,
        early_legs: bool = False,
    ) -> dict[str, Any]:
        before = {ns: netstat(ns) for ns in ("speaker", "collector")}
        terminator = None
        if not terminator_late:
            terminator = start("collector", "terminator", configs[1], collector_key, work)
            procs.append(terminator)
            wait_listening("collector", ao_port)
        initiator = start("speaker", "initiator", configs[0], speaker_key, work, "--retry-for", "20")
        procs.append(initiator)
        wait_listening("speaker", plain_port)
        if terminator_late:  # the initiator first: it retries until its terminator is up
            proc = client(name)
            time.sleep(terminator_late)
            procs.append(start("collector", "terminator", configs[1], collector_key, work))
            seen = answer(proc)
        elif kill:  # once the session is up (the client says it holds it), the sidecar is killed
            proc = client(name, hold)
            assert proc.stdout is not None
            first = proc.stdout.readline()
            up = legs() if "holding" in first else {}
            if "holding" in first:
                (terminator if kill == "terminator" else initiator).send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                time.sleep(1)
            down = legs()
            seen = answer(proc, first)
            seen["legs"] = {"held": up, "after_kill": down}
            if kill == "initiator":  # started again, it carries traffic again
                initiator.wait(timeout=10)
                procs.append(
                    start("speaker", "initiator", configs[0], speaker_key, work, "--retry-for", "20")
                )
                wait_listening("speaker", plain_port)
                seen["after_restart"] = answer(client(f"{name}-again"))
        elif early_legs:  # while the initiator tries to set the leg up
            proc = client(name)
            time.sleep(3)
            early = legs()
            seen = answer(proc)
            seen["legs"] = {"early": early}
        else:
            seen = answer(client(name))
        after = {ns: netstat(ns) for ns in ("speaker", "collector")}
        seen["counters"] = {
            ns: {k: after[ns].get(k, 0) - before[ns].get(k, 0) for k in after[ns]} for ns in after
        }
        stop_all(procs)
        result[name] = seen
        return seen

    case("good", KEY, KEY)
    case("wrong_key", KEY, WRONG, early_legs=True)
    case("terminator_dies", KEY, KEY, hold=30, kill="terminator")
    case("initiator_dies", KEY, KEY, hold=30, kill="initiator")
    case("initiator_first", KEY, KEY, terminator_late=4)
    case("newline_on_one_end", KEY + b"\n", KEY)
    # every algorithm the release accepts, with keys of 1, 16, 32 and 80 bytes: what the kernel takes
    # (TCP_AO_ADD_KEY), and for what it takes, a session
    accepts = (
        "import json, socket, sys\nsys.path.insert(0, sys.argv[1])\nfrom tcpao_ao import add_key\nout = {}\n"
        "for alg in sys.argv[2].split(','):\n    for n in (1, 16, 32, 80):\n        s = socket.socket()\n"
        "        try:\n            add_key(s, '10.0.0.1', b'k' * n, keyid=1, rnextkeyid=1, alg=alg)\n"
        "            out[f'{alg}/{n}'] = 0\n        except OSError as e:\n            out[f'{alg}/{n}'] = e.errno\n"
        "print(json.dumps(out))"
    )
    taken = in_ns("speaker", accepts, str(HERE), ",".join(v[0] for v in args.variant))
    for alg, speaker_cfg, collector_cfg in args.variant:
        for n in (1, 16, 32, 80):
            entry: dict[str, Any] = {"errno": taken.get(f"{alg}/{n}")}
            if entry["errno"] == 0:
                key = (KEY * 3)[:n]
                seen = case(f"{alg}-{n}", key, key, configs=(Path(speaker_cfg), Path(collector_cfg)))
                entry.update(
                    received=seen.get("received") == seen.get("sent", "").upper()
                    and bool(seen.get("received")),
                    good=seen["counters"]["collector"].get("TCPAOGood", 0),
                    bad=seen["counters"]["collector"].get("TCPAOBad", 0),
                    error=seen.get("error", ""),
                )
            result.setdefault("algorithms", {})[f"{alg}/{n}"] = entry  # type: ignore[union-attr]
    # plain TCP to the terminator from its policy's peer: no key offered, refused
    procs.append(start("collector", "terminator", args.collector, KEY, work))
    wait_listening("collector", ao_port)
    before = netstat("collector")
    result["plain_to_terminator"] = in_ns(
        "speaker",
        "import json, socket, sys\ntry:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
        "    print(json.dumps({'connected': True}))\nexcept OSError as e:\n    print(json.dumps({'connected': False, 'error': str(e)}))",
        collector_ip,
        str(ao_port),
    )
    result["plain_to_terminator"]["counters"] = {  # type: ignore[index]
        k: v - before.get(k, 0) for k, v in netstat("collector").items()
    }
    stop_all(procs)
    # the real proxy's initiator puts the remote's port into the key's address: what the kernel says
    code = (
        "import json, socket, sys\nsys.path.insert(0, sys.argv[1])\nfrom tcpao_ao import add_key\n"
        "s = socket.socket()\ntry:\n    add_key(s, sys.argv[2], b'k' * 32, keyid=1, rnextkeyid=1, alg='hmac-sha256', port=int(sys.argv[3]))\n"
        "    print(json.dumps({'accepted': True}))\nexcept OSError as e:\n    print(json.dumps({'accepted': False, 'errno': e.errno, 'error': e.strerror}))"
    )
    result["key_with_port"] = in_ns("speaker", code, str(HERE), collector_ip, str(ao_port))
    sink.kill()
    logs = {p.name: p.read_text()[-200_000:] for p in sorted(work.glob("*-*.log"))}
    result["logs"] = logs
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
