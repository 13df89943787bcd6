"""README.md's "Use it" on the real cluster (and then the chart's admission policy): `releaser init`'s template with its images put in (the
runnable stand-ins of tests/test_readme_run.py), published as the page says, loaded at the site into
registry.local:5000 (the cluster's registry, trusted through $SSL_CERT_FILE as a site's admin host
trusts its CA), and installed with the page's `helm install` line (Helm 3). Every pod runs the
locked digest from the site registry; the namespace is removed afterwards."""

from __future__ import annotations

import os
import shlex
import subprocess
import time

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
        _admission(cluster, env, lock)
    finally:
        src.stop()
        site(cluster, HELM3, "uninstall", "my-release", "-n", NS, "--wait", env=env, check=False, timeout=300)
        cluster.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=120s", check=False)


def _admission(cluster: Cluster, env: dict[str, str], lock: dict[str, dict[str, object]]) -> None:
    """`admission.enabled=true` on the installed release: a pod of an image the lock does not pin is
    refused in the namespace with the policy's message; a pod of a locked image is admitted, and so
    are the release's own pods (a rollout of web comes back Ready)."""
    site(
        cluster,
        "helm", "upgrade", "my-release", "oci://registry.local:5000/charts/my-release", "--version", "0.1.0",
        "-n", NS, "--reuse-values", "--set", "admission.enabled=true", "--wait", "--timeout", "5m",
        env=env, timeout=600,
    )  # fmt: skip
    intruder = "registry.local:5000/cluster/busybox:1"
    refused = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the API server takes a moment to load a new policy
        proc = subprocess.run(
            cluster.site_cmd("kubectl", "-n", NS, "run", "intruder", f"--image={intruder}", "--restart=Never", "--", "true"),
            env=env, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if proc.returncode != 0:
            refused = proc.stderr
            break
        cluster.kubectl("-n", NS, "delete", "pod", "intruder", "--wait=true", check=False)
        time.sleep(2)
    assert "admits in namespace my-ns only the images its lock pins" in refused, refused
    assert intruder in refused and not _pod_exists(cluster, "intruder")
    web = lock["web"]
    locked = f"registry.local:5000/{str(web['repository']).split('/', 1)[1]}@{web['digest']}"
    site(cluster, "kubectl", "-n", NS, "run", "locked", f"--image={locked}", "--restart=Never", env=env)
    assert _pod_exists(cluster, "locked")
    cluster.kubectl("-n", NS, "delete", "pod", "locked", "--wait=false", check=False)
    site(cluster, "kubectl", "-n", NS, "rollout", "restart", "deployment/web", env=env)
    site(
        cluster,
        "kubectl",
        "-n",
        NS,
        "rollout",
        "status",
        "deployment/web",
        "--timeout=180s",
        env=env,
        timeout=240,
    )


def _pod_exists(cluster: Cluster, name: str) -> bool:
    return name in cluster.kubectl("-n", NS, "get", "pods", "-o", "name", check=False)
