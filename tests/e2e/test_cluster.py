"""The test cluster itself: upstream components at the pinned versions, registry.local:5000 as
its only image source (no route to anything else), and errors that name the component and its log.
What it leaves on the host after stop() (nothing) is checked by the `cluster` fixture's teardown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import cluster_build
from tests.support.cluster import Cluster, ClusterError, Node

from .test_bmp import PROBE_IMAGE, wait_for


def test_the_components_are_the_pinned_upstream_releases(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == cluster_build.KUBERNETES
    assert version["clientVersion"]["gitVersion"] == cluster_build.KUBERNETES
    containerd = next(m for m in cluster_build.MODULES if m.path.startswith("github.com/containerd/"))
    for node in cluster.kjson("get", "nodes")["items"]:
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == cluster_build.KUBERNETES
        assert info["containerRuntimeVersion"].startswith(f"containerd://{containerd.version.lstrip('v')}")
    images = cluster.kjson("get", "pods", "-n", "kube-system")["items"][0]["spec"]["containers"][0]["image"]
    assert images == f"registry.local:5000/{cluster_build.INFRA_IMAGES['coredns']}"


def test_no_node_has_a_route_to_any_registry_but_registry_local(cluster: Cluster) -> None:
    """The nodes' only routes are the cluster's own network: no default route, so a public
    registry cannot even be tried; registry.local:5000 is the one registry containerd knows."""
    for node in cluster.nodes:
        routes = cluster.node_run(node.name, "ip", "route", "show").stdout
        assert "default" not in routes, routes
        out = cluster.node_run(node.name, "ip", "route", "get", "8.8.8.8", check=False)
        assert out.returncode != 0 and "unreachable" in out.stderr, out
        hosts = sorted(p.name for p in (cluster.state / "nodes" / node.name / "config" / "certs.d").iterdir())
        assert hosts == ["registry.local:5000"]


def test_an_image_from_any_other_registry_cannot_be_pulled(cluster: Cluster) -> None:
    """A pod naming docker.io: the pull fails at once, naming why (no route, no name), and every
    image any node holds came from registry.local:5000."""
    cluster.kubectl("run", "elsewhere", "--image=docker.io/library/busybox:1.36", "--restart=Never")

    def waiting() -> dict[str, Any] | None:
        statuses = cluster.kjson("get", "pod", "elsewhere")["status"].get("containerStatuses") or []
        state = statuses[0]["state"].get("waiting", {}) if statuses else {}
        return state if state.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    state = wait_for(waiting, timeout=90, what="the pull from docker.io to fail")
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=elsewhere")
    assert any(w in events for w in ("network is unreachable", "no such host", "server misbehaving")), (
        state,
        events,
    )
    cluster.kubectl("delete", "pod", "elsewhere", "--wait=false")

    def held() -> list[str]:
        nodes = cluster.kjson("get", "nodes")["items"]
        per_node = [
            [n for image in node["status"].get("images") or [] for n in image["names"]] for node in nodes
        ]
        return [n for names in per_node for n in names] if all(per_node) else []

    names = wait_for(held, timeout=60, what="the nodes' image lists")  # reported every 10 s
    assert all(n.startswith("registry.local:5000/") for n in names), names


def test_pods_reach_services_on_the_other_node_by_name(cluster: Cluster) -> None:
    """Cluster DNS and Service routing across nodes: a pod resolves kubernetes.default and opens
    the API server's Service port."""
    name = "dns-check"
    script = "nslookup kubernetes.default.svc.cluster.local && nc -w 3 kubernetes.default 443 </dev/null && echo reachable"
    cluster.kubectl("run", name, f"--image={PROBE_IMAGE}", "--restart=Never", "--", "sh", "-c", script)
    wait_for(
        lambda: cluster.kjson("get", "pod", name)["status"].get("phase") in ("Succeeded", "Failed"),
        timeout=90,
        what="the DNS check",
    )
    assert "reachable" in cluster.kubectl("logs", name)
    cluster.kubectl("delete", "pod", name, "--wait=false")


# ------------------------------------------------------------ errors, without a running cluster
def test_a_missing_cgroup_controller_fails_with_its_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.support import cluster as module

    monkeypatch.setattr(module, "NEEDED_CGROUPS", (*module.NEEDED_CGROUPS, "rdma-of-another-host"))
    with pytest.raises(ClusterError, match="lacks the rdma-of-another-host controller"):
        Cluster(tmp_path)._preflight()


def test_a_component_that_stops_is_named_with_its_log(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.nodes = [Node("worker", "10.201.0.12", False)]
    logs = tmp_path / "nodes" / "worker" / "logs"
    logs.mkdir(parents=True)
    (logs / "kubelet.log").write_text(
        'E1206 run.go:72] "command failed" err="failed to run Kubelet: no CRI"\n'
    )
    (logs / "exits").write_text("kubelet exited with status 1 at 2026-12-06T12:34:07Z\n")
    with pytest.raises(ClusterError) as e:
        c._check_exits()
    assert "kubelet on node worker stopped" in str(e.value)
    assert "failed to run Kubelet: no CRI" in str(e.value) and str(logs / "kubelet.log") in str(e.value)
