"""docs/security.md's namespace block runs as written on the real cluster, from the repository's root
(charts/bmp-tcpao as committed): the namespace made and labelled with kubectl, the chart installed
into it; the chart rendered without a cluster carries its namespace with the same labels, and
kubectl applies it. `namespace.create` with `helm install` stops before anything is created, with
the commands. site.yaml holds the TCP-AO peers' nodes, as tests/e2e/test_bmp.py writes them. No pod has to start (the committed lock's digests are made up): what is checked is
the namespace the API server admits the release into."""

from __future__ import annotations

import os
import subprocess

import yaml

from tests.conftest import ROOT
from tests.support.cluster import Cluster
from tests.support.docs import commands

from .helpers import HELM3, tempdir
from .test_bmp import site_values

RUNNER = "tests/e2e/test_security_doc.py"
LABELS = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


def test_the_namespace_block_runs_as_written(cluster: Cluster) -> None:
    (block,) = commands(ROOT / "docs/security.md", RUNNER)
    work = tempdir(cluster, "security-doc")
    tools = work / "bin"
    tools.mkdir(exist_ok=True)
    for name, target in (("helm", HELM3), ("kubectl", str(cluster.build / "bin/kubectl"))):
        if not (tools / name).exists():
            (tools / name).symlink_to(target)
    env = {
        **os.environ,
        "PATH": f"{tools}:{os.environ['PATH']}",
        "KUBECONFIG": str(cluster.kubeconfig),
        "HELM_CACHE_HOME": str(work / "helm-cache"),
    }

    def run(script: str, expect: int = 0) -> str:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert proc.returncode == expect, f"{block.where}:\n{script}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    # the namespace tests/e2e/test_bmp.py leaves being deleted (it does not wait) must be gone first
    cluster.kubectl("wait", "--for=delete", "namespace/bmp", "--timeout=180s", check=False, timeout=200)
    try:
        (work / "charts").mkdir(exist_ok=True)
        if not (work / "charts/bmp-tcpao").exists():
            (work / "charts/bmp-tcpao").symlink_to(ROOT / "charts/bmp-tcpao")
        nodes = [(n.name, n.ip) for n in cluster.nodes]
        (work / "site.yaml").write_text(
            yaml.safe_dump(site_values(nodes[0][0], nodes[-1][0], nodes[0][1], nodes[-1][1]))
        )
        run(block.text)
        for ns in ("bmp", "bmp-gitops"):
            labels = cluster.kjson("get", "namespace", ns)["metadata"]["labels"]
            assert LABELS.items() <= labels.items(), (ns, labels)
        assert "kind: Namespace" in (work / "bmp-gitops.yaml").read_text()
        refused = run(
            "helm install other charts/bmp-tcpao -n bmp -f site.yaml --set namespace.create=true", expect=1
        )
        assert "namespace.create is for a render without a cluster" in refused, refused
        assert "kubectl create namespace bmp && kubectl label namespace bmp" in refused, refused
        assert "other" not in run("helm list -n bmp -q")
    finally:
        subprocess.run([HELM3, "uninstall", "bmp", "-n", "bmp"], env=env, capture_output=True, check=False)
        cluster.kubectl(
            "delete", "namespace", "bmp", "bmp-gitops", "--wait=true", "--timeout=120s", check=False
        )
