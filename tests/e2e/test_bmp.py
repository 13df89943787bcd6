"""examples/bmp-tcpao on a real cluster, from its signed bundle through registry.local:5000.

1. runnable stand-in images pushed to a "publisher" registry, locked, bundled, signed; the
   publisher is then stopped: from here on only the bundle and the cluster's registry exist;
2. `releaser airgap BUNDLE --to registry.local:5000` at the site (the cluster's only image source);
3. the namespace at the Pod Security level the chart needs (privileged: the TCP-AO sidecars are
   hostNetwork with NET_ADMIN; what restricted and baseline refuse, and nothing else, is tested),
   the TCP-AO node label on both nodes, the TCP-AO key Secret; `helm install --wait` of the chart
   as the bundle carries it (oci://registry.local:5000/charts/bmp-tcpao) with values-airgap.yaml;
4. every pod Ready running exactly the locked digests; PDBs and NetworkPolicies are the rendered
   ones; the speaker's lines reach the collector through both hostNetwork sidecars, from one node
   to the other; NetworkPolicy enforced flow by flow;
5. `helm upgrade` replaces only the changed service's pod; `helm rollback` restores it; the
   speaker's claim (and the counter in it) survive both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support import cluster_build, images
from tests.support.cluster import Cluster
from tests.support.registry import RegistryServer
from tests.support.stack import wait_for as _wait_for

from .conftest import TIMINGS
from .helpers import HELM3, airgap_load, helm, helm_refused, publish, releaser_env, tempdir

NS = "bmp"
REGISTRY = "registry.local:5000"
COLLECTOR_NODE, SPEAKER_NODE = "control-plane", "worker"
PROBE_IMAGE = f"{REGISTRY}/{cluster_build.INFRA_IMAGES['busybox']}"  # a client pod's tools


def wait_for(cond: Any, timeout: float = 180, what: str = "") -> Any:
    return _wait_for(cond, timeout, what, poll=2)


def site_values(collector_node: str, speaker_node: str, collector_ip: str, speaker_ip: str) -> dict[str, Any]:
    """The site's own values: which node runs which TCP-AO peer, and the peers' node addresses.
    (tests/test_chart.py renders the chart with these offline, on Helm 3 and 4.)"""
    return {
        "services": {
            "collector": {"tcpao": {"node": collector_node, "peerIP": speaker_ip}},
            "speaker": {"tcpao": {"node": speaker_node, "peerIP": collector_ip}},
        }
    }


@pytest.fixture(scope="module")
def bmp(cluster: Cluster) -> Iterator[dict[str, Any]]:
    work = tempdir(cluster, "bmp")
    env = releaser_env(work)
    publisher = RegistryServer(work / "publisher").start()
    try:
        rel = images.standin_release(work, publisher.host)
        bundle = work / "bundle.tar.zst"
        _, pub = publish(work, rel, bundle, env)
    finally:
        publisher.stop()  # from here on only the bundle and the cluster's registry exist
    values = airgap_load(cluster, bundle, pub, work / "site", env)
    k = cluster.kubectl
    k("create", "namespace", NS)
    k("label", "namespace", NS, *pod_security("privileged"))
    k("create", "namespace", "monitoring")
    for node in (COLLECTOR_NODE, SPEAKER_NODE):
        k("label", "node", node, "releaser.dev/tcp-ao=true")
    k(
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "bmp-tcpao-key",
        "--from-literal=tcpao-key=e2e-lab-key-0123456789",
    )
    ips = {n.name: n.ip for n in cluster.nodes}
    site = work / "site.yaml"
    site.write_text(
        yaml.safe_dump(site_values(COLLECTOR_NODE, SPEAKER_NODE, ips[COLLECTOR_NODE], ips[SPEAKER_NODE]))
    )
    chart = f"oci://{REGISTRY}/charts/bmp-tcpao"
    # without the site's nodes the chart stops before anything is made, naming what to set
    unsited = helm_refused(cluster, HELM3, "install", "bmp", chart, "--version", "1.4.0", "--ca-file",
                           str(cluster.ca), "-n", NS, "-f", str(values), "--wait", "--timeout", "1m")  # fmt: skip
    left = helm(cluster, HELM3, "list", "-n", NS, "-a", "-q") + k("-n", NS, "get", "all", "-o", "name")
    t = time.monotonic()
    helm(cluster, HELM3, "install", "bmp", chart, "--version", "1.4.0", "--ca-file", str(cluster.ca),
         "-n", NS, "-f", str(values), "-f", str(site), "--wait", "--timeout", "5m")  # fmt: skip
    TIMINGS["helm install --wait, bmp-tcpao"] = time.monotonic() - t
    lock = yaml.safe_load((rel / "release.lock.yaml").read_text())
    yield {"work": work, "lock": lock, "rel": rel, "site": site, "values": values, "chart": chart,
           "unsited": unsited, "left": left}  # fmt: skip
    # the room for the next modules (two nodes of two cores)
    helm(cluster, HELM3, "uninstall", "bmp", "-n", NS, "--wait", check=False)
    cluster.kubectl("delete", "namespace", NS, "monitoring", "--wait=false", check=False)


def test_an_install_without_the_site_nodes_is_refused_naming_them(bmp: dict[str, Any]) -> None:
    """`helm install` with values-airgap.yaml alone, as the chart was installed before the TCP-AO
    peers' nodes were the site's: refused before anything is made (no release, no object), naming
    each value, with no Compose address offered in their place."""
    proc = bmp["unsited"]
    assert proc.returncode != 0, proc.stdout
    for value in (
        "collector.tcpao.node",
        "collector.tcpao.peerIP",
        "speaker.tcpao.node",
        "speaker.tcpao.peerIP",
    ):
        assert f"services.{value}: " in proc.stderr, proc.stderr
    assert "10.77.0." not in proc.stderr
    assert bmp["left"].strip() == "", bmp["left"]


def pod_security(level: str) -> list[str]:
    return [f"pod-security.kubernetes.io/{m}={level}" for m in ("enforce", "warn", "audit")]


def pods(c: Cluster, selector: str = "") -> list[dict[str, Any]]:
    return list(c.kjson("-n", NS, "get", "pods", *(["-l", selector] if selector else []))["items"])


def test_every_pod_is_ready_and_runs_the_locked_digests(cluster: Cluster, bmp: dict[str, Any]) -> None:
    """The running image IDs, as the kubelet reports them, are the lock's digests: one more place
    where `releaser check`'s invariant holds."""
    items = pods(cluster)
    assert items
    for p in items:
        ready = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        assert ready.get("Ready") == "True", p["metadata"]["name"]
    locked = {e["repository"].split("/", 1)[1]: e["digest"] for e in bmp["lock"]["images"].values()}
    specs = {x["name"]: x["image"] for p in items for x in p["spec"]["containers"]}
    statuses = [s for p in items for s in p["status"]["containerStatuses"]]
    assert statuses
    for s in statuses:
        repo, _, digest = s["imageID"].partition("@")
        assert repo.startswith(f"{REGISTRY}/"), s["imageID"]
        assert locked[repo.removeprefix(f"{REGISTRY}/")] == digest, s
        assert specs[s["name"]] == f"{repo}@{digest}"
    # every locked image runs, the probe too: each TCP-AO pod's tcpao-leg container (its wire leg)
    assert {s["imageID"].partition("@")[2] for s in statuses} == set(locked.values())
    legs = [s for s in statuses if s["name"] == "tcpao-leg"]
    assert len(legs) == 2 and all(s["ready"] for s in legs)


def test_helm_test_passes_with_the_probe_image_the_bundle_carries(
    cluster: Cluster, bmp: dict[str, Any]
) -> None:
    """`helm test` after the airgap install: the probe pod, pulled from registry.local:5000 by the
    lock's digest, reaches each readiness endpoint through its Service, the bus through its
    NetworkPolicy and the hostNetwork collector and speaker on their nodes' addresses."""
    out = helm(cluster, HELM3, "test", "bmp", "-n", NS, "--timeout", "3m")
    assert "TEST SUITE:     bmp-test" in out and "Phase:          Succeeded" in out, out
    hooks = [d for d in yaml.safe_load_all(helm(cluster, HELM3, "get", "hooks", "bmp", "-n", NS)) if d]
    (pod,) = [d for d in hooks if d["kind"] == "Pod"]
    probe_pin = bmp["lock"]["images"]["probe"]
    repo = probe_pin["repository"].split("/", 1)[1]
    assert pod["spec"]["containers"][0]["image"] == f"{REGISTRY}/{repo}@{probe_pin['digest']}"
    assert pod["spec"]["containers"][0]["args"][2:] == [
        "http://bus:8222/healthz",
        "http://collector:8080/healthz",
        "tcp://speaker:50051",
    ]


def test_pdbs_and_network_policies_are_the_rendered_ones(cluster: Cluster, bmp: dict[str, Any]) -> None:
    pdbs = {p["metadata"]["name"]: p for p in cluster.kjson("-n", NS, "get", "pdb")["items"]}
    assert any(p["spec"].get("minAvailable") == 2 for p in pdbs.values())
    for p in pdbs.values():
        assert p["status"]["currentHealthy"] >= p["status"]["desiredHealthy"]
    rendered = helm(cluster, HELM3, "get", "manifest", "bmp", "-n", NS)
    want = {d["metadata"]["name"] for d in yaml.safe_load_all(rendered) if d and d["kind"] == "NetworkPolicy"}
    got = {n["metadata"]["name"] for n in cluster.kjson("-n", NS, "get", "networkpolicy")["items"]}
    assert want and got == want


def received(c: Cluster) -> list[str]:
    """The lines the collector has received, as its stand-in lists them."""
    out = c.kubectl("-n", NS, "exec", "deploy/collector", "-c", "collector", "--",
                    "wget", "-qO-", "http://127.0.0.1:8080/received", check=False)  # fmt: skip
    return out.splitlines()


def test_traffic_crosses_both_hostnetwork_sidecars_between_nodes(
    cluster: Cluster, bmp: dict[str, Any]
) -> None:
    """speaker -> initiator (worker's network) -> wire leg -> terminator (control-plane's) -> collector.
    Plain TCP on this kernel (it lacks TCP-AO), which the stand-in proxy says in its log."""
    where = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"]["nodeName"] for p in pods(cluster)
    }
    assert (where["collector"], where["speaker"]) == (COLLECTOR_NODE, SPEAKER_NODE)

    got = wait_for(
        lambda: len(received(cluster)) >= 3 and received(cluster), what="the speaker's lines at the collector"
    )
    assert all(line.startswith("bmp-standin from ") for line in got)


def test_an_initiator_started_before_its_terminator_connects_once_it_is_up(
    cluster: Cluster, bmp: dict[str, Any]
) -> None:
    """Kubernetes starts pods in no order: with the collector (and its terminator) gone, the speaker
    and its initiator are restarted, then the collector comes back on its node; nothing waits on
    anything, and the speaker's lines reach the new collector."""
    k = cluster.kubectl
    comp = "app.kubernetes.io/component"
    k("-n", NS, "scale", "deploy/collector", "--replicas=0")
    wait_for(lambda: not pods(cluster, f"{comp}=collector"), what="the collector's pod gone")
    old = {p["metadata"]["name"] for p in pods(cluster, f"{comp}=speaker")}
    k("-n", NS, "rollout", "restart", "deploy/speaker")

    def leg_down() -> bool:
        """The new speaker runs, its initiator too, but the pod is not Ready: the tcpao-leg container
        finds no wire leg (what `kubectl get pods` shows as 2/3)."""
        for p in pods(cluster, f"{comp}=speaker"):
            if p["metadata"]["name"] in old or "deletionTimestamp" in p["metadata"]:
                continue
            st = {s["name"]: s for s in p["status"].get("containerStatuses") or []}
            cond = {c["type"]: c["status"] for c in p["status"].get("conditions") or []}
            if "running" in st.get("tcpao", {}).get("state", {}) and "running" in st.get("tcpao-leg", {}).get(
                "state", {}
            ):
                return st["tcpao-leg"]["ready"] is False and cond.get("Ready") == "False"
        return False

    wait_for(leg_down, timeout=180, what="the new speaker running, not Ready for want of its wire leg")
    k("-n", NS, "scale", "deploy/collector", "--replicas=1")
    k("-n", NS, "rollout", "status", "deploy/collector", "--timeout=180s", timeout=200)
    k("-n", NS, "rollout", "status", "deploy/speaker", "--timeout=180s", timeout=200)  # Ready: the leg is up

    def started(component: str) -> str:
        (pod,) = [p for p in pods(cluster, f"{comp}={component}") if "deletionTimestamp" not in p["metadata"]]
        (side,) = [s for s in pod["status"]["containerStatuses"] if s["name"] == "tcpao"]
        return str(side["state"]["running"]["startedAt"])

    assert started("speaker") < started("collector")  # RFC 3339 UTC: ordered as text

    got = wait_for(
        lambda: len(received(cluster)) >= 3 and received(cluster),
        what="the speaker's lines at the new collector",
    )
    assert all(line.startswith("bmp-standin from ") for line in got)


def probe(c: Cluster, namespace: str, name: str, command: list[str], image: str) -> bool:
    """A restricted pod running `command` once; True if it exited 0."""
    c.kubectl("-n", namespace, "delete", "pod", name, "--ignore-not-found", "--wait")
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
                        "command": command,
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            }
        }
    )
    c.kubectl("-n", namespace, "run", name, "--image", image, "--restart=Never", "--overrides", overrides)
    phase = wait_for(
        lambda: (
            c.kjson("-n", namespace, "get", "pod", name)["status"].get("phase") in ("Succeeded", "Failed")
            and c.kjson("-n", namespace, "get", "pod", name)["status"]["phase"]
        ),
        timeout=90,
        what=f"probe pod {namespace}/{name}",
    )
    return bool(phase == "Succeeded")


def http_get(host: str, port: int, path: str) -> list[str]:
    """An HTTP GET that succeeds only on 200. (busybox nc: Debian's static busybox wget crashes
    on a failed connection, which would make a refused flow and a crash look alike.)"""
    request = f"GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n"
    return ["sh", "-c", f"printf '{request}' | nc -w 5 {host} {port} | head -1 | grep -q ' 200 '"]


def nats_image(c: Cluster) -> str:
    return next(
        x["image"] for p in pods(c) for x in p["spec"]["containers"] if "/library/nats@" in x["image"]
    )


def test_network_policy_is_enforced_flow_by_flow(cluster: Cluster, bmp: dict[str, Any]) -> None:
    """The bus's monitor port: the monitoring namespace may reach it, a pod of the release may not."""
    get = http_get(f"bus.{NS}.svc.cluster.local", 8222, "/healthz")
    image = PROBE_IMAGE
    assert probe(cluster, "monitoring", "allowed-monitor", get, image), (
        "monitoring may reach the monitor port"
    )
    assert not probe(cluster, NS, "denied-monitor", get, image), "a pod of the release may not"


def test_pod_security_restricted_and_baseline_refuse_exactly_the_sidecars_pods(
    cluster: Cluster, bmp: dict[str, Any]
) -> None:
    """What the TCP-AO sidecars need, said by the API server itself. Pod Security is enforced on
    pods (a Deployment only draws a warning), so every workload's pod template is sent as a Pod
    (server-side dry run) into a namespace enforcing `restricted`, then `baseline`: exactly the
    two hostNetwork pods are refused, for host networking and host ports; every other pod of the
    chart is admitted."""
    rendered = helm(cluster, HELM3, "get", "manifest", "bmp", "-n", NS)
    workloads = [
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]
    assert len(workloads) >= 3
    for level in ("restricted", "baseline"):
        ns = f"bmp-{level}"
        cluster.kubectl("create", "namespace", ns)
        cluster.kubectl("label", "namespace", ns, f"pod-security.kubernetes.io/enforce={level}")
        refused: dict[str, str] = {}
        for w in workloads:
            name = w["metadata"]["name"]
            spec = dict(w["spec"]["template"]["spec"])
            claims = [  # a StatefulSet's claims are volumes of its pods
                {
                    "name": t["metadata"]["name"],
                    "persistentVolumeClaim": {"claimName": f"{t['metadata']['name']}-{name}-0"},
                }
                for t in w["spec"].get("volumeClaimTemplates", [])
            ]
            spec["volumes"] = [*spec.get("volumes", []), *claims]
            spec.pop("serviceAccountName", None)  # the release's accounts live in its own namespace
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{name}-check",
                    "namespace": ns,
                    "labels": w["spec"]["template"]["metadata"].get("labels", {}),
                },
                "spec": spec,
            }
            proc = cluster.kubectl_run("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
            if proc.returncode != 0:
                refused[name] = proc.stderr
        assert set(refused) == {"collector", "speaker"}, refused
        for why in refused.values():
            assert f'violates PodSecurity "{level}:latest"' in why and "hostNetwork=true" in why, why
            assert "hostPort" in why, why
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def _uids(c: Cluster, selector: str) -> set[str]:
    return {p["metadata"]["uid"] for p in pods(c, selector)}


def _speaker_seq(c: Cluster) -> int:
    """The counter the speaker keeps in its claim (once it has delivered a line since it started)."""

    def read() -> int | None:
        out = c.kubectl("-n", NS, "exec", "deploy/speaker", "-c", "speaker", "--", "cat", "/var/lib/gobgp/seq",
                        check=False).strip()  # fmt: skip
        return int(out) if out.isdigit() else None

    return int(wait_for(read, what="the speaker's counter"))


def test_upgrade_rolls_only_the_changed_service_and_rollback_restores(
    cluster: Cluster, bmp: dict[str, Any]
) -> None:
    comp = "app.kubernetes.io/component"
    bus, speaker, collector = (_uids(cluster, f"{comp}={s}") for s in ("bus", "speaker", "collector"))
    assert bus and speaker and collector
    pvcs = {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.kjson("-n", NS, "get", "pvc")["items"]
    }
    seq = _speaker_seq(cluster)
    helm(cluster, HELM3, "upgrade", "bmp", bmp["chart"], "--version", "1.4.0", "--ca-file", str(cluster.ca),
         "-n", NS, "--reuse-values", "--set", "services.collector.env.GOBMP_LOG_LEVEL=debug",
         "--wait", "--timeout", "5m")  # fmt: skip
    wait_for(
        lambda: (
            _uids(cluster, f"{comp}=collector").isdisjoint(collector)
            and len(_uids(cluster, f"{comp}=collector")) == 1
        ),
        what="the collector's new pod",
    )
    assert _uids(cluster, f"{comp}=bus") == bus
    assert _uids(cluster, f"{comp}=speaker") == speaker
    helm(cluster, HELM3, "rollback", "bmp", "1", "-n", NS, "--wait", "--timeout", "5m")
    env = cluster.kjson("-n", NS, "get", "deploy", "collector")["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert {"name": "GOBMP_LOG_LEVEL", "value": "info"} in env
    after = {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.kjson("-n", NS, "get", "pvc")["items"]
    }
    assert after == pvcs
    assert _speaker_seq(cluster) >= seq  # the counter in the speaker's volume survived
