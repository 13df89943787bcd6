"""Release + Lock -> Plan: the ONE intermediate representation.

Every decision is made here, once: which image digest each container runs,
which ports are published, which capabilities are added and why, which pods
get a PodDisruptionBudget or a NetworkPolicy, what each TCP-AO sidecar is
configured with, and what Compose cannot express. The renderers only
translate a Plan into their format.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import model as m
from .lock import Lock, split_reference
from .names import PROBE_SUFFIX, SIDECAR_SUFFIX, VOLUMES_SUFFIX
from .quantities import byte_count
from .tcpao import CMAC, split_hostport

# What a container of releaser's probe image gets, wherever it runs (a Compose probe container, the
# chart's job waiter and `helm test` pod): one static binary checking one thing at a time
PROBE_RESOURCES = m.Resources(
    requests=(("cpu", "10m"), ("memory", "16Mi")), limits=(("cpu", "100m"), ("memory", "32Mi"))
)

RUN_SECRETS = m.SECRETS_DIR
TCPAO_KEY_FILE = "tcpao-key"  # file name of the key inside the sidecar: /run/secrets/tcpao-key
TCPAO_CONFIG_PATH = "/etc/tcpao-proxy/config.toml"
NETWORK_NAME = "release"
# The kernel asks no privilege to install TCP-AO keys on a process's own sockets (net/ipv4/tcp_ao.c:
# tcp_ao_add_cmd, tcp_ao_del_cmd and tcp_ao_info_cmd have no capable() check) and the proxy's ports are
# above 1024, so the sidecar runs as this non-root user with every capability dropped.
SIDECAR_USER = (65532, 65532)
TCPAO_NODE_LABEL = "releaser.dev/tcp-ao"  # nodes whose kernel has CONFIG_TCP_AO; overridable in values
HOSTNAME_KEY = "kubernetes.io/hostname"
# The proxy copies bytes between two sockets: small, bounded, and always set so the
# sidecar can never starve its app (release.yaml may override them).
SIDECAR_RESOURCES = m.Resources(
    requests=(("cpu", "10m"), ("memory", "16Mi")), limits=(("cpu", "200m"), ("memory", "64Mi"))
)
# Only with `tcpao.runAsRoot` (a proxy image that needs more, e.g. an app+proxy image built as root):
# UID 0 and this one capability, as reference 000 section 4 first had it.
# The sidecar's health (`<service>-tcpao-probe` in Compose and Quadlet, the pod's `tcpao-leg`
# container in Kubernetes): the probe's leg:// check, an established connection with the peer on the
# wire port and, on a kernel with TCP-AO, good AO segments. Its start period covers the speaker's
# first connection after a start; its interval, how soon a broken leg shows.
LEG_TIMING = m.Health(kind="exec", interval=5, timeout=3, retries=3, start=30)
SIDECAR_ROOT_CAP = m.Capability(
    name="NET_ADMIN",
    justification="tcpao.runAsRoot: the proxy image asks for root and NET_ADMIN (reference 000, section 4)",
)


@dataclass(frozen=True, kw_only=True)
class PlanImage:
    name: str
    registry: str
    repository: str  # path inside the registry
    digest: str

    @property
    def pinned(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


@dataclass(frozen=True, kw_only=True)
class PlanPort:
    name: str
    port: int
    protocol: str
    public: bool
    host_port: int  # Compose publishes public ports here
    compose_published: bool  # public and the service is not on the host network (nothing to publish there)
    compose_host_bound: (
        bool  # the service is on the host network in Compose: it binds this port on the host itself
    )
    knob: str  # .env variable holding the published host port


@dataclass(frozen=True, kw_only=True)
class PlanSecret:
    name: str
    file: str  # absolute path in the container, /run/secrets/<name>
    generated: bool
    length: int  # for generated ones
    k8s_secret: str  # Secret object name
    k8s_key: str  # key inside it
    compose_file: str  # path relative to the compose dir
    env_file: str | None


@dataclass(frozen=True, kw_only=True)
class SecretFile:
    """A file under the Compose stack's .secrets/."""

    path: str  # relative to the compose directory: .secrets/<name>
    length: int | None  # characters to generate; None: the user provides it
    key: str  # the key of its Kubernetes Secret (the file name the customer keeps it under)
    readers: str  # the services that read it


@dataclass(frozen=True, kw_only=True)
class PlanVolume:
    name: str
    mount_path: str
    size: str
    claim: str  # PVC name / Compose volume name


@dataclass(frozen=True, kw_only=True)
class PlanConfig:
    name: str  # the ConfigMap key
    path: str  # inside the container
    content: str
    compose_file: str  # configs/<service>/<name>, relative to the compose dir
    compose_name: str  # the top-level Compose config: <service>-<name>
    env_file: str | None  # a variable that receives `path`


@dataclass(frozen=True, kw_only=True)
class PlanExpose:
    host: str
    path: str
    port_name: str
    port: int
    tls_secret: str | None
    cluster_issuer: str | None


def _plan_expose(s: m.Service) -> PlanExpose | None:
    e = s.expose
    if e is None:
        return None
    return PlanExpose(
        host=e.host,
        path=e.path,
        port_name=e.port,
        port=next(p.port for p in s.ports if p.name == e.port),
        tls_secret=e.tls_secret,
        cluster_issuer=e.cluster_issuer,
    )


@dataclass(frozen=True, kw_only=True)
class PlanScratch:
    name: str  # the Kubernetes volume name: tmp for /tmp, else scratch-<path as a DNS label>
    path: str
    size: str  # the quantity as written (Kubernetes sizeLimit)
    size_bytes: int  # Compose tmpfs size=


def plan_scratch(scratch: tuple[m.Scratch, ...]) -> tuple[PlanScratch, ...]:
    return tuple(
        PlanScratch(name=x.volume_name, path=x.path, size=x.size, size_bytes=byte_count(x.size) or 0)
        for x in scratch
    )


@dataclass(frozen=True, kw_only=True)
class PolicyPeer:
    kind: str  # service | cidr | namespace
    value: str


@dataclass(frozen=True, kw_only=True)
class PolicyRule:
    peers: tuple[PolicyPeer, ...]
    ports: tuple[tuple[int, str], ...]  # (port, protocol); empty = all


@dataclass(frozen=True, kw_only=True)
class NetworkPolicy:
    ingress: tuple[PolicyRule, ...]
    egress: tuple[PolicyRule, ...]  # DNS is added by the chart (its selector is a value)


@dataclass(frozen=True, kw_only=True)
class Sidecar:
    role: str
    image: str
    listen: str
    listen_port: int
    forward: str | None
    remote: str | None
    peer: str
    peer_ip: str
    peer_port: int | None  # None (omitted): a terminator's peer connects from an ephemeral port
    policy_name: str  # the [[ao_policy]] name (the proxy requires one, unique)
    key_id: int
    mac_algorithm: str
    key_secret: str
    key_secret_key: str
    compose_config: str  # file name under compose/<release>/tcpao/
    config_path: str  # where the sidecar reads it (Compose and Kubernetes alike)
    resources: m.Resources
    run_as_root: bool  # the documented switch for proxy images that need root and NET_ADMIN
    user: tuple[int, int]  # UID, GID it runs as unless run_as_root
    root_capability: m.Capability  # what it adds with run_as_root
    # the probe's check of the wire leg on the Compose network (leg://PEER:PORT), and the container
    # that runs it beside the sidecar (Compose, Quadlet; the chart's tcpao-leg container and
    # INSTALL.md's row follow it); None without the probe image
    leg: str | None
    leg_probe: str | None

    @property
    def uid(self) -> int:
        return 0 if self.run_as_root else self.user[0]

    @property
    def gid(self) -> int:
        return 0 if self.run_as_root else self.user[1]

    @property
    def capabilities(self) -> tuple[m.Capability, ...]:
        return (self.root_capability,) if self.run_as_root else ()


@dataclass(frozen=True, kw_only=True)
class PlanService:
    name: str
    description: str
    image: str
    workload: str  # Deployment | DaemonSet | StatefulSet | Job
    job: m.Job | None  # runs once (a Kubernetes Job; a run-once Compose service)
    # Kubernetes: the Helm hooks a job runs as; () for a job services wait for, which is a release
    # object instead (named by its spec, so a changed job is a new Job) that their pods wait on
    hooks: tuple[str, ...]
    # Kubernetes: the jobs this service's pods wait for before they start (an init container of the
    # probe image reading each Job's status with a token that may read exactly those Jobs)
    after_jobs: tuple[str, ...]
    replicas: int
    node_selector: tuple[tuple[str, str], ...]
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str, str], ...]  # (name, default value, .env knob)
    uid: int
    gid: int
    ports: tuple[PlanPort, ...]
    autoscale: m.Autoscale | None  # a HorizontalPodAutoscaler owns the count; replicas is its minimum
    metrics: tuple[str, int, str] | None  # (port name, port number, path) Prometheus scrapes
    expose: PlanExpose | None  # an Ingress by host and path
    pod_management: str | None  # a StatefulSet's podManagementPolicy (replicas start together)
    stop_grace_period_seconds: int | None  # None: each engine's default (Compose 10 s, Kubernetes 30 s)
    stop_signal: str | None  # Compose only; Kubernetes sends the image's STOPSIGNAL
    init: bool  # Compose only; Kubernetes has no init (the image must reap)
    readiness: m.Health | None  # Compose's healthcheck (what dependsOn waits for)
    probe: str | None  # Compose: the probe container running the http/tcp readiness check, if any
    # Compose: the run-once container giving the service's volumes to its user before it starts (a
    # volume the image has no directory for is created root-owned), if any
    volume_owner: str | None
    liveness: m.Health | None
    startup: m.Health | None
    resources: m.Resources
    volumes: tuple[PlanVolume, ...]
    configs: tuple[PlanConfig, ...]  # read-only files: Compose configs, a ConfigMap <service>-config
    scratch: tuple[PlanScratch, ...]  # writable directories on the read-only root, emptied on restart
    secrets: tuple[PlanSecret, ...]
    capabilities: tuple[m.Capability, ...]
    host_network: bool  # Kubernetes
    compose_network: str  # "host" or NETWORK_NAME
    address: str | None  # fixed Compose address
    depends_on: tuple[tuple[str, str], ...]  # Compose start order: (service, condition)
    pdb: tuple[str, int] | None  # ("minAvailable" | "maxUnavailable", n)
    spread: bool  # replicas spread across nodes (topologySpreadConstraints, best effort)
    one_per_node: bool  # hostNetwork pods bind node ports: never two on one node (required anti-affinity)
    tcpao_nodes: bool  # scheduled only onto nodes labelled TCP-AO capable
    network_policy: NetworkPolicy | None  # None for hostNetwork pods
    sidecar: Sidecar | None


@dataclass(frozen=True, kw_only=True)
class PlanCheck:
    """One check of the chart's `helm test` pod, through a Service (the probe's syntax)."""

    service: str
    port: int
    check: str  # http://SERVICE:PORT/PATH | tcp://SERVICE:PORT | !tcp://SERVICE:PORT
    host_network: bool  # the target pods are on their nodes' network (no NetworkPolicy there)


@dataclass(frozen=True, kw_only=True)
class SitePeer:
    """A TCP-AO peer whose placement only the site knows in Kubernetes: the node that runs
    `service`, and the address of the node that runs `peer` (chart values services.<service>.tcpao
    .node and .peerIP, without a default). `compose_peer_ip` is what the Compose quickstart uses."""

    service: str
    peer: str
    compose_peer_ip: str


@dataclass(frozen=True, kw_only=True)
class Plan:
    name: str
    version: str
    description: str
    subnet: str | None
    images: tuple[PlanImage, ...]
    services: tuple[PlanService, ...]
    generated_secrets: tuple[PlanSecret, ...]  # created once per release (chart) / by quickstart (compose)
    external_secrets: tuple[tuple[str, str, str], ...]  # (Secret name, key, who needs it) the user creates
    compose_omissions: tuple[str, ...]  # what Compose cannot express, said in one place
    notes: tuple[str, ...]  # shown in NOTES.txt
    probe_image: str | None  # releaser's probe image (Compose's http/tcp checks, the chart's helm test)
    probe_resources: m.Resources = PROBE_RESOURCES
    # `helm test` (with the probe image): every readiness endpoint answers through its Service, and
    # one flow the policies deny is refused (None when no port of the release is closed to the test pod)
    tests: tuple[PlanCheck, ...] = ()
    refused: PlanCheck | None = None
    # Pod Security Admission level the namespace must enforce: hostNetwork pods pass only
    # `privileged`; every other pod meets `restricted` (docs/security.md)
    pod_security: str = "restricted"

    def image(self, name: str) -> PlanImage:
        return next(i for i in self.images if i.name == name)

    def pinned_references(self) -> set[str]:
        return {i.pinned for i in self.images}

    @property
    def kube_play_host_network(self) -> bool:
        """Under `podman kube play` every pod is on the host's network when one service is (a TCP-AO
        peer): `kube play --network` would move them all off it, and without it the pods on podman's
        network could not find each other by name."""
        return any(s.host_network for s in self.services)

    @property
    def site_peers(self) -> tuple[SitePeer, ...]:
        """The values a site must give the chart (templates/site-checks.yaml refuses to render
        without them): each TCP-AO peer's node and its peer's node address."""
        return tuple(
            SitePeer(service=s.name, peer=s.sidecar.peer, compose_peer_ip=s.sidecar.peer_ip)
            for s in self.services
            if s.sidecar is not None
        )

    @property
    def aes_key_secrets(self) -> frozenset[str]:
        """The TCP-AO key Secrets a sidecar uses with cmac-aes: AES keys, 16, 24 or 32 bytes, and 16
        when generated (releaser/tcpao.py); every other key is 1 to 80 bytes."""
        return frozenset(
            s.sidecar.key_secret for s in self.services if s.sidecar and s.sidecar.mac_algorithm == CMAC
        )

    def compose_secret_files(self) -> tuple[SecretFile, ...]:
        """Every file under .secrets/ the Compose stack reads, with who reads it."""
        files: dict[str, tuple[int | None, str, set[str]]] = {}
        for svc in self.services:
            for sec in svc.secrets:
                length = sec.length if sec.generated else None
                files.setdefault(sec.compose_file, (length, sec.k8s_key, set()))[2].add(svc.name)
            if svc.sidecar:
                sc = svc.sidecar
                files.setdefault(f".secrets/{sc.key_secret}", (None, sc.key_secret_key, set()))[2].add(
                    f"{svc.name} (the shared TCP-AO key)"
                )
        return tuple(
            SecretFile(path=f, length=length, key=key, readers=", ".join(sorted(who)))
            for f, (length, key, who) in sorted(files.items())
        )

    def compose_containers(self) -> dict[str, str]:
        """Every Compose service releaser writes -> the name of the image it runs: the services,
        their TCP-AO sidecars (`<service>-tcpao`), probe containers and volume owners (the probe
        image). What releaser.json records, what compose.airgap.yaml re-points, what the catalog lists."""
        out: dict[str, str] = {}
        for svc in self.services:
            out[svc.name] = svc.image
            if svc.sidecar:
                out[f"{svc.name}-{SIDECAR_SUFFIX}"] = svc.sidecar.image
            for extra in (svc.probe, svc.volume_owner, svc.sidecar and svc.sidecar.leg_probe):
                if extra and self.probe_image:
                    out[extra] = self.probe_image
        return out


def _knob(*parts: str) -> str:
    return "_".join(p.upper().replace("-", "_") for p in parts)


def _uid_gid(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def _compose_omissions(services: list[PlanService]) -> list[str]:
    """What Compose cannot express, said once in the compose file's header."""
    out = []
    for ps in services:
        if ps.autoscale is not None:
            a = ps.autoscale
            out.append(
                f"{ps.name}: {a.min}-{a.max} replicas by a HorizontalPodAutoscaler in Kubernetes, one container in Compose"
            )
        elif ps.workload == "Deployment" and ps.replicas > 1:
            out.append(f"{ps.name}: {ps.replicas} replicas in Kubernetes, one container in Compose")
        if ps.workload == "StatefulSet":
            out.append(
                f"{ps.name}: {ps.replicas} replicas with a volume each (a StatefulSet) in Kubernetes, "
                "one container with one volume each in Compose"
            )
        if ps.workload == "DaemonSet":
            out.append(f"{ps.name}: one pod per node (DaemonSet) in Kubernetes, one container in Compose")
    if any(s.pdb for s in services):
        out.append("PodDisruptionBudgets: Compose has no voluntary evictions")
    if any(s.metrics for s in services):
        out.append("metrics scraping (Prometheus annotations, ServiceMonitor): Kubernetes only")
    if any(s.network_policy for s in services):
        out.append(
            "NetworkPolicy: Compose services on the release network can reach each other; "
            "only public ports are published, on BIND_ADDRESS (127.0.0.1 by default)"
        )
    if any(s.node_selector or s.tcpao_nodes or s.spread or s.one_per_node for s in services):
        out.append(
            "scheduling (nodeSelector, TCP-AO node label, spread, one per node): Compose runs "
            "everything on this host"
        )
    return out


def _test_checks(services: list[PlanService]) -> tuple[PlanCheck, ...]:
    """`helm test`: each service's http/tcp readiness endpoint, through its Service."""
    out = []
    for s in sorted(services, key=lambda s: s.name):
        h = s.readiness
        if s.job or h is None or h.kind not in ("http", "tcp") or h.port is None:
            continue
        check = f"http://{s.name}:{h.port}{h.path or '/'}" if h.kind == "http" else f"tcp://{s.name}:{h.port}"
        out.append(PlanCheck(service=s.name, port=h.port, check=check, host_network=s.host_network))
    return tuple(out)


def _refused_check(services: list[PlanService]) -> PlanCheck | None:
    """`helm test`'s denied flow: the first TCP port (by service, then port) that no rule opens to
    the test pod: not the readiness port it is admitted to, not public, not the ingress
    controller's or the scraper's, and opened only to other services of the release."""
    for s in sorted(services, key=lambda s: s.name):
        if s.job or s.host_network or s.network_policy is None:
            continue
        closed = {p.port for p in s.ports if p.protocol == "TCP" and not p.public}
        closed -= {s.readiness.port} if s.readiness is not None else set()
        closed -= {s.expose.port} if s.expose else set()
        closed -= {s.metrics[1]} if s.metrics else set()
        for rule in s.network_policy.ingress:
            if any(peer.kind != "service" for peer in rule.peers):
                closed -= {port for port, _ in rule.ports} if rule.ports else closed
        if closed:
            port = min(closed)
            return PlanCheck(service=s.name, port=port, check=f"!tcp://{s.name}:{port}", host_network=False)
    return None


def _notes(services: list[PlanService], external: dict[tuple[str, str], set[str]]) -> list[str]:
    """What the person installing must know or do, in NOTES order: hostNetwork, Secrets to create,
    what Kubernetes does differently (stop signal, init), TCP-AO node addresses and labels."""
    out = [
        f"{ps.name} runs with hostNetwork (TCP-AO signs addresses and ports, so no NAT may sit "
        "between the peers); NetworkPolicy does not apply to hostNetwork pods, so the chart "
        "creates none for it. Restrict its node ports with a host firewall."
        for ps in services
        if ps.host_network
    ]
    for (secret, key), users in sorted(external.items()):
        out.append(
            f"Create Secret {secret} (key {key}) before installing; used by {', '.join(sorted(users))}: "
            f"kubectl create secret generic {secret} --from-file={key}=./{key}"
        )
    for ps in services:
        if ps.stop_signal and ps.stop_signal != "SIGTERM":
            out.append(
                f"{ps.name} stops on {ps.stop_signal} in Compose; Kubernetes sends the image's STOPSIGNAL "
                f"(SIGTERM unless the image sets one): build the image with STOPSIGNAL {ps.stop_signal}"
            )
        if ps.init:
            out.append(
                f"{ps.name} runs under an init process in Compose (init: true); Kubernetes has none: the "
                "image's entrypoint must forward signals and reap zombies (tini, dumb-init)"
            )
    if any(s.sidecar for s in services):
        out.append(
            "TCP-AO peers are addressed by node IP in Kubernetes: the chart requires "
            "services.<name>.tcpao.node (the node that runs it) and .peerIP (its peer's node address), "
            f"and label TCP-AO capable nodes (kernel with CONFIG_TCP_AO, Linux >= 6.7): "
            f"kubectl label node NODE {TCPAO_NODE_LABEL}=true"
        )
    return out


def build_plan(release: m.Release, lock: Lock) -> Plan:
    """Make every rendering decision once. `lock` must be current for `release`."""
    used = {s.image for s in release.services} | {s.tcpao.image for s in release.services if s.tcpao}
    if release.probe:
        used.add(release.probe)
    images = []
    for name in sorted(used):
        pin = lock.image(name)
        registry, repo, _, _ = split_reference(pin.repository)
        images.append(PlanImage(name=name, registry=registry, repository=repo, digest=pin.digest))

    services_by_name = {s.name: s for s in release.services}
    # flows declared as "X may reach Y" become X's egress too (default deny is both ways)
    egress_to: dict[str, list[PolicyRule]] = {s.name: [] for s in release.services}
    for target in release.services:
        for rule in target.ingress:
            if rule.source.service and rule.source.service in egress_to:
                egress_to[rule.source.service].append(
                    PolicyRule(
                        peers=(PolicyPeer(kind="service", value=target.name),),
                        ports=_rule_ports(target, rule),
                    )
                )

    generated: dict[str, PlanSecret] = {}
    external: dict[tuple[str, str], set[str]] = {}
    services = []
    for s in release.services:
        secrets = _plan_secrets(release, s, generated, external)
        sidecar = None
        if s.tcpao:
            sidecar = _plan_sidecar(s, s.tcpao, services_by_name[s.tcpao.peer], release.probe)
            external.setdefault((s.tcpao.key_secret, s.tcpao.key_secret_key), set()).add(
                f"{s.name} (TCP-AO key)"
            )
        services.append(
            _plan_service(s, services_by_name, egress_to[s.name], secrets, sidecar, release.probe)
        )
    omissions = _compose_omissions(services)
    notes = _notes(services, external)
    return Plan(
        name=release.name,
        version=release.version,
        description=release.description,
        subnet=release.subnet,
        images=tuple(images),
        services=tuple(services),
        generated_secrets=tuple(generated[k] for k in sorted(generated)),
        external_secrets=tuple(
            (sec, key, ", ".join(sorted(u))) for (sec, key), u in sorted(external.items())
        ),
        compose_omissions=tuple(omissions),
        notes=tuple(notes),
        probe_image=release.probe,
        tests=_test_checks(services) if release.probe else (),
        refused=_refused_check(services) if release.probe else None,
        pod_security="privileged" if any(s.host_network for s in services) else "restricted",
    )


def _plan_secrets(
    release: m.Release,
    s: m.Service,
    generated: dict[str, PlanSecret],
    external: dict[tuple[str, str], set[str]],
) -> list[PlanSecret]:
    """A service's secret files; records which the chart generates and which the user creates."""
    secrets = []
    for sec in s.secrets:
        ps = PlanSecret(
            name=sec.name,
            file=f"{RUN_SECRETS}/{sec.name}",
            generated=sec.generated,
            length=sec.generate_length or 0,
            k8s_secret=sec.existing_name or f"{release.name}-{sec.name}",
            k8s_key=sec.existing_key or sec.name,
            compose_file=f".secrets/{sec.name}",
            env_file=sec.env_file,
        )
        secrets.append(ps)
        if ps.generated:
            generated[ps.name] = ps
        else:
            external.setdefault((ps.k8s_secret, ps.k8s_key), set()).add(s.name)
    return secrets


def _plan_sidecar(s: m.Service, t: m.TcpAo, peer: m.Service, probe_image: str | None) -> Sidecar:
    """The TCP-AO proxy beside a service: its legs, its peer, and the settings every renderer uses."""
    _, lport = split_hostport(t.listen)
    if t.role == "initiator":
        assert t.remote is not None
        peer_ip, peer_port = split_hostport(t.remote)
    else:
        peer_ip, peer_port = peer.address or "0.0.0.0", None
    # the terminator's port at either end (validation gives every TCP-AO peer a fixed address)
    leg = f"leg://{peer_ip}:{peer_port if t.role == 'initiator' else lport}" if probe_image else None
    return Sidecar(
        role=t.role,
        image=t.image,
        listen=t.listen,
        listen_port=lport,
        forward=t.forward,
        remote=t.remote,
        peer=t.peer,
        peer_ip=peer_ip,
        peer_port=peer_port,
        policy_name=t.peer,
        key_id=t.key_id,
        mac_algorithm=t.mac_algorithm,
        key_secret=t.key_secret,
        key_secret_key=t.key_secret_key,
        compose_config=f"{s.name}.toml",
        resources=t.resources if (t.resources.requests or t.resources.limits) else SIDECAR_RESOURCES,
        config_path=TCPAO_CONFIG_PATH,
        run_as_root=t.run_as_root,
        user=SIDECAR_USER,
        root_capability=SIDECAR_ROOT_CAP,
        leg=leg,
        leg_probe=f"{s.name}-{SIDECAR_SUFFIX}-{PROBE_SUFFIX}" if leg else None,
    )


def _condition(dependency: m.Service, probe_image: str | None) -> tuple[str, str]:
    """What Compose waits for before starting a dependent: a job's success, a service's readiness
    (its probe container's health when the probe runs its check)."""
    if dependency.job:
        return dependency.name, "service_completed_successfully"
    probe = _probe_container(dependency, probe_image)
    if probe:
        return probe, "service_healthy"
    return dependency.name, "service_healthy" if dependency.readiness else "service_started"


def _probe_container(s: m.Service, probe_image: str | None) -> str | None:
    """The Compose container that runs the service's http/tcp readiness check from the probe image
    in the service's network namespace (the image itself needs no tool), or None."""
    if probe_image and not s.job and s.readiness is not None and s.readiness.kind in ("http", "tcp"):
        return f"{s.name}-{PROBE_SUFFIX}"
    return None


def _pdb(s: m.Service) -> tuple[str, int] | None:
    """The disruption budget: the one asked for, else maxUnavailable 1 for two replicas or more."""
    if s.per_node or s.job:
        return None  # kubectl drain skips DaemonSet pods; a job's pod is not a service to keep up
    if s.disruption and s.disruption.min_available is not None:
        return ("minAvailable", s.disruption.min_available)
    if s.disruption and s.disruption.max_unavailable is not None:
        return ("maxUnavailable", s.disruption.max_unavailable)
    return ("maxUnavailable", 1) if replica_floor(s) >= 2 else None


def replica_floor(s: m.Service) -> int:
    """The fewest pods the service runs in Kubernetes: the autoscaler's minimum, else replicas."""
    return s.autoscale.min if s.autoscale else s.replicas


def _plan_service(
    s: m.Service,
    services_by_name: dict[str, m.Service],
    egress_to: list[PolicyRule],
    secrets: list[PlanSecret],
    sidecar: Sidecar | None,
    probe_image: str | None,
) -> PlanService:
    uid, gid = _uid_gid(s.user)
    policy = None
    if not s.host_network:  # NetworkPolicy does not apply to hostNetwork pods
        ingress = tuple(PolicyRule(peers=(_peer(r.source),), ports=_rule_ports(s, r)) for r in s.ingress)
        egress = tuple(egress_to) + tuple(
            PolicyRule(
                peers=(PolicyPeer(kind="cidr", value=e.cidr),), ports=tuple((p, "TCP") for p in e.ports)
            )
            for e in s.egress
        )
        policy = NetworkPolicy(ingress=ingress, egress=egress)
    compose_host = _compose_host_network(s)
    depends = tuple(_condition(services_by_name[d], probe_image) for d in s.depends_on)
    after_jobs = tuple(d for d in s.depends_on if services_by_name[d].job) if probe_image else ()
    waited_for = bool(probe_image) and any(s.name in o.depends_on for o in services_by_name.values())
    # Compose creates a volume root-owned where the image has no directory: a run-once container of
    # the probe image gives it to the service's user first (the chart's fsGroup does it in Kubernetes)
    volume_owner = f"{s.name}-{VOLUMES_SUFFIX}" if probe_image and s.volumes and uid != 0 else None
    if volume_owner:
        depends = ((volume_owner, "service_completed_successfully"), *depends)
    return PlanService(
        name=s.name,
        description=s.description,
        image=s.image,
        workload="Job"
        if s.job
        else "DaemonSet"
        if s.per_node
        else "StatefulSet"
        if s.stateful
        else "Deployment",
        job=s.job,
        hooks=(s.job.hooks or m.DEFAULT_JOB_HOOKS) if s.job and not waited_for else (),
        after_jobs=after_jobs,
        replicas=replica_floor(s),
        node_selector=s.node_selector,
        command=s.command,
        args=s.args,
        env=tuple((k, v, _knob(s.name, k)) for k, v in s.env),
        uid=uid,
        gid=gid,
        ports=plan_ports(s),
        autoscale=s.autoscale,
        metrics=(s.metrics.port, next(p.port for p in s.ports if p.name == s.metrics.port), s.metrics.path)
        if s.metrics
        else None,
        expose=_plan_expose(s),
        pod_management="Parallel" if s.stateful else None,
        stop_grace_period_seconds=s.stop_grace_period_seconds,
        stop_signal=s.stop_signal,
        init=s.init,
        readiness=s.readiness,
        probe=_probe_container(s, probe_image),
        volume_owner=volume_owner,
        liveness=s.liveness,
        startup=s.startup,
        resources=s.resources,
        volumes=tuple(
            PlanVolume(name=v.name, mount_path=v.mount_path, size=v.size, claim=f"{s.name}-{v.name}")
            for v in s.volumes
        ),
        configs=tuple(
            PlanConfig(
                name=c.name,
                path=c.path,
                content=c.content,
                compose_file=f"configs/{s.name}/{c.name}",
                compose_name=f"{s.name}-{c.name}",
                env_file=c.env_file,
            )
            for c in s.configs
        ),
        scratch=plan_scratch(s.scratch),
        secrets=tuple(secrets),
        capabilities=s.capabilities,
        host_network=s.host_network,
        compose_network="host" if compose_host else NETWORK_NAME,
        address=s.address,
        depends_on=depends,
        pdb=_pdb(s),
        network_policy=policy,
        sidecar=sidecar,
        spread=not s.per_node and not s.job and (s.autoscale.max if s.autoscale else s.replicas) >= 2,
        one_per_node=s.host_network and not s.per_node,
        tcpao_nodes=sidecar is not None,
    )


def _compose_host_network(s: m.Service) -> bool:
    """In Compose a host-network service runs on the host network itself, except one with a TCP-AO
    sidecar: that pair shares the app's namespace on the release network at a fixed address."""
    return s.host_network and not s.tcpao


def plan_ports(s: m.Service) -> tuple[PlanPort, ...]:
    """The ports of a service and how each delivery mode exposes them: the one place that decides
    which host ports a service takes (the quickstart's preflight and `doctor` read them from here)."""
    compose_host = _compose_host_network(s)
    return tuple(
        PlanPort(
            name=p.name,
            port=p.port,
            protocol=p.protocol,
            public=p.exposure == "public",
            host_port=p.host_port or p.port,
            knob=_knob(s.name, p.name, "port"),
            # Compose has no ingress: the exposed port is published like a public one (the one place)
            compose_published=(p.exposure == "public" or (s.expose is not None and s.expose.port == p.name))
            and not compose_host,
            compose_host_bound=compose_host,
        )
        for p in s.ports
    )


def _peer(p: m.Peer) -> PolicyPeer:
    if p.service is not None:
        return PolicyPeer(kind="service", value=p.service)
    if p.cidr is not None:
        return PolicyPeer(kind="cidr", value=p.cidr)
    assert p.namespace is not None
    return PolicyPeer(kind="namespace", value=p.namespace)


def _rule_ports(target: m.Service, rule: m.IngressRule) -> tuple[tuple[int, str], ...]:
    names = rule.ports or tuple(p.name for p in target.ports)
    return tuple((p.port, p.protocol) for p in target.ports if p.name in names)
