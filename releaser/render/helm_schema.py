"""The chart's values.schema.json: a strict schema, so that a misspelt value or a malformed digest
fails `helm install` early; the shape of a service written once, under definitions."""

from __future__ import annotations

from typing import Any

from ..plan import Plan
from ..tcpao import MAC_ALGORITHMS

DIGEST_PATTERN = "^sha256:[a-f0-9]{64}$"


HOSTPORT_PATTERN = "^[0-9]{1,3}(\\.[0-9]{1,3}){3}:[0-9]{1,5}$"


def _obj(props: dict[str, Any], *, required: list[str] | None = None, desc: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        out["required"] = required
    if desc:
        out["description"] = desc
    return out


def _str_map(desc: str) -> dict[str, Any]:
    return {"type": "object", "description": desc, "additionalProperties": {"type": "string"}}


_QTY = {"type": ["string", "number"], "pattern": "^[0-9]+(\\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"}


_RES = _obj(
    {
        "requests": {
            "type": "object",
            "description": "Scheduler reservation.",
            "additionalProperties": False,
            "properties": {"cpu": _QTY, "memory": _QTY},
        },
        "limits": {
            "type": "object",
            "description": "Hard caps.",
            "additionalProperties": False,
            "properties": {"cpu": _QTY, "memory": _QTY},
        },
    },
    desc="Container resources.",
)


_RULES = {
    "type": "array",
    "description": "Flows decided by releaser from release.yaml.",
    "items": _obj(
        {
            "peers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "service": {"type": "string"},
                        "cidr": {"type": "string"},
                        "namespace": {"type": "string"},
                    },
                },
            },
            "ports": {
                "type": "array",
                "items": _obj(
                    {
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "protocol": {"enum": ["TCP", "UDP"]},
                    }
                ),
            },
        }
    ),
}


def values_schema(plan: Plan) -> dict[str, Any]:  # kept whole: a data literal, the schema as it reads
    """A strict schema for values.yaml: typos and malformed digests fail `helm install` early."""
    image = _obj(
        {
            "registry": {"type": "string", "minLength": 1, "description": "Registry host[:port]."},
            "repository": {"type": "string", "minLength": 1, "description": "Path inside the registry."},
            "digest": {
                "type": "string",
                "pattern": DIGEST_PATTERN,
                "description": "Pinned manifest or index digest from release.lock.yaml.",
            },
        },
        required=["registry", "repository", "digest"],
        desc="One image, pinned by digest.",
    )
    image_names = sorted(i.name for i in plan.images)
    tcpao = _obj(
        {
            "enabled": {"type": "boolean", "description": "Run the tcpao-proxy sidecar."},
            "role": {"enum": ["initiator", "terminator"], "description": "Sidecar role."},
            "image": {"enum": image_names, "description": "Key under images."},
            "listen": {"type": "string", "pattern": HOSTPORT_PATTERN, "description": "Listen address:port."},
            "forward": {
                "type": "string",
                "pattern": HOSTPORT_PATTERN,
                "description": "Terminator: local app address.",
            },
            "peer": {"type": "string", "description": "The service at the other end."},
            "node": {
                "type": "string",
                "pattern": "^$|^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
                "description": "Required: the node (kubernetes.io/hostname) that runs this peer.",
            },
            "peerIP": {
                "type": "string",
                "pattern": "^$|^[0-9]{1,3}(\\.[0-9]{1,3}){3}$",
                "description": "Required: the address of the peer's node, signed by TCP-AO.",
            },
            "remote": {
                "type": "string",
                "pattern": HOSTPORT_PATTERN,
                "description": "Deprecated, goes in 2.0: the initiator connects to peerIP:peerPort; "
                "if set, it must be that.",
            },
            "peerPort": {
                "type": "integer",
                "minimum": 1,
                "maximum": 65535,
                "description": "Initiator: port of the other end (a terminator names no port).",
            },
            "policyName": {
                "type": "string",
                "minLength": 1,
                "description": "Name of the sidecar's [[ao_policy]] (the proxy requires one).",
            },
            "keyId": {"type": "integer", "minimum": 0, "maximum": 255, "description": "TCP-AO key id."},
            "macAlgorithm": {"enum": list(MAC_ALGORITHMS), "description": "MAC algorithm."},
            "keySecret": _obj(
                {"name": {"type": "string", "minLength": 1}, "key": {"type": "string", "minLength": 1}},
                required=["name", "key"],
                desc="Existing Secret holding the key.",
            ),
            "resources": _RES,
            "runAsUser": {
                "type": "integer",
                "minimum": 1,
                "description": "The sidecar's non-root UID (it needs no privilege: docs/security.md).",
            },
            "runAsGroup": {"type": "integer", "minimum": 1, "description": "The sidecar's GID."},
            "runAsRoot": {
                "type": "boolean",
                "description": "Run as UID 0 and add rootCapability, for a proxy image that needs it "
                "(off by default; docs/security.md).",
            },
            "rootCapability": {
                "type": "string",
                "minLength": 1,
                "description": "The capability added with runAsRoot.",
            },
            "configPath": {
                "type": "string",
                "pattern": "^/.+/[^/]+$",
                "description": "Where the sidecar reads its TOML (mounted from the ConfigMap).",
            },
            "legProbe": _obj(
                {
                    "enabled": {"type": "boolean"},
                    "intervalSeconds": {"type": "integer", "minimum": 1},
                    "timeoutSeconds": {"type": "integer", "minimum": 1},
                    "retries": {"type": "integer", "minimum": 1},
                    "startSeconds": {"type": "integer", "minimum": 0},
                },
                desc="The wire leg in the pod's readiness: the tcpao-leg container (the probe image) "
                "checks for an established connection with peerIP on the wire port and, on a TCP-AO "
                "kernel, good AO segments. Off: the pod is ready without its leg.",
            ),
        },
        required=["enabled"],
        desc="TCP-AO sidecar.",
    )
    health = {
        "type": ["object", "null"],
        "description": "Probe: http, tcp or exec plus timings.",
        "additionalProperties": False,
        "properties": {
            "http": _obj({"path": {"type": "string"}, "port": {"type": ["integer", "string"]}}),
            "tcp": _obj({"port": {"type": ["integer", "string"]}}),
            "exec": _obj({"command": {"type": "array", "items": {"type": "string"}}}),
            "intervalSeconds": {"type": "integer", "minimum": 1},
            "timeoutSeconds": {"type": "integer", "minimum": 1},
            "retries": {"type": "integer", "minimum": 1},
            "startSeconds": {"type": "integer", "minimum": 0},
        },
    }
    service = _obj(
        {
            "enabled": {"type": "boolean", "description": "Render this service."},
            "kind": {
                "enum": ["Deployment", "DaemonSet", "StatefulSet", "Job"],
                "description": "Workload kind.",
            },
            "job": _obj(
                {
                    "hooks": {
                        "type": "array",
                        "items": {"enum": ["pre-install", "post-install", "pre-upgrade", "post-upgrade"]},
                    },
                    "backoffLimit": {"type": "integer", "minimum": 0},
                    "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                    "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                },
                desc="Kind Job only: the Helm hooks it runs as; none ([]) for a job services wait for "
                "(afterJobs), which is a release object named by its spec instead.",
            ),
            "afterJobs": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Jobs (services of kind Job) this service's pods wait for: an init container "
                "of the probe image starts them once each has completed.",
            },
            "autoscaling": _obj(
                {
                    "enabled": {"type": "boolean", "description": "A HorizontalPodAutoscaler owns replicas."},
                    "minReplicas": {"type": "integer", "minimum": 1},
                    "maxReplicas": {"type": "integer", "minimum": 1},
                    "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1},
                    "targetMemoryUtilizationPercentage": {"type": ["integer", "null"], "minimum": 1},
                },
                required=["enabled"],
                desc="HorizontalPodAutoscaler (autoscaling/v2): the workload gets no replicas field then.",
            ),
            "podManagementPolicy": {
                "enum": ["Parallel", "OrderedReady"],
                "description": "StatefulSet: start and stop the replicas together (Parallel) or one by one.",
            },
            "image": {"enum": image_names, "description": "Key under images."},
            "replicas": {"type": "integer", "minimum": 0, "description": "Pods (Deployment only)."},
            "command": {"type": "array", "items": {"type": "string"}, "description": "Entrypoint override."},
            "args": {"type": "array", "items": {"type": "string"}, "description": "Arguments."},
            "env": _str_map("Plain environment variables (never secrets)."),
            "securityContext": _obj(
                {
                    "runAsUser": {"type": "integer", "minimum": 1},
                    "runAsGroup": {"type": "integer", "minimum": 0},
                },
                required=["runAsUser", "runAsGroup"],
                desc="Non-root identity.",
            ),
            "capabilities": {
                "type": "array",
                "description": "Added capabilities with their justification.",
                "items": _obj(
                    {"name": {"type": "string"}, "justification": {"type": "string", "minLength": 10}},
                    required=["name", "justification"],
                ),
            },
            "ports": {
                "type": "array",
                "description": "Container ports.",
                "items": _obj(
                    {
                        "name": {"type": "string"},
                        "port": {"type": "integer"},
                        "protocol": {"enum": ["TCP", "UDP"]},
                        "exposure": {"enum": ["internal", "public"]},
                    }
                ),
            },
            "publicService": _obj(
                {
                    "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                    "annotations": _str_map("Annotations of the public Service."),
                    "allowFrom": {
                        "type": "array",
                        "description": "Who may reach the public ports (NetworkPolicy): empty = anyone; else "
                        "these CIDRs and namespaces (e.g. the ingress controller's or the load balancer's).",
                        "items": {
                            "oneOf": [
                                _obj({"cidr": {"type": "string"}}, required=["cidr"]),
                                _obj({"namespace": {"type": "string"}}, required=["namespace"]),
                            ]
                        },
                    },
                },
                desc="The Service carrying the public ports.",
            ),
            "probes": _obj(
                {"readiness": health, "liveness": health, "startup": health},
                desc="Probes: readiness (Service endpoints), liveness (restarts), startup (holds the other two).",
            ),
            "resources": _RES,
            "configs": {
                "type": "array",
                "description": "Read-only files from a ConfigMap <service>-config; edit content to change one "
                "(the pods roll).",
                "items": _obj(
                    {
                        "name": {"type": "string", "pattern": "^[-._a-zA-Z0-9]+$"},
                        "path": {"type": "string", "pattern": "^/"},
                        "content": {"type": "string"},
                        "envFile": {"type": "string"},
                    },
                    required=["name", "path", "content"],
                ),
            },
            "terminationGracePeriodSeconds": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "Seconds between SIGTERM and SIGKILL (null: Kubernetes' 30).",
            },
            "scratch": {
                "type": "array",
                "description": "Writable scratch directories (emptyDir with a sizeLimit), emptied on restart.",
                "items": _obj(
                    {
                        "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
                        "path": {"type": "string", "pattern": "^/"},
                        "sizeLimit": _QTY,
                    },
                    required=["name", "path", "sizeLimit"],
                ),
            },
            "volumes": {
                "type": "array",
                "description": "Persistent volume claims (kept on uninstall).",
                "items": _obj(
                    {
                        "name": {"type": "string"},
                        "mountPath": {"type": "string"},
                        "size": _QTY,
                        "claim": {"type": "string"},
                        "storageClass": {"type": "string"},
                    }
                ),
            },
            "secrets": {
                "type": "array",
                "description": "Secret files under /run/secrets.",
                "items": _obj(
                    {
                        "name": {"type": "string"},
                        "secretName": {"type": "string"},
                        "key": {"type": "string"},
                        "generated": {"type": "boolean"},
                        "envFile": {"type": "string"},
                    }
                ),
            },
            "hostNetwork": {"type": "boolean", "description": "Use the node's network namespace."},
            "nodeSelector": _str_map("Node labels the pods must land on."),
            "spreadAcrossNodes": {
                "type": "boolean",
                "description": "Spread replicas over nodes (topologySpreadConstraints, ScheduleAnyway).",
            },
            "onePerNode": {
                "type": "boolean",
                "description": "Never two pods on one node (required anti-affinity; hostNetwork binds node "
                "ports).",
            },
            "tcpaoNodesOnly": {
                "type": "boolean",
                "description": "Schedule only onto nodes labelled global.tcpaoNodeLabel=true.",
            },
            "tolerations": {"type": "array", "description": "Pod tolerations.", "items": {"type": "object"}},
            "affinity": {
                "type": "object",
                "description": "Pod affinity, added to what the chart sets (a hostNetwork service keeps its "
                "one-per-node anti-affinity unless this sets podAntiAffinity).",
            },
            "priorityClassName": {
                "type": "string",
                "description": "PriorityClass of the pods (empty: none).",
            },
            "podAnnotations": _str_map("Extra pod annotations."),
            "pdb": {
                "type": "object",
                "description": "PodDisruptionBudget spec (empty: none).",
                "additionalProperties": False,
                "maxProperties": 1,
                "properties": {
                    "minAvailable": {"type": "integer", "minimum": 0},
                    "maxUnavailable": {"type": "integer", "minimum": 1},
                },
            },
            "networkPolicy": _obj({"ingress": _RULES, "egress": _RULES}, desc="Declared flows."),
            "metrics": {
                "oneOf": [
                    {"type": "null"},
                    _obj(
                        {
                            "port": {"type": "integer"},
                            "portName": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                        },
                        required=["port", "portName", "path"],
                    ),
                ],
                "description": "Where Prometheus scrapes this service (null: nowhere).",
            },
            "expose": {
                "oneOf": [
                    {"type": "null"},
                    _obj(
                        {
                            "host": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "port": {"type": "integer"},
                            "className": {"type": "string"},
                            "annotations": _str_map("Annotations of the Ingress."),
                            "tls": {
                                "oneOf": [
                                    {"type": "null"},
                                    _obj({"secretName": {"type": "string"}}, required=["secretName"]),
                                ]
                            },
                        },
                        required=["host", "path", "port"],
                    ),
                ],
                "description": "An Ingress by host and path (null: none); className empty: ingress.className.",
            },
            "tcpao": tcpao,
        },
        desc="One service of the release.",
    )
    return {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": f"values of the {plan.name} chart (generated by releaser)",
        "type": "object",
        "additionalProperties": False,
        "required": ["global", "images", "services", "networkPolicy", "generatedSecrets", "probe", "tests"],
        "properties": {
            "global": _obj(
                {
                    "imageRegistry": {
                        "type": "string",
                        "pattern": "^([a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?)?$",
                        "description": "Replaces every image's registry (airgap installs).",
                    },
                    "imagePullSecrets": {
                        "type": "array",
                        "items": _obj({"name": {"type": "string"}}),
                        "description": "Pull secrets for every pod.",
                    },
                    "tcpaoNodeLabel": {
                        "type": "string",
                        "minLength": 1,
                        "description": 'Node label (value "true") marking nodes whose '
                        "kernel has CONFIG_TCP_AO.",
                    },
                },
                desc="Settings shared by every service.",
            ),
            "images": {
                "type": "object",
                "description": "Pinned images.",
                "additionalProperties": False,
                "properties": {n: image for n in image_names},
                "required": image_names,
            },
            "networkPolicy": _obj(
                {
                    "enabled": {"type": "boolean", "description": "Render NetworkPolicies."},
                    "dns": _obj(
                        {
                            "namespaceSelector": {
                                "type": "object",
                                "description": "Namespace of the cluster DNS pods.",
                            },
                            "podSelector": {
                                "type": "object",
                                "description": "Labels of the cluster DNS pods.",
                            },
                        },
                        desc="Where cluster DNS runs (egress on port 53 is allowed to it).",
                    ),
                    "apiServer": _obj(
                        {
                            "cidrs": {
                                "type": "array",
                                "items": {"type": "string", "pattern": "^[0-9a-fA-F.:]+/[0-9]{1,3}$"},
                                "description": "The API server's addresses (kubectl get endpointslice -n "
                                "default -l kubernetes.io/service-name=kubernetes); empty: any address.",
                            },
                            "ports": {
                                "type": "array",
                                "items": {"type": "integer", "minimum": 1, "maximum": 65535},
                                "minItems": 1,
                                "description": "The API server's ports, as the pod reaches them after "
                                "Service translation (443 and 6443 on most clusters).",
                            },
                        },
                        desc="Egress to the API server, for the pods that wait for a job (afterJobs) only.",
                    ),
                },
                desc="Default deny plus declared flows.",
            ),
            "ingress": _obj(
                {
                    "className": {
                        "type": "string",
                        "description": "IngressClass of every Ingress (empty: the default).",
                    },
                    "from": _obj(
                        {
                            "namespaceSelector": {
                                "type": "object",
                                "description": "The ingress controller's namespace.",
                            },
                            "podSelector": {
                                "type": "object",
                                "description": "The ingress controller's pods ({}: all).",
                            },
                        },
                        desc="Who may reach the exposed ports (NetworkPolicy).",
                    ),
                },
                desc="Ingresses of the services with expose.",
            ),
            "metrics": _obj(
                {
                    "from": _obj(
                        {
                            "namespaceSelector": {
                                "type": "object",
                                "description": "The monitoring namespace.",
                            },
                            "podSelector": {"type": "object", "description": "The scraping pods ({}: all)."},
                        },
                        desc="Who may reach the metrics ports (NetworkPolicy).",
                    ),
                    "serviceMonitor": _obj(
                        {
                            "enabled": {
                                "type": "boolean",
                                "description": "Render a ServiceMonitor per service with metrics (only where the "
                                "monitoring.coreos.com/v1 CRD exists).",
                            },
                            "interval": {
                                "type": "string",
                                "pattern": "^[0-9]+(ms|s|m|h)$",
                                "description": "How often Prometheus scrapes.",
                            },
                            "labels": _str_map("Labels your Prometheus selects ServiceMonitors by."),
                        },
                        desc="Prometheus Operator ServiceMonitors.",
                    ),
                },
                desc="Prometheus scraping of the services with metrics.",
            ),
            "namespace": _obj(
                {
                    "create": {
                        "type": "boolean",
                        "description": "Render the release namespace with the Pod Security "
                        "labels below, for a render without a cluster (helm template, Argo CD, "
                        "Flux). helm install refuses it: create and label the namespace first "
                        "(the error says how). Kept on uninstall.",
                    },
                    "podSecurity": _obj(
                        {
                            lvl: {
                                "type": "string",
                                "enum": ["privileged", "baseline", "restricted"],
                                "description": f"pod-security.kubernetes.io/{lvl} label.",
                            }
                            for lvl in ("enforce", "warn", "audit")
                        },
                        desc="Pod Security Admission levels for the namespace.",
                    ),
                },
                desc="The release namespace's Pod Security labels (and its creation in a render without a cluster).",
            ),
            "preCreatedSecrets": {
                "type": "boolean",
                "description": "The generatedSecrets exist already (made by the site: kubectl, "
                "sealed-secrets, external-secrets): the chart renders none of them. Set it where the "
                "chart is rendered without a cluster (helm template, Argo CD, Flux), where lookup finds "
                "nothing and every render would make new values.",
            },
            "generatedSecrets": {
                "type": "array",
                "description": "Secrets the chart creates once and keeps.",
                "items": _obj(
                    {
                        "name": {"type": "string"},
                        "key": {"type": "string"},
                        "length": {"type": "integer", "minimum": 16},
                    }
                ),
            },
            "probe": _obj(
                {
                    "image": {
                        "type": "string",
                        "description": "releaser's probe image, by its name under images (empty: none).",
                    },
                    "resources": {"type": "object", "description": "Requests and limits of its containers."},
                },
                desc="The probe image: the init container of services that wait for a job, the "
                "`helm test` pod.",
            ),
            "podman": _obj(
                {
                    "kubePlay": {
                        "type": "boolean",
                        "description": "Render for `podman kube play` on one host (values-podman.yaml sets it): "
                        "each service one Pod, <release>-<service>, secrets as plain secret volumes, readiness "
                        "from a probe container, hostPorts for what Services would carry.",
                    },
                    "hostNetwork": {
                        "type": "boolean",
                        "description": "Under podman.kubePlay, every pod on the host's network, reaching the "
                        "others on 127.0.0.1 (values-podman.yaml sets it when a service is a TCP-AO peer: "
                        "`kube play --network` would move every pod off the host's network).",
                    },
                    "bindAddress": {
                        "type": "string",
                        "description": "Under podman.kubePlay, the host address the public ports are published on "
                        "(hostIP), 127.0.0.1 as Compose's BIND_ADDRESS; empty: every address of the host.",
                    },
                },
                desc="The chart's pods under `podman kube play` (the chart's README, \"podman kube play\").",
            ),
            "admission": _obj(
                {
                    "enabled": {
                        "type": "boolean",
                        "description": "A ValidatingAdmissionPolicy (and its binding) that admits, in the release's "
                        "namespace, only pods whose every image is one the lock pins (the registry as "
                        "global.imageRegistry says). Kubernetes 1.30+; cluster-scoped objects.",
                    },
                },
                desc="Admission of the locked images only (docs/trust.md#admission).",
            ),
            "tests": _obj(
                {
                    "enabled": {
                        "type": "boolean",
                        "description": "Render the `helm test` pod (releaser's probe image) and admit it, in each "
                        "service's NetworkPolicy, to that service's readiness port only.",
                    },
                    "checks": {
                        "type": "array",
                        "description": "What the test pod checks through each Service (the probe's syntax).",
                        "items": _obj(
                            {
                                "service": {"type": "string"},
                                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                "check": {
                                    "type": "string",
                                    "pattern": "^(http|tcp)://[a-z0-9-]+:[0-9]+(/[^\\s]*)?$",
                                },
                                "hostNetwork": {"type": "boolean"},
                            },
                            required=["service", "port", "check", "hostNetwork"],
                        ),
                    },
                    "refused": _obj(
                        {
                            "service": {
                                "type": "string",
                                "description": "The service whose policy refuses it.",
                            },
                            "port": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 65535,
                                "description": "The port no rule opens to the test pod.",
                            },
                            "check": {
                                "type": "string",
                                "pattern": "^!tcp://[a-z0-9-]+:[0-9]+$",
                                "description": "The probe's check: no TCP connection may open.",
                            },
                        },
                        desc="A flow the policies deny, which the test pod must find refused ({}: none).",
                    ),
                },
                required=["enabled", "checks"],
                desc="`helm test`: a pod of the probe image checks every readiness endpoint through its "
                "Service and one flow the policies deny.",
            ),
            "services": {
                "type": "object",
                "description": "The services of the release.",
                "additionalProperties": False,
                # every service has the same shape: written once, under definitions (a release of
                # 300 services would otherwise carry 300 copies of it, which Helm reads at every install)
                "properties": {s.name: {"$ref": "#/definitions/service"} for s in plan.services},
            },
        },
        "definitions": {"service": service},
    }
