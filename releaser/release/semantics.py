"""What the schema cannot say: the checks of a built release, one method per topic (`_Semantics`):
references between services, images and volumes, ports, IDs and versions within their tools' limits,
network addresses, TCP-AO peers, dependency cycles. Errors and warnings, each with a fix."""

from __future__ import annotations

import difflib
import ipaddress
import os
import posixpath
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import model as m
from ..budgets import MAX_KEY_BYTES, MAX_ROOT_BYTES
from ..errors import Problem
from ..fs import UnreadableInput, read_input
from ..names import PROBE_SUFFIX, SIDECAR_SUFFIX, VOLUMES_SUFFIX
from ..quantities import byte_count
from ..tcpao import split_hostport
from ..trust import PREDICATE_TYPES, NotAKey, NotARoot, SigstoreRoot, TrustedKey
from ..yamlsource import PathT, Source, json_path

MAX_ID = 2**31 - 1  # Kubernetes: runAsUser, runAsGroup and fsGroup are int32 in practice (int64 in the API)


MAX_SEMVER_PART = 2**64 - 1  # Helm (Masterminds semver) parses major, minor and patch as uint64


_FORBIDDEN_CAPS = {"SYS_ADMIN": "it is nearly root; find the narrower capability the service needs"}


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, or None when it is not one (the schema's pattern admits 10.0.0.999)."""
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def semantic_problems(src: Source, r: m.Release) -> list[Problem]:
    """What the schema cannot say: references between services, ports, addresses, TCP-AO pairs."""
    return _Semantics(src, r).check()


class _Semantics:
    """The semantic checks, one method per topic, in the order they report; the state they share
    (addresses, host ports, node ports taken so far) lives on the instance."""

    def __init__(self, src: Source, r: m.Release) -> None:
        self.src, self.r = src, r
        self.out: list[Problem] = []
        self.image_names = [i.name for i in r.images]
        self.services = {s.name: s for s in r.services}
        self.subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
        self.used_images: set[str] = set()
        self.addresses: dict[str, str] = {}
        self.host_ports: dict[int, str] = {}  # compose published host ports
        self.node_ports: dict[tuple[int, str], str] = {}  # ports bound on a node by hostNetwork pods
        self.routes: dict[tuple[str, str], str] = {}  # (host, path) -> the service exposed there

    def problem(self, path: PathT, message: str, fix: str | None = None, *, severity: str = "error") -> None:
        self.out.append(self.src.problem(path, message, fix, severity=severity))

    def check(self) -> list[Problem]:
        r = self.r
        core = r.version.split("+")[0].split("-")[0].split(".")
        if any(p.isdigit() and int(p) > MAX_SEMVER_PART for p in core):
            self.problem(
                ("metadata", "version"),
                f"{r.version!r}: a version number above {MAX_SEMVER_PART} (Helm reads each as a 64-bit number)",
                "use smaller numbers, e.g. 1.2.3",
            )
        if r.subnet:
            try:
                self.subnet = ipaddress.ip_network(r.subnet, strict=True)
            except ValueError as exc:
                self.problem(
                    ("network", "subnet"),
                    f"{r.subnet!r} is not a network: {exc}",
                    "give the network address, e.g. 10.77.0.0/24",
                )
        for s in r.services:
            base: PathT = ("services", s.name)
            self.use_image((*base, "image"), s.image)
            if not self.addresses_parse(s, base):
                if s.tcpao is not None and s.tcpao.image in self.image_names:
                    self.used_images.add(s.tcpao.image)
                continue  # the checks below read these addresses
            pod_ports = self.ports(s, base)
            if s.tcpao:
                self.sidecar(s, s.tcpao, base, pod_ports)
            if s.address is not None:
                self.address(s, s.address, base)
            if s.host_network:
                self.host_network(s, base, pod_ports)
            self.workload(s, base)
            if s.job is not None:
                self.job(s, s.job, base)
            self.mounts(s, base)
            self.ingress(s, base)
            self.rest(s, base)
        self.probe()
        self.trust()
        cycle = _dependency_cycle(r)
        if cycle:
            self.problem(
                ("services", cycle[0], "dependsOn"),
                f"dependsOn forms a cycle: {' -> '.join(cycle)}",
                "remove one of the edges; Compose cannot start a cycle",
            )
        for img in r.images:
            if img.name not in self.used_images:
                self.problem(
                    ("images", img.name),
                    f"image {img.name!r} is not used by any service",
                    "remove it, or reference it from a service",
                    severity="warning",
                )
        return self.out

    def addresses_parse(self, s: m.Service, base: PathT) -> bool:
        """Every IP address of the service is one (checked by parsing: octets above 255 are not)."""
        fields: list[tuple[PathT, str]] = []
        if s.address is not None:
            fields.append(((*base, "address"), s.address))
        if s.tcpao is not None:
            for key, value in (
                ("listen", s.tcpao.listen),
                ("forward", s.tcpao.forward),
                ("remote", s.tcpao.remote),
            ):
                if value is not None:
                    fields.append(((*base, "tcpao", key), split_hostport(value)[0]))
        ok = True
        for path, value in fields:
            if _ip(value) is None:
                self.problem(
                    path, f"{value!r} is not an IP address", "write four numbers 0-255, e.g. 10.77.0.10"
                )
                ok = False
        return ok

    def probe(self) -> None:
        """The probe image exists and its containers' names are free; without it, say which checks
        Compose runs inside the service's own image."""
        r = self.r
        checked = [s for s in r.services if s.readiness is not None and s.readiness.kind in ("http", "tcp")]
        if r.probe is not None:
            self.use_image(("probe", "image"), r.probe)
            taken = [(f"{s.name}-{PROBE_SUFFIX}", s.name, "probe container") for s in checked]
            taken += [(f"{s.name}-{VOLUMES_SUFFIX}", s.name, "volume owner") for s in r.services if s.volumes]
            taken += [
                (f"{s.name}-{SIDECAR_SUFFIX}-{PROBE_SUFFIX}", s.name, "TCP-AO leg probe")
                for s in r.services
                if s.tcpao
            ]
            for name, owner, what in taken:
                if name in self.services:
                    self.problem(
                        ("services", name),
                        f"the name {name!r} is taken by the {what} of {owner!r} in Compose",
                        "rename this service",
                    )
        if r.probe is None and any(s.tcpao for s in r.services):
            legs = [s.name for s in r.services if s.tcpao]
            self.problem(
                ("services", legs[0], "tcpao"),
                f"the TCP-AO sidecars of {', '.join(legs)} have no health: their wire leg is judged by the probe "
                "image's leg:// check (a broken leg would show nowhere, neither in the quickstart nor in kubectl)",
                "publish releaser's probe image (`releaser probe push REGISTRY/PATH:TAG`), name it under images and "
                "add `probe: {image: NAME}`",
                severity="warning",
            )
        if r.probe is None and checked:
            self.problem(
                ("services", checked[0].name),
                f"{', '.join(s.name for s in checked)}: Compose runs these http/tcp checks inside the service's image "
                "(wget, nc -z), which an image without them (distroless, scratch, busybox without nc -z) fails",
                "publish releaser's probe image (`releaser probe push REGISTRY/PATH:TAG`), name it under images and "
                "add `probe: {image: NAME}`: the checks then run from a probe container and the chart gets `helm test`",
                severity="warning",
            )

    def trust(self) -> None:
        """The trust policy: every image has a rule (or no policy at all, said as a warning), each key
        file is a public key beside release.yaml, each attestation type is one cosign knows."""
        d = self.src.data.get("trust")
        if d is None:
            self.problem(
                (),
                "no trust policy: images are bundled and loaded whoever signed them, or nobody",
                "add `trust: {default: {keys: [cosign.pub]}}` with your signing key (docs/trust.md)",
                severity="warning",
            )
            return
        own = d.get("images") or {}
        for name in own:
            if name not in self.image_names:
                guess = difflib.get_close_matches(name, self.image_names, n=1)
                self.problem(
                    ("trust", "images", name),
                    f"image {name!r} is not defined under images",
                    f"did you mean {guess[0]!r}?" if guess else "name an image of images",
                )
        if d.get("default") is None:
            uncovered = [i for i in self.image_names if i not in own]
            if uncovered:
                self.problem(
                    ("trust",),
                    f"the policy has no rule for {', '.join(uncovered)}: nothing would be checked for them",
                    "add trust.default, or a rule under trust.images for each (`exempt: REASON` for one that "
                    "is not signed)",
                )
        rules: list[tuple[PathT, dict[str, Any]]] = (
            [(("trust", "default"), d["default"])] if d.get("default") is not None else []
        )
        rules += [(("trust", "images", n), r) for n, r in own.items()]
        root = Path(os.path.realpath(Path(self.src.file).parent))
        if d.get("trustedRoot") is not None:
            self.trusted_root(("trust", "trustedRoot"), root, d["trustedRoot"])
        for base, rule in rules:
            for i, rel in enumerate(rule.get("keys", ())):
                self.trust_key((*base, "keys", i), root, rel)
            keyless = rule.get("keyless", ())
            listed = [keyless] if isinstance(keyless, dict) else list(keyless)
            for i, k in enumerate(listed):
                where = (*base, "keyless") if isinstance(keyless, dict) else (*base, "keyless", i)
                try:
                    re.compile(k["identity"])
                except re.error as exc:
                    self.problem(
                        (*where, "identity"),
                        f"{k['identity']!r} is not a regular expression ({exc})",
                        "give a Python/Go regular expression (escape dots: ^https://github\\.com/acme/)",
                    )
            if listed and d.get("trustedRoot") is None:
                self.problem(
                    (*base, "keyless"),
                    "a keyless rule needs trust.trustedRoot: keyless signatures are verified against a "
                    "Sigstore trusted root, offline",
                    "add `trustedRoot: trusted_root.json` under trust, the trusted root of the Sigstore "
                    "instance the images are signed with (docs/trust.md#keyless)",
                )
            for i, kind in enumerate(rule.get("attestations", ())):
                if "://" not in kind and kind not in PREDICATE_TYPES:
                    guess = difflib.get_close_matches(kind, list(PREDICATE_TYPES), n=1)
                    self.problem(
                        (*base, "attestations", i),
                        f"{kind!r} is not an attestation type cosign names",
                        f"did you mean {guess[0]!r}?"
                        if guess
                        else f"use one of {', '.join(PREDICATE_TYPES)}, or the predicate type's URI",
                    )

    def trusted_root(self, path: PathT, root: Path, rel: str) -> None:
        self.trust_file(
            path, root, rel, MAX_ROOT_BYTES, lambda data: SigstoreRoot(data, rel), NotARoot,
            what="trusted_root.json",
            missing="give the Sigstore trusted root's path relative to release.yaml (docs/trust.md#keyless says "
            "where to get it)",
            wrong="give trusted_root.json as Sigstore's TUF repository or `cosign trusted-root create` writes it",
        )  # fmt: skip

    def trust_key(self, path: PathT, root: Path, rel: str) -> None:
        self.trust_file(
            path, root, rel, MAX_KEY_BYTES, lambda data: TrustedKey.load(data, rel), NotAKey,
            what="the key files",
            missing="give the public key's path relative to release.yaml (`cosign generate-key-pair` writes "
            "cosign.pub)",
            wrong="give the public key (cosign.pub from `cosign generate-key-pair`), never the private one",
        )  # fmt: skip

    def trust_file(
        self,
        path: PathT,
        root: Path,
        rel: str,
        budget: int,
        parse: Callable[[bytes], object],
        refused: type[Exception],
        *,
        what: str,
        missing: str,
        wrong: str,
    ) -> None:
        """A file the trust policy names: beside release.yaml, there, within `budget`, and what
        `parse` reads (else it raises `refused`, whose message says why)."""
        target = Path(os.path.realpath(root / rel))
        if Path(rel).is_absolute() or not target.is_relative_to(root):
            self.problem(path, f"{rel} is outside the release directory", f"keep {what} beside release.yaml")
            return
        try:
            parse(read_input(target, budget))
        except FileNotFoundError:
            self.problem(path, f"{rel}: no such file (looked for {target})", missing)
        except UnreadableInput as exc:
            self.problem(path, str(exc), exc.fix)
        except refused as exc:
            self.problem(path, f"{rel}: {exc}", wrong)

    def use_image(self, path: PathT, name: str) -> None:
        if name in self.image_names:
            self.used_images.add(name)
            return
        guess = difflib.get_close_matches(name, self.image_names, n=1)
        self.problem(
            path,
            f"image {name!r} is not defined under images",
            f"did you mean {guess[0]!r}?"
            if guess
            else f"add it under images:, or use one of: {', '.join(self.image_names)}",
        )

    def ports(self, s: m.Service, base: PathT) -> dict[tuple[int, str], str]:
        """Unique names and numbers inside the pod (app + sidecar share one network namespace);
        public host ports unique on the host. Returns the pod's ports."""
        seen_names: dict[str, int] = {}
        seen_nums: dict[tuple[int, str], str] = {}
        for i, p in enumerate(s.ports):
            pp: PathT = (*base, "ports", i)
            if p.name in seen_names:
                self.problem(
                    (*pp, "name"),
                    f"port name {p.name!r} is used twice in this service",
                    "give each port its own name",
                )
            seen_names[p.name] = i
            key = (p.port, p.protocol)
            if key in seen_nums:
                self.problem(
                    (*pp, "port"),
                    f"port {p.port}/{p.protocol} clashes with port {seen_nums[key]!r} of the same service",
                    "use a different port number",
                )
            seen_nums[key] = p.name
            published = p.exposure == "public" or (s.expose is not None and s.expose.port == p.name)
            if p.host_port is not None and not published:
                self.problem(
                    (*pp, "hostPort"),
                    "hostPort only applies to public ports (and the exposed one)",
                    "set exposure: public, or remove hostPort",
                )
            if published and not s.host_network:
                hp = p.host_port or p.port
                if hp in self.host_ports:
                    self.problem(
                        pp,
                        f"host port {hp} is already published by {self.host_ports[hp]}",
                        "set a different hostPort for one of them",
                    )
                self.host_ports[hp] = f"{s.name}.{p.name}"
        return {(p.port, p.protocol): p.name for p in s.ports}

    def sidecar(self, s: m.Service, t: m.TcpAo, base: PathT, pod_ports: dict[tuple[int, str], str]) -> None:
        tp: PathT = (*base, "tcpao")
        self.use_image((*tp, "image"), t.image)
        _, lport = split_hostport(t.listen)
        if (lport, "TCP") in pod_ports:
            self.problem(
                (*tp, "listen"),
                f"sidecar listen port {lport} clashes with port "
                f"{pod_ports[(lport, 'TCP')]!r} of {s.name}; they share one network namespace",
                "pick another port for one of them",
            )
        pod_ports[(lport, "TCP")] = "tcpao"
        if t.role == "terminator" and t.forward:
            fhost, fport = split_hostport(t.forward)
            if (fport, "TCP") not in {(p.port, p.protocol) for p in s.ports}:
                self.problem(
                    (*tp, "forward"),
                    f"forward port {fport} is not a port of {s.name}",
                    f"declare it under services.{s.name}.ports, or fix the number",
                )
            if not ipaddress.ip_address(fhost).is_loopback:
                self.problem(
                    (*tp, "forward"), "the local leg must stay on loopback", f"use 127.0.0.1:{fport}"
                )
        if t.role == "initiator":
            lhost, _ = split_hostport(t.listen)
            if not ipaddress.ip_address(lhost).is_loopback:
                self.problem(
                    (*tp, "listen"),
                    "the initiator's plain listener must stay on loopback;"
                    " anything else exposes unprotected BMP",
                    f"use 127.0.0.1:{lport}",
                )
        if not s.host_network:
            self.problem(
                (*base, "hostNetwork"),
                "a service with a tcpao sidecar needs hostNetwork in"
                " Kubernetes: TCP-AO signs addresses and ports, so any NAT breaks it",
                "remove hostNetwork: false",
            )
        if s.address is None:
            self.problem(
                base,
                "a TCP-AO peer needs a fixed address on the Compose network",
                "add address: (inside network.subnet)",
            )
        _check_pair(self.src, self.r, s, self.services, self.out)

    def address(self, s: m.Service, address: str, base: PathT) -> None:
        subnet = self.subnet
        if subnet is None:
            self.problem(
                (*base, "address"),
                "a fixed address needs network.subnet",
                "add network: {subnet: 10.77.0.0/24} at the top level",
            )
        else:
            addr = ipaddress.ip_address(address)
            if (
                addr not in subnet
                or addr in (subnet.network_address, subnet.broadcast_address)
                or addr == next(subnet.hosts())
            ):
                self.problem(
                    (*base, "address"),
                    f"{address} is not a usable host address of {subnet} (the first host is the gateway)",
                    f"pick one between {subnet[2]} and {subnet[-2]}"
                    if subnet.num_addresses > 4
                    else "use a bigger subnet",
                )
        if address in self.addresses:
            self.problem(
                (*base, "address"),
                f"{address} is already used by {self.addresses[address]}",
                "give each service its own address",
            )
        self.addresses[address] = s.name

    def host_network(self, s: m.Service, base: PathT, pod_ports: dict[tuple[int, str], str]) -> None:
        for (num, proto), pname in pod_ports.items():
            if (num, proto) in self.node_ports:
                self.problem(
                    base,
                    f"hostNetwork port {num}/{proto} ({pname}) clashes with "
                    f"{self.node_ports[(num, proto)]}; both bind it on the same node",
                    "use different ports, or keep the services on different nodes",
                )
            self.node_ports[(num, proto)] = f"{s.name}.{pname}"
        if s.ingress:
            self.problem(
                (*base, "ingress"),
                "NetworkPolicy does not apply to hostNetwork pods;"
                " an ingress list here would protect nothing",
                "remove ingress and firewall the node instead (see NOTES.txt)",
            )

    def memory_units(self, resources: m.Resources, base: PathT) -> None:
        """`memory: 100m` is a valid quantity meaning a tenth of a byte: the classic slip for 100Mi.
        No container runs in less than a MiB, and Compose would get no limit at all."""
        for section, items in (("requests", resources.requests), ("limits", resources.limits)):
            for key, value in items:
                if key == "memory" and value.endswith("m"):
                    self.problem(
                        (*base, "resources", section, "memory"),
                        f"memory {value} is {value[:-1]} thousandths of a byte (m means milli)",
                        f"write {value[:-1]}Mi (mebibytes) or {value[:-1]}M (megabytes)",
                    )

    def user(self, s: m.Service, base: PathT) -> None:
        """UID and GID within what a cluster takes."""
        for part, value in zip(("UID", "GID"), s.user.split(":"), strict=False):
            if int(value) > MAX_ID:
                self.problem(
                    (*base, "user"),
                    f"{part} {value} is above {MAX_ID}: Kubernetes refuses runAsUser/runAsGroup past int32",
                    f"use a {part} from 1 to {MAX_ID} (the images' own, e.g. 65532)",
                )

    def workload(self, s: m.Service, base: PathT) -> None:
        """User, resources, capabilities, replicas with volumes, the disruption budget."""
        self.user(s, base)
        self.memory_units(s.resources, base)
        if s.tcpao is not None:
            self.memory_units(s.tcpao.resources, (*base, "tcpao"))
        if not s.resources.requests and not s.resources.limits:
            self.problem(
                base,
                "no resources: the scheduler cannot place it well and nothing stops it "
                "starving its neighbours",
                "add resources: {requests: {cpu, memory}, limits: {cpu, memory}}",
                severity="warning",
            )
        for i, c in enumerate(s.capabilities):
            if c.name in _FORBIDDEN_CAPS:
                self.problem(
                    (*base, "capabilities", i, "name"), f"{c.name} is not allowed", _FORBIDDEN_CAPS[c.name]
                )
            if c.name.startswith("CAP_"):
                self.problem(
                    (*base, "capabilities", i, "name"),
                    f"write {c.name[4:]}, without CAP_",
                    f"name: {c.name[4:]}",
                )
        if s.autoscale is not None:
            self.autoscale(s, s.autoscale, base)
        if s.expose is not None:
            self.expose(s, s.expose, base)
        if s.stateful and s.per_node:
            self.problem(
                (*base, "stateful"),
                "stateful (a StatefulSet) and perNode (a DaemonSet) exclude each other",
                "remove one of them",
            )
        elif s.stateful and not s.volumes:
            self.problem(
                (*base, "stateful"),
                "a stateful service without volumes has no storage of its own to keep",
                "add volumes: [{name: data, mountPath: /data, size: 1Gi}], or remove stateful",
            )
        elif s.volumes and not s.stateful and (s.replicas > 1 or s.per_node):
            self.problem(
                (*base, "volumes"),
                "a service with persistent volumes must run one replica:"
                " a ReadWriteOnce claim cannot be shared",
                "set stateful: true for a volume per replica (a StatefulSet), or replicas: 1"
                if not s.per_node
                else "remove perNode, and set stateful: true for a volume per replica",
            )
        # the fewest pods there may be: the autoscaler's minimum, else the fixed count
        floor, what = (s.autoscale.min, "autoscale.min") if s.autoscale else (s.replicas, "replicas")
        if s.disruption:
            dp: PathT = (*base, "disruptionBudget")
            if s.per_node:
                self.problem(
                    dp,
                    "kubectl drain skips DaemonSet pods, so a budget on a perNode service has no effect",
                    "remove disruptionBudget",
                )
            elif s.disruption.min_available is not None and s.disruption.min_available >= floor:
                self.problem(
                    (*dp, "minAvailable"),
                    f"minAvailable {s.disruption.min_available} >= {what}"
                    f" {floor} blocks every eviction, so nodes can never be drained",
                    f"use minAvailable: {floor - 1}"
                    if floor > 1
                    else f"raise {what}, or remove disruptionBudget",
                )
            elif s.disruption.max_unavailable == 0:
                self.problem(
                    (*dp, "maxUnavailable"), "maxUnavailable 0 blocks every eviction", "use maxUnavailable: 1"
                )

    def expose(self, s: m.Service, e: m.Expose, base: PathT) -> None:
        """One service per host and path, on a TCP port."""
        port = next(p for p in s.ports if p.name == e.port)
        if port.protocol != "TCP":
            self.problem(
                (*base, "expose", "port"),
                f"{e.port} is {port.protocol}: an Ingress carries HTTP",
                "expose a TCP port",
            )
        key = (e.host, e.path.rstrip("/") or "/")
        if key in self.routes:
            self.problem(
                (*base, "expose"),
                f"{e.host}{e.path} is already exposed by {self.routes[key]}",
                "give each service its own host or path",
            )
        self.routes.setdefault(key, s.name)

    def job(self, s: m.Service, j: m.Job, base: PathT) -> None:
        """A job someone waits for, and one that can run when Helm runs it: before the release
        exists (pre-install) it cannot reach the release's services or read what the chart creates."""
        waiting = [o.name for o in self.r.services if s.name in o.depends_on]
        if not waiting:
            self.problem(
                (*base, "job"),
                f"nothing dependsOn {s.name}: in Compose it runs beside the services instead of before them",
                f"add dependsOn: [{s.name}] to the services that need it done first",
                severity="warning",
            )
        if waiting and self.r.probe:
            # Kubernetes: a Job of the release that their pods wait for; hooks do not apply
            said = [
                k
                for k, v in (
                    ("hooks", j.hooks),
                    ("ttlSecondsAfterFinished", j.ttl_given is not None),
                )
                if v
            ]
            if said:
                self.problem(
                    (*base, "job", said[0]),
                    f"{', '.join(said)} apply to a job nothing dependsOn: {', '.join(waiting)} "
                    f"dependsOn {s.name}, so the chart makes it a Job of the release, run when it changes, "
                    "that their pods wait for (and keep, for them to read)",
                    f"remove {' and '.join(said)}",
                    severity="warning",
                )
            return
        if waiting:
            self.problem(
                (*base, "job"),
                f"without a probe image the chart runs {s.name} as a Helm hook, which cannot hold back "
                f"{', '.join(waiting)}: on a first install they start before it has completed",
                "add probe: {image: NAME} (docs/release-yaml.md#the-probe)",
                severity="warning",
            )
        if "pre-install" in (j.hooks or m.DEFAULT_JOB_HOOKS):
            inside = [d for d in s.depends_on if d in self.services]
            if inside:
                self.problem(
                    (*base, "job", "hooks"),
                    f"pre-install runs before anything of the release exists, but {s.name} dependsOn "
                    f"{', '.join(inside)}",
                    "use hooks: [post-install, pre-upgrade]",
                )
            generated = [x.name for x in s.secrets if x.generated]
            if generated or s.configs:
                what = f"the generated secrets {', '.join(generated)}" if generated else "its config files"
                self.problem(
                    (*base, "job", "hooks"),
                    f"pre-install runs before the chart creates {what}",
                    "use hooks: [post-install, pre-upgrade], or existingSecret for its secrets",
                )

    def autoscale(self, s: m.Service, a: m.Autoscale, base: PathT) -> None:
        """min <= max, not on a DaemonSet, and the requests its targets are percentages of (the
        budget is checked against the minimum with the other budget checks)."""
        ap: PathT = (*base, "autoscale")
        requests = dict(s.resources.requests)
        if a.min > a.max:
            self.problem((*ap, "max"), f"max {a.max} is below min {a.min}", f"use max: {a.min} or more")
        if s.per_node:
            self.problem(
                ap,
                "a perNode service (a DaemonSet) runs one pod per node: nothing to scale",
                "remove autoscale",
            )
        if "cpu" not in requests:
            self.problem(
                (*ap, "cpu"),
                "a CPU target is a percentage of the CPU request, and there is none",
                "add resources.requests.cpu (e.g. 100m)",
            )
        if a.memory is not None and "memory" not in requests:
            self.problem(
                (*ap, "memory"),
                "a memory target is a percentage of the memory request, and there is none",
                "add resources.requests.memory (e.g. 128Mi), or remove autoscale.memory",
            )

    def mounts(self, s: m.Service, base: PathT) -> None:
        """Scratch directories and persistent volumes: one path each, none over the secrets mount,
        sizes in bytes, volume names that do not clash with the ones the outputs add."""
        seen: dict[str, PathT] = {}
        places = [((*base, "scratch", i, "path"), x.path) for i, x in enumerate(s.scratch)]
        places += [((*base, "configs", i, "path"), c.path) for i, c in enumerate(s.configs)]
        places += [((*base, "volumes", i, "mountPath"), v.mount_path) for i, v in enumerate(s.volumes)]
        for path, where in places:
            norm = posixpath.normpath(where)
            if norm == "/":
                self.problem(
                    path, "the root directory cannot be mounted over", "name a directory, e.g. /var/lib/app"
                )
            elif norm == m.SECRETS_DIR or norm.startswith(m.SECRETS_DIR + "/"):
                self.problem(
                    path, f"{where} is where the secrets are mounted (read-only)", "use another path"
                )
            elif norm in seen:
                self.problem(
                    path,
                    f"{where} is also mounted by {json_path(seen[norm][:-1])}",
                    "give each config file, scratch directory and volume its own path",
                )
            seen.setdefault(norm, path)
        names: dict[str, int] = {}
        for i, x in enumerate(s.scratch):
            if x.volume_name in names:
                self.problem(
                    (*base, "scratch", i, "path"),
                    f"{x.path} and {s.scratch[names[x.volume_name]].path} give the same volume name "
                    f"{x.volume_name!r}",
                    "make the paths differ in letters or digits, not only in punctuation",
                )
            names.setdefault(x.volume_name, i)
            size = x.size
            if size.endswith("m"):
                self.problem(
                    (*base, "scratch", i, "size"),
                    f"size {size} is {size[:-1]} thousandths of a byte (m means milli)",
                    f"write {size[:-1]}Mi",
                )
            elif (byte_count(size) or 0) < 1 << 10:
                self.problem(
                    (*base, "scratch", i, "size"), f"size {size} is less than 1Ki", "e.g. size: 64Mi"
                )
        keys: dict[str, int] = {}
        for i, c in enumerate(s.configs):
            if c.name in keys:
                self.problem(
                    (*base, "configs", i),
                    f"two config files named {c.name!r} (the ConfigMap key): {s.configs[keys[c.name]].path} and {c.path}",
                    "give one of them a name: ...",
                )
            keys.setdefault(c.name, i)
        total = sum(len(c.content.encode()) for c in s.configs)
        if total > 1 << 20:
            self.problem(
                (*base, "configs"),
                f"the config files hold {total:,} bytes together; a ConfigMap holds at most 1 MiB",
                "ship large data in the image or a volume",
            )
        for i, v in enumerate(s.volumes):
            if v.name in _RESERVED_VOLUMES or v.name.startswith("scratch-"):
                self.problem(
                    (*base, "volumes", i, "name"),
                    f"volume name {v.name!r} is one the outputs use themselves (tmp, secrets, config, tcpao-*, scratch-*)",
                    f"name it e.g. {v.name}-data",
                )

    def ingress(self, s: m.Service, base: PathT) -> None:
        """Ingress sources and ports, egress networks."""
        port_names = [p.name for p in s.ports]
        for i, rule in enumerate(s.ingress):
            ip: PathT = (*base, "ingress", i)
            src_svc = rule.source.service
            if src_svc is not None:
                if src_svc not in self.services:
                    guess = difflib.get_close_matches(src_svc, list(self.services), n=1)
                    self.problem(
                        (*ip, "from", "service"),
                        f"no service named {src_svc!r}",
                        f"did you mean {guess[0]!r}?" if guess else None,
                    )
                elif self.services[src_svc].host_network:
                    self.problem(
                        (*ip, "from", "service"),
                        f"{src_svc} runs with hostNetwork: its traffic"
                        " comes from node addresses, which a podSelector never matches",
                        "allow the node network instead: from: {cidr: <node CIDR>}",
                        severity="warning",
                    )
            if rule.source.cidr is not None:
                try:
                    ipaddress.ip_network(rule.source.cidr, strict=True)
                except ValueError as exc:
                    self.problem(
                        (*ip, "from", "cidr"),
                        f"{rule.source.cidr!r}: {exc}",
                        "write the network address, e.g. 10.0.0.0/8",
                    )
            for j, pn in enumerate(rule.ports):
                if pn not in port_names:
                    self.problem(
                        (*ip, "ports", j),
                        f"no port named {pn!r} in {s.name}",
                        f"use one of: {', '.join(port_names)}"
                        if port_names
                        else "declare the port under ports first",
                    )
        for i, e in enumerate(s.egress):
            try:
                ipaddress.ip_network(e.cidr, strict=True)
            except ValueError as exc:
                self.problem(
                    (*base, "egress", i, "cidr"),
                    f"{e.cidr!r}: {exc}",
                    "write the network address, e.g. 203.0.113.0/24",
                )

    def rest(self, s: m.Service, base: PathT) -> None:
        """Secrets listed once, dependencies that exist, env not shadowing a secret's envFile."""
        names = [x.name for x in s.secrets]
        for i, sec in enumerate(s.secrets):
            if names.count(sec.name) > 1 and names.index(sec.name) < i:
                self.problem(
                    (*base, "secrets", i, "name"), f"secret {sec.name!r} is listed twice", "remove one"
                )
        for i, dep in enumerate(s.depends_on):
            if dep == s.name:
                self.problem((*base, "dependsOn", i), "a service cannot depend on itself", "remove it")
            elif dep not in self.services:
                guess = difflib.get_close_matches(dep, list(self.services), n=1)
                self.problem(
                    (*base, "dependsOn", i),
                    f"no service named {dep!r}",
                    f"did you mean {guess[0]!r}?" if guess else None,
                )
        env_names = {k for k, _ in s.env}
        given: dict[str, PathT] = {}
        files = [((*base, "secrets", i, "envFile"), x.env_file) for i, x in enumerate(s.secrets)]
        files += [((*base, "configs", i, "envFile"), c.env_file) for i, c in enumerate(s.configs)]
        for path, var in files:
            if not var:
                continue
            if var in env_names:
                self.problem(path, f"{var} is also set under env", "remove it from env")
            elif var in given:
                self.problem(
                    path, f"{var} also receives the path of {json_path(given[var][:-1])}", "use another name"
                )
            given.setdefault(var, path)


_RESERVED_VOLUMES = {"tmp", "secrets", "config", "tcpao-config", "tcpao-key"}


def _dependency_cycle(r: m.Release) -> list[str]:
    graph = {s.name: [d for d in s.depends_on if d != s.name] for s in r.services}
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> list[str]:
        state[n] = 1
        for d in graph.get(n, []):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d] if d in stack else [n, d]
            if d in graph and state.get(d) is None:
                found = visit(d, [*stack, d])
                if found:
                    return found
        state[n] = 2
        return []

    for name in sorted(graph):
        if state.get(name) is None:
            found = visit(name, [name])
            if found:
                return found
    return []


def _check_pair(
    src: Source, r: m.Release, s: m.Service, services: dict[str, m.Service], out: list[Problem]
) -> None:
    t = s.tcpao
    assert t is not None
    tp: PathT = ("services", s.name, "tcpao")
    peer = services.get(t.peer)
    if peer is None:
        guess = difflib.get_close_matches(t.peer, list(services), n=1)
        out.append(
            src.problem(
                (*tp, "peer"),
                f"no service named {t.peer!r}",
                f"did you mean {guess[0]!r}?" if guess else "name the service running the other end",
            )
        )
        return
    want = "terminator" if t.role == "initiator" else "initiator"
    if peer.tcpao is None or peer.tcpao.role != want:
        out.append(
            src.problem(
                (*tp, "peer"),
                f"{t.peer} has no tcpao {want}; a {t.role} needs one at the other end",
                f"add tcpao: {{role: {want}, peer: {s.name}, ...}} to services.{t.peer}",
            )
        )
        return
    pt = peer.tcpao
    if pt.peer != s.name:
        out.append(
            src.problem(
                (*tp, "peer"),
                f"{t.peer}'s tcpao names {pt.peer!r} as its peer, not {s.name!r}",
                f"set services.{t.peer}.tcpao.peer: {s.name}",
            )
        )
    if t.role != "initiator":
        return  # check each pair once, from the initiator's side
    for field, label in (
        ("key_id", "keyId"),
        ("mac_algorithm", "macAlgorithm"),
        ("key_secret", "keySecret.name"),
        ("key_secret_key", "keySecret.key"),
    ):
        a, b = getattr(t, field), getattr(pt, field)
        if a != b:
            out.append(
                src.problem(
                    (*tp, *label.split(".")[:1]),
                    f"{label} {a!r} disagrees with {t.peer}'s {b!r}; both ends must use the same key",
                    f"set both to {b!r}",
                )
            )
    assert t.remote is not None
    rhost, rport = split_hostport(t.remote)
    _, lport = split_hostport(pt.listen)
    right = f"{peer.address or rhost}:{lport}"
    if rport != lport:
        out.append(
            src.problem(
                (*tp, "remote"),
                f"remote port {rport} is not the port {t.peer}'s terminator listens on ({lport})",
                f"use {right}",
            )
        )
    if peer.address is not None and rhost != peer.address:
        out.append(
            src.problem(
                (*tp, "remote"),
                f"remote address {rhost} is not {t.peer}'s address ({peer.address});"
                " TCP-AO signs addresses, so the peers must agree exactly",
                f"use {right}",
            )
        )
