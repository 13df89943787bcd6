"""The model (releaser/model.py) built from a release.yaml that passed the schema, field by field:
defaults filled in, config files read (bounded), ports, probes and metrics resolved."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

from .. import model as m
from ..errors import Problem
from ..fs import UnreadableInput, read_input
from ..trust import PREDICATE_TYPES
from ..yamlsource import PathT, Source

API_VERSION = "releaser.dev/v1alpha1"


TCPAO_DEFAULT_KEY = "tcpao-key"


def _resources(d: dict[str, Any] | None) -> m.Resources:
    d = d or {}
    return m.Resources(
        requests=tuple(sorted((d.get("requests") or {}).items())),
        limits=tuple(sorted((d.get("limits") or {}).items())),
    )


def build_model(src: Source) -> tuple[m.Release, list[Problem]]:  # kept whole: the model, field by field
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
        trust=_trust(d.get("trust"), images),
        trusted_root=(d.get("trust") or {}).get("trustedRoot"),
    )
    return release, problems


def _trust(
    d: dict[str, Any] | None, images: tuple[m.Image, ...]
) -> tuple[tuple[str, m.TrustRule], ...] | None:
    """Each image's rule: its own under trust.images, else trust.default (an image with neither has
    no rule, which the semantic checks name). Attestation names become predicate types."""
    if d is None:
        return None

    def rule(r: Any) -> m.TrustRule:  # schema-valid: a trustRule object
        keyless = r.get("keyless", ())
        return m.TrustRule(
            keys=tuple(r.get("keys", ())),
            attestations=tuple(PREDICATE_TYPES.get(a, a) for a in r.get("attestations", ())),
            exempt=r.get("exempt", ""),
            keyless=tuple(
                m.KeylessIdentity(issuer=k["issuer"], identity=k["identity"])
                for k in ([keyless] if isinstance(keyless, dict) else keyless)
            ),
        )

    default = d.get("default")
    own = d.get("images") or {}
    return tuple(
        (i.name, rule(own.get(i.name, default))) for i in images if i.name in own or default is not None
    )


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
