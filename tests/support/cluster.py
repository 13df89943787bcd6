"""A real Kubernetes cluster for the end-to-end tests, isolated from the host by namespaces.

Shape (docs/testing.md#the-kubernetes-cluster has the picture): one sandbox process
(tests/cluster/sandbox.sh, PID 1 of its own PID, network and mount namespaces) holds a bridge;
on it sit the registry (`registry.local:5000`, TLS from the cluster's CA: the cluster's ONLY image
source) and the nodes, each a network namespace with a PID and mount namespace of its own
(tests/cluster/node.sh) running containerd + runc, kubelet, kube-proxy and the NetworkPolicy
enforcer; the first node also runs etcd, kube-apiserver, kube-controller-manager and
kube-scheduler. CoreDNS and the storage provisioner run as pods, from images built here. The host
sees one veth into the bridge (the harness reaches the API server and the registry through it)
and nothing else: the nodes have no default route, so no registry but registry.local can be
reached. When the harness lets go of the sandbox (or dies), the kernel ends every process of it,
and with them go their mounts, network namespaces and netfilter rules; the cgroups kubelet made
are removed by `stop()` (and by the next start, after a crash).

Every component is upstream at a pinned version, built by tests/support/cluster_build.py.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import string
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import cluster_build

HERE = Path(__file__).resolve().parents[1] / "cluster"
REGISTRY = "registry.local:5000"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
DNS_IP = "10.96.0.10"
CGROUP_PARENT = "releaser-cluster"
# kubelet's kernel tunables (k8s.io/component-helpers/node/util/sysctl), shown to each node read-only
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}
NEEDED_TOOLS = ("unshare", "nsenter", "ip", "iptables", "ipset", "nft", "docker-registry", "skopeo")
NEEDED_CGROUPS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer")


class ClusterError(RuntimeError):
    """The cluster could not start or answer; the message names the component and its log."""


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    control_plane: bool


@dataclass
class Cluster:
    state: Path
    workers: int = 1
    subnet: str = "10.201.0"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = self.state.resolve()
        self.build = Path()
        self.nodes = [Node("control-plane", f"{self.subnet}.10", True)] + [
            Node(f"worker{i}" if self.workers > 1 else "worker", f"{self.subnet}.{11 + i}", False)
            for i in range(1, self.workers + 1)
        ]
        self.registry_ip = f"{self.subnet}.5"
        self.host_ip = f"{self.subnet}.1"
        self.host_if = f"rlc{self.id}"
        self.pki = self.state / "pki"
        self.kubeconfig = self.state / "kubeconfigs" / "admin.conf"
        self.ca = self.pki / "ca.crt"
        self.cert_dir = self.pki / "ca-dir"  # skopeo's --cert-dir form of the CA
        self.hosts_file = self.state / "hosts"
        self._sandbox: subprocess.Popen[bytes] | None = None
        self._spid = 0
        self._children: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 420) -> Cluster:
        t0 = time.monotonic()
        self.build = cluster_build.ensure_built(progress=True)
        self.timings["build"] = time.monotonic() - t0
        self._preflight()
        reap_stale()
        self.state.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        try:
            self._write_pki()
            self._write_configs()
            self._start_sandbox()
            self._start_registry()
            self._push_infra_images()
            for node in self.nodes:
                self._start_node(node)
            self._wait(
                self._api_ready, 120, "the API server to answer /readyz", "control-plane", "kube-apiserver"
            )
            self._wait(self._nodes_ready, 180, "every node to be Ready", None, "kubelet")
            self.apply(self._addons())
            self._wait(
                self._addons_ready,
                max(60.0, timeout - (time.monotonic() - t)),
                "CoreDNS and the provisioner",
                None,
                None,
            )
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t
        return self

    def stop(self) -> None:
        """End the sandbox (every process, mount and network namespace of the cluster with it),
        remove kubelet's cgroups and, unless KEEP_CLUSTER=1, the state directory."""
        if self._sandbox is not None:
            try:
                if self._sandbox.stdin:
                    self._sandbox.stdin.write(b"stop\n")
                    self._sandbox.stdin.close()
            except OSError:
                pass
            try:
                self._sandbox.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._sandbox.kill()
                self._sandbox.wait(timeout=10)
            self._sandbox = None
        for child in self._children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        self._children.clear()
        _remove_cgroups(f"{CGROUP_PARENT}/{self.id}")
        if os.environ.get("KEEP_CLUSTER") != "1":
            shutil.rmtree(self.state, ignore_errors=True)

    # ------------------------------------------------------------------ use
    def kubectl(self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None) -> str:
        proc = self.kubectl_run(*args, stdin=stdin, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def kubectl_run(
        self, *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """kubectl, its exit status and both streams as they are (for refusals a test expects)."""
        return subprocess.run(
            [str(self.build / "bin" / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            input=stdin,
        )

    def kjson(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, manifests: str) -> None:
        self.kubectl("apply", "-f", "-", stdin=manifests)

    def site_cmd(self, *cmd: str) -> list[str]:
        """`cmd` as the site's admin host runs it: where registry.local names the cluster's registry
        (a private mount namespace with its own /etc/hosts; the host's is never touched)."""
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            str(self.hosts_file),
            *cmd,
        ]

    def node_cmd(self, node: str, *cmd: str) -> list[str]:
        """`cmd` inside a node: its network, mount and PID namespaces (crictl, ip, nft ...)."""
        pid = _find_pid(f"node.sh {self.state} {node} ")
        return ["nsenter", "-t", str(pid), "-m", "-n", "-p", "-u", "--", *cmd]

    def node_run(self, node: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.node_cmd(node, *cmd), capture_output=True, text=True, check=False, timeout=60
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"{' '.join(cmd)} on {node} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def log(self, node: str, component: str) -> Path:
        return self.state / "nodes" / node / "logs" / f"{component}.log"

    def diagnose(self, node: str | None = None, component: str | None = None, lines: int = 30) -> str:
        """What went wrong, for an error message: components that exited, the named component's log
        tail, recent warning events."""
        out: list[str] = []
        for n in self.nodes:
            exits = self.state / "nodes" / n.name / "logs" / "exits"
            if exits.exists() and exits.read_text().strip():
                out.append(f"{n.name}: {exits.read_text().strip()}")
                for line in exits.read_text().splitlines():
                    comp = line.split()[0]
                    out.append(_tail(self.log(n.name, comp), lines))
        for n in self.nodes:
            if component and (node is None or node == n.name) and self.log(n.name, component).exists():
                out.append(_tail(self.log(n.name, component), lines))
        if self.kubeconfig.exists() and self.build != Path():
            proc = subprocess.run(
                [str(self.build / "bin" / "kubectl"), "--kubeconfig", str(self.kubeconfig), "get", "events", "-A",
                 "--field-selector", "type=Warning", "--sort-by", ".lastTimestamp"],
                capture_output=True, text=True, check=False, timeout=20,
            )  # fmt: skip
            if proc.returncode == 0 and proc.stdout.strip():
                out.append("warning events:\n" + "\n".join(proc.stdout.splitlines()[-15:]))
        return "\n".join(out)

    # ------------------------------------------------------------------ steps
    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError(
                "the test cluster needs root (namespaces, cgroups, mounts); run the e2e tests as root"
            )
        missing = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
        if missing:
            raise ClusterError(
                f"missing {', '.join(missing)}: scripts/setup.sh installs them (Debian packages)"
            )
        mounted = (
            {p.name for p in Path("/sys/fs/cgroup").iterdir()} if Path("/sys/fs/cgroup").is_dir() else set()
        )
        lacking = [c for c in NEEDED_CGROUPS if c not in mounted]
        if lacking:
            raise ClusterError(
                f"this host's cgroup hierarchy (/sys/fs/cgroup) lacks the {', '.join(lacking)} controller(s) "
                "that kubelet and runc need; the cluster cannot run here"
            )
        for net in (self.subnet + ".0/24", SERVICE_CIDR, POD_CIDR):
            route = subprocess.run(
                ["ip", "route", "show", net], capture_output=True, text=True, check=False
            ).stdout
            if route.strip():
                raise ClusterError(
                    f"{net} is already routed on this host ({route.strip()}): pick another subnet"
                )

    def _write_pki(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"releaser-test-cluster-{self.id}")])
        now = dt.datetime.now(dt.UTC)
        ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_pair(self.pki / "ca", ca, ca_key)
        self.cert_dir.mkdir(exist_ok=True)
        shutil.copy(self.ca, self.cert_dir / "ca.crt")
        self._ca = (ca, ca_key)
        cp = self.nodes[0].ip
        self._issue(
            "apiserver",
            "kube-apiserver",
            dns=["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                 "localhost", "control-plane"],
            ips=["10.96.0.1", cp, "127.0.0.1"],
            server=True,
        )  # fmt: skip
        self._issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", orgs=["system:masters"])
        self._issue("admin", "releaser-test-admin", orgs=["system:masters"])
        self._issue("controller-manager", "system:kube-controller-manager")
        self._issue("scheduler", "system:kube-scheduler")
        self._issue("kube-proxy", "system:kube-proxy")
        # the enforcer reads pods, namespaces and policies cluster-wide: admin, as a test cluster may
        self._issue("kube-router", "kube-router", orgs=["system:masters"])
        self._issue("registry", "registry.local", dns=["registry.local"], ips=[self.registry_ip], server=True)
        for node in self.nodes:
            self._issue(f"kubelet-{node.name}", f"system:node:{node.name}", orgs=["system:nodes"])
            self._issue(
                f"kubelet-serving-{node.name}", node.name, dns=[node.name], ips=[node.ip], server=True
            )
        sa = ec.generate_private_key(ec.SECP256R1())
        (self.pki / "sa.key").write_bytes(_key_pem(sa))
        (self.pki / "sa.pub").write_bytes(
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _issue(
        self,
        file: str,
        cn: str,
        *,
        orgs: list[str] | None = None,
        dns: list[str] | None = None,
        ips: list[str] | None = None,
        server: bool = False,
    ) -> None:
        ca, ca_key = self._ca
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs or []]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        now = dt.datetime.now(dt.UTC)
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        _write_pair(self.pki / file, b.sign(ca_key, hashes.SHA256()), key)

    def _kubeconfig(self, name: str, user: str) -> Path:
        path = self.state / "kubeconfigs" / f"{name}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
        conf = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "releaser-test",
                    "cluster": {
                        "server": f"https://{self.nodes[0].ip}:6443",
                        "certificate-authority-data": b64(self.ca),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(self.pki / f"{user}.crt"),
                        "client-key-data": b64(self.pki / f"{user}.key"),
                    },
                }
            ],
            "contexts": [{"name": "releaser-test", "context": {"cluster": "releaser-test", "user": user}}],
            "current-context": "releaser-test",
        }
        path.write_text(yaml.safe_dump(conf))
        path.chmod(0o600)
        return path

    def _write_configs(self) -> None:
        b = self.build / "bin"
        p = self.pki
        for name, user in (
            ("admin", "admin"),
            ("controller-manager", "controller-manager"),
            ("scheduler", "scheduler"),
            ("kube-proxy", "kube-proxy"),
            ("kube-router", "kube-router"),
        ):
            self._kubeconfig(name, user)
        self.hosts_file.write_text(f"127.0.0.1 localhost\n{self.registry_ip} registry.local\n")
        reg = self.state / "registry"
        (reg / "data").mkdir(parents=True, exist_ok=True)
        (reg / "config.yml").write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {
                        "filesystem": {"rootdirectory": str(reg / "data")},
                        "delete": {"enabled": True},
                    },
                    "http": {
                        "addr": f"{self.registry_ip}:5000",
                        "secret": uuid.uuid4().hex,
                        "tls": {"certificate": str(p / "registry.crt"), "key": str(p / "registry.key")},
                    },
                }
            )
        )
        for node in self.nodes:
            self._write_node(node, b)

    def _write_node(self, node: Node, b: Path) -> None:
        n = self.state / "nodes" / node.name
        c = n / "config"
        p = self.pki
        for d in (c / "cni", n / "logs", n / "kubelet", n / "containerd", n / "local-path", n / "cni-ipam"):
            d.mkdir(parents=True, exist_ok=True)
        (c / "hosts").write_text(
            f"127.0.0.1 localhost\n{node.ip} {node.name}\n{self.registry_ip} registry.local\n"
        )
        (c / "resolv.conf").write_text(f"nameserver {self.host_ip}\noptions timeout:1 attempts:1\n")
        (c / "sysctls").write_text("".join(f"{k} {v}\n" for k, v in KUBELET_SYSCTLS.items()))
        (c / "cgroup-root").write_text(f"{CGROUP_PARENT}/{self.id}/{node.name}\n")
        certs = c / "certs.d" / REGISTRY
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "hosts.toml").write_text(
            f'server = "https://{REGISTRY}"\n\n[host."https://{REGISTRY}"]\n'
            f'  capabilities = ["pull", "resolve"]\n  ca = "{self.ca}"\n'
        )
        (c / "containerd.toml").write_text(
            f"""version = 3
root = "{n / "containerd"}"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{REGISTRY}/{cluster_build.INFRA_IMAGES["pause"]}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{c / "certs.d"}"

[plugins.'io.containerd.cri.v1.runtime']
  # no CAP_SYS_RESOURCE here: a container's oom_score_adj may not go below containerd's own
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    BinaryName = "{b / "runc"}"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{self.build / "cni"}"]
    conf_dir = "{c / "cni"}"
    use_internal_loopback = true
"""
        )
        (c / "cni.conflist.in").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "releaser",
                    "plugins": [
                        {
                            "type": "ptp",
                            "mtu": 1500,
                            "ipMasq": False,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": "@IPAM@",
                                "ranges": [[{"subnet": "@SUBNET@"}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=1,
            )
        )
        kubelet_conf = self._kubeconfig(f"kubelet-{node.name}", f"kubelet-{node.name}")
        (c / "kubelet.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "failCgroupV1": False,
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{CGROUP_PARENT}/{self.id}/{node.name}",
                    "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(self.ca)},
                    },
                    "authorization": {"mode": "Webhook"},
                    "clusterDNS": [DNS_IP],
                    "clusterDomain": "cluster.local",
                    "resolvConf": str(c / "resolv.conf"),
                    "tlsCertFile": str(p / f"kubelet-serving-{node.name}.crt"),
                    "tlsPrivateKeyFile": str(p / f"kubelet-serving-{node.name}.key"),
                    "failSwapOn": False,
                    "serializeImagePulls": False,
                    "podLogsDir": "/var/log/pods",
                    "evictionHard": {
                        "memory.available": "50Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                        "nodefs.inodesFree": "1%",
                    },
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "healthzBindAddress": "127.0.0.1",
                    "volumeStatsAggPeriod": "0s",
                    "nodeStatusReportFrequency": "10s",
                    "shutdownGracePeriod": "0s",
                }
            )
        )
        args: dict[str, list[str]] = {
            "containerd": ["--config", str(c / "containerd.toml"), "--log-level", "warn"],
            "kubelet": [
                f"--config={c / 'kubelet.yaml'}",
                f"--kubeconfig={kubelet_conf}",
                f"--root-dir={n / 'kubelet'}",
                f"--hostname-override={node.name}",
                f"--node-ip={node.ip}",
                f"--node-labels=releaser.dev/test-node={node.name}",
                "--v=1",
            ],
            "kube-proxy": [f"--config={c / 'kube-proxy.yaml'}", "--v=1"],
            "kube-router": [
                f"--kubeconfig={self.state / 'kubeconfigs' / 'kube-router.conf'}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--enable-cni=false",
                "--enable-ipv6=false",
                f"--hostname-override={node.name}",
                "--metrics-port=0",
                "--v=1",
            ],
        }
        (c / "kube-proxy.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "mode": "nftables",
                    "clientConnection": {"kubeconfig": str(self.state / "kubeconfigs" / "kube-proxy.conf")},
                    "hostnameOverride": node.name,
                    "clusterCIDR": POD_CIDR,
                    "conntrack": {"maxPerCore": 0, "min": 0},
                    "metricsBindAddress": "127.0.0.1:10249",
                    "healthzBindAddress": "127.0.0.1:10256",
                }
            )
        )
        components = ["containerd", "kubelet", "kube-proxy", "kube-router"]
        if node.control_plane:
            args |= self._control_plane_args(n)
            components = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", *components]
        for name, a in args.items():
            (c / f"{name}.args").write_text("".join(f"{x}\n" for x in a))
        (c / "components").write_text("".join(f"{x}\n" for x in components))

    def _control_plane_args(self, n: Path) -> dict[str, list[str]]:
        p = self.pki
        k = self.state / "kubeconfigs"
        cp = self.nodes[0].ip
        return {
            "etcd": [
                "--name=control-plane",
                f"--data-dir={n / 'etcd'}",
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=control-plane=http://127.0.0.1:2380",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            "kube-apiserver": [
                "--etcd-servers=http://127.0.0.1:2379",
                f"--advertise-address={cp}",
                "--bind-address=0.0.0.0",
                "--secure-port=6443",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--client-ca-file={p / 'ca.crt'}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={p / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
            "kube-controller-manager": [
                f"--kubeconfig={k / 'controller-manager.conf'}",
                f"--authentication-kubeconfig={k / 'controller-manager.conf'}",
                f"--authorization-kubeconfig={k / 'controller-manager.conf'}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                "--allocate-node-cidrs=true",
                f"--cluster-cidr={POD_CIDR}",
                "--node-cidr-mask-size=24",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--cluster-signing-cert-file={p / 'ca.crt'}",
                f"--cluster-signing-key-file={p / 'ca.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                f"--service-account-private-key-file={p / 'sa.key'}",
                "--use-service-account-credentials=true",
                "--controllers=*,bootstrapsigner,tokencleaner",
                "--v=1",
            ],
            "kube-scheduler": [
                f"--kubeconfig={k / 'scheduler.conf'}",
                f"--authentication-kubeconfig={k / 'scheduler.conf'}",
                f"--authorization-kubeconfig={k / 'scheduler.conf'}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                "--v=1",
            ],
        }

    def _nsenter(self, *cmd: str, pid_ns: bool = False) -> list[str]:
        return ["nsenter", "-t", str(self._spid), "-m", "-n", *(["-p"] if pid_ns else []), "--", *cmd]

    def _sh(self, cmd: list[str], what: str) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode != 0:
            raise ClusterError(f"{what}: {' '.join(cmd)} -> {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def _start_sandbox(self) -> None:
        ready = self.state / "sandbox.ready"
        log = (self.state / "sandbox.log").open("ab")
        self._sandbox = subprocess.Popen(
            ["unshare", "--pid", "--net", "--mount", "--fork", "--kill-child", "--propagation", "private",
             "bash", str(HERE / "sandbox.sh"), str(ready)],
            stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        _wait_plain(lambda: ready.exists() or self._sandbox is None or self._sandbox.poll() is not None, 15)
        if not ready.exists():
            raise ClusterError(f"the sandbox did not start:\n{_tail(self.state / 'sandbox.log', 20)}")
        children = Path(f"/proc/{self._sandbox.pid}/task/{self._sandbox.pid}/children").read_text().split()
        self._spid = int(children[0])
        # the host's one link into the cluster
        self._sh(
            [
                "ip",
                "link",
                "add",
                self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                "uplink",
                "netns",
                str(self._spid),
            ],
            "host link",
        )
        self._sh(["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if], "host link")
        self._sh(["ip", "link", "set", self.host_if, "up"], "host link")
        self._sh(self._nsenter("ip", "link", "set", "uplink", "master", "br0", "up"), "sandbox bridge")
        for name, ip in [("registry", self.registry_ip), *[(n.name, n.ip) for n in self.nodes]]:
            veth = f"v-{name}"[:15]
            self._sh(self._nsenter("ip", "netns", "add", name), f"netns {name}")
            self._sh(
                self._nsenter(
                    "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name
                ),
                name,
            )
            self._sh(self._nsenter("ip", "link", "set", veth, "master", "br0", "up"), name)
            self._sh(self._nsenter("ip", "-n", name, "addr", "add", f"{ip}/24", "dev", "eth0"), name)
            self._sh(self._nsenter("ip", "-n", name, "link", "set", "eth0", "up"), name)
            self._sh(self._nsenter("ip", "-n", name, "link", "set", "lo", "up"), name)

    def _spawn(self, name: str, cmd: list[str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("ab")
        self._children.append(
            subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        )

    def _start_registry(self) -> None:
        reg = self.state / "registry"
        self._spawn(
            "registry",
            self._nsenter(
                "nsenter",
                "--net=/run/netns/registry",
                "docker-registry",
                "serve",
                str(reg / "config.yml"),
                pid_ns=True,
            ),
            reg / "registry.log",
        )

        def up() -> bool:
            proc = subprocess.run(
                ["curl", "-sf", "--cacert", str(self.ca), "--resolve", f"registry.local:5000:{self.registry_ip}",
                 f"https://{REGISTRY}/v2/"],
                capture_output=True, check=False,
            )  # fmt: skip
            return proc.returncode == 0

        if not _wait_plain(up, 20):
            raise ClusterError(f"registry.local:5000 did not answer:\n{_tail(reg / 'registry.log', 20)}")

    def _push_infra_images(self) -> None:
        layout = self.build / "images"
        for name, ref in cluster_build.INFRA_IMAGES.items():
            cmd = ["skopeo", "copy", "--quiet", "--preserve-digests", f"--dest-cert-dir={self.cert_dir}",
                   f"oci:{layout}:{name}", f"docker://{self.registry_ip}:5000/{ref}"]  # fmt: skip
            self._sh(cmd, f"pushing the cluster's {name} image")

    def _start_node(self, node: Node) -> None:
        cmd = self._nsenter(
            "nsenter", f"--net=/run/netns/{node.name}",
            "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--mount-proc", "--propagation", "private",
            "bash", str(HERE / "node.sh"), str(self.state), node.name, str(self.build / "bin"),
            pid_ns=True,
        )  # fmt: skip
        self._spawn(node.name, cmd, self.state / "nodes" / node.name / "logs" / "node.log")

    # ------------------------------------------------------------------ readiness
    def _wait(
        self, cond: Callable[[], bool], timeout: float, what: str, node: str | None, component: str | None
    ) -> None:
        t = time.monotonic()
        if not _wait_plain(cond, timeout):
            raise ClusterError(
                f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnose(node, component)}\n"
                f"(logs: {self.state}/nodes/<node>/logs; KEEP_CLUSTER=1 keeps them)"
            )
        self.timings[what] = time.monotonic() - t

    def _api_ready(self) -> bool:
        self._check_exits()
        proc = subprocess.run(
            [str(self.build / "bin" / "kubectl"), "--kubeconfig", str(self.kubeconfig), "get", "--raw", "/readyz"],
            capture_output=True, text=True, check=False, timeout=10,
        )  # fmt: skip
        return proc.returncode == 0

    def _nodes_ready(self) -> bool:
        self._check_exits()
        try:
            nodes = self.kjson("get", "nodes")["items"]
        except (ClusterError, ValueError):
            return False
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
        }
        return ready == {n.name for n in self.nodes}

    def _addons_ready(self) -> bool:
        self._check_exits()
        for ns, name in (("kube-system", "coredns"), ("local-path-storage", "local-path-provisioner")):
            d = self.kjson("get", "deployment", "-n", ns, name)
            if d.get("status", {}).get("availableReplicas", 0) < d["spec"]["replicas"]:
                return False
        return True

    def _check_exits(self) -> None:
        for n in self.nodes:
            exits = self.state / "nodes" / n.name / "logs" / "exits"
            if exits.exists() and exits.read_text().strip():
                comp = exits.read_text().split()[0]
                raise ClusterError(
                    f"{comp} on node {n.name} stopped: {exits.read_text().strip()}\n"
                    f"{_tail(self.log(n.name, comp), 40)}"
                )

    def _addons(self) -> str:
        reg = REGISTRY
        img = cluster_build.INFRA_IMAGES
        node_paths = [
            {"node": n.name, "paths": [str(self.state / "nodes" / n.name / "local-path")]} for n in self.nodes
        ]
        return string.Template((HERE / "addons.yaml").read_text()).substitute(
            coredns_image=f"{reg}/{img['coredns']}",
            provisioner_image=f"{reg}/{img['local-path-provisioner']}",
            helper_image=f"{reg}/{img['busybox']}",
            dns_ip=DNS_IP,
            node_path_map=json.dumps({"nodePathMap": node_paths}),
        )


# ---------------------------------------------------------------------- helpers
def _write_pair(stem: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    stem.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    stem.with_suffix(".key").write_bytes(_key_pem(key))
    stem.with_suffix(".key").chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _wait_plain(cond: Callable[[], bool], timeout: float, poll: float = 0.5) -> bool:
    end = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(poll)


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return f"({path}: no log)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path} (last {len(text)} lines)\n" + "\n".join(text)


def _find_pid(marker: str) -> int:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and cmdline.startswith("bash "):
            return int(proc.name)
    raise ClusterError(f"no process runs {marker!r}: is the cluster up?")


def _remove_cgroups(rel: str, timeout: float = 20) -> None:
    """rmdir kubelet's cgroups under `rel` in every v1 controller, deepest first (a cgroup goes once
    its processes are gone, which takes a moment after the sandbox ends)."""
    end = time.monotonic() + timeout
    for ctl in Path("/sys/fs/cgroup").iterdir():
        top = ctl / rel
        if not top.is_dir():
            continue
        while top.exists():
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for d in [*dirs, top]:
                with contextlib.suppress(OSError):
                    d.rmdir()
            if time.monotonic() > end:
                break
            if top.exists():
                time.sleep(0.2)
        parent = top.parent
        with contextlib.suppress(OSError):
            parent.rmdir()  # releaser-cluster/ itself, when no other cluster uses it


def reap_stale() -> None:
    """Leftovers of a cluster whose harness was killed before its stop(): kubelet's cgroups (its
    processes, mounts and links went with its sandbox)."""
    for ctl in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}"):
        for d in ctl.iterdir():
            if d.is_dir() and not any(_cgroup_busy(x) for x in [d, *d.rglob("*")] if x.is_dir()):
                _remove_cgroups(f"{CGROUP_PARENT}/{d.name}", timeout=2)


def _cgroup_busy(d: Path) -> bool:
    try:
        return bool((d / "cgroup.procs").read_text().strip())
    except OSError:
        return False


def stop_signal_safe(cluster: Cluster) -> None:
    """Stop the cluster on SIGTERM too (CI's timeout), not only at the end of the session."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: object) -> None:
        cluster.stop()
        if callable(previous):
            previous(signum, frame)  # type: ignore[arg-type]
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, handler)
