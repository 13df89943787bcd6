"""The release as typed, frozen data: what release.yaml says, nothing derived.

Derived decisions (which ports are published, which policies exist, what the
sidecar config says) belong to plan.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SECRETS_DIR = "/run/secrets"  # where every output mounts a service's secret files, read-only
DEFAULT_USER = "65532:65532"  # UID:GID of a service that names none: non-root, distroless's "nonroot"


@dataclass(frozen=True, kw_only=True)
class Image:
    name: str
    ref: str
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Port:
    name: str
    port: int
    protocol: str = "TCP"
    exposure: str = "internal"  # internal | public
    host_port: int | None = None


@dataclass(frozen=True, kw_only=True)
class Health:
    kind: str  # http | tcp | exec
    path: str | None = None
    port: int | None = None  # resolved to a number
    command: tuple[str, ...] = ()
    interval: int = 10
    timeout: int = 3
    retries: int = 3
    start: int = 10


@dataclass(frozen=True, kw_only=True)
class Resources:
    requests: tuple[tuple[str, str], ...] = ()  # (("cpu","100m"),("memory","64Mi"))
    limits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class SecretFile:
    name: str
    generate_length: int | None = None  # set when generated at install time
    existing_name: str | None = None
    existing_key: str | None = None
    env_file: str | None = None

    @property
    def generated(self) -> bool:
        return self.existing_name is None


@dataclass(frozen=True, kw_only=True)
class Volume:
    name: str
    mount_path: str
    size: str


@dataclass(frozen=True, kw_only=True)
class ConfigFile:
    path: str  # inside the container
    name: str  # ConfigMap key and file name
    content: str  # read from `file` when release.yaml names one
    file: str | None = None  # as written in release.yaml (relative to it), for messages
    env_file: str | None = None  # a variable that receives `path`


@dataclass(frozen=True, kw_only=True)
class Scratch:
    path: str
    size: str = "64Mi"

    @property
    def volume_name(self) -> str:
        """Its Kubernetes volume name: tmp for /tmp, else scratch-<the path as a DNS label>."""
        if self.path == "/tmp":
            return "tmp"
        return f"scratch-{re.sub(r'[^a-z0-9]+', '-', self.path.lower()).strip('-')}"[:63].rstrip("-")


DEFAULT_SCRATCH = (Scratch(path="/tmp"),)  # a service that says nothing gets a writable /tmp


DEFAULT_JOB_HOOKS = ("pre-install", "pre-upgrade")


@dataclass(frozen=True, kw_only=True)
class Job:
    hooks: tuple[str, ...] = ()  # () : not said (DEFAULT_JOB_HOOKS for a job nothing waits for)
    backoff_limit: int = 2
    active_deadline_seconds: int = 600
    ttl_given: int | None = None  # ttlSecondsAfterFinished as written (None: not said)

    @property
    def ttl_seconds_after_finished(self) -> int:
        """How long a finished hook Job stays for its logs (a day unless release.yaml says)."""
        return 86400 if self.ttl_given is None else self.ttl_given


@dataclass(frozen=True, kw_only=True)
class Expose:
    host: str
    port: str  # the name of one of the service's ports
    path: str = "/"
    tls_secret: str | None = None
    cluster_issuer: str | None = None


@dataclass(frozen=True, kw_only=True)
class Metrics:
    port: str  # the name of one of the service's ports (a number in release.yaml is resolved to it)
    path: str = "/metrics"


@dataclass(frozen=True, kw_only=True)
class Autoscale:
    min: int
    max: int
    cpu: int  # percent of the CPU request
    memory: int | None = None  # percent of the memory request


@dataclass(frozen=True, kw_only=True)
class Capability:
    name: str
    justification: str


@dataclass(frozen=True, kw_only=True)
class Peer:
    service: str | None = None
    cidr: str | None = None
    namespace: str | None = None


@dataclass(frozen=True, kw_only=True)
class IngressRule:
    source: Peer
    ports: tuple[str, ...] = ()  # port names; empty = all


@dataclass(frozen=True, kw_only=True)
class EgressRule:
    cidr: str
    ports: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class Disruption:
    min_available: int | None = None
    max_unavailable: int | None = None


@dataclass(frozen=True, kw_only=True)
class TcpAo:
    role: str  # initiator | terminator
    image: str
    listen: str
    peer: str
    key_id: int
    mac_algorithm: str
    key_secret: str
    key_secret_key: str
    forward: str | None = None
    remote: str | None = None
    resources: Resources = Resources()
    run_as_root: bool = False


@dataclass(frozen=True, kw_only=True)
class Service:
    name: str
    image: str
    description: str = ""
    replicas: int = 1
    per_node: bool = False
    stateful: bool = False  # a StatefulSet: per-replica volumes, stable names
    autoscale: Autoscale | None = None  # a HorizontalPodAutoscaler owns the replica count
    metrics: Metrics | None = None  # where Prometheus scrapes it
    expose: Expose | None = None  # reached by host and path (an Ingress)
    job: Job | None = None  # runs once to completion (a Helm hook Job; a run-once Compose service)
    node_selector: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    user: str = DEFAULT_USER
    secrets: tuple[SecretFile, ...] = ()
    ports: tuple[Port, ...] = ()
    readiness: Health | None = None  # `health` in release.yaml sets readiness and liveness alike
    liveness: Health | None = None
    startup: Health | None = None
    resources: Resources = Resources()
    volumes: tuple[Volume, ...] = ()
    configs: tuple[ConfigFile, ...] = ()
    scratch: tuple[Scratch, ...] = DEFAULT_SCRATCH
    host_network: bool = False
    address: str | None = None
    capabilities: tuple[Capability, ...] = ()
    disruption: Disruption | None = None
    ingress: tuple[IngressRule, ...] = ()
    egress: tuple[EgressRule, ...] = ()
    depends_on: tuple[str, ...] = ()
    tcpao: TcpAo | None = None
    stop_grace_period_seconds: int | None = None
    stop_signal: str | None = None
    init: bool = False


@dataclass(frozen=True)
class KeylessIdentity:
    """A keyless signer the policy accepts: the OIDC issuer (exact) and a regular expression over
    the certificate's identity (its email or URI)."""

    issuer: str
    identity: str


@dataclass(frozen=True)
class TrustRule:
    """What one image must carry (release.yaml `trust`): a signature by one of `keys` (PEM files,
    relative to release.yaml) or of the `keyless` identities (verified against the policy's Sigstore
    trusted root), and an attestation of each predicate type in `attestations`; or nothing, for the
    reason in `exempt`."""

    keys: tuple[str, ...] = ()
    attestations: tuple[str, ...] = ()  # predicate type URIs (cosign's --type names resolved)
    exempt: str = ""
    keyless: tuple[KeylessIdentity, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Release:
    api_version: str
    name: str
    version: str
    description: str
    subnet: str | None
    images: tuple[Image, ...]
    services: tuple[Service, ...]
    source_file: str  # path of release.yaml, for messages
    probe: str | None = None  # `probe.image`: releaser's probe image, by its name under images
    trust: tuple[tuple[str, TrustRule], ...] | None = None  # image name -> its rule; None: no policy
    trusted_root: str | None = (
        None  # trust.trustedRoot: a Sigstore trusted root file, relative to release.yaml
    )

    def trust_rule(self, image: str) -> TrustRule | None:
        """The policy's rule for `image` (the default applied), or None when release.yaml sets no policy."""
        return None if self.trust is None else dict(self.trust).get(image)

    @property
    def trust_keys(self) -> tuple[str, ...]:
        """Every key file the policy names, once, in order (a bundle carries them)."""
        return tuple(dict.fromkeys(k for _, r in self.trust or () for k in r.keys))

    def image(self, name: str) -> Image:
        return next(i for i in self.images if i.name == name)

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)
