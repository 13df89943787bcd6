"""Plan -> the chart under `podman kube play` on one host: values-podman.yaml (its header and values)
and the chart README's section, with the commands that create its Secrets, play it and take it down.

What changes under podman is decided in the templates (workloads.yaml, `podman.kubePlay`); this
module says only what a user runs. `--network` would take every pod off the host's network, so a
release with a service on it (a TCP-AO peer: then every pod is) plays without one; otherwise its pods
get a network of their own, where each pod's name is its DNS name.
"""

from __future__ import annotations

from typing import Any

from ..plan import Plan

PODMAN_VALUES = "values-podman.yaml"
PODMAN_MIN = "5.0"  # kube play with Secret objects, configMap/secret volumes, emptyDir (docs/kubernetes.md)


def podman_values(plan: Plan) -> dict[str, Any]:
    """values-podman.yaml: one host is every TCP-AO peer's node, so each sidecar's peer is loopback;
    podman has no NetworkPolicy, no hooks and no `helm test`."""
    values: dict[str, Any] = {
        "podman": {"kubePlay": True},
        "networkPolicy": {"enabled": False},
        "tests": {"enabled": False},
    }
    if plan.site_peers:
        values["services"] = {
            p.service: {"tcpao": {"node": "localhost", "peerIP": "127.0.0.1"}} for p in plan.site_peers
        }
    return values


def _template(plan: Plan) -> str:
    return f"helm template {plan.name} . -f {PODMAN_VALUES}"


def podman_play(plan: Plan) -> list[str]:
    """The commands that play the chart, from its directory."""
    if any(s.host_network for s in plan.services):
        return [f"{_template(plan)} | podman kube play -"]
    return [
        f"podman network exists {plan.name} || podman network create {plan.name}",
        f"{_template(plan)} | podman kube play --network {plan.name} -",
    ]


def _copies(plan: Plan) -> list[str]:
    """The volumes podman fills with the Secrets' and ConfigMaps' files (named after them), which
    `podman kube down` leaves behind."""
    names = {sec.k8s_secret for s in plan.services for sec in s.secrets}
    names |= {name for name, _key, _who in plan.external_secrets}
    names |= {f"{s.name}-config" for s in plan.services if s.configs}
    names |= {f"{s.name}-tcpao" for s in plan.services if s.sidecar}
    return sorted(names)


def podman_section(plan: Plan) -> list[str]:
    """The chart README's "podman kube play" section."""
    create = [
        f"printf 'apiVersion: v1\\nkind: Secret\\nmetadata:\\n  name: {name}\\ndata:\\n  {key}: %s\\n' "
        f'"$(base64 -w0 < "${name.upper().replace("-", "_")}_FILE")" | podman kube play -'
        for name, key, _who in plan.external_secrets
    ]
    claims = sorted({v.claim for s in plan.services for v in s.volumes})
    return [
        "## podman kube play",
        "",
        f"The same pods on one host with podman {PODMAN_MIN} or later, without a cluster, from this",
        f"directory (`{PODMAN_VALUES}` says what changes):",
        "",
        "```sh",
        *(
            ["# the Secrets you create, as Kubernetes Secrets in podman's store (each $..._FILE: the file)"]
            if create
            else []
        ),
        *create,
        *podman_play(plan),
        "```",
        "",
        "Each service runs as one Pod named after it, with the chart's security context, its images by",
        "digest, and a `probe` container whose health (`podman ps`) is the service's readiness."
        + (
            " A service on the host's network (a TCP-AO peer) puts every pod there: the services reach"
            " each other on 127.0.0.1 (hostAliases) and each port is the host's."
            if any(s.host_network for s in plan.services)
            else " Public ports are published on the host's 127.0.0.1 (`podman.bindAddress`, as Compose's"
            f" BIND_ADDRESS); the pods reach each other by name on the `{plan.name}` network."
        ),
        "Podman ignores Services, PodDisruptionBudgets, HorizontalPodAutoscalers and Ingresses; it runs",
        "one replica of each service, starts them all at once (a service that waits for a job restarts",
        "until the job has run, as podman restarts the job until it succeeds), and knows no fsGroup, so",
        "secret files are readable by every user in their pod.",
        "",
        "To take it down (the data volumes stay, as a claim outlives `helm uninstall`):",
        "",
        "```sh",
        f"{_template(plan)} | podman kube down -",
        *(
            [f"podman volume rm {' '.join(_copies(plan))}   # the copies of the Secrets and ConfigMaps"]
            if _copies(plan)
            else []
        ),
        *(
            [f"podman volume rm {' '.join(claims)}   # the data, when you no longer want it"]
            if claims
            else []
        ),
        *(
            [
                f"podman secret rm {' '.join(n for n, _k, _w in plan.external_secrets)}   # the Secrets you made"
            ]
            if plan.external_secrets
            else []
        ),
        "```",
        "",
    ]
