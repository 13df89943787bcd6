"""The chart's values.yaml: the plan translated, service by service (nothing decided here)."""

from __future__ import annotations

from typing import Any

from .. import model as m
from ..plan import LEG_TIMING, TCPAO_NODE_LABEL, Plan, PlanService, PolicyRule


def _quantities(items: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(items)


def _resources(res: m.Resources) -> dict[str, Any]:
    out = {}
    if res.requests:
        out["requests"] = _quantities(res.requests)
    if res.limits:
        out["limits"] = _quantities(res.limits)
    return out


def _rules(rules: tuple[PolicyRule, ...]) -> list[dict[str, Any]]:
    return [
        {
            "peers": [{p.kind: p.value} for p in r.peers],
            "ports": [{"port": port, "protocol": proto} for port, proto in r.ports],
        }
        for r in rules
    ]


def _probe(h: m.Health | None) -> dict[str, Any] | None:
    if h is None:
        return None
    action: dict[str, Any]
    if h.kind == "http":
        action = {"http": {"path": h.path, "port": h.port}}
    elif h.kind == "tcp":
        action = {"tcp": {"port": h.port}}
    else:
        action = {"exec": {"command": list(h.command)}}
    return {
        **action,
        "intervalSeconds": h.interval,
        "timeoutSeconds": h.timeout,
        "retries": h.retries,
        "startSeconds": h.start,
    }


def _expose(svc: PlanService) -> dict[str, Any] | None:
    e = svc.expose
    if e is None:
        return None
    return {
        "host": e.host,
        "path": e.path,
        "port": e.port,
        "className": "",
        "annotations": {"cert-manager.io/cluster-issuer": e.cluster_issuer} if e.cluster_issuer else {},
        "tls": {"secretName": e.tls_secret} if e.tls_secret else None,
    }


def _service_values(svc: PlanService) -> dict[str, Any]:  # kept whole: a data literal, one key per value
    d: dict[str, Any] = {
        "enabled": True,
        "kind": svc.workload,
        **({"podManagementPolicy": svc.pod_management} if svc.pod_management else {}),
        **(
            {
                "job": {
                    "hooks": list(svc.hooks),
                    "backoffLimit": svc.job.backoff_limit,
                    "activeDeadlineSeconds": svc.job.active_deadline_seconds,
                    "ttlSecondsAfterFinished": svc.job.ttl_seconds_after_finished,
                }
            }
            if svc.job
            else {}
        ),
        "image": svc.image,
        "afterJobs": list(svc.after_jobs),
        "replicas": svc.replicas,
        "autoscaling": (
            {
                "enabled": True,
                "minReplicas": svc.autoscale.min,
                "maxReplicas": svc.autoscale.max,
                "targetCPUUtilizationPercentage": svc.autoscale.cpu,
                "targetMemoryUtilizationPercentage": svc.autoscale.memory,
            }
            if svc.autoscale
            else {"enabled": False}
        ),
        "command": list(svc.command),
        "args": list(svc.args),
        "env": {name: value for name, value, _ in svc.env},
        "securityContext": {"runAsUser": svc.uid, "runAsGroup": svc.gid},
        "capabilities": [{"name": c.name, "justification": c.justification} for c in svc.capabilities],
        "ports": [
            {
                "name": p.name,
                "port": p.port,
                "protocol": p.protocol,
                "exposure": "public" if p.public else "internal",
            }
            for p in svc.ports
        ],
        "publicService": {"type": "ClusterIP", "annotations": {}, "allowFrom": []},
        "probes": {},
        "resources": _resources(svc.resources),
        "volumes": [
            {"name": v.name, "mountPath": v.mount_path, "size": v.size, "claim": v.claim, "storageClass": ""}
            for v in svc.volumes
        ],
        "configs": [
            {
                "name": c.name,
                "path": c.path,
                "content": c.content,
                **({"envFile": c.env_file} if c.env_file else {}),
            }
            for c in svc.configs
        ],
        "scratch": [{"name": x.name, "path": x.path, "sizeLimit": x.size} for x in svc.scratch],
        "terminationGracePeriodSeconds": svc.stop_grace_period_seconds,
        "secrets": [
            {
                "name": s.name,
                "secretName": s.k8s_secret,
                "key": s.k8s_key,
                "generated": s.generated,
                "envFile": s.env_file or "",
            }
            for s in svc.secrets
        ],
        "hostNetwork": svc.host_network,
        "nodeSelector": dict(svc.node_selector),
        "spreadAcrossNodes": svc.spread,
        "onePerNode": svc.one_per_node,
        "tcpaoNodesOnly": svc.tcpao_nodes,
        "tolerations": [],
        "affinity": {},
        "priorityClassName": "",
        "podAnnotations": {},
        "metrics": {"port": svc.metrics[1], "portName": svc.metrics[0], "path": svc.metrics[2]}
        if svc.metrics
        else None,
        "expose": _expose(svc),
        "pdb": {svc.pdb[0]: svc.pdb[1]} if svc.pdb else {},
        "networkPolicy": {
            "ingress": _rules(svc.network_policy.ingress) if svc.network_policy else [],
            "egress": _rules(svc.network_policy.egress) if svc.network_policy else [],
        },
        "tcpao": {"enabled": False},
    }
    d["probes"] = {
        "readiness": _probe(svc.readiness),
        "liveness": _probe(svc.liveness),
        "startup": _probe(svc.startup),
    }
    sc = svc.sidecar
    if sc is not None:
        d["tcpao"] = {
            "enabled": True,
            "role": sc.role,
            "image": sc.image,
            "listen": sc.listen,
            **({"forward": sc.forward} if sc.forward else {}),
            # the site's: no default (Compose's addresses mean nothing on a cluster); the chart
            # refuses to render without them (templates/site-checks.yaml)
            "peer": sc.peer,
            "node": "",
            "peerIP": "",
            **({"peerPort": sc.peer_port} if sc.peer_port is not None else {}),
            "policyName": sc.policy_name,
            "keyId": sc.key_id,
            "macAlgorithm": sc.mac_algorithm,
            "keySecret": {"name": sc.key_secret, "key": sc.key_secret_key},
            "resources": _resources(sc.resources),
            "runAsUser": sc.user[0],  # the chart switches to 0 itself with runAsRoot, at install time too
            "runAsGroup": sc.user[1],
            "runAsRoot": sc.run_as_root,
            "rootCapability": sc.root_capability.name,
            "configPath": sc.config_path,
        }
        if sc.leg_probe:
            # the wire leg in the pod's readiness (the probe's leg:// check from the tcpao-leg container)
            d["tcpao"]["legProbe"] = {
                "enabled": True,
                "intervalSeconds": LEG_TIMING.interval,
                "timeoutSeconds": LEG_TIMING.timeout,
                "retries": LEG_TIMING.retries,
                "startSeconds": LEG_TIMING.start,
            }
    return d


def chart_values(plan: Plan) -> dict[str, Any]:
    """The chart's values.yaml as data: every decision of the plan, overridable."""
    return {
        "global": {"imageRegistry": "", "imagePullSecrets": [], "tcpaoNodeLabel": TCPAO_NODE_LABEL},
        "images": {
            i.name: {"registry": i.registry, "repository": i.repository, "digest": i.digest}
            for i in plan.images
        },
        # opt-in: a ValidatingAdmissionPolicy admitting in the namespace only pods of the locked images
        "admission": {"enabled": False},
        "networkPolicy": {
            "enabled": True,
            "dns": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            },
            # the pods of services that wait for a job read its status from the API server: to
            # any address on these ports unless cidrs names the API server's endpoints
            "apiServer": {"cidrs": [], "ports": [443, 6443]},
        },
        "ingress": {
            "className": "",  # empty: the cluster's default IngressClass
            # the ingress controller's pods: the NetworkPolicy lets them reach each exposed port
            "from": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                "podSelector": {},
            },
        },
        "metrics": {
            # who scrapes: the NetworkPolicy lets pods matching these reach each metrics port
            "from": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {},
            },
            "serviceMonitor": {"enabled": False, "interval": "30s", "labels": {}},
        },
        "generatedSecrets": [
            {"name": s.k8s_secret, "key": s.k8s_key, "length": s.length} for s in plan.generated_secrets
        ],
        # rendered without a cluster (helm template, Argo CD, Flux), lookup finds nothing: create
        # the generatedSecrets yourself and set this, or each render makes new values
        "preCreatedSecrets": False,
        # warn and audit stay `restricted`, so every pod but the hostNetwork ones is still held to it
        "namespace": {
            "create": False,
            "podSecurity": {"enforce": plan.pod_security, "warn": "restricted", "audit": "restricted"},
        },
        "services": {s.name: _service_values(s) for s in sorted(plan.services, key=lambda s: s.name)},
        "probe": {
            "image": plan.probe_image or "",
            "resources": _resources(plan.probe_resources),
        },
        "tests": _tests_values(plan),
        # values-podman.yaml sets it: the chart's pods for `podman kube play` on one host
        "podman": {"kubePlay": False, "hostNetwork": False, "bindAddress": "127.0.0.1"},
    }


def _tests_values(plan: Plan) -> dict[str, Any]:
    """`helm test`: the probe pod's checks (the plan's), and whether the policies admit it."""
    return {
        "enabled": bool(plan.probe_image and plan.tests),
        "checks": [
            {"service": c.service, "port": c.port, "check": c.check, "hostNetwork": c.host_network}
            for c in plan.tests
        ],
        "refused": {"service": plan.refused.service, "port": plan.refused.port, "check": plan.refused.check}
        if plan.refused
        else {},
    }


def lint_site_values(plan: Plan) -> dict[str, Any] | None:
    """The chart's ci/lint-values.yaml (chart-testing's convention): the values a site must set,
    filled with the Compose addresses so that `helm lint` and `ct lint` can render the chart, and its
    sidecar configs are byte for byte Compose's. None when the release needs no site values."""
    if not plan.site_peers:
        return None
    return {
        "services": {
            p.service: {"tcpao": {"node": f"{p.service}-node", "peerIP": p.compose_peer_ip}}
            for p in plan.site_peers
        }
    }


def site_values_example(plan: Plan) -> list[str]:
    """site.yaml as INSTALL.md and the chart's README show it: for each TCP-AO peer, the node that
    runs it and the address of the other peer's node. The placeholders fail the chart's schema, so a
    copy left unfilled is refused by name rather than installed."""
    rows: list[tuple[str, str]] = [("services:", "")]
    for p in plan.site_peers:
        rows += [
            (f"  {p.service}:", ""),
            ("    tcpao:", ""),
            (f"      node: {p.service.upper()}-NODE", f"# kubectl get nodes: the node that runs {p.service}"),
            (f"      peerIP: {p.peer.upper()}-NODE-ADDRESS", f"# the address of the node that runs {p.peer}"),
        ]
    width = max(len(text) for text, _ in rows) + 2
    return [f"{text:<{width}}{comment}".rstrip() for text, comment in rows]
