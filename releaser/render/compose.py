"""Plan -> Compose quickstart files (Compose Specification).

Translation only: every decision was made in plan.py. Output is a mapping of
relative path -> bytes so callers can write it atomically, compare it with
committed files, or put it in a bundle.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import jinja2
import yaml

from .. import model as m
from ..errors import ReleaserError
from ..names import SIDECAR_SUFFIX
from ..plan import LEG_TIMING, RUN_SECRETS, TCPAO_KEY_FILE, Plan, PlanService, Sidecar
from ..probe import BINARY as PROBE_BINARY
from ..probe import UID as PROBE_UID
from ..probe import checks_for
from ..tcpao import config_problems
from ..yamlout import dump
from ..yamlsource import LOADER

BIND_KNOB = "BIND_ADDRESS"
LABEL = "dev.releaser"


@cache
def _jinja() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("releaser").joinpath(f"render/tcpao/{name}").read_text(encoding="utf-8")
    )
    return jinja2.Environment(
        loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )  # TOML, not HTML: values are validated addresses and numbers


def tcpao_config(service: str, sc: Sidecar) -> str:
    """The sidecar's TOML, from the templates of the TCP-AO deployment spec, checked against
    the proxy's own rules (releaser/tcpao.py; the chart's copy is the same text)."""
    text = str(
        _jinja()
        .get_template(f"{sc.role}.toml.j2")
        .render(
            service=service,
            listen=sc.listen,
            forward=sc.forward,
            remote=sc.remote,
            peer_ip=sc.peer_ip,
            peer_port=sc.peer_port,
            policy_name=sc.policy_name,
            key_id=sc.key_id,
            mac_algorithm=sc.mac_algorithm,
            key_file=f"{RUN_SECRETS}/{TCPAO_KEY_FILE}",
        )
    )
    problems = config_problems(text)
    if problems:
        raise ReleaserError(
            f"the tcpao-proxy config rendered for {service} would be refused by the proxy: {'; '.join(problems)}",
            fix="this is a bug in releaser (please report it with your release.yaml's tcpao section)",
        )
    return text


def _cpus(q: str) -> str:
    if q.endswith("m"):
        return str(Decimal(q[:-1]) / 1000)
    return q


_BIN = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
_DEC = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _bytes(q: str) -> str:
    for suffix, mult in (*_BIN.items(), *_DEC.items()):
        if q.endswith(suffix):
            return str(int(Decimal(q[: -len(suffix)]) * mult))
    return str(int(Decimal(q.rstrip("m")) / (1000 if q.endswith("m") else 1)))


def container_resources(res: m.Resources) -> dict[str, Any]:
    """Limits and reservations as Compose's deploy.resources (cpus, bytes); Quadlet's podman options."""
    out: dict[str, Any] = {}
    for section, items in (("limits", res.limits), ("reservations", res.requests)):
        d = {("cpus" if k == "cpu" else "memory"): (_cpus(v) if k == "cpu" else _bytes(v)) for k, v in items}
        if d:
            out[section] = d
    return {"resources": out} if out else {}


def _literal(value: str) -> str:
    """A value from release.yaml as Compose must read it to pass it on unchanged: Compose
    interpolates `$` everywhere in the file (`${HOME}`, `$$`), so each `$` is written `$$`."""
    return value.replace("$", "$$")


def _interpolated(knob: str, default: str) -> str:
    """${KNOB:-default}, or the escaped literal when the default cannot sit inside ${...}."""
    if any(c in default for c in "${}\n"):
        return _literal(default)
    return f"${{{knob}:-{default}}}"


def _healthcheck(svc: PlanService, *, probe: bool = False) -> dict[str, Any] | None:
    """Compose's one healthcheck is the readiness probe (what dependsOn waits for); a startup probe
    lengthens its start period to the time that probe allows. Compose has no liveness restarts.
    `probe`: the check as the probe container runs it (svc.probe), with releaser's probe binary."""
    h = svc.readiness
    if h is None or bool(svc.probe) != probe:
        return None
    if probe:
        assert h.port is not None
        test = [
            "CMD",
            PROBE_BINARY,
            "--quiet",
            "--timeout",
            str(h.timeout),
            checks_for(h.kind, "127.0.0.1", h.port, h.path),
        ]
    elif h.kind == "http":
        test = ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{h.port}{h.path}"]
    elif h.kind == "tcp":
        test = ["CMD", "nc", "-z", "127.0.0.1", str(h.port)]
    else:
        test = ["CMD", *(_literal(a) for a in h.command)]
    return {
        "test": test,
        "interval": f"{h.interval}s",
        "timeout": f"{h.timeout}s",
        "retries": h.retries,
        "start_period": f"{start_period(svc)}s",
    }


def start_period(svc: PlanService) -> int:
    """The readiness check's start period, lengthened to what a startup probe allows."""
    assert svc.readiness is not None
    start = svc.readiness.start
    if svc.startup is not None:
        start = max(start, svc.startup.start + svc.startup.interval * svc.startup.retries)
    return start


def _hardening(
    uid: int, gid: int, caps: list[str], scratch: Sequence[tuple[str, int | None]] = (("/tmp", None),)
) -> dict[str, Any]:
    """User, read-only root, capabilities; `scratch`: the writable tmpfs directories (path, size in
    bytes or None for the engine's default)."""
    out: dict[str, Any] = {"user": f"{uid}:{gid}", "read_only": True, "cap_drop": ["ALL"]}
    if caps:
        out["cap_add"] = caps
    out["security_opt"] = ["no-new-privileges:true"]
    # Scratch belongs to the service's user: Docker 20.10 (Debian bookworm's docker.io) remounts a
    # tmpfs with mode 0755 owned by root when a container restarts, which a non-root service could
    # no longer write to; a tmpfs mounted with uid/gid keeps its owner across restarts.
    if scratch:
        out["tmpfs"] = [
            f"{path}:uid={uid},gid={gid},mode=0700" + (f",size={size}" if size else "")
            for path, size in scratch
        ]
    return out


def _service(plan: Plan, svc: PlanService) -> dict[str, Any]:
    d: dict[str, Any] = {"image": plan.image(svc.image).pinned}
    if svc.command:
        d["entrypoint"] = [_literal(a) for a in svc.command]
    if svc.args:
        d["command"] = [_literal(a) for a in svc.args]
    env = {name: _interpolated(knob, value) for name, value, knob in svc.env}
    env.update({s.env_file: s.file for s in svc.secrets if s.env_file})
    env.update({c.env_file: c.path for c in svc.configs if c.env_file})
    if env:
        d["environment"] = dict(sorted(env.items()))
    scratch = [(x.path, x.size_bytes) for x in svc.scratch]
    d.update(_hardening(svc.uid, svc.gid, [c.name for c in svc.capabilities], scratch))
    if svc.compose_network == "host":
        d["network_mode"] = "host"
    else:
        d["networks"] = {svc.compose_network: {"ipv4_address": svc.address} if svc.address else None}
        if not svc.address:
            d["networks"] = [svc.compose_network]
    published = [p for p in svc.ports if p.compose_published]
    if published:
        d["ports"] = [
            f"${{{BIND_KNOB}:-127.0.0.1}}:${{{p.knob}:-{p.host_port}}}:{p.port}/{p.protocol.lower()}"
            for p in published
        ]
    if svc.volumes:
        d["volumes"] = [{"type": "volume", "source": v.claim, "target": v.mount_path} for v in svc.volumes]
    if svc.secrets:
        d["secrets"] = [{"source": s.name, "target": s.name} for s in svc.secrets]
    if svc.configs:
        d["configs"] = [{"source": c.compose_name, "target": c.path} for c in svc.configs]
    hc = _healthcheck(svc)
    if hc:
        d["healthcheck"] = hc
    if svc.depends_on:
        d["depends_on"] = {name: {"condition": cond} for name, cond in svc.depends_on}
    d.update({"deploy": container_resources(svc.resources)} if container_resources(svc.resources) else {})
    d.update(_lifecycle(svc))
    d["labels"] = _labels(plan, svc.name, svc.capabilities)
    if svc.job:
        d["labels"][f"{LABEL}.job"] = "true"  # the quickstart counts exit 0 as done, not as a failure
    return d


def _lifecycle(svc: PlanService) -> dict[str, Any]:
    """How it stops and whether it comes back: grace period, signal, init, restart policy."""
    out: dict[str, Any] = {}
    if svc.stop_grace_period_seconds is not None:
        out["stop_grace_period"] = f"{svc.stop_grace_period_seconds}s"
    if svc.stop_signal:
        out["stop_signal"] = svc.stop_signal
    if svc.init:
        out["init"] = True
    out["restart"] = "no" if svc.job else "unless-stopped"  # a job runs once; its dependents wait for exit 0
    return out


def _labels(plan: Plan, name: str, caps: Sequence[m.Capability]) -> dict[str, str]:
    labels = {f"{LABEL}.release": plan.name, f"{LABEL}.version": plan.version, f"{LABEL}.service": name}
    for c in caps:
        labels[f"{LABEL}.capability.{c.name}"] = c.justification
    return labels


def _sidecar(plan: Plan, svc: PlanService, sc: Sidecar) -> dict[str, Any]:
    d: dict[str, Any] = {
        "image": plan.image(sc.image).pinned,
        "entrypoint": ["tcpao-proxy", "--mode", sc.role, "--config", sc.config_path],
    }
    caps = list(sc.capabilities)
    d.update(_hardening(sc.uid, sc.gid, [c.name for c in caps]))
    # Shares the app's network namespace: the local legs stay on 127.0.0.1 and the
    # wire leg leaves from the app's fixed address, which the peer's AO policy names.
    d["network_mode"] = f"service:{svc.name}"
    d["volumes"] = [
        {
            "type": "bind",
            "source": f"./tcpao/{sc.compose_config}",
            "target": sc.config_path,
            "read_only": True,
        }
    ]
    d["secrets"] = [{"source": sc.key_secret, "target": TCPAO_KEY_FILE}]
    d["depends_on"] = {svc.name: {"condition": "service_started", "restart": True}}
    d.update({"deploy": container_resources(sc.resources)} if container_resources(sc.resources) else {})
    d["restart"] = "unless-stopped"
    d["labels"] = _labels(plan, f"{svc.name}-{SIDECAR_SUFFIX}", caps)
    return d


def _probe(plan: Plan, svc: PlanService) -> dict[str, Any]:
    """The container that runs svc's http/tcp check from releaser's probe image, in svc's network
    namespace (127.0.0.1 is the service's): its health is the service's readiness, which dependents
    and `compose up --wait` wait on. PID 1 waits and stops at once on SIGTERM."""
    return _probe_of(plan, svc, _healthcheck(svc, probe=True), after=svc.name, judged=svc.name)


def _probe_of(
    plan: Plan, svc: PlanService, healthcheck: dict[str, Any] | None, *, after: str, judged: str
) -> dict[str, Any]:
    """A probe-image container in svc's network namespace whose health is `judged`'s (its label:
    the quickstart reads it so), restarted with `after`."""
    assert plan.probe_image is not None
    d: dict[str, Any] = {"image": plan.image(plan.probe_image).pinned, "command": ["wait"]}
    d.update(_hardening(PROBE_UID, PROBE_UID, [], ()))
    d["network_mode"] = f"service:{svc.name}"
    d["healthcheck"] = healthcheck
    d["depends_on"] = {after: {"condition": "service_started", "restart": True}}
    d["deploy"] = container_resources(m.Resources(limits=plan.probe_resources.limits))  # reservations: none
    d["restart"] = "unless-stopped"
    d["labels"] = _labels(plan, judged, ())
    d["labels"][f"{LABEL}.probe"] = "true"
    return d


def leg_check(sc: Sidecar) -> list[str]:
    """The probe's command line that judges a sidecar's wire leg (Compose, Quadlet)."""
    assert sc.leg is not None
    return [PROBE_BINARY, "--quiet", "--timeout", str(LEG_TIMING.timeout), sc.leg]


def _leg_probe(plan: Plan, svc: PlanService, sc: Sidecar) -> dict[str, Any]:
    """The container that judges svc's TCP-AO wire leg from the probe image, in svc's network
    namespace (the sidecar's): its health is the sidecar's, shown as `<service>-tcpao` by the
    quickstart, which waits for it as for any service. Nothing depends on it."""
    health = {
        "test": ["CMD", *leg_check(sc)],
        "interval": f"{LEG_TIMING.interval}s",
        "timeout": f"{LEG_TIMING.timeout}s",
        "retries": LEG_TIMING.retries,
        "start_period": f"{LEG_TIMING.start}s",
    }
    sidecar = f"{svc.name}-{SIDECAR_SUFFIX}"
    return _probe_of(plan, svc, health, after=sidecar, judged=sidecar)


def _volume_owner(plan: Plan, svc: PlanService) -> dict[str, Any]:
    """Runs once before svc: gives each of svc's volumes (the directory, not its content) to svc's
    user, as the chart's fsGroup does in Kubernetes. Docker creates a volume root-owned where the
    image has no directory at the mount path, and the service never runs as root. Root with CHOWN
    alone, no network, read-only; it exits, and svc waits for its success."""
    assert plan.probe_image is not None
    targets = [f"/volumes/{v.name}" for v in svc.volumes]
    d: dict[str, Any] = {
        "image": plan.image(plan.probe_image).pinned,
        "command": ["chown", f"{svc.uid}:{svc.gid}", *targets],
    }
    d.update(_hardening(0, 0, ["CHOWN"], ()))
    d["network_mode"] = "none"
    d["volumes"] = [
        {"type": "volume", "source": v.claim, "target": t} for v, t in zip(svc.volumes, targets, strict=True)
    ]
    d["restart"] = "no"
    d["labels"] = _labels(plan, svc.name, ())
    d["labels"][f"{LABEL}.job"] = "true"  # exit 0 is done
    d["labels"][f"{LABEL}.volume-owner"] = "true"  # podman: replaced by the volumes' :U option
    return d


PODMAN_COMPOSE = "compose.podman.yaml"
DOCKER_ONLY_PROFILE = "docker-volume-owners"  # compose.podman.yaml's volume owners: never started


def render_compose(plan: Plan) -> dict[str, bytes]:
    """Plan -> {relative path: content} under compose/<release>/."""
    services: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for svc in plan.services:
        services[svc.name] = _service(plan, svc)
        for s in svc.secrets:
            secrets[s.name] = {"file": f"./{s.compose_file}"}
        for c in svc.configs:
            configs[c.compose_name] = {"file": f"./{c.compose_file}"}
            files[c.compose_file] = c.content.encode()
        if svc.probe:
            services[svc.probe] = _probe(plan, svc)
        if svc.volume_owner:
            services[svc.volume_owner] = _volume_owner(plan, svc)
        if svc.sidecar:
            sc = svc.sidecar
            services[f"{svc.name}-{SIDECAR_SUFFIX}"] = _sidecar(plan, svc, sc)
            secrets[sc.key_secret] = {"file": f"./.secrets/{sc.key_secret}"}
            files[f"tcpao/{sc.compose_config}"] = tcpao_config(svc.name, sc).encode()
            if sc.leg_probe:
                services[sc.leg_probe] = _leg_probe(plan, svc, sc)
    doc: dict[str, Any] = {"name": plan.name, "services": services}
    if any(s.compose_network != "host" for s in plan.services):
        net: dict[str, Any] = {"driver": "bridge"}
        if plan.subnet:
            net["ipam"] = {"config": [{"subnet": plan.subnet}]}
        doc["networks"] = {"release": net}
    vols = {v.claim: {"labels": {f"{LABEL}.release": plan.name}} for s in plan.services for v in s.volumes}
    if vols:
        doc["volumes"] = dict(sorted(vols.items()))
    if secrets:
        doc["secrets"] = dict(sorted(secrets.items()))
    if configs:
        doc["configs"] = dict(sorted(configs.items()))
    header = [
        f"# {plan.name} {plan.version}: Compose quickstart generated by releaser from release.yaml and",
        "# release.lock.yaml. Do not edit: change release.yaml and run `releaser render`.",
        "# Images are pinned by digest; knobs with their defaults are in .env.example;",
        "# secret files live in .secrets/ (never in this file).",
    ]
    if plan.compose_omissions:
        header.append("#")
        header.append("# Not expressed in Compose (Kubernetes only):")
        header += [f"#   - {o}" for o in plan.compose_omissions]
    files["compose.yaml"] = ("\n".join(header) + "\n" + dump(doc)).encode()
    files[PODMAN_COMPOSE] = _podman(copy.deepcopy(doc))  # not parsed again from the text: the same doc
    files[".env.example"] = _env_example(plan).encode()
    return dict(sorted(files.items()))


def podman_variant(compose_yaml: bytes) -> bytes:
    """compose.podman.yaml: compose.yaml as podman (podman-compose 1.6 on podman 4.3 and later)
    runs it. Each difference, and why:

    - tmpfs: podman refuses the options uid= and gid= that keep a tmpfs owned by the service's user
      on Docker, and remounts a tmpfs with mode 0755 when a stopped container starts again (a backup
      does that); podman's own `U` option gives the tmpfs to the container's user, and it stays
      theirs across restarts.
    - volumes: podman-compose never sees a run-once container's exit as
      `service_completed_successfully`, so the `<service>-volumes` owners give way to podman's `:U`
      volume option (the volume is given to the container's user when mounted). The owners stay, in
      a profile nothing starts, so that compose.airgap.yaml, which names every container, applies to
      this file as to compose.yaml.
    - jobs: no service depends on a run-once job here (podman-compose makes a dependency a podman
      `--requires`, and podman then starts the job again, or refuses to order containers around
      one that has exited); the quickstart starts the jobs and what they need first, waits until
      each has exited 0, then starts the rest (docs/quickstart.md#podman).
    - configs: podman-compose ignores `configs:`, so each becomes the read-only bind mount Docker
      makes of it.
    - SELinux: every file mounted from the stack directory (configs, secret files, the TCP-AO
      configuration) carries podman's relabel option, `Z` for a file one container reads and `z`
      for one several share (the TCP-AO key), so that an enforcing host lets the container read
      it; on a host without SELinux podman ignores it. Volumes need none (podman labels its own)."""
    return _podman(yaml.load(compose_yaml, Loader=LOADER))  # libyaml where PyYAML has it


def _podman(doc: dict[str, Any]) -> bytes:
    """podman_variant of the Compose document itself (changed in place)."""
    services = doc.get("services") or {}
    _podman_volume_owners(services)
    _podman_jobs(services)
    _podman_files(doc, services)
    for svc in services.values():
        if svc.get("tmpfs"):  # podman's U: owned by the container's user, as uid=/gid= do on Docker
            svc["tmpfs"] = [str(t).split(":", 1)[0] + ":U" for t in svc["tmpfs"]]
    header = (
        "# compose.podman.yaml: compose.yaml for podman (podman-compose), generated by releaser; the\n"
        "# differences: tmpfs mounts and volumes given to the service's user by podman's :U option\n"
        f"# (the run-once volume owners kept in the profile {DOCKER_ONLY_PROFILE}, which nothing starts),\n"
        "# no service depends on a run-once job (the quickstart starts jobs first), configs as\n"
        "# read-only bind mounts, and every file mounted from this directory relabelled for SELinux\n"
        "# (:Z for one container, :z when shared).\n"
    )
    return (header + dump(doc)).encode()


def _podman_volume_owners(services: dict[str, Any]) -> None:
    """The `<service>-volumes` owners into a profile nothing starts; their volumes mounted with `:U`."""
    owners = {
        n for n, svc in services.items() if (svc.get("labels") or {}).get(f"{LABEL}.volume-owner") == "true"
    }
    for name in owners:
        services[name]["profiles"] = [DOCKER_ONLY_PROFILE]
    for svc in services.values():
        deps = svc.get("depends_on")
        if isinstance(deps, dict) and owners & set(deps):
            for name in owners & set(deps):
                del deps[name]
            svc["volumes"] = [
                f"{v['source']}:{v['target']}:U" if isinstance(v, dict) and v.get("type") == "volume" else v
                for v in svc.get("volumes") or []
            ]
            if not deps:
                del svc["depends_on"]


def _podman_jobs(services: dict[str, Any]) -> None:
    """No service depends on a run-once job (the quickstart orders them itself on podman)."""
    jobs = {n for n, svc in services.items() if (svc.get("labels") or {}).get(f"{LABEL}.job") == "true"}
    for svc in services.values():
        deps = svc.get("depends_on")
        if isinstance(deps, dict) and jobs & set(deps):
            for name in jobs & set(deps):
                del deps[name]
            if not deps:
                del svc["depends_on"]


def _podman_files(doc: dict[str, Any], services: dict[str, Any]) -> None:
    """Configs as read-only bind mounts; every file mounted from the stack directory relabelled for
    SELinux: `Z` when one container mounts it, `z` when several do."""
    configs = doc.pop("configs", None) or {}
    readers: dict[str, int] = {}  # a config, a secret or a bind-mounted file -> containers mounting it
    for svc in services.values():
        for c in svc.get("configs") or []:
            readers[f"config:{c['source']}"] = readers.get(f"config:{c['source']}", 0) + 1
        for sc in svc.get("secrets") or []:
            name = sc["source"] if isinstance(sc, dict) else sc
            readers[f"secret:{name}"] = readers.get(f"secret:{name}", 0) + 1
        for v in svc.get("volumes") or []:
            if isinstance(v, dict) and v.get("type") == "bind":
                readers[f"file:{v['source']}"] = readers.get(f"file:{v['source']}", 0) + 1

    def label(key: str) -> str:
        return "z" if readers.get(key, 0) > 1 else "Z"

    for svc in services.values():
        for v in svc.get("volumes") or []:
            if isinstance(v, dict) and v.get("type") == "bind":
                v["bind"] = {**(v.get("bind") or {}), "selinux": label(f"file:{v['source']}")}
        mounts = [
            {
                "type": "bind",
                "source": configs[c["source"]]["file"],
                "target": c["target"],
                "read_only": True,
                "bind": {"selinux": label(f"config:{c['source']}")},
            }
            for c in svc.pop("configs", None) or []
        ]
        if mounts:
            svc["volumes"] = [*(svc.get("volumes") or []), *mounts]
    for name, secret in (doc.get("secrets") or {}).items():
        if "file" in secret:
            secret["x-podman.relabel"] = label(f"secret:{name}")


def _env_example(plan: Plan) -> str:
    lines = [
        f"# {plan.name} {plan.version}: every knob of the Compose quickstart, with its default.",
        "# Copy to .env and edit. Secret VALUES never go here; they are files under .secrets/.",
        "",
        "# Address public ports are published on: 127.0.0.1 keeps them on this host,",
        "# 0.0.0.0 exposes them on every interface.",
        f"{BIND_KNOB}=127.0.0.1",
    ]
    for svc in plan.services:
        knobs = []
        for p in svc.ports:
            if p.compose_published:
                knobs.append(
                    f"# {svc.name}: host port for {p.name} (container port {p.port}/{p.protocol.lower()})"
                )
                knobs.append(f"{p.knob}={p.host_port}")
        for name, value, knob in svc.env:
            if _interpolated(knob, value).startswith("${"):
                knobs.append(f"# {svc.name}: environment {name}")
                knobs.append(f"{knob}={value}")
        if knobs:
            lines += ["", *knobs]
    files = [
        (
            f.path,
            "generated by `releaser quickstart`"
            if f.length
            else "you provide it" + (": the shared TCP-AO key" if "TCP-AO" in f.readers else ""),
        )
        for f in plan.compose_secret_files()
    ]
    if files:
        lines += ["", "# Secret files the stack reads (mode 0600, directory 0700; never commit them):"]
        lines += [f"#   {f}: {how}" for f, how in files]
    return "\n".join(lines) + "\n"
