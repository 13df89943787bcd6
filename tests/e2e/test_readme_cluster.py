"""README.md's "Use it" on the real cluster: `releaser init`'s template with its images put in (the
runnable stand-ins of tests/test_readme_run.py), published as the page says, loaded at the site into
registry.local:5000 (the cluster's registry, trusted through $SSL_CERT_FILE as a site's admin host
trusts its CA), and installed with the page's `helm install` line (Helm 3). Every pod runs the
locked digest from the site registry; the namespace is removed afterwards."""

from __future__ import annotations

import os
import shlex

import yaml

from tests.conftest import ROOT
from tests.support.cluster import Cluster
from tests.support.docs import commands
from tests.support.registry import RegistryServer
from tests.test_readme_run import put_in_images

from .helpers import HELM3, RELEASER, releaser_env, site, tempdir

RUNNER = "tests/e2e/test_readme_cluster.py"
NS = "my-ns"


def test_the_readme_installs_on_kubernetes(cluster: Cluster) -> None:
    init, publish, at_site, install = commands(ROOT / "README.md", RUNNER)
    work = tempdir(cluster, "readme")
    tools = work / "bin"
    tools.mkdir(exist_ok=True)
    for name, target in (
        ("helm", HELM3),
        ("kubectl", str(cluster.build / "bin/kubectl")),
        ("releaser", RELEASER),
    ):
        if not (tools / name).exists():
            (tools / name).symlink_to(target)
    env = {
        **releaser_env(work),
        "PATH": f"{tools}:{os.environ['PATH']}",
        "KUBECONFIG": str(cluster.kubeconfig),
        "HELM_CACHE_HOME": str(work / "helm-cache"),
        "SSL_CERT_FILE": str(cluster.ca),  # the site's CA, as its admin host trusts it
    }
    src = RegistryServer(work / "src").start()
    try:

        def run(text: str) -> None:
            script = f"cd {shlex.quote(str(work))}\n" + text.replace("registry.example.org", src.host)
            site(cluster, "bash", "-euo", "pipefail", "-c", script, env=env, timeout=900)

        run(init.text)
        put_in_images(work, src)
        run(publish.text)
        run(at_site.text)
        run(install.text)
        lock = yaml.safe_load((work / "my-release/release.lock.yaml").read_text())["images"]
        digests = {i["digest"] for i in lock.values()}
        digests |= {c["digest"] for i in lock.values() for c in i.get("platforms", {}).values()}
        pods = cluster.kjson("-n", NS, "get", "pods")["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in running}
        assert components >= {"web", "cache"}, [p["metadata"]["name"] for p in pods]
        for p in running:
            for c in p["spec"]["containers"]:
                image = c["image"]
                assert image.startswith("registry.local:5000/") and image.split("@", 1)[-1] in digests, image
    finally:
        src.stop()
        site(cluster, HELM3, "uninstall", "my-release", "-n", NS, "--wait", env=env, check=False, timeout=300)
        cluster.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=120s", check=False)
