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
from .shell import random_alnum

PODMAN_VALUES = "values-podman.yaml"
PODMAN_MIN = "5.0"  # kube play with Secret objects, configMap/secret volumes, emptyDir (docs/kubernetes.md)


def podman_values(plan: Plan) -> dict[str, Any]:
    """values-podman.yaml: one host is every TCP-AO peer's node, so each sidecar's peer is loopback;
    podman has no NetworkPolicy, no hooks and no `helm test`."""
    values: dict[str, Any] = {
        "podman": {"kubePlay": True, "hostNetwork": plan.kube_play_host_network},
        "networkPolicy": {"enabled": False},
        "tests": {"enabled": False},
    }
    if plan.generated_secrets:  # made once by the README's lines, so that a second play keeps them
        values["preCreatedSecrets"] = True
    if plan.site_peers:
        values["services"] = {
            p.service: {"tcpao": {"node": "localhost", "peerIP": "127.0.0.1"}} for p in plan.site_peers
        }
    return values


def _template(plan: Plan) -> str:
    return f"helm template {plan.name} . -f {PODMAN_VALUES}"


def podman_play(plan: Plan) -> list[str]:
    """The commands that play the chart, from its directory."""
    if plan.kube_play_host_network:
        return [f"{_template(plan)} | podman kube play --replace -"]
    return [
        f"podman network exists {plan.name} || podman network create {plan.name}",
        f"{_template(plan)} | podman kube play --replace --network {plan.name} -",
    ]


def _copies(plan: Plan) -> list[str]:
    """The volumes podman fills with the Secrets' and ConfigMaps' files (named after them), which
    `podman kube down` leaves behind."""
    names = {sec.k8s_secret for s in plan.services for sec in s.secrets}
    names |= {name for name, _key, _who in plan.external_secrets}
    names |= {f"{plan.name}-{s.name}-config" for s in plan.services if s.configs}
    names |= {f"{plan.name}-{s.name}-tcpao" for s in plan.services if s.sidecar}
    return sorted(names)


def _manifest(name: str, key: str) -> str:
    """printf's format for a Kubernetes Secret of one key, its base64 value the one argument."""
    return f"'apiVersion: v1\\nkind: Secret\\nmetadata:\\n  name: {name}\\ndata:\\n  {key}: %s\\n'"


def _generated(name: str, key: str, length: int) -> str:
    """A line that puts a generated Secret into podman's store once (a rerun keeps it)."""
    return (
        f"podman secret exists {name} || printf {_manifest(name, key)} "
        f'"$({random_alnum(length)} | base64 -w0)" | podman kube play -'
    )


def _provided(name: str, key: str) -> str:
    """A line that puts the Secret the site provides (the file `$<NAME>_FILE` names) into podman's
    store once. An unset variable or a missing or empty file makes nothing and says so: a Secret
    made empty would be kept by every rerun."""
    var = f"{name.upper().replace('-', '_')}_FILE"
    return (
        f'podman secret exists {name} || {{ f="${{{var}:?set {var} to the file that holds {name}}}"; '
        f'if test -s "$f"; then printf {_manifest(name, key)} "$(base64 -w0 < "$f")" | podman kube play -; '
        f'else echo "$f: no such file, or empty: {name} not made" >&2; false; fi; }}'
    )


def podman_section(plan: Plan) -> list[str]:
    """The chart README's "podman kube play" section. The generated Secrets are made once, before
    the play, and kept by it (`preCreatedSecrets`): `helm template` would make new values at each
    play, and a store initialised with the old one would refuse the new."""
    made = [_generated(s.k8s_secret, s.k8s_key, s.length) for s in plan.generated_secrets]
    provided = [_provided(name, key) for name, key, _who in plan.external_secrets]
    claims = sorted({f"{plan.name}-{v.claim}" for s in plan.services for v in s.volumes})
    kept = sorted({s.k8s_secret for s in plan.generated_secrets})
    return [
        "## podman kube play",
        "",
        f"The same pods on one host with podman {PODMAN_MIN} or later, without a cluster, from this",
        f"directory (`{PODMAN_VALUES}` says what changes). Run it again after an upgrade: the pods are",
        "replaced, the Secrets and the data kept.",
        "",
        "```sh",
        *(
            ["# the Secrets you provide (each $..._FILE: the file), as Kubernetes Secrets in podman's store"]
            if provided
            else []
        ),
        *provided,
        *(["# the Secrets the release generates, made once"] if made else []),
        *made,
        *podman_play(plan),
        "```",
        "",
        f"Each service runs as one Pod, `{plan.name}-<service>`, with the chart's security context, its images by",
        "digest, and a `probe` container whose health (`podman ps`) is the service's readiness."
        + (
            " A service on the host's network (a TCP-AO peer) puts every pod there: the services reach"
            " each other on 127.0.0.1 (hostAliases) and each port is the host's."
            if plan.kube_play_host_network
            else " Public ports are published on the host's 127.0.0.1 (`podman.bindAddress`, as Compose's"
            f" BIND_ADDRESS); the pods reach each other by name on the `{plan.name}` network."
        ),
        "Podman ignores Services, PodDisruptionBudgets, HorizontalPodAutoscalers and Ingresses; it runs",
        "one replica of each service, starts them all at once (a service that waits for a job restarts",
        "until the job has run, as podman restarts the job until it succeeds), and knows no fsGroup, so",
        "secret files are readable by every user in their pod.",
        "",
        "To take it down (the data and the Secrets made for it stay, as a claim outlives `helm uninstall`):",
        "",
        "```sh",
        f"{_template(plan)} | podman kube down -",
        *(
            [f"podman volume rm {' '.join(_copies(plan))}   # the copies of the Secrets and ConfigMaps"]
            if _copies(plan)
            else []
        ),
        *(
            [
                f"podman secret rm {' '.join(n for n, _k, _w in plan.external_secrets)}   # the Secrets you provided"
            ]
            if plan.external_secrets
            else []
        ),
        *(
            [f"podman volume rm {' '.join(claims)}   # the data, when you no longer want it"]
            if claims
            else []
        ),
        *([f"podman secret rm {' '.join(kept)}   # and the Secrets made for it"] if kept else []),
        "```",
        "",
    ]
