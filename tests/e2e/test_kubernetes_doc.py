"""docs/kubernetes.md's walk-through runs as written on the real cluster: every ```sh block, in
order, at the site (registry.local:5000 is the cluster's registry, site-ca.crt its CA, `helm` is
Helm 3, `kubectl` the cluster's), from bundles of examples/platform 2.3.0 and a 2.4.0 delta made
by the publisher beforehand. The namespace is removed afterwards, as the other modules need the room."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT
from tests.support import images
from tests.support.cluster import Cluster
from tests.support.docs import commands, walk_through
from tests.support.registry import RegistryServer

from .helpers import HELM3, RELEASER, publish, releaser_env, sh, tempdir

RUNNER = "tests/e2e/test_kubernetes_doc.py"


def _publish(work: Path) -> None:
    """The publisher's side: bundles/platform-2.3.0.tar.zst and a 2.4.0 delta against it."""
    env = releaser_env(work)
    publisher = RegistryServer(work / "publisher").start()
    try:
        rel = images.platform_release(work / "pub", publisher.host)
        v1 = work / "bundles/platform-2.3.0.tar.zst"
        key, _ = publish(work, rel, v1, env)
        text = (rel / "release.yaml").read_text().replace("version: 2.3.0", "version: 2.4.0", 1)
        (rel / "release.yaml").write_text(text)
        (rel / "config/api.yaml").write_text("# api 2.4.0\nlisten: 8081\n")
        (rel / "release.lock.yaml").unlink()
        sh(RELEASER, "lock", str(rel), env=env)
        v2 = work / "bundles/platform-2.4.0-delta.tar.zst"
        sh(RELEASER, "bundle", str(rel), "--signing-key", key, "--since", str(v1), "--out-file", str(v2),
           "--no-installer", env=env)  # fmt: skip
    finally:
        publisher.stop()
    shutil.copy(work / "keys/releaser.pub", work / "releaser.pub")


def test_the_walk_through_runs_as_written(cluster: Cluster) -> None:
    blocks = commands(ROOT / "docs/kubernetes.md", "tests/e2e/test_kubernetes_doc.py")
    assert len(blocks) >= 7 and len(walk_through(ROOT / "docs/kubernetes.md", RUNNER)) >= 14
    work = tempdir(cluster, "kubernetes-doc")
    _publish(work)
    shutil.copy(cluster.ca, work / "site-ca.crt")
    tools = work / "bin"
    tools.mkdir()
    for name, target in (
        ("helm", HELM3),
        ("kubectl", str(cluster.build / "bin" / "kubectl")),
        ("releaser", RELEASER),
    ):
        (tools / name).symlink_to(target)
    env = {
        **releaser_env(work),
        "PATH": f"{tools}:{os.environ['PATH']}",
        "KUBECONFIG": str(cluster.kubeconfig),
        "HELM_CACHE_HOME": str(work / "helm-cache"),
    }
    try:
        for block in blocks:  # each block one script: a variable set in it holds to its end
            proc = subprocess.run(
                cluster.site_cmd("bash", "-euo", "pipefail", "-c", block.text),
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            assert proc.returncode == 0, f"{block.where}:\n{block.text}\n{proc.stdout}\n{proc.stderr}"
        api = cluster.kjson("-n", "platform-prod", "get", "configmap", "api-config")["data"]["api.yaml"]
        assert api == (ROOT / "examples/platform/config/api.yaml").read_text()  # rolled back to 2.3.0
        revisions = cluster.kubectl("-n", "platform-prod", "get", "secrets", "-l", "owner=helm", "-o", "name")
        assert len(revisions.split()) == 4  # install, upgrade, rollback, the API server's addresses
        api_server = cluster.kjson("-n", "platform-prod", "get", "networkpolicy", "api")["spec"]["egress"]
        narrowed = [r for r in api_server if any(p.get("port") == 6443 for p in r.get("ports", []))]
        assert narrowed and all(
            "ipBlock" in peer and peer["ipBlock"]["cidr"].endswith("/32")
            for r in narrowed
            for peer in r["to"]
        ), api_server
        gitops = (work / "platform-gitops.yaml").read_text()
        assert "kind: Secret" not in gitops and "platform-db-password" in gitops
    finally:
        env_helm = {**env, "PATH": env["PATH"]}
        subprocess.run(
            cluster.site_cmd(HELM3, "uninstall", "platform", "-n", "platform-prod", "--wait"),
            env=env_helm,
            capture_output=True,
            check=False,
            timeout=300,
        )
        for ns in ("platform-prod", "platform-gitops"):
            cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False)
