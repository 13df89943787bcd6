"""kind end to end: the example's chart on a real Kubernetes cluster, from the signed bundle.

Runs wherever `kind`, `kubectl` and a Docker engine exist (`make e2e-kind`, and the
workflow .github/workflows/e2e-kind.yml on a hosted runner). Elsewhere it skips and says
why: it is never the only proof (the offline checks in tests/test_chart.py are).

1. a 3-node kind cluster (control plane + 2 workers) with a local registry container
   (`kind-registry`, localhost:5001 from the host and the nodes);
2. runnable stand-in images pushed to a "publisher" registry, locked, bundled, signed;
   `releaser airgap BUNDLE --to localhost:5001` verifies and loads the bundle;
3. the namespace with the Pod Security labels docs/security.md recommends, the TCP-AO
   node label on the workers, the TCP-AO key Secret; `helm install` of the chart pulled
   from the registry by digest with values-airgap.yaml;
4. every workload rolls out and every pod is Ready (probes green); the pods run the
   locked digests from localhost:5001; PDBs and NetworkPolicies are the rendered ones;
   the speaker's lines reach the collector through both hostNetwork sidecars;
5. NetworkPolicy is enforced (kindnet >= v0.24 enforces it): a pod in the release
   namespace cannot reach the bus's monitor port, a pod in `monitoring` can;
6. `helm upgrade` with a changed collector value replaces only the collector's pod;
   `helm rollback` restores it; the speaker's PVC (and the counter in it) survive both;
7. examples/platform from its own bundle, in a namespace enforcing the restricted Pod Security
   standard: `helm install --wait` succeeds only once its post-install migration Job completed;
   the store StatefulSet has 3 ready replicas with a claim each, the Ingress and the
   HorizontalPodAutoscaler exist, every other pod is Ready, the worker writes only to scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, TOOLS
from tests.support import images
from tests.support.registry import RegistryServer
from tests.support.stack import wait_for as _wait_for

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")
CLUSTER = "releaser-e2e"
NS = "bmp"
LOCAL = "localhost:5001"
KIND = shutil.which("kind")
KUBECTL = shutil.which("kubectl") or (
    str(TOOLS / "bin" / "kubectl") if (TOOLS / "bin" / "kubectl").exists() else None
)
HELM = str(TOOLS / "bin" / "helm3")


def _why_not() -> str | None:
    if KIND is None:
        return "kind is not installed (it cannot be had on this machine; `make e2e-kind` where kind and Docker exist)"
    if KUBECTL is None:
        return "kubectl is not installed (scripts/setup.sh puts one in .tools/bin)"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "no Docker engine answers (`docker info` failed); kind needs one"
    if images.have_tools():
        return f"missing {', '.join(images.have_tools())}"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


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


def kubectl(*args: str, check: bool = True) -> str:
    return sh(str(KUBECTL), "--context", f"kind-{CLUSTER}", *args, check=check)


def kjson(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def wait_for(cond: Any, timeout: float = 180, what: str = "") -> Any:
    return _wait_for(cond, timeout, what, poll=2)


KIND_CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
nodes:
- role: control-plane
- role: worker
- role: worker
"""


def site_values(collector_node: str, speaker_node: str, collector_ip: str, speaker_ip: str) -> dict[str, Any]:
    """The site's own values: which worker runs which TCP-AO peer, and the peers' node addresses.
    (tests/test_chart.py renders the chart with these offline, on Helm 3 and 4.)"""
    return {
        "services": {
            "collector": {
                "nodeSelector": {"kubernetes.io/hostname": collector_node},
                "tcpao": {"peerIP": speaker_ip},
            },
            "speaker": {
                "nodeSelector": {"kubernetes.io/hostname": speaker_node},
                "tcpao": {"remote": f"{collector_ip}:1790", "peerIP": collector_ip},
            },
        }
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("kind")
    (work / "kind.yaml").write_text(KIND_CONFIG)
    sh("kind", "delete", "cluster", "--name", CLUSTER, check=False)
    sh(
        "kind",
        "create",
        "cluster",
        "--name",
        CLUSTER,
        "--config",
        str(work / "kind.yaml"),
        "--wait",
        "180s",
        timeout=900,
    )
    try:
        if not sh("docker", "ps", "-q", "--filter", "name=^kind-registry$").strip():
            sh("docker", "rm", "-f", "kind-registry", check=False)
            sh(
                "docker",
                "run",
                "-d",
                "--restart=always",
                "-p",
                "127.0.0.1:5001:5000",
                "--network",
                "bridge",
                "--name",
                "kind-registry",
                "registry:2",
            )
        sh("docker", "network", "connect", "kind", "kind-registry", check=False)
        for node in sh("kind", "get", "nodes", "--name", CLUSTER).split():
            d = f"/etc/containerd/certs.d/{LOCAL}"
            sh("docker", "exec", node, "mkdir", "-p", d)
            sh(
                "docker",
                "exec",
                "-i",
                node,
                "cp",
                "/dev/stdin",
                f"{d}/hosts.toml",
                stdin='[host."http://kind-registry:5000"]\n',
            )
        yield {"work": work}
    finally:
        if os.environ.get("KEEP_KIND") != "1":
            sh("kind", "delete", "cluster", "--name", CLUSTER, check=False)
            sh("docker", "rm", "-f", "kind-registry", check=False)


@pytest.fixture(scope="module")
def installed(cluster: dict[str, Any]) -> dict[str, Any]:
    work: Path = cluster["work"]
    env = {
        **os.environ,
        "RELEASER_CACHE": str(work / "cache"),
        "RELEASER_KEY_PASSPHRASE": "e2e-only-passphrase",
    }
    publisher = RegistryServer(work / "publisher").start()
    try:
        rel = images.standin_release(work, publisher.host)
        sh(RELEASER, "lock", str(rel), env=env)
        sh(RELEASER, "keygen", "--out-dir", str(work / "keys"), env=env)
        bundle = work / "bundle.tar.zst"
        sh(
            RELEASER,
            "bundle",
            str(rel),
            "--signing-key",
            str(work / "keys/releaser.key"),
            "--out-file",
            str(bundle),
            env=env,
        )
    finally:
        publisher.stop()  # from here on only the bundle and the cluster's registry exist
    sh(
        RELEASER,
        "airgap",
        str(bundle),
        "--to",
        LOCAL,
        "--key",
        str(work / "keys/releaser.pub"),
        "--out-dir",
        str(work / "site"),
        env=env,
    )

    kubectl("create", "namespace", NS)
    kubectl(
        "label",
        "namespace",
        NS,
        "pod-security.kubernetes.io/enforce=privileged",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/audit=restricted",
    )
    kubectl("create", "namespace", "monitoring")
    workers = [n for n in sh("kind", "get", "nodes", "--name", CLUSTER).split() if "worker" in n]
    for node in workers:
        kubectl("label", "node", node, "releaser.dev/tcp-ao=true")
    collector_node = sorted(workers)[0]
    node_ip = next(
        a["address"]
        for a in kjson("get", "node", collector_node)["status"]["addresses"]
        if a["type"] == "InternalIP"
    )
    speaker_ip = next(
        a["address"]
        for a in kjson("get", "node", sorted(workers)[1])["status"]["addresses"]
        if a["type"] == "InternalIP"
    )
    kubectl(
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "bmp-tcpao-key",
        "--from-literal=tcpao-key=e2e-lab-key-0123456789",
    )
    site = site_values(collector_node, sorted(workers)[1], node_ip, speaker_ip)
    (work / "site.yaml").write_text(yaml.safe_dump(site))
    lock = yaml.safe_load((rel / "release.lock.yaml").read_text())
    sh(
        HELM,
        "--kube-context",
        f"kind-{CLUSTER}",
        "install",
        "bmp",
        f"oci://{LOCAL}/charts/bmp-tcpao",
        "--version",
        "1.4.0",
        "--plain-http",
        "-n",
        NS,
        "-f",
        str(work / "site" / "values-airgap.yaml"),
        "-f",
        str(work / "site.yaml"),
        "--wait",
        "--timeout",
        "5m",
        timeout=420,
    )
    return {"work": work, "lock": lock, "rel": rel, "site": work / "site.yaml"}


def pods(selector: str = "") -> list[dict[str, Any]]:
    args = ["-n", NS, "get", "pods"] + (["-l", selector] if selector else [])
    return kjson(*args)["items"]


def test_every_pod_is_ready_and_runs_the_locked_digests(installed: dict[str, Any]) -> None:
    for kind in ("deployment", "statefulset"):
        for item in kjson("-n", NS, "get", kind)["items"]:
            kubectl("-n", NS, "rollout", "status", f"{kind}/{item['metadata']['name']}", "--timeout=180s")
    items = pods()
    assert items
    for p in items:
        ready = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        assert ready.get("Ready") == "True", p["metadata"]["name"]
    digests = {e["digest"] for e in installed["lock"]["images"].values()}
    used = {c["image"] for p in items for c in p["spec"]["containers"]}
    assert all(i.startswith(f"{LOCAL}/") for i in used), used
    assert {i.split("@")[1] for i in used} == digests


def test_pdbs_and_network_policies_are_the_rendered_ones(installed: dict[str, Any]) -> None:
    pdbs = {p["metadata"]["name"]: p for p in kjson("-n", NS, "get", "pdb")["items"]}
    assert any(p["spec"].get("minAvailable") == 2 for p in pdbs.values())
    for p in pdbs.values():
        assert p["status"]["currentHealthy"] >= p["status"]["desiredHealthy"]
    rendered = sh(HELM, "--kube-context", f"kind-{CLUSTER}", "get", "manifest", "bmp", "-n", NS)
    want = {d["metadata"]["name"] for d in yaml.safe_load_all(rendered) if d and d["kind"] == "NetworkPolicy"}
    got = {n["metadata"]["name"] for n in kjson("-n", NS, "get", "networkpolicy")["items"]}
    assert want and got == want


def test_traffic_crosses_both_hostnetwork_sidecars(installed: dict[str, Any]) -> None:
    def lines() -> list[str]:
        out = kubectl(
            "-n",
            NS,
            "exec",
            "deploy/collector",
            "-c",
            "collector",
            "--",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/received",
            check=False,
        )
        return out.splitlines()

    got = wait_for(lambda: len(lines()) >= 3 and lines(), what="the speaker's lines at the collector")
    assert all(line.startswith("bmp-standin from ") for line in got)


def _probe(namespace: str, name: str, url: str) -> bool:
    image = next(
        c["image"] for p in pods() for c in p["spec"]["containers"] if "/library/nats@" in c["image"]
    )
    kubectl("-n", namespace, "delete", "pod", name, "--ignore-not-found", "--wait")
    overrides = json.dumps(
        {
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": name,
                        "image": image,
                        "command": ["wget", "-q", "-T", "5", "-O", "-", url],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            }
        }
    )
    kubectl("-n", namespace, "run", name, "--image", image, "--restart=Never", "--overrides", overrides)
    phase = wait_for(
        lambda: (
            kjson("-n", namespace, "get", "pod", name)["status"].get("phase") in ("Succeeded", "Failed")
            and kjson("-n", namespace, "get", "pod", name)["status"]["phase"]
        ),
        timeout=90,
        what=f"probe pod {namespace}/{name}",
    )
    return phase == "Succeeded"


def test_network_policy_is_enforced_flow_by_flow(installed: dict[str, Any]) -> None:
    url = f"http://bus.{NS}.svc.cluster.local:8222/healthz"
    assert _probe("monitoring", "allowed-monitor", url), (
        "the monitoring namespace may reach the bus's monitor port"
    )
    assert not _probe(NS, "denied-monitor", url), (
        "a pod of the release namespace may not reach the monitor port"
    )


def _uids(selector: str) -> set[str]:
    return {p["metadata"]["uid"] for p in pods(selector)}


def _speaker_seq() -> int:
    out = kubectl("-n", NS, "exec", "deploy/speaker", "-c", "speaker", "--", "cat", "/var/lib/gobgp/seq")
    return int(out.strip())


def test_upgrade_rolls_only_the_changed_service_and_rollback_restores(installed: dict[str, Any]) -> None:
    helm = [HELM, "--kube-context", f"kind-{CLUSTER}"]
    bus, speaker, collector = (
        _uids(f"app.kubernetes.io/component={s}") for s in ("bus", "speaker", "collector")
    )
    assert bus and speaker and collector
    pvcs = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kjson("-n", NS, "get", "pvc")["items"]}
    seq = _speaker_seq()
    sh(
        *helm,
        "upgrade",
        "bmp",
        f"oci://{LOCAL}/charts/bmp-tcpao",
        "--version",
        "1.4.0",
        "--plain-http",
        "-n",
        NS,
        "--reuse-values",
        "--set",
        "services.collector.env.GOBMP_LOG_LEVEL=debug",
        "--wait",
        "--timeout",
        "5m",
        timeout=420,
    )
    wait_for(
        lambda: (
            _uids("app.kubernetes.io/component=collector").isdisjoint(collector)
            and len(_uids("app.kubernetes.io/component=collector")) == 1
        ),
        what="the collector's new pod",
    )
    assert _uids("app.kubernetes.io/component=bus") == bus
    assert _uids("app.kubernetes.io/component=speaker") == speaker
    sh(*helm, "rollback", "bmp", "1", "-n", NS, "--wait", "--timeout", "5m", timeout=420)
    env = kjson("-n", NS, "get", "deploy", "collector")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "GOBMP_LOG_LEVEL", "value": "info"} in env
    assert {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in kjson("-n", NS, "get", "pvc")["items"]
    } == pvcs
    assert _speaker_seq() >= seq  # the counter in the speaker's volume survived


# ------------------------------------------------------------------ examples/platform

PLATFORM_NS = "platform"


@pytest.fixture(scope="module")
def platform_installed(cluster: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """examples/platform from its own signed bundle into the cluster's registry, installed with
    `helm install --wait` in a namespace held to the restricted Pod Security standard: the
    post-install migration Job must complete for the install to succeed."""
    work: Path = cluster["work"] / "platform"
    work.mkdir()
    env = {
        **os.environ,
        "RELEASER_CACHE": str(work / "cache"),
        "RELEASER_KEY_PASSPHRASE": "e2e-only-passphrase",
    }
    publisher = RegistryServer(work / "publisher").start()
    try:
        rel = images.platform_release(work, publisher.host)
        sh(RELEASER, "lock", str(rel), env=env)
        sh(RELEASER, "keygen", "--out-dir", str(work / "keys"), env=env)
        bundle = work / "platform.tar.zst"
        key = str(work / "keys/releaser.key")
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
    except BaseException:
        publisher.stop()
        raise
    pub = str(work / "keys/releaser.pub")
    sh(RELEASER, "airgap", str(bundle), "--to", LOCAL, "--key", pub, "--out-dir", str(work / "site"), env=env)
    kubectl("create", "namespace", PLATFORM_NS)
    kubectl("label", "namespace", PLATFORM_NS, "pod-security.kubernetes.io/enforce=restricted")
    sh(
        HELM,
        *("--kube-context", f"kind-{CLUSTER}", "install", "platform", f"oci://{LOCAL}/charts/platform"),
        *("--version", "2.3.0", "--plain-http", "-n", PLATFORM_NS),
        *("-f", str(work / "site" / "values-airgap.yaml"), "--wait", "--timeout", "5m"),
        timeout=420,
    )
    yield {"work": work, "rel": rel, "env": env, "bundle": bundle, "key": key, "pub": pub}
    publisher.stop()


def test_platform_installs_restricted_with_its_job_statefulset_ingress_and_autoscaler(
    platform_installed: dict[str, Any],
) -> None:
    job = kjson("-n", PLATFORM_NS, "get", "job", "migrate")
    assert job["status"].get("succeeded") == 1, job["status"]
    store = kjson("-n", PLATFORM_NS, "get", "statefulset", "store")
    assert store["status"].get("readyReplicas") == 3, store["status"]
    claims = {p["metadata"]["name"] for p in kjson("-n", PLATFORM_NS, "get", "pvc")["items"]}
    assert {"data-store-0", "data-store-1", "data-store-2"} <= claims
    ingress = kjson("-n", PLATFORM_NS, "get", "ingress", "console")
    assert ingress["spec"]["rules"][0]["host"] == "console.example.com"
    hpa = kjson("-n", PLATFORM_NS, "get", "hpa", "worker")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    for kind in ("deployment", "statefulset"):
        for item in kjson("-n", PLATFORM_NS, "get", kind)["items"]:
            kubectl(
                "-n", PLATFORM_NS, "rollout", "status", f"{kind}/{item['metadata']['name']}", "--timeout=180s"
            )
    for p in kjson("-n", PLATFORM_NS, "get", "pods")["items"]:
        if p["metadata"]["name"].startswith("migrate-"):
            assert p["status"]["phase"] == "Succeeded", p["status"]
            continue
        ready = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        assert ready.get("Ready") == "True", p["metadata"]["name"]
    logs = kubectl("-n", PLATFORM_NS, "logs", "deploy/worker")
    assert "scratch /var/cache/worker is writable" in logs and "the root file system is read-only" in logs


def _platform_version(installed: dict[str, Any], version: str, *, edit: str = "", config: str = "") -> Path:
    """A copy of the installed platform release as `version`, locked (the same images)."""
    rel: Path = installed["work"] / version
    shutil.copytree(installed["rel"], rel)
    text = (rel / "release.yaml").read_text().replace("version: 2.3.0", f"version: {version}", 1)
    if edit:
        old, new = edit.split("=>")
        text = text.replace(old, new)
    (rel / "release.yaml").write_text(text)
    if config:
        (rel / "config/api.yaml").write_text(config)
    (rel / "release.lock.yaml").unlink()
    sh(RELEASER, "lock", str(rel), env=installed["env"])
    return rel


def _deliver(installed: dict[str, Any], rel: Path, version: str) -> Path:
    """A delta bundle of `rel` against the installed bundle, loaded into the cluster's registry;
    returns the values-airgap.yaml it wrote."""
    env, work = installed["env"], installed["work"]
    delta = work / f"platform-{version}-delta.tar.zst"
    sh(
        RELEASER,
        "bundle",
        str(rel),
        "--signing-key",
        installed["key"],
        "--since",
        str(installed["bundle"]),
        "--out-file",
        str(delta),
        "--no-installer",
        env=env,
    )
    site = work / f"site-{version}"
    sh(
        RELEASER,
        "airgap",
        str(delta),
        "--to",
        LOCAL,
        "--key",
        installed["pub"],
        "--out-dir",
        str(site),
        env=env,
    )
    return site / "values-airgap.yaml"


def test_platform_upgrades_from_a_delta_a_failing_upgrade_rolls_back_and_a_rollback_goes_back(
    platform_installed: dict[str, Any],
) -> None:
    """helm upgrade --atomic (Helm 3; Helm 4: --rollback-on-failure) of 2.3.0 -> 2.4.0 delivered as a
    delta bundle; 2.5.0, whose API cannot start, rolls back by itself; `helm rollback` to 2.3.0."""
    helm = [HELM, "--kube-context", f"kind-{CLUSTER}"]
    claims = {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in kjson("-n", PLATFORM_NS, "get", "pvc")["items"]
    }

    def upgrade(version: str, values: Path, deadline: str = "3m") -> subprocess.CompletedProcess[str]:
        argv = [*helm, "upgrade", "platform", f"oci://{LOCAL}/charts/platform", "--version", version]
        argv += [
            "--plain-http",
            "-n",
            PLATFORM_NS,
            "-f",
            str(values),
            "--atomic",
            "--wait",
            "--timeout",
            deadline,
        ]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=420)

    def config() -> str:
        return str(kjson("-n", PLATFORM_NS, "get", "configmap", "api-config")["data"]["api.yaml"])

    good = _platform_version(platform_installed, "2.4.0", config="# api 2.4.0\nlisten: 8081\n")
    done = upgrade("2.4.0", _deliver(platform_installed, good, "2.4.0"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert config() == "# api 2.4.0\nlisten: 8081\n"
    assert kjson("-n", PLATFORM_NS, "get", "job", "migrate")["status"].get("succeeded") == 1
    broken = _platform_version(
        platform_installed, "2.5.0", edit='"--config=/etc/api/api.yaml"=>"--config=/etc/api/missing.yaml"'
    )
    values = _deliver(platform_installed, broken, "2.5.0")
    out = upgrade("2.5.0", values, "2m")
    assert out.returncode != 0, out.stdout
    history = json.loads(sh(*helm, "history", "platform", "-n", PLATFORM_NS, "-o", "json"))
    assert history[-1]["status"] == "deployed" and history[-1]["chart"] == "platform-2.4.0", history
    assert config() == "# api 2.4.0\nlisten: 8081\n"
    sh(*helm, "rollback", "platform", "1", "-n", PLATFORM_NS, "--wait", "--timeout", "3m", timeout=420)
    assert config() == (platform_installed["rel"] / "config/api.yaml").read_text()
    after = {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in kjson("-n", PLATFORM_NS, "get", "pvc")["items"]
    }
    assert after == claims  # the store's claims are the same volumes throughout
