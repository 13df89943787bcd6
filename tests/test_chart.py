"""The generated chart against real Helm 3.19 and Helm 4, and kubernetes-validate 1.29-1.37.

Also asserts on the rendered objects: restricted pod security, hostNetwork only
where TCP-AO needs it, NET_ADMIN only on the sidecar, NetworkPolicy flow by
flow, PDBs, checksums that roll only the affected pods, the airgap registry
override, and TOML parity between the chart and Compose.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from releaser.commands.check import collect_manifest_images
from releaser.pipeline import load_plan, render_files
from releaser.release import load_release

from .conftest import RELEASES, ROOT
from .support.agreement import disagreements
from .support.chartsite import site

KUBE_VERSIONS = [f"1.{m}.0" for m in range(29, 38)]


def write_chart(name: str, tmp_path: Path) -> Path:
    plan, _ = load_plan(RELEASES[name])
    files = render_files(plan)
    chart = tmp_path / "charts" / name
    for rel, content in files[f"charts/{name}"].items():
        (chart / rel).parent.mkdir(parents=True, exist_ok=True)
        (chart / rel).write_bytes(content)
    return chart


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)


def template(helm: str, chart: Path, *args: str) -> list[dict[str, Any]]:
    proc = run([helm, "template", "rel", str(chart), "--namespace", "ns", *site(chart), *args])
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployments, StatefulSets and DaemonSets by name."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")}


@pytest.fixture(scope="module", params=sorted(RELEASES))
def chart(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chart(request.param, tmp_path_factory.mktemp("chart"))


@pytest.mark.helm
def test_helm_lint_strict(helm: str, chart: Path) -> None:
    proc = run([helm, "lint", "--strict", str(chart), *site(chart)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.helm
def test_manifests_validate_strictly_on_every_kubernetes_version(helm: str, chart: Path) -> None:
    docs = template(helm, chart)
    assert docs
    for version in KUBE_VERSIONS:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"k8s {version}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at "
                    f"{'.'.join(map(str, exc.path))}"
                )


@pytest.mark.helm
def test_kube_version_below_the_floor_is_refused(helm3: str, tmp_path: Path) -> None:
    chart = write_chart("bmp-tcpao", tmp_path)
    proc = run([helm3, "template", "rel", str(chart), *site(chart), "--kube-version", "1.27.0"])
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr


@pytest.mark.helm
def test_every_image_is_the_locked_digest(helm: str, chart: Path) -> None:
    plan, _ = load_plan(RELEASES[chart.name])
    proc = run([helm, "template", "rel", str(chart), *site(chart)])
    refs = {ref for _, ref in collect_manifest_images(proc.stdout)}
    assert refs == plan.pinned_references()


@pytest.mark.helm
def test_global_registry_override_keeps_digests(helm: str, chart: Path) -> None:
    plan, _ = load_plan(RELEASES[chart.name])
    proc = run(
        [
            helm,
            "template",
            "rel",
            str(chart),
            *site(chart),
            "--set",
            "global.imageRegistry=registry.local:5000/mirror",
        ]
    )
    refs = {ref for _, ref in collect_manifest_images(proc.stdout)}
    assert refs == {f"registry.local:5000/mirror/{i.repository}@{i.digest}" for i in plan.images}


@pytest.mark.helm
def test_values_schema_rejects_typos_and_bad_digests(helm: str, tmp_path: Path) -> None:
    chart = write_chart("bmp-tcpao", tmp_path)
    proc = run([helm, "template", "rel", str(chart), *site(chart), "--set", "services.bus.replicass=2"])
    assert proc.returncode != 0 and "replicass" in proc.stderr
    proc = run([helm, "template", "rel", str(chart), *site(chart), "--set", "images.nats.digest=latest"])
    assert proc.returncode != 0 and "digest" in proc.stderr


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


@pytest.mark.helm
def test_restricted_security_defaults(helm3: str, chart: Path) -> None:
    docs = template(helm3, chart)
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    assert workloads
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in _containers(w):
            sc = c["securityContext"]
            assert "@sha256:" in c["image"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            # every container, the TCP-AO sidecar included, runs unprivileged: no root, nothing added
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
            assert "NET_ADMIN" not in sc["capabilities"].get("add", [])
            if c["name"] == "tcpao":
                assert "add" not in sc["capabilities"] and sc["runAsUser"] >= 10000
                assert pod["hostNetwork"] is True
                assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    for sa in by_kind(docs, "ServiceAccount").values():
        assert sa["automountServiceAccountToken"] is False


@pytest.mark.helm
def test_bmp_example_objects(helm4: str, tmp_path: Path) -> None:
    docs = template(helm4, write_chart("bmp-tcpao", tmp_path))
    deployments = workloads(docs)
    assert {n: d["kind"] for n, d in deployments.items()} == {
        "bus": "StatefulSet",
        "collector": "Deployment",
        "speaker": "Deployment",
    }
    assert "hostNetwork" not in deployments["bus"]["spec"]["template"]["spec"]
    # the bus: JetStream's /data is a volume per replica, with stable names through a headless Service
    bus_set = deployments["bus"]["spec"]
    assert bus_set["serviceName"] == "bus-headless" and bus_set["replicas"] == 3
    (claim,) = bus_set["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "jetstream"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert {"name": "jetstream", "mountPath": "/data"} in bus_set["template"]["spec"]["containers"][0][
        "volumeMounts"
    ]
    assert not any(v["name"] == "jetstream" for v in bus_set["template"]["spec"]["volumes"])
    assert "bus-jetstream" not in by_kind(docs, "PersistentVolumeClaim")
    headless = by_kind(docs, "Service")["bus-headless"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    policies = by_kind(docs, "NetworkPolicy")
    # default deny + bus only: the hostNetwork pods get none (NetworkPolicy cannot select them)
    assert set(policies) == {"rel-default-deny", "bus", "rel-test"}  # rel-test: the helm test pod's
    assert policies["rel-default-deny"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    bus = policies["bus"]["spec"]
    assert bus["ingress"] == [
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 4222, "protocol": "TCP"}]},
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"port": 8222, "protocol": "TCP"}],
        },
        {  # the helm test pod, to the readiness port
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {"app.kubernetes.io/instance": "rel", "releaser.dev/test": "probe"}
                    }
                }
            ],
            "ports": [{"port": 8222, "protocol": "TCP"}],
        },
    ]
    assert [p["port"] for p in bus["egress"][0]["ports"]] == [53, 53]  # DNS only
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(pdbs) == {"bus"}
    assert pdbs["bus"]["spec"]["minAvailable"] == 2
    assert (
        pdbs["bus"]["spec"]["selector"]["matchLabels"]
        == deployments["bus"]["spec"]["selector"]["matchLabels"]
    )
    secrets = by_kind(docs, "Secret")
    assert set(secrets) == {"bmp-tcpao-nats-token"}  # generated only; the TCP-AO key is never created
    pvcs = by_kind(docs, "PersistentVolumeClaim")
    assert pvcs["speaker-state"]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.helm
def test_kitchen_sink_flows(helm3: str, tmp_path: Path) -> None:
    docs = template(helm3, write_chart("kitchen-sink", tmp_path))
    assert by_kind(docs, "DaemonSet")["agent"]["spec"]["template"]["spec"]["hostNetwork"] is True
    policies = by_kind(docs, "NetworkPolicy")
    assert "agent" not in policies
    sel = {"app.kubernetes.io/name": "kitchen-sink", "app.kubernetes.io/instance": "rel"}
    db = policies["db"]["spec"]
    assert db["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {**sel, "app.kubernetes.io/component": "api"}}}],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        },
        {
            "from": [{"podSelector": {"matchLabels": {**sel, "app.kubernetes.io/component": "worker"}}}],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        },
        {
            "from": [{"podSelector": {"matchLabels": {**sel, "app.kubernetes.io/component": "migrate"}}}],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        },
    ]
    api_egress = policies["api"]["spec"]["egress"]
    targets = [
        (
            e["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
            or e["to"][0].get("ipBlock", {}).get("cidr")
            or "dns",
            [p["port"] for p in e["ports"]],
        )
        for e in api_egress
    ]
    assert targets == [("dns", [53, 53]), ("worker", [8125]), ("db", [5432]), ("203.0.113.0/24", [443])]
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert pdbs["api"]["spec"] == {"maxUnavailable": 1, "selector": pdbs["api"]["spec"]["selector"]}
    assert pdbs["worker"]["spec"]["maxUnavailable"] == 1
    assert "agent" not in pdbs and "db" not in pdbs
    services = by_kind(docs, "Service")
    assert [p["port"] for p in services["api-public"]["spec"]["ports"]] == [8443]
    assert services["api-public"]["spec"]["type"] == "ClusterIP"
    api = _containers(by_kind(docs, "Deployment")["api"])[0]
    assert api["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    assert {"name": "DB_PASSWORD_FILE", "value": "/run/secrets/db-password"} in api["env"]
    secrets = by_kind(docs, "Secret")
    assert set(secrets) == {"kitchen-sink-session-key"}  # acme-db is the user's own
    # the public port is reachable through the default deny: its own rule, from anywhere
    assert policies["api"]["spec"]["ingress"][-1] == {"ports": [{"port": 8443, "protocol": "TCP"}]}


@pytest.mark.helm
def test_public_ports_pass_the_network_policy_and_values_narrow_who_reaches_them(
    helm: str, tmp_path: Path
) -> None:
    """A public port's Service would be useless behind the release's default deny: the port gets an
    ingress rule, open to anyone by default, narrowed by services.<name>.publicService.allowFrom."""
    chart = write_chart("kitchen-sink", tmp_path)
    values = tmp_path / "narrow.yaml"
    values.write_text(
        "services:\n  api:\n    publicService:\n      allowFrom:\n"
        "        - {cidr: 198.51.100.0/24}\n        - {namespace: ingress-nginx}\n"
    )
    api = by_kind(template(helm, chart, "-f", str(values)), "NetworkPolicy")["api"]["spec"]["ingress"]
    assert api[-1] == {
        "ports": [{"port": 8443, "protocol": "TCP"}],
        "from": [
            {"ipBlock": {"cidr": "198.51.100.0/24"}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        ],
    }
    values.write_text("services:\n  api:\n    publicService:\n      allowFrom: [{host: x}]\n")
    proc = run([helm, "template", "rel", str(chart), "-f", str(values)])
    assert proc.returncode != 0 and "allowFrom" in proc.stderr


@pytest.mark.helm
def test_config_checksum_rolls_only_the_affected_pods(helm: str, tmp_path: Path) -> None:
    chart = write_chart("bmp-tcpao", tmp_path)

    def checksums(*args: str) -> dict[str, str]:
        return {
            n: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for n, d in workloads(template(helm, chart, *args)).items()
        }

    base = checksums()
    env = checksums("--set", "services.collector.env.GOBMP_LOG_LEVEL=debug")
    assert env["collector"] != base["collector"]
    assert env["bus"] == base["bus"] and env["speaker"] == base["speaker"]
    remote = checksums("--set", "services.speaker.tcpao.peerIP=192.0.2.7")
    assert remote["speaker"] != base["speaker"] and remote["collector"] == base["collector"]


@pytest.mark.helm
def test_a_service_monitor_only_when_asked_and_the_cluster_has_the_crd(helm: str, tmp_path: Path) -> None:
    chart = write_chart("kitchen-sink", tmp_path)
    asked = (
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prom",
    )
    assert not by_kind(template(helm, chart, *asked), "ServiceMonitor")  # no CRD: nothing to create
    docs = template(helm, chart, *asked, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    (monitor,) = by_kind(docs, "ServiceMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    # it selects the api Service only, not api-public (which carries no metrics port)
    services = [
        s
        for s in by_kind(docs, "Service").values()
        if all(
            s["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items()
        )
        and "releaser.dev/variant" not in s["metadata"]["labels"]
    ]
    assert [s["metadata"]["name"] for s in services] == ["api"]
    assert by_kind(docs, "Service")["api-public"]["metadata"]["labels"]["releaser.dev/variant"] == "public"


@pytest.mark.helm
def test_config_files_are_a_configmap_mounted_file_by_file_and_values_change_them(
    helm: str, tmp_path: Path
) -> None:
    chart = write_chart("kitchen-sink", tmp_path)
    docs = template(helm, chart)
    cm = by_kind(docs, "ConfigMap")["api-config"]["data"]
    fixture = (ROOT / "tests/fixtures/kitchen-sink/config/api.yaml").read_text()
    assert cm == {
        "api.yaml": fixture,
        "motd": 'Welcome to the api. "Quotes" and $dollars stay as written.\n',
    }
    pod = by_kind(docs, "Deployment")["api"]["spec"]["template"]["spec"]
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "config"]
    assert mounts == [
        {"name": "config", "mountPath": "/etc/api/api.yaml", "subPath": "api.yaml", "readOnly": True},
        {"name": "config", "mountPath": "/etc/api/motd", "subPath": "motd", "readOnly": True},
    ]
    assert {"name": "config", "configMap": {"name": "api-config", "defaultMode": 0o444}} in pod["volumes"]
    assert "db-config" not in by_kind(docs, "ConfigMap")
    # values change a file's content: its ConfigMap follows and only api's pods roll
    values = tmp_path / "motd.yaml"
    values.write_text(
        "services:\n  api:\n    configs:\n"
        "      - {name: api.yaml, path: /etc/api/api.yaml, content: 'listen: \":9443\"'}\n"
        "      - {name: motd, path: /etc/api/motd, content: hello}\n"
    )
    changed = template(helm, chart, "-f", str(values))
    assert by_kind(changed, "ConfigMap")["api-config"]["data"]["motd"] == "hello"

    def checksum(ds: list[dict[str, Any]], name: str) -> str:
        return str(
            by_kind(ds, "Deployment")[name]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        )

    assert checksum(changed, "api") != checksum(docs, "api") and checksum(changed, "db") == checksum(
        docs, "db"
    )


@pytest.mark.helm
def test_sidecar_config_is_identical_in_chart_and_compose(helm: str, tmp_path: Path) -> None:
    plan, _ = load_plan(RELEASES["bmp-tcpao"])
    compose = render_files(plan)["compose/bmp-tcpao"]
    docs = template(helm, write_chart("bmp-tcpao", tmp_path))
    maps = by_kind(docs, "ConfigMap")
    for svc in ("collector", "speaker"):
        assert maps[f"{svc}-tcpao"]["data"]["config.toml"] == compose[f"tcpao/{svc}.toml"].decode()


@pytest.mark.helm
def test_install_dry_run_prints_notes(helm4: str, tmp_path: Path) -> None:
    # Helm 4's client-side dry run renders NOTES.txt offline; Helm 3's needs a cluster.
    chart = write_chart("bmp-tcpao", tmp_path)
    proc = run([helm4, "install", "bmp", str(chart), *site(chart), "--dry-run=client", "--namespace", "bmp"])
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert (
        "NetworkPolicy does not apply to hostNetwork pods, so this chart creates none for collector" in notes
    )
    assert "bmp-tcpao-key (key tcpao-key), used by collector TCP-AO sidecar, speaker TCP-AO sidecar" in notes
    assert "TCP-AO initiator on node speaker-node: connects to 10.77.0.10:1790 (collector's node)" in notes


@pytest.mark.helm
def test_scheduling_spread_one_per_node_and_tcpao_nodes(helm: str, tmp_path: Path) -> None:
    docs = template(helm, write_chart("bmp-tcpao", tmp_path), "--set", "global.tcpaoNodeLabel=example.com/ao")
    deployments = workloads(docs)
    bus = deployments["bus"]["spec"]["template"]["spec"]
    (spread,) = bus["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == deployments["bus"]["spec"]["selector"]["matchLabels"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and "affinity" not in bus
    for name in ("collector", "speaker"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"example.com/ao": "true", "kubernetes.io/hostname": f"{name}-node"}
        (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"] == deployments[name]["spec"]["selector"]["matchLabels"]
    # every PDB selects exactly its own Deployment's pods
    for name, pdb in by_kind(docs, "PodDisruptionBudget").items():
        assert (
            pdb["spec"]["selector"]["matchLabels"]
            == deployments[name]["spec"]["template"]["metadata"]["labels"]
        )


@pytest.mark.helm
@pytest.mark.registry
def test_packaged_chart_is_deterministic_and_travels_through_an_oci_registry(
    helm: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from releaser.cli import app

    from .support.registry import RegistryServer

    runner = CliRunner()
    shas = set()
    for i in range(2):
        result = runner.invoke(
            app,
            [
                "render",
                str(RELEASES["bmp-tcpao"]),
                "--out-dir",
                str(tmp_path / f"o{i}"),
                "--package",
                str(tmp_path / f"p{i}"),
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        shas.add(json.loads(result.output)["result"]["packageSha256"])
    assert len(shas) == 1
    tgz = tmp_path / "p0" / "bmp-tcpao-1.4.0.tgz"
    assert (tmp_path / "p1" / tgz.name).read_bytes() == tgz.read_bytes()
    assert (
        run([helm, "lint", "--strict", str(tgz), *site(tmp_path / "o0" / "charts" / "bmp-tcpao")]).returncode
        == 0
    )
    registry = RegistryServer(tmp_path / "reg").start()
    try:
        push = run([helm, "push", str(tgz), f"oci://{registry.host}/charts", "--plain-http"])
        assert push.returncode == 0, push.stderr
        digest = next(w for w in (push.stdout + push.stderr).split() if w.startswith("sha256:"))
        pulled = tmp_path / "pulled"
        pulled.mkdir()
        pull = run(
            [
                helm,
                "pull",
                f"oci://{registry.host}/charts/bmp-tcpao@{digest}",
                "--plain-http",
                "-d",
                str(pulled),
            ]
        )
        assert pull.returncode == 0, pull.stderr
        (got,) = list(pulled.iterdir())
        assert got.read_bytes() == tgz.read_bytes()
        docs = template(helm, got, *site(tmp_path / "o0" / "charts" / "bmp-tcpao"))
        assert by_kind(docs, "Deployment")
    finally:
        registry.stop()


@pytest.mark.helm
def test_namespace_with_pod_security_labels_is_optional(helm: str, tmp_path: Path) -> None:
    chart = write_chart("bmp-tcpao", tmp_path)
    assert by_kind(template(helm, chart), "Namespace") == {}  # off by default
    docs = template(helm, chart, "--set", "namespace.create=true")
    ns = by_kind(docs, "Namespace")["ns"]
    assert ns["metadata"]["labels"] == {
        "pod-security.kubernetes.io/enforce": "privileged",  # hostNetwork sidecars
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }
    assert ns["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(ns, version, strict=True)
    proc = run(
        [helm, "template", "rel", str(chart), *site(chart), "--set", "namespace.podSecurity.enforce=lax"]
    )
    assert proc.returncode != 0 and "/namespace/podSecurity/enforce" in proc.stderr  # the values schema


@pytest.mark.helm
def test_one_per_node_deployments_never_surge(helm: str, tmp_path: Path) -> None:
    """A hostNetwork Deployment's surge pod would find no free node (required anti-affinity,
    node ports): the rollout must remove the old pod first, or `helm upgrade` hangs."""
    docs = template(helm, write_chart("bmp-tcpao", tmp_path))
    deploys = workloads(docs)
    collector = deploys["collector"]["spec"]
    assert collector["template"]["spec"]["hostNetwork"] is True
    assert collector["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    assert deploys["speaker"]["spec"]["strategy"] == {"type": "Recreate"}  # it has a claim
    assert (
        "strategy" not in deploys["bus"]["spec"]
    )  # a StatefulSet: its own rolling update, one replica at a time


@pytest.mark.helm
def test_the_e2e_install_values_render_as_it_expects(helm: str, tmp_path: Path) -> None:
    """What tests/e2e/test_bmp.py installs (values-airgap.yaml as `releaser airgap --to` writes it,
    plus the site's node pinning and peer addresses), rendered offline on Helm 3 and 4: the schema
    takes the values, every object validates on every Kubernetes minor, and each value lands
    where the e2e run relies on it."""
    from releaser.render.overrides import airgap_values
    from releaser.target import Target

    from .e2e.test_bmp import REGISTRY as LOCAL
    from .e2e.test_bmp import site_values

    chart = write_chart("bmp-tcpao", tmp_path)
    airgap = tmp_path / "values-airgap.yaml"
    airgap.write_bytes(airgap_values("bmp-tcpao", Target.parse(LOCAL)))
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(site_values("control-plane", "worker", "172.18.0.3", "172.18.0.4")))
    docs = template(helm, chart, "-f", str(airgap), "-f", str(site))
    for version in (KUBE_VERSIONS[0], KUBE_VERSIONS[-1]):
        for d in docs:
            kubernetes_validate.validate(d, version, strict=True)
    deployments = workloads(docs)
    images = [c["image"] for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]]
    assert images and all(i.startswith(f"{LOCAL}/") and "@sha256:" in i for i in images)
    for name, node in (("collector", "control-plane"), ("speaker", "worker")):
        assert deployments[name]["spec"]["template"]["spec"]["nodeSelector"] == {
            "kubernetes.io/hostname": node,
            "releaser.dev/tcp-ao": "true",
        }  # pinned, and still TCP-AO nodes only
    config = "\n".join(v for d in by_kind(docs, "ConfigMap").values() for v in (d.get("data") or {}).values())
    assert 'remote_ao = "172.18.0.3:1790"' in config and config.count('peer_ip = "172.18.0.3"') == 1
    assert config.count('peer_ip = "172.18.0.4"') == 1


@pytest.mark.helm
def test_tcpao_peers_have_no_default_and_the_chart_names_the_values_it_needs(
    helm: str, tmp_path: Path
) -> None:
    """The TCP-AO peers' nodes are the site's: without them `helm template` (and `helm install`:
    tests/e2e/test_bmp.py) stops before anything is made, naming each value and whose node it is;
    the README's site.yaml left unfilled is refused by the schema; a nodeSelector pinning another
    node, or the deprecated `remote` disagreeing with peerIP:peerPort, is refused; and filled in,
    each sidecar's pod is pinned to its node and keyed to the other's address."""
    chart = write_chart("bmp-tcpao", tmp_path)
    bare = run([helm, "template", "rel", str(chart)])
    assert bare.returncode != 0 and not bare.stdout, bare.stdout
    for needed in (
        "services.collector.tcpao.node: the node that runs collector",
        "services.collector.tcpao.peerIP: the address of the node that runs speaker (services.speaker.tcpao.node;",
        "services.speaker.tcpao.node: the node that runs speaker",
        "services.speaker.tcpao.peerIP: the address of the node that runs collector (services.collector.tcpao.node;",
    ):
        assert needed in bare.stderr, bare.stderr
    assert "10.77.0" not in bare.stderr  # no Compose address offered as a default
    readme = (chart / "README.md").read_text()
    example = tmp_path / "example.yaml"
    example.write_text(readme.split("```yaml\n", 1)[1].split("```", 1)[0])
    unfilled = run([helm, "template", "rel", str(chart), "-f", str(example)])
    assert unfilled.returncode != 0, unfilled.stdout
    for where in ("/services/collector/tcpao/node", "/services/speaker/tcpao/peerIP"):
        assert where in unfilled.stderr, unfilled.stderr
    site = tmp_path / "site.yaml"
    site.write_text(
        "services:\n"
        "  collector: {tcpao: {node: node-a, peerIP: 192.0.2.20}}\n"
        "  speaker: {tcpao: {node: node-b, peerIP: 192.0.2.10}}\n"
    )
    elsewhere = run([helm, "template", "rel", str(chart), "-f", str(site),
                     "--set", "services.speaker.nodeSelector.kubernetes\\.io/hostname=node-c"])  # fmt: skip
    assert elsewhere.returncode != 0
    assert (
        "services.speaker.nodeSelector pins kubernetes.io/hostname=node-c but services.speaker.tcpao.node is node-b"
        in (elsewhere.stderr)
    )
    stale = run(
        [
            helm,
            "template",
            "rel",
            str(chart),
            "-f",
            str(site),
            "--set",
            "services.speaker.tcpao.remote=10.77.0.10:1790",
        ]
    )
    assert stale.returncode != 0
    assert (
        "services.speaker.tcpao.remote is 10.77.0.10:1790 but the initiator connects to peerIP:peerPort, 192.0.2.10:1790"
        in (stale.stderr)
    )
    docs = template(helm, chart, "-f", str(site), "--set", "services.speaker.tcpao.remote=192.0.2.10:1790")
    pods = {n: w["spec"]["template"]["spec"] for n, w in workloads(docs).items()}
    assert pods["collector"]["nodeSelector"]["kubernetes.io/hostname"] == "node-a"
    assert pods["speaker"]["nodeSelector"]["kubernetes.io/hostname"] == "node-b"
    maps = by_kind(docs, "ConfigMap")
    assert 'peer_ip = "192.0.2.20"' in maps["collector-tcpao"]["data"]["config.toml"]
    speaker = maps["speaker-tcpao"]["data"]["config.toml"]
    assert 'remote_ao = "192.0.2.10:1790"' in speaker and 'peer_ip = "192.0.2.10"' in speaker


@pytest.mark.helm
def test_scheduling_knobs_in_values_keep_what_the_chart_decides(helm: str, tmp_path: Path) -> None:
    """tolerations, affinity and priorityClassName per service from values; a hostNetwork service
    keeps its one-per-node anti-affinity beside the node affinity a site adds."""
    chart = write_chart("bmp-tcpao", tmp_path)
    values = tmp_path / "site.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "collector": {
                        "priorityClassName": "bmp-critical",
                        "tolerations": [
                            {"key": "dedicated", "operator": "Equal", "value": "bmp", "effect": "NoSchedule"}
                        ],
                        "affinity": {
                            "nodeAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": {
                                    "nodeSelectorTerms": [
                                        {
                                            "matchExpressions": [
                                                {"key": "zone", "operator": "In", "values": ["a"]}
                                            ]
                                        }
                                    ]
                                }
                            }
                        },
                    }
                }
            }
        )
    )
    pod = workloads(template(helm, chart, "-f", str(values)))["collector"]["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "bmp-critical"
    assert pod["tolerations"][0]["value"] == "bmp"
    assert set(pod["affinity"]) == {"nodeAffinity", "podAntiAffinity"}
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    default = workloads(template(helm, chart))["collector"]["spec"]["template"]["spec"]
    assert "priorityClassName" not in default and set(default["affinity"]) == {"podAntiAffinity"}


@pytest.mark.helm
def test_a_job_services_wait_for_is_a_release_job_their_pods_wait_on(helm: str, tmp_path: Path) -> None:
    """api dependsOn migrate: the Job is no hook, named by its spec (a change is a new Job); the
    API's pods wait in an init container of the probe image holding the only token, whose Role may
    get that Job alone; the API may reach the API server's ports (narrowed by apiServer.cidrs)."""
    chart = write_chart("platform", tmp_path)
    docs = template(helm, chart)
    (job,) = by_kind(docs, "Job").values()
    name = job["metadata"]["name"]
    assert name.startswith("migrate-") and len(name) == len("migrate-") + 10
    assert "annotations" not in job["metadata"] and "ttlSecondsAfterFinished" not in job["spec"]
    assert list(by_kind(template(helm, chart), "Job")) == [name]  # the same on every render (GitOps)
    again = by_kind(template(helm, chart, "--set", "services.migrate.job.backoffLimit=5"), "Job")
    assert list(again) != [name]  # a changed job is a new Job
    api = workloads(docs)["api"]["spec"]["template"]["spec"]
    (init,) = api["initContainers"]
    assert init["name"] == "wait-for-jobs" and init["args"] == ["jobs", name]
    assert "@sha256:" in init["image"] and "releaser-probe" in init["image"]
    assert init["securityContext"]["runAsUser"] == 65532 and init["securityContext"]["readOnlyRootFilesystem"]
    assert api["automountServiceAccountToken"] is False
    assert [m["name"] for m in init["volumeMounts"]] == ["job-reader"]
    assert all(m["name"] != "job-reader" for c in api["containers"] for m in c.get("volumeMounts", []))
    reader = next(v for v in api["volumes"] if v["name"] == "job-reader")["projected"]["sources"]
    assert reader[0]["serviceAccountToken"]["expirationSeconds"] == 3600
    assert by_kind(docs, "Role")["api-jobs"]["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"], "resourceNames": [name]}
    ]
    assert by_kind(docs, "RoleBinding")["api-jobs"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "api", "namespace": "ns"}
    ]
    assert set(by_kind(docs, "Role")) == {"api-jobs"}  # nobody else gets a token

    def api_server_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        egress = by_kind(docs, "NetworkPolicy")["api"]["spec"]["egress"]
        return [r for r in egress if {p["port"] for p in r["ports"]} == {443, 6443}]

    assert api_server_rules(docs) == [
        {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    ]
    narrowed = template(helm, chart, "--set", "networkPolicy.apiServer.cidrs={192.0.2.10/32}")
    assert api_server_rules(narrowed)[0]["to"] == [{"ipBlock": {"cidr": "192.0.2.10/32"}}]
    for other, policy in by_kind(docs, "NetworkPolicy").items():  # the API alone
        ports = [{p["port"] for p in r.get("ports", [])} for r in policy["spec"].get("egress", [])]
        assert other == "api" or {443, 6443} not in ports, other
    # the job switched off: nothing to wait for, no token, no Role
    off = template(helm, chart, "--set", "services.migrate.enabled=false")
    assert "initContainers" not in workloads(off)["api"]["spec"]["template"]["spec"]
    assert not by_kind(off, "Role") and not api_server_rules(off)


def test_validate_says_hooks_do_not_apply_to_a_job_services_wait_for(tmp_path: Path) -> None:
    rel = tmp_path / "platform"
    shutil.copytree(RELEASES["platform"], rel)
    text = (rel / "release.yaml").read_text()
    (rel / "release.yaml").write_text(
        text.replace("    job:   #", "    job:\n      hooks: [post-install]\n    #", 1)
    )
    _, warnings = load_release(rel)
    (w,) = [w for w in warnings if w.path.endswith("migrate.job.hooks")]
    assert "hooks apply to a job nothing dependsOn: api dependsOn migrate" in w.message, w.message
    assert w.fix == "remove hooks"


@pytest.mark.helm
def test_without_the_probe_a_job_is_a_hook_and_validate_says_what_that_costs(
    helm: str, tmp_path: Path
) -> None:
    rel = tmp_path / "platform"
    shutil.copytree(RELEASES["platform"], rel)
    text = (rel / "release.yaml").read_text().replace("probe: {image: probe}\n", "", 1)
    text = text.replace("    job:   #", "    job:\n      hooks: [post-install, pre-upgrade]\n    #", 1)
    (rel / "release.yaml").write_text(text)
    _, warnings = load_release(rel)
    assert any("without a probe image the chart runs migrate as a Helm hook" in w.message for w in warnings)
    plan, _ = load_plan(rel)
    chart = tmp_path / "charts" / "platform"
    for name, content in render_files(plan)["charts/platform"].items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_bytes(content)
    docs = template(helm, chart)
    (job,) = by_kind(docs, "Job").values()
    assert job["metadata"]["name"] == "migrate"
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    assert "initContainers" not in workloads(docs)["api"]["spec"]["template"]["spec"]
    assert not by_kind(docs, "Role")


@pytest.mark.helm
def test_platform_example_objects(helm4: str, tmp_path: Path) -> None:
    """examples/platform in the shape of a real product: the console behind an Ingress with TLS,
    the api with its config and migration job, the worker autoscaled, the store a StatefulSet with
    a volume per replica, metrics on every service, and exactly the declared flows."""
    docs = template(helm4, write_chart("platform", tmp_path))
    kinds = {n: d["kind"] for n, d in workloads(docs).items()}
    kinds.update(
        {d["metadata"]["labels"]["app.kubernetes.io/component"]: "Job" for d in by_kind(docs, "Job").values()}
    )
    assert kinds == {
        "api": "Deployment",
        "console": "Deployment",
        "worker": "Deployment",
        "store": "StatefulSet",
        "migrate": "Job",
    }
    assert by_kind(docs, "Ingress")["console"]["spec"]["tls"] == [
        {"hosts": ["console.example.com"], "secretName": "console-tls"}
    ]
    assert set(by_kind(docs, "HorizontalPodAutoscaler")) == {"worker"}
    assert set(by_kind(docs, "ConfigMap")) == {"api-config"}
    api_env = _containers(workloads(docs)["api"])[0]["env"]
    assert {"name": "API_CONFIG_FILE", "value": "/etc/api/api.yaml"} in api_env  # the config's path
    assert {"name": "DB_PASSWORD_FILE", "value": "/run/secrets/db-password"} in api_env
    store = workloads(docs)["store"]["spec"]
    assert [c["metadata"]["name"] for c in store["volumeClaimTemplates"]] == ["data"]
    for name, d in workloads(docs).items():
        assert d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true", name
    policies = by_kind(docs, "NetworkPolicy")
    peers = {
        name: sorted(
            f["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for rule in p["spec"].get("ingress") or []
            for f in rule.get("from", [])
            if "podSelector" in f
            and "namespaceSelector" not in f
            and "releaser.dev/test" not in f["podSelector"]["matchLabels"]
        )
        for name, p in policies.items()
        if name not in ("rel-default-deny", "rel-test")
    }
    assert peers == {
        "api": ["console", "worker"],
        "console": [],
        "migrate": [],
        "store": ["api", "migrate", "store"],
        "worker": [],
    }
    # the helm test pod: admitted to each readiness port and to nothing else
    tested = {
        name: [p["port"] for p in rule["ports"]]
        for name, policy in policies.items()
        for rule in policy["spec"].get("ingress") or []
        for f in rule.get("from", [])
        if f.get("podSelector", {}).get("matchLabels", {}).get("releaser.dev/test") == "probe"
    }
    assert tested == {"api": [8081], "console": [8080], "store": [5432], "worker": [9090]}
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"] == [
        "--attempts",
        "5",
        "http://api:8081/ready",
        "http://console:8080/healthz",
        "tcp://store:5432",
        "http://worker:9090/healthz",
        "!tcp://store:7000",
    ]


@pytest.mark.helm
@pytest.mark.parametrize("release", ["platform", "kitchen-sink", "bmp-tcpao"])
def test_every_non_root_pod_can_read_its_secret_files(helm: str, tmp_path: Path, release: str) -> None:
    """Secret files are mounted 0440 (root and the pod's fsGroup): a pod that mounts one and runs
    as a non-root user must have that user's group as its fsGroup, or the file is unreadable. (Found
    on the real cluster: the platform's migration Job, with a secret and no volume, could not read
    its password and failed every install.)"""
    docs = template(helm, write_chart(release, tmp_path))
    checked = 0
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        modes = [
            v.get("projected", v.get("secret", {})).get("defaultMode")
            for v in pod.get("volumes", [])
            if "secret" in v or any("secret" in s for s in v.get("projected", {}).get("sources", []))
        ]
        if not modes:
            continue
        assert all(m == 0o440 for m in modes), (d["metadata"]["name"], modes)
        for c in pod["containers"]:
            user = c["securityContext"]["runAsUser"]
            assert user != 0
            assert pod["securityContext"].get("fsGroup") == c["securityContext"]["runAsGroup"], d["metadata"][
                "name"
            ]
        checked += 1
    assert checked


@pytest.mark.helm
def test_rendered_without_a_cluster_generated_secrets_come_from_the_site(helm: str, tmp_path: Path) -> None:
    """helm template (as Argo CD and Flux render) has no cluster for `lookup`: each render would
    make a new password, and a GitOps sync would rotate it every time. With preCreatedSecrets the
    chart renders no Secret, every render is byte-identical, and the pods still read the Secret the
    site created (tests/e2e/test_platform.py applies such a render to the real cluster)."""
    chart = write_chart("platform", tmp_path)

    def render(*args: str) -> str:
        proc = run([helm, "template", "rel", str(chart), "--namespace", "ns", *args])
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    secrets = [by_kind([d for d in yaml.safe_load_all(render()) if d], "Secret") for _ in range(2)]
    first, second = (s["platform-db-password"]["data"]["db-password"] for s in secrets)
    assert first != second  # why the switch exists
    a, b = render("--set", "preCreatedSecrets=true"), render("--set", "preCreatedSecrets=true")
    assert a == b
    docs = [d for d in yaml.safe_load_all(a) if d]
    assert not by_kind(docs, "Secret")
    refs = {
        src["secret"]["name"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
        for v in d["spec"]["template"]["spec"].get("volumes", [])
        for src in v.get("projected", {}).get("sources", [])
        if "secret" in src
    }
    assert refs == {"platform-db-password"}


@pytest.mark.helm
@pytest.mark.parametrize("name", sorted(RELEASES))
def test_compose_and_the_chart_say_the_same_of_each_service(
    name: str, helm: str, compose_cmd: list[str], compose_env: dict[str, str], tmp_path: Path
) -> None:
    """Command, arguments, plain environment, readiness endpoint and published ports: as the engine
    reads compose.yaml (`docker compose config`) and as the cluster reads the chart (`helm template`)."""
    plan, _ = load_plan(RELEASES[name])
    files = render_files(plan)
    for sub in (f"compose/{name}", f"charts/{name}"):
        for rel, content in files[sub].items():
            (tmp_path / sub / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / sub / rel).write_bytes(content)
    compose = tmp_path / "compose" / name
    proc = subprocess.run(
        [*compose_cmd, "--project-directory", str(compose), "-f", str(compose / "compose.yaml"), "config",
         "--format", "json"],
        capture_output=True, text=True, env=compose_env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifests = template(helm, tmp_path / "charts" / name)
    assert disagreements(json.loads(proc.stdout), manifests) == []
