"""release.yaml -> JSON Schema (every problem at once) -> semantic checks -> Release.

Every problem carries file, line and JSON path, and a fix where one is obvious.
Nothing here raises on bad input except ValidationError.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import posixpath
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError as SchemaError

from . import model as m
from .errors import Problem, ValidationError
from .fs import UnreadableInput, read_input
from .names import PROBE_SUFFIX, RELEASE_FILE, VOLUMES_SUFFIX
from .quantities import byte_count
from .yamlsource import PathT, Source, json_path, load_source

API_VERSION = "releaser.dev/v1alpha1"
TCPAO_DEFAULT_KEY = "tcpao-key"


@cache
def release_schema() -> dict[str, Any]:
    text = resources.files("releaser").joinpath("schemas/release.schema.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def mac_algorithms() -> tuple[str, ...]:
    """The TCP-AO MAC algorithms release.yaml accepts (the schema's enum: the one list of them)."""
    return tuple(release_schema()["$defs"]["tcpao"]["properties"]["macAlgorithm"]["enum"])


def _schema_at(path: tuple[Any, ...]) -> dict[str, Any]:
    """The subschema a schema path points at, following local $refs."""
    schema = release_schema()
    node: Any = schema
    for part in path:
        node = node[part]
        while isinstance(node, dict) and "$ref" in node and len(path) > 0:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                break
            target: Any = schema
            for p in ref[2:].split("/"):
                target = target[p]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node if isinstance(node, dict) else {}


def _type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
        type(None): "null",
    }.get(type(value), type(value).__name__)


# JSON Schema counts 8080.0 as an integer; YAML users mean a port, Compose refuses the float and
# the two renderers would print it differently: integers are ints here (booleans are not either).
_Validator = validators.extend(  # type: ignore[no-untyped-call]  # jsonschema does not annotate extend
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


def _schema_problems(src: Source) -> list[Problem]:
    validator = _Validator(release_schema())
    problems: list[Problem] = []
    for err in sorted(
        validator.iter_errors(src.data), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    ):
        problems.extend(_describe(src, err))
    return problems


def _yaml_word(src: Source, path: PathT, word: object) -> Problem:
    """A name YAML 1.1 reads as a boolean or null (the schema's `not: {enum: [...]}` of names)."""
    return src.problem(
        path,
        f"{word!r} cannot be a name: YAML 1.1 parsers (Helm's, Kubernetes') read it as "
        f"{'null' if word == 'null' else 'a boolean'}",
        "choose another name",
    )


def _describe(src: Source, err: SchemaError) -> list[Problem]:  # kept whole: one branch per schema keyword
    path: PathT = tuple(err.absolute_path)
    v = err.validator
    parent = err.schema if isinstance(err.schema, dict) else {}
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(parent.get("properties", {}))
        out = []
        for key in sorted(set(err.instance) - set(allowed)):
            guess = difflib.get_close_matches(key, allowed, n=1)
            fix = f"did you mean {guess[0]!r}?" if guess else f"allowed keys here: {', '.join(allowed)}"
            out.append(src.problem((*path, key), f"unknown key {key!r}", fix))
        if not allowed:  # a map of named things whose values failed; let the item errors speak
            return out or [src.problem(path, err.message)]
        return out
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        desc = _schema_at(tuple(err.schema_path)[:-1])  # the object schema holding "required"
        prop = desc.get("properties", {}).get(missing, {}) if isinstance(desc, dict) else {}
        hint = prop.get("description") if isinstance(prop, dict) else None
        return [
            src.problem(
                path, f"missing required key {missing!r}", f"add {missing}: ({hint})" if hint else None
            )
        ]
    spec: Any = err.validator_value  # the keyword's value in the schema (typed "Unset" by the stubs)
    if v in ("const", "enum"):
        allowed = [spec] if v == "const" else spec
        choices = " or ".join(json.dumps(a) for a in allowed)
        names = [a for a in allowed if isinstance(a, str)]
        guess = difflib.get_close_matches(err.instance, names, n=1) if isinstance(err.instance, str) else []
        return [
            src.problem(
                path,
                f"{err.instance!r} is not allowed here",
                f"did you mean {json.dumps(guess[0])}? (allowed: {choices})" if guess else f"use {choices}",
            )
        ]
    if v == "type":
        return [
            src.problem(
                path,
                f"expected {_article(err.validator_value)}, got {_type_name(err.instance)}"
                f" ({json.dumps(err.instance, default=str)[:60]})",
                "quote the value"
                if err.validator_value == "string"
                else "write the number without quotes"
                if err.validator_value == "integer" and isinstance(err.instance, str)
                else f"write {int(err.instance)}, a whole number without a decimal point"
                if err.validator_value == "integer"
                and isinstance(err.instance, float)
                and err.instance.is_integer()
                else None,
            )
        ]
    if v == "pattern":
        desc = parent.get("description", "")
        return [
            src.problem(path, f"{err.instance!r} is not valid here", f"expected: {desc}" if desc else None)
        ]
    if v in ("minimum", "maximum", "minLength", "maxLength", "minItems", "minProperties", "maxProperties"):
        return [src.problem(path, err.message)]
    if v == "oneOf" and all(set(s) == {"required"} for s in spec):
        keys = [s["required"][0] for s in spec]
        present = [k for k in keys if isinstance(err.instance, dict) and k in err.instance]
        what = f"has {', '.join(present)}" if present else "has none of them"
        return [
            src.problem(
                path,
                f"needs exactly one of {', '.join(keys)}; {what}",
                f"keep exactly one of: {', '.join(keys)}",
            )
        ]
    if v == "oneOf":
        return [
            src.problem(
                path,
                f"{json.dumps(err.instance, default=str)[:60]} is not valid here",
                parent.get("description"),
            )
        ]
    if v == "not" and "required" in spec:
        keys = spec["required"]
        return [
            src.problem(
                path, f"{' and '.join(keys)} cannot be used together", f"keep only one of {', '.join(keys)}"
            )
        ]
    if v == "not" and "enum" in spec:
        return [_yaml_word(src, path, err.instance)]
    if v == "propertyNames":
        words = [sub.instance for sub in err.context or [] if sub.validator == "not"]
        return [_yaml_word(src, path, words[0]) if words else src.problem(path, err.message)]
    if v in ("if", "then", "allOf"):
        return []  # their sub-errors carry the meaning
    return [src.problem(path, err.message)]


def _article(t: Any) -> str:
    names = t if isinstance(t, list) else [t]
    words = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "boolean": "true or false",
        "number": "a number",
    }
    return " or ".join(words.get(str(n), str(n)) for n in names)


# ---------------------------------------------------------------- model build


def _resources(d: dict[str, Any] | None) -> m.Resources:
    d = d or {}
    return m.Resources(
        requests=tuple(sorted((d.get("requests") or {}).items())),
        limits=tuple(sorted((d.get("limits") or {}).items())),
    )


def _build(src: Source) -> tuple[m.Release, list[Problem]]:  # kept whole: the model, field by field
    """Schema-valid data -> model. Port names in health checks are resolved here."""
    d = src.data
    problems: list[Problem] = []
    images = tuple(
        m.Image(name=n, ref=i["ref"], platforms=tuple(i.get("platforms", ())))
        for n, i in sorted(d["images"].items())
    )
    services = []
    for name, s in d["services"].items():
        base: PathT = ("services", name)
        ports = tuple(
            m.Port(
                name=p["name"],
                port=p["port"],
                protocol=p.get("protocol", "TCP"),
                exposure=p.get("exposure", "internal"),
                host_port=p.get("hostPort"),
            )
            for p in s.get("ports", ())
        )
        probes = {
            key: _probe(s[key], ports, (*base, key), src, problems)
            for key in ("health", "readiness", "liveness", "startup")
            if key in s
        }
        if "job" in s:
            for key in _NOT_FOR_JOBS:
                if key in s:
                    problems.append(
                        src.problem(
                            (*base, key),
                            f"{key} means nothing for a job, which runs once to completion",
                            f"remove {key}, or remove job to make {name} a long-running service",
                        )
                    )
        if "autoscale" in s and "replicas" in s:
            problems.append(
                src.problem(
                    (*base, "replicas"),
                    "with autoscale the HorizontalPodAutoscaler owns the replica count: a fixed replicas "
                    "would fight it on every upgrade",
                    f"remove replicas (autoscale.min, {s['autoscale']['min']}, is the count a new install starts with)",
                )
            )
        both = [k for k in ("readiness", "liveness") if k in s]
        if "health" in s and both:
            problems.append(
                src.problem(
                    (*base, "health"),
                    f"health is the shorthand for readiness and liveness together; with {' and '.join(both)} "
                    "given too, it is not clear which probe is meant",
                    "keep health alone, or replace it with readiness and liveness",
                )
            )
        tcpao = None
        if "tcpao" in s:
            t = s["tcpao"]
            tcpao = m.TcpAo(
                role=t["role"],
                image=t["image"],
                listen=t["listen"],
                peer=t["peer"],
                key_id=t["keyId"],
                mac_algorithm=t.get("macAlgorithm", "hmac-sha256"),
                key_secret=t["keySecret"]["name"],
                key_secret_key=t["keySecret"].get("key", TCPAO_DEFAULT_KEY),
                forward=t.get("forward"),
                remote=t.get("remote"),
                run_as_root=t.get("runAsRoot", False),
                resources=_resources(t.get("resources")),
            )
        dis = s.get("disruptionBudget")
        services.append(
            m.Service(
                name=name,
                image=s["image"],
                description=s.get("description", ""),
                replicas=s.get("replicas", 1),
                per_node=s.get("perNode", False),
                stateful=s.get("stateful", False),
                autoscale=m.Autoscale(**s["autoscale"]) if "autoscale" in s else None,
                job=m.Job(
                    hooks=tuple(s["job"].get("hooks", ())),
                    backoff_limit=s["job"].get("backoffLimit", 2),
                    active_deadline_seconds=s["job"].get("activeDeadlineSeconds", 600),
                    ttl_given=s["job"].get("ttlSecondsAfterFinished"),
                )
                if "job" in s
                else None,
                metrics=_metrics(s["metrics"], ports, (*base, "metrics"), src, problems)
                if "metrics" in s
                else None,
                expose=_expose(s["expose"], ports, (*base, "expose"), src, problems)
                if "expose" in s
                else None,
                node_selector=tuple(sorted(s.get("nodeSelector", {}).items())),
                command=tuple(s.get("command", ())),
                args=tuple(s.get("args", ())),
                env=tuple(sorted(s.get("env", {}).items())),
                user=s.get("user", m.DEFAULT_USER),
                secrets=tuple(
                    m.SecretFile(
                        name=x["name"],
                        generate_length=(x["generate"].get("length", 32) if "generate" in x else None),
                        existing_name=x["existingSecret"]["name"] if "existingSecret" in x else None,
                        existing_key=(
                            x["existingSecret"].get("key", x["name"]) if "existingSecret" in x else None
                        ),
                        env_file=x.get("envFile"),
                    )
                    for x in s.get("secrets", ())
                ),
                ports=ports,
                readiness=probes.get("readiness", probes.get("health")),
                liveness=probes.get("liveness", probes.get("health")),
                startup=probes.get("startup"),
                resources=_resources(s.get("resources")),
                volumes=tuple(
                    m.Volume(name=v["name"], mount_path=v["mountPath"], size=v["size"])
                    for v in s.get("volumes", ())
                ),
                configs=tuple(
                    _config(x, (*base, "configs", i), src, problems)
                    for i, x in enumerate(s.get("configs", ()))
                ),
                scratch=tuple(m.Scratch(path=x["path"], size=x.get("size", "64Mi")) for x in s["scratch"])
                if "scratch" in s
                else m.DEFAULT_SCRATCH,
                host_network=s.get("hostNetwork", tcpao is not None),
                address=s.get("address"),
                capabilities=tuple(
                    m.Capability(name=c["name"], justification=c["justification"])
                    for c in s.get("capabilities", ())
                ),
                disruption=m.Disruption(
                    min_available=dis.get("minAvailable"), max_unavailable=dis.get("maxUnavailable")
                )
                if dis
                else None,
                ingress=tuple(
                    m.IngressRule(source=m.Peer(**r["from"]), ports=tuple(r.get("ports", ())))
                    for r in s.get("ingress", ())
                ),
                egress=tuple(
                    m.EgressRule(cidr=e["cidr"], ports=tuple(e["ports"])) for e in s.get("egress", ())
                ),
                depends_on=tuple(s.get("dependsOn", ())),
                tcpao=tcpao,
                stop_grace_period_seconds=s.get("stopGracePeriodSeconds"),
                stop_signal=s.get("stopSignal"),
                init=s.get("init", False),
            )
        )
    md = d["metadata"]
    net = d.get("network", {})
    release = m.Release(
        api_version=d["apiVersion"],
        name=md["name"],
        version=md["version"],
        description=md.get("description", ""),
        subnet=net.get("subnet"),
        images=images,
        services=tuple(services),
        source_file=src.file,
        probe=d.get("probe", {}).get("image"),
    )
    return release, problems


# ------------------------------------------------------------ semantic checks

MAX_ID = 2**31 - 1  # Kubernetes: runAsUser, runAsGroup and fsGroup are int32 in practice (int64 in the API)
MAX_SEMVER_PART = 2**64 - 1  # Helm (Masterminds semver) parses major, minor and patch as uint64

_FORBIDDEN_CAPS = {"SYS_ADMIN": "it is nearly root; find the narrower capability the service needs"}


def _split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, or None when it is not one (the schema's pattern admits 10.0.0.999)."""
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _semantic_problems(src: Source, r: m.Release) -> list[Problem]:
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
                    fields.append(((*base, "tcpao", key), _split_hostport(value)[0]))
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
            for name, owner, what in taken:
                if name in self.services:
                    self.problem(
                        ("services", name),
                        f"the name {name!r} is taken by the {what} of {owner!r} in Compose",
                        "rename this service",
                    )
        elif checked:
            self.problem(
                ("services", checked[0].name),
                f"{', '.join(s.name for s in checked)}: Compose runs these http/tcp checks inside the service's image "
                "(wget, nc -z), which an image without them (distroless, scratch, busybox without nc -z) fails",
                "publish releaser's probe image (`releaser probe push REGISTRY/PATH:TAG`), name it under images and "
                "add `probe: {image: NAME}`: the checks then run from a probe container and the chart gets `helm test`",
                severity="warning",
            )

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
        _, lport = _split_hostport(t.listen)
        if (lport, "TCP") in pod_ports:
            self.problem(
                (*tp, "listen"),
                f"sidecar listen port {lport} clashes with port "
                f"{pod_ports[(lport, 'TCP')]!r} of {s.name}; they share one network namespace",
                "pick another port for one of them",
            )
        pod_ports[(lport, "TCP")] = "tcpao"
        if t.role == "terminator" and t.forward:
            fhost, fport = _split_hostport(t.forward)
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
            lhost, _ = _split_hostport(t.listen)
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


def _port_name(
    raw: int | str, ports: tuple[m.Port, ...], path: PathT, src: Source, problems: list[Problem]
) -> str | None:
    """The name of the declared port `raw` names or numbers (None, with a problem, when none does)."""
    match = [p for p in ports if p.name == raw or p.port == raw]
    if match:
        return match[0].name
    names = ", ".join(f"{p.name} ({p.port})" for p in ports)
    problems.append(
        src.problem(
            (*path, "port"),
            f"{raw!r} is not one of this service's ports",
            f"use one of: {names}" if names else "declare it under ports first",
        )
    )
    return None


def _metrics(
    x: dict[str, Any], ports: tuple[m.Port, ...], path: PathT, src: Source, problems: list[Problem]
) -> m.Metrics | None:
    name = _port_name(x["port"], ports, path, src, problems)
    return m.Metrics(port=name, path=x.get("path", "/metrics")) if name else None


def _expose(
    x: dict[str, Any], ports: tuple[m.Port, ...], path: PathT, src: Source, problems: list[Problem]
) -> m.Expose | None:
    name = _port_name(x["port"], ports, path, src, problems)
    if name is None:
        return None
    tls = x.get("tls") or {}
    return m.Expose(
        host=x["host"],
        port=name,
        path=x.get("path", "/"),
        tls_secret=tls.get("secretName"),
        cluster_issuer=tls.get("clusterIssuer"),
    )


_NOT_FOR_JOBS = (
    "replicas", "perNode", "stateful", "autoscale", "ports", "volumes", "health", "readiness", "liveness",
    "startup", "disruptionBudget", "tcpao", "hostNetwork", "metrics", "address", "expose",
)  # fmt: skip
MAX_CONFIG_BYTES = 512 << 10  # one file; a ConfigMap holds at most 1 MiB in all


def _config(x: dict[str, Any], path: PathT, src: Source, problems: list[Problem]) -> m.ConfigFile:
    """A config file with its content: inline, or read from the release directory (a path that
    leaves it, a missing or unreadable file, one over MAX_CONFIG_BYTES or not UTF-8 text are
    problems naming the file)."""
    name = x.get("name") or posixpath.basename(x["path"])
    if "content" in x:
        return m.ConfigFile(path=x["path"], name=name, content=x["content"], env_file=x.get("envFile"))
    rel = x["file"]
    root = Path(os.path.realpath(Path(src.file).parent))
    target = Path(os.path.realpath(root / rel))  # (Path.resolve raises on a link loop; read_input says it)
    where = (*path, "file")
    content = ""
    if Path(rel).is_absolute() or not target.is_relative_to(root):
        problems.append(
            src.problem(
                where, f"{rel} is outside the release directory", "keep config files beside release.yaml"
            )
        )
    else:
        try:
            content = read_input(target, MAX_CONFIG_BYTES).decode("utf-8")
        except FileNotFoundError:
            problems.append(
                src.problem(
                    where,
                    f"{rel}: no such file (looked for {target})",
                    "give the path relative to release.yaml",
                )
            )
        except UnreadableInput as exc:
            big = exc.what.startswith("holds more")
            fix = (
                "a ConfigMap holds at most 1 MiB: ship large data in the image or a volume"
                if big
                else exc.fix
            )
            problems.append(src.problem(where, f"{rel} {exc.what}", fix))
        except UnicodeDecodeError:
            problems.append(src.problem(where, f"{rel} is not UTF-8 text", "config files are text"))
        except OSError as exc:
            problems.append(src.problem(where, f"{rel}: {exc.strerror}", "check its permissions"))
    return m.ConfigFile(path=x["path"], name=name, content=content, file=rel, env_file=x.get("envFile"))


def _probe(
    h: dict[str, Any], ports: tuple[m.Port, ...], path: PathT, src: Source, problems: list[Problem]
) -> m.Health:
    """A schema-valid probe as a model Health, its port name resolved to a number (an unknown name
    is a problem, naming the ports there are)."""
    kind = next(k for k in ("http", "tcp", "exec") if k in h)
    port: int | None = None
    if kind in ("http", "tcp"):
        raw = h[kind]["port"]
        if isinstance(raw, str):
            match = [p.port for p in ports if p.name == raw]
            if match:
                port = match[0]
            else:
                names = [p.name for p in ports]
                problems.append(
                    src.problem(
                        (*path, kind, "port"),
                        f"no port named {raw!r} in this service",
                        f"use one of: {', '.join(names)}"
                        if names
                        else "declare it under ports, or give a number",
                    )
                )
        else:
            port = raw
    return m.Health(
        kind=kind,
        path=h[kind].get("path") if kind == "http" else None,
        port=port,
        command=tuple(h["exec"]["command"]) if kind == "exec" else (),
        interval=h.get("intervalSeconds", 10),
        timeout=h.get("timeoutSeconds", 3),
        retries=h.get("retries", 3),
        start=h.get("startSeconds", 10),
    )


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
    rhost, rport = _split_hostport(t.remote)
    _, lport = _split_hostport(pt.listen)
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


def load_release(directory: Path) -> tuple[m.Release, list[Problem]]:
    """Load and validate DIR/release.yaml. Raises ValidationError listing every problem.

    Returns the release and the warnings (which do not stop anything).
    """
    # DIR, or the file itself; a DIR that does not exist is reported as DIR/release.yaml
    path = (
        directory
        if directory.is_file() or directory.suffix in (".yaml", ".yml")
        else directory / RELEASE_FILE
    )
    src, problems = load_source(path)
    if src is None:
        raise ValidationError(problems)
    if not isinstance(src.data, dict):
        raise ValidationError(
            [
                *problems,
                src.problem(
                    (),
                    f"expected a mapping at the top, got {_type_name(src.data)}",
                    "start from `releaser init DIR`",
                ),
            ]
        )
    problems += _schema_problems(src)
    if any(p.severity == "error" for p in problems):
        raise ValidationError(problems)
    release, build_problems = _build(src)
    problems += build_problems
    problems += _semantic_problems(src, release)
    if any(p.severity == "error" for p in problems):
        raise ValidationError(problems)
    problems.sort(key=lambda p: (p.line or 0, p.path))
    return release, problems
