"""examples/platform on a real cluster: restricted Pod Security, its migration Job, StatefulSet, Ingress
and autoscaler, every declared flow and a refusal for undeclared ones, the PDB against evictions,
claims through scale-down, and upgrades from delta bundles with Helm 3 and Helm 4.

The release is installed from its own signed bundle through registry.local:5000 with Helm 3, into a
namespace that enforces `restricted`: the API's pods start only once the migration Job has
completed, and `helm install --wait` succeeds only then.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import images
from tests.support.cluster import Cluster
from tests.support.registry import RegistryServer

from .conftest import TIMINGS
from .helpers import HELM3, HELM4, RELEASER, airgap_load, helm, publish, releaser_env, sh, tempdir
from .test_bmp import PROBE_IMAGE, REGISTRY, http_get, pod_security, probe, wait_for

NS = "platform"
CHART = f"oci://{REGISTRY}/charts/platform"


@pytest.fixture(scope="module")
def platform(cluster: Cluster) -> Iterator[dict[str, Any]]:
    """The publisher's registry stays up for the next versions' locks; the cluster never sees it
    (it has no route there): everything reaches the site as a bundle."""
    work = tempdir(cluster, "platform")
    env = releaser_env(work)
    publisher = RegistryServer(work / "publisher").start()
    try:
        rel = images.platform_release(work, publisher.host)
        bundle = work / "platform.tar.zst"
        key, pub = publish(work, rel, bundle, env)
        values = airgap_load(cluster, bundle, pub, work / "site", env)
        cluster.kubectl("create", "namespace", NS)
        cluster.kubectl("label", "namespace", NS, *pod_security("restricted"))
        t = time.monotonic()
        helm(cluster, HELM3, "install", "platform", CHART, "--version", "2.3.0", "--ca-file", str(cluster.ca),
             "-n", NS, "-f", str(values), "--wait", "--timeout", "5m")  # fmt: skip
        TIMINGS["helm install --wait, platform (its migration Job included)"] = time.monotonic() - t
        yield {
            "work": work,
            "rel": rel,
            "env": env,
            "bundle": bundle,
            "key": key,
            "pub": pub,
            "values": values,
        }
    finally:
        publisher.stop()


def kj(c: Cluster, *args: str) -> Any:
    return c.kjson("-n", NS, *args)


def migrate_job(c: Cluster, ns: str = NS) -> Any:
    """The migration's Job: a release object named by its spec (migrate-<hash>), one at a time."""
    jobs = c.kjson("-n", ns, "get", "jobs", "-l", "app.kubernetes.io/component=migrate")["items"]
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    return jobs[0]


def test_installs_restricted_with_its_job_statefulset_ingress_and_autoscaler(
    cluster: Cluster, platform: dict[str, Any]
) -> None:
    job = migrate_job(cluster)
    assert job["status"].get("succeeded") == 1, job["status"]
    store = kj(cluster, "get", "statefulset", "store")
    assert store["status"].get("readyReplicas") == 3, store["status"]
    assert kj(cluster, "get", "ingress", "console")["spec"]["rules"][0]["host"] == "console.example.com"
    for kind in ("deployment", "statefulset"):
        for item in kj(cluster, "get", kind)["items"]:
            cluster.kubectl(
                "-n", NS, "rollout", "status", f"{kind}/{item['metadata']['name']}", "--timeout=180s"
            )
    for p in kj(cluster, "get", "pods")["items"]:
        if p["metadata"]["name"].startswith("migrate-"):
            assert p["status"]["phase"] == "Succeeded", p["status"]
            continue
        ready = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        assert ready.get("Ready") == "True", p["metadata"]["name"]
    logs = cluster.kubectl("-n", NS, "logs", "deploy/worker")
    assert "scratch /var/cache/worker is writable" in logs and "the root file system is read-only" in logs


def test_the_job_completes_before_the_api_starts(cluster: Cluster, platform: dict[str, Any]) -> None:
    """release.yaml: api dependsOn migrate (a job). Compose starts the API once the job exited 0; on
    Kubernetes the API's pods start (their init container returns) only once the Job completed, and
    are Ready after that; the Job is no hook but a release object that stays for them to read."""
    job = migrate_job(cluster)
    done = job["status"]["completionTime"]
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {}), job["metadata"]
    for p in kj(cluster, "get", "pods", "-l", "app.kubernetes.io/component=api")["items"]:
        (init,) = p["status"]["initContainerStatuses"]
        assert init["name"] == "wait-for-jobs" and init["state"]["terminated"]["exitCode"] == 0, init
        assert init["state"]["terminated"]["finishedAt"] >= done, (init, done)
        ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and ready["lastTransitionTime"] >= done, (ready, done)
        logs = cluster.kubectl("-n", NS, "logs", p["metadata"]["name"], "-c", "wait-for-jobs")
        assert f"job {job['metadata']['name']}: complete" in logs, logs
    # the token is the init container's alone, and may read that Job and nothing else
    api = kj(cluster, "get", "deployment", "api")["spec"]["template"]["spec"]
    assert api["automountServiceAccountToken"] is False
    assert not any(m["name"] == "job-reader" for m in api["containers"][0].get("volumeMounts", []))
    role = kj(cluster, "get", "role", "api-jobs")
    assert role["rules"] == [
        {
            "apiGroups": ["batch"],
            "resources": ["jobs"],
            "verbs": ["get"],
            "resourceNames": [job["metadata"]["name"]],
        }
    ], role["rules"]
    account = f"system:serviceaccount:{NS}:api"
    for verb, what, allowed in (("get", f"jobs/{job['metadata']['name']}", "yes"), ("list", "jobs", "no"),
                                ("get", "secrets/platform-db-password", "no")):  # fmt: skip
        answer = cluster.kubectl("-n", NS, "auth", "can-i", verb, what, "--as", account, check=False)
        assert answer.strip() == allowed, (verb, what, answer)


def test_install_succeeds_only_with_the_job_complete(cluster: Cluster, platform: dict[str, Any]) -> None:
    """`helm install --wait` returned only after the migration Job succeeded, once (its pod
    Succeeded, no retries)."""
    job = migrate_job(cluster)
    assert job["status"].get("succeeded") == 1 and not job["status"].get("failed"), job["status"]
    history = json.loads(helm(cluster, HELM3, "history", "platform", "-n", NS, "-o", "json"))
    assert history[0]["status"] in ("deployed", "superseded"), history


@pytest.mark.parametrize("binary", [HELM3, HELM4], ids=["helm3", "helm4"])
def test_a_failing_job_fails_the_install(cluster: Cluster, platform: dict[str, Any], binary: str) -> None:
    """The same chart whose migration exits 3: `helm install --wait` fails (at its --timeout: the
    API never becomes Ready), no release is left 'deployed', and the API's init container says which
    job failed and how to read its logs. (Only the store and the API beside the job: two nodes of
    two cores hold one whole platform at a time.)"""
    ns = "platform-failing"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, *pod_security("restricted"))
    try:
        out = helm(
            cluster, binary, "install", "failing", CHART, "--version", "2.3.0", "--ca-file", str(cluster.ca),
            "-n", ns, "-f", str(platform["values"]), "--set", "services.migrate.args={migrate,--fail}",
            "--set", "services.migrate.job.backoffLimit=0", "--set", "services.worker.enabled=false",
            "--set", "services.console.enabled=false", "--set", "services.store.replicas=1",
            "--wait", "--timeout", "90s", check=False,
        )  # fmt: skip
        history = json.loads(helm(cluster, binary, "history", "failing", "-n", ns, "-o", "json"))
        assert history[-1]["status"] == "failed", (out, history)
        job = migrate_job(cluster, ns)
        assert job["status"].get("failed") == 1 and not job["status"].get("succeeded"), job["status"]
        name = job["metadata"]["name"]
        pod = cluster.kjson("-n", ns, "get", "pods", "-l", "app.kubernetes.io/component=api")["items"][0]
        logs = cluster.kubectl("-n", ns, "logs", pod["metadata"]["name"], "-c", "wait-for-jobs", check=False)
        assert f"FAIL job {name} failed (BackoffLimitExceeded" in logs, logs
        assert f"kubectl logs -n {ns} job/{name}" in logs, logs
        assert not any(c.get("ready") for c in pod["status"].get("containerStatuses", [])), pod["status"]
        assert not any(c.get("state", {}).get("running") for c in pod["status"].get("containerStatuses", []))
        # Helm 4 names the failed Job in the release's description; Helm 3 says its deadline passed
        said = history[-1]["description"]
        assert (
            f"Job/{ns}/{name} not ready. status: Failed" if binary == HELM4 else "context deadline exceeded"
        ) in said
    finally:
        helm(cluster, binary, "uninstall", "failing", "-n", ns, "--wait", check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False)


def can_connect(c: Cluster, selector: str, container: str, host: str, port: int) -> bool:
    """From a pod of the release, under its own policies: does a TCP connection open?"""
    pod = kj(c, "get", "pods", "-l", f"app.kubernetes.io/component={selector}")["items"][0]["metadata"][
        "name"
    ]
    script = f"busybox nc -w 3 {host} {port} </dev/null; echo rc=$?"
    out = c.kubectl("-n", NS, "exec", pod, "-c", container, "--", "sh", "-c", script, check=False)
    return "rc=0" in out


def test_helm_test_checks_every_service_and_a_denied_flow(cluster: Cluster, platform: dict[str, Any]) -> None:
    """`helm test` after the airgap install (Helm 3 and Helm 4 alike): every readiness endpoint through
    its Service, and store:7000 refused to the test pod by the store's own policy."""
    for binary in (HELM3, HELM4):
        out = helm(cluster, binary, "test", "platform", "-n", NS, "--timeout", "3m")
        assert "platform-test" in out and "Succeeded" in out, out


def test_helm_test_fails_naming_the_service_that_does_not_answer(
    cluster: Cluster, platform: dict[str, Any]
) -> None:
    cluster.kubectl("-n", NS, "scale", "deployment/console", "--replicas=0")
    try:
        wait_for(lambda: not kj(cluster, "get", "pods", "-l", "app.kubernetes.io/component=console")["items"],
                 what="the console's pods gone")  # fmt: skip
        out = helm(cluster, HELM3, "test", "platform", "-n", NS, "--logs", "--timeout", "3m", check=False)
        assert "FAIL http://console:8080/healthz" in out, out
        assert "ok   http://api:8081/ready" in out and "ok   !tcp://store:7000" in out, out
    finally:
        cluster.kubectl("-n", NS, "scale", "deployment/console", "--replicas=2")
        cluster.kubectl("-n", NS, "rollout", "status", "deployment/console", "--timeout=180s")
        cluster.kubectl("-n", NS, "delete", "pod", "platform-test", "--ignore-not-found")


def test_declared_flows_connect_and_undeclared_ones_are_refused(
    cluster: Cluster, platform: dict[str, Any]
) -> None:
    """kube-router enforces the chart's NetworkPolicies: each flow release.yaml declares opens, and
    the ones it does not are refused, from the real pods."""
    allowed = [
        ("api", "store", 5432),  # api -> store: declared
        ("console", "api", 8081),  # console -> api
        ("worker", "api", 8081),  # worker -> api
        ("store", "store-headless", 7000),  # the replicas talk to each other on peer
    ]
    refused = [
        ("worker", "store", 5432),  # worker -> store: not declared
        ("console", "store", 5432),
        ("api", "console", 8080),
        ("worker", "store", 9187),  # metrics: only the monitoring namespace
    ]
    for src, host, port in allowed:
        assert can_connect(cluster, src, src, host, port), f"{src} -> {host}:{port} should connect"
    for src, host, port in refused:
        assert not can_connect(cluster, src, src, host, port), f"{src} -> {host}:{port} should be refused"
    dns = cluster.kubectl(
        "-n",
        NS,
        "exec",
        "deploy/api",
        "-c",
        "api",
        "--",
        "busybox",
        "nslookup",
        "store-headless",
        check=False,
    )
    assert "Address" in dns and "store-headless" in dns, dns  # DNS is allowed to every pod


def test_the_exposed_port_takes_the_ingress_controller_and_nobody_else(
    cluster: Cluster, platform: dict[str, Any]
) -> None:
    """console:8080 is exposed through an Ingress: the ingress controller's namespace may reach it,
    another namespace may not (the public port's only door is the controller)."""
    get = http_get(f"console.{NS}.svc.cluster.local", 8080, "/healthz")
    for ns in ("ingress-nginx", "elsewhere"):
        cluster.kubectl("create", "namespace", ns, check=False)
    assert probe(cluster, "ingress-nginx", "controller", get, PROBE_IMAGE)
    assert not probe(cluster, "elsewhere", "outsider", get, PROBE_IMAGE)


def test_an_eviction_past_the_disruption_budget_is_refused(
    cluster: Cluster, platform: dict[str, Any]
) -> None:
    """store: maxUnavailable 1. One eviction is granted; a second while the first replica is still
    away is refused by the API server (429), as `kubectl drain` would be."""

    def evict(pod: str) -> subprocess.CompletedProcess[str]:
        body = json.dumps(
            {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": NS}}
        )
        return cluster.kubectl_run(
            "create", "--raw", f"/api/v1/namespaces/{NS}/pods/{pod}/eviction", "-f", "-", stdin=body
        )

    first = evict("store-0")
    assert first.returncode == 0, first.stderr
    second = evict("store-1")
    assert second.returncode != 0 and "disruption budget" in second.stderr, second.stderr
    wait_for(
        lambda: kj(cluster, "get", "statefulset", "store")["status"].get("readyReplicas") == 3, what="store"
    )


def test_each_replica_keeps_its_own_claim_through_a_scale_down(
    cluster: Cluster, platform: dict[str, Any]
) -> None:
    def claims() -> dict[str, tuple[str, str]]:
        return {
            p["metadata"]["name"]: (p["metadata"]["uid"], p["spec"].get("volumeName", ""))
            for p in kj(cluster, "get", "pvc")["items"]
        }

    before = claims()
    assert {"data-store-0", "data-store-1", "data-store-2"} <= set(before)
    for name in ("data-store-0", "data-store-1", "data-store-2"):
        assert kj(cluster, "get", "pvc", name)["status"]["phase"] == "Bound"
    assert len({v for _, v in before.values()}) == len(before)  # a volume each
    cluster.kubectl("-n", NS, "scale", "statefulset/store", "--replicas=2")
    wait_for(
        lambda: "store-2" not in {p["metadata"]["name"] for p in kj(cluster, "get", "pods")["items"]}, what=""
    )
    assert claims() == before  # kept while the replica is away
    cluster.kubectl("-n", NS, "scale", "statefulset/store", "--replicas=3")
    wait_for(
        lambda: kj(cluster, "get", "statefulset", "store")["status"].get("readyReplicas") == 3, what="store"
    )
    assert claims() == before  # and store-2 came back to its own


def test_the_autoscaler_targets_its_workload(cluster: Cluster, platform: dict[str, Any]) -> None:
    hpa = kj(cluster, "get", "hpa", "worker")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    worker = kj(cluster, "get", "deployment", "worker")
    assert worker["status"].get("readyReplicas", 0) >= 2
    manifest = yaml.safe_load_all(helm(cluster, HELM3, "get", "manifest", "platform", "-n", NS))
    deployment = next(
        d for d in manifest if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "worker"
    )
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the replica count


def test_rendered_as_gitops_tools_do_it_reads_the_secret_the_site_made(
    cluster: Cluster, platform: dict[str, Any]
) -> None:
    """`helm template` (Argo CD, Flux: no `lookup`) with preCreatedSecrets: two renders are
    byte-identical and carry no Secret; applied with kubectl into a namespace where the site made
    the Secret, the migration Job reads that password and the store and API come up."""
    ns = "gitops"
    args = ["template", "platform", CHART, "--version", "2.3.0", "--ca-file", str(cluster.ca), "-n", ns,
            "-f", str(platform["values"]), "--set", "preCreatedSecrets=true",
            "--set", "services.worker.enabled=false", "--set", "services.console.enabled=false"]  # fmt: skip
    first, second = helm(cluster, HELM3, *args), helm(cluster, HELM3, *args)
    assert first == second
    assert "kind: Secret\n" not in first
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, *pod_security("restricted"))
    cluster.kubectl(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "platform-db-password",
        "--from-literal=db-password=made-by-the-site",
    )
    try:
        cluster.kubectl("-n", ns, "apply", "-f", "-", stdin=first)
        wait_for(
            lambda: migrate_job(cluster, ns)["status"].get("succeeded") == 1,
            what="migrate",
        )
        cluster.kubectl("-n", ns, "rollout", "status", "statefulset/store", "--timeout=180s")
        cluster.kubectl("-n", ns, "rollout", "status", "deployment/api", "--timeout=180s")
        logs = cluster.kubectl("-n", ns, "logs", f"job/{migrate_job(cluster, ns)['metadata']['name']}")
        assert "the store password file is readable" in logs, logs
        secret = cluster.kjson("-n", ns, "get", "secret", "platform-db-password")
        assert secret["data"]["db-password"] == "bWFkZS1ieS10aGUtc2l0ZQ=="  # untouched
    finally:  # and its room back for the upgrades
        cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False)


# ------------------------------------------------------------------ upgrades
def _version(platform: dict[str, Any], version: str, *, edit: str = "", config: str = "") -> Path:
    """A copy of the installed platform release as `version`, locked (the same images)."""
    rel: Path = platform["work"] / version
    shutil.copytree(platform["rel"], rel)
    text = (rel / "release.yaml").read_text().replace("version: 2.3.0", f"version: {version}", 1)
    if edit:
        old, new = edit.split("=>")
        text = text.replace(old, new)
    (rel / "release.yaml").write_text(text)
    if config:
        (rel / "config/api.yaml").write_text(config)
    (rel / "release.lock.yaml").unlink()
    sh(RELEASER, "lock", str(rel), env=platform["env"])
    return rel


def _deliver(cluster: Cluster, platform: dict[str, Any], rel: Path, version: str) -> Path:
    """A delta bundle of `rel` against the installed bundle, loaded at the site."""
    delta = platform["work"] / f"platform-{version}-delta.tar.zst"
    sh(RELEASER, "bundle", str(rel), "--signing-key", platform["key"], "--since", str(platform["bundle"]),
       "--out-file", str(delta), "--no-installer", env=platform["env"])  # fmt: skip
    return airgap_load(cluster, delta, platform["pub"], platform["work"] / f"site-{version}", platform["env"])


@pytest.mark.parametrize("binary", [HELM3, HELM4], ids=["helm3", "helm4"])
def test_upgrades_from_a_delta_a_failing_upgrade_rolls_back_and_rollback_goes_back(
    cluster: Cluster, platform: dict[str, Any], binary: str
) -> None:
    """2.3.0 -> 2.4.0 delivered as a delta bundle (Helm 3 --atomic, Helm 4 --rollback-on-failure);
    2.5.0, whose API cannot start, rolls back by itself; `helm rollback` to the revision before.
    The store's claims and the generated secrets are the same throughout."""
    atomic = "--atomic" if binary == HELM3 else "--rollback-on-failure"
    claims = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kj(cluster, "get", "pvc")["items"]}
    secret = kj(cluster, "get", "secret", "platform-db-password")["data"]
    start = json.loads(helm(cluster, binary, "history", "platform", "-n", NS, "-o", "json"))[-1]["revision"]

    def upgrade(version: str, values: Path, deadline: str = "3m") -> str:
        return helm(cluster, binary, "upgrade", "platform", CHART, "--version", version, "--ca-file", str(cluster.ca),
                    "-n", NS, "-f", str(values), atomic, "--timeout", deadline, check=False)  # fmt: skip

    def config() -> str:
        return str(kj(cluster, "get", "configmap", "api-config")["data"]["api.yaml"])

    tag = "helm3" if binary == HELM3 else "helm4"
    good = _version(platform, f"2.4.0-{tag}", config=f"# api 2.4.0 ({tag})\nlisten: 8081\n")
    upgrade(f"2.4.0-{tag}", _deliver(cluster, platform, good, f"2.4.0-{tag}"))
    history = json.loads(helm(cluster, binary, "history", "platform", "-n", NS, "-o", "json"))
    assert history[-1]["status"] == "deployed" and history[-1]["chart"] == f"platform-2.4.0-{tag}", history
    assert config() == f"# api 2.4.0 ({tag})\nlisten: 8081\n"
    assert migrate_job(cluster)["status"].get("succeeded") == 1
    out = helm(cluster, binary, "test", "platform", "-n", NS, "--timeout", "3m")  # after the upgrade
    assert "Succeeded" in out, out
    broken = _version(
        platform, f"2.5.0-{tag}", edit='"--config=/etc/api/api.yaml"=>"--config=/etc/api/missing.yaml"'
    )
    upgrade(f"2.5.0-{tag}", _deliver(cluster, platform, broken, f"2.5.0-{tag}"), "75s")
    history = json.loads(helm(cluster, binary, "history", "platform", "-n", NS, "-o", "json"))
    assert history[-1]["status"] == "deployed" and history[-1]["chart"] == f"platform-2.4.0-{tag}", history
    assert any(h["status"] == "failed" and h["chart"] == f"platform-2.5.0-{tag}" for h in history), history
    assert config() == f"# api 2.4.0 ({tag})\nlisten: 8081\n"
    helm(cluster, binary, "rollback", "platform", str(start), "-n", NS, "--wait", "--timeout", "3m")
    assert config() == (platform["rel"] / "config/api.yaml").read_text()
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in kj(cluster, "get", "pvc")["items"]} == claims
    assert kj(cluster, "get", "secret", "platform-db-password")["data"] == secret
    cluster.kubectl("-n", NS, "rollout", "status", "statefulset/store", "--timeout=180s")
