"""What must hold before a stack starts (`preflight`): the engine, the host ports (the stack's own
held ones aside), another stack of the same release, subnets routed elsewhere, the registries to
pull from."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..errors import PreflightError, ReleaserError
from ..plan import Plan, PlanPort
from . import secrets as sec
from .doctor import Check, Engine, engine_cli, is_podman, run_checks
from .files import dotenv
from .state import STATE_FILE, State, compose_for, compose_spec


def host_ports(
    services: Sequence[tuple[str, Sequence[PlanPort]]], stack: Path, held_ports: frozenset[int] = frozenset()
) -> list[tuple[str, int, str, str | None]]:
    """(service.port, host port, protocol, address) of every port the stack takes on this host:
    each port Compose publishes, with the host port Compose will really use (shell env first,
    then the stack's .env, then the default) on BIND_ADDRESS (address None), and each port a
    host-network service binds itself (address 0.0.0.0: it may listen on any address, so
    whatever holds the port on any address is in the way). `services`: (name, plan.plan_ports)
    of each service; `held_ports`: the stack's own."""
    knobs = {**dotenv(stack / ".env"), **os.environ}
    ports: list[tuple[str, int, str, str | None]] = []
    for name, service_ports in services:
        for p in service_ports:
            if p.compose_host_bound and p.port not in held_ports:
                ports.append((f"{name}.{p.name} (host network)", p.port, p.protocol, "0.0.0.0"))
            port = int(knobs.get(p.knob) or p.host_port or p.port)
            if p.compose_published and port not in held_ports:
                ports.append((f"{name}.{p.name}", port, p.protocol, None))
    return ports


def service_ports(plan: Plan) -> list[tuple[str, Sequence[PlanPort]]]:
    return [(s.name, s.ports) for s in plan.services]


def registries_to_pull(plan: Plan, engine: Engine) -> list[str]:
    """Registry hosts of the locked images this engine does not have yet."""
    return sorted(
        {r.split("/", 1)[0] for r in _images_missing_locally(engine, sorted(i.pinned for i in plan.images))}
    )


def preflight(
    plan: Plan,
    *,
    engine: str | None,
    skip: tuple[str, ...],
    held_ports: set[int],
    registries: list[str],
    stack: Path,
) -> list[Check]:
    knobs = {**dotenv(stack / ".env"), **os.environ}
    sidecars = [s.sidecar for s in plan.services if s.sidecar]
    checks = run_checks(
        ports=host_ports(service_ports(plan), stack, frozenset(held_ports)),
        tcpao=bool(sidecars),
        tcpao_root=any(sc.run_as_root for sc in sidecars),
        tcpao_keys=sorted({stack / sec.SECRETS_DIR / sc.key_secret for sc in sidecars}),
        cmac_keys={stack / sec.SECRETS_DIR / name for name in plan.aes_key_secrets},
        engine=engine,
        skip=frozenset(skip),
        disk_path=stack,
        registries=registries,
        bind_address=knobs.get("BIND_ADDRESS") or "127.0.0.1",
        subnet=plan.subnet,
        own_interfaces=own_bridges(engine, plan.name) if plan.subnet else frozenset(),
    )
    other = other_stack(engine, plan.name, stack)
    if other is not None:
        checks.append(
            Check(
                name="stack",
                status="fail",
                detail=f"{plan.name} already runs as a quickstart stack in {other} (Compose project "
                f"{plan.name}): a second stack of it would recreate that stack's containers and share its volumes",
                fix=f"use that stack (--stack {other}), or stop it first: releaser quickstart down --stack {other}",
            )
        )
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise PreflightError(failed, checks)
    return checks


def other_stack(engine: str | None, project: str, stack: Path) -> str | None:
    """The stack directory whose containers hold the Compose project `project`, when it is not
    `stack`: one stack of a release per host and engine (the project is the release's name)."""
    if engine is None:
        return None
    label = "com.docker.compose.project"
    # docker ps: .Labels is one string, .Label reads one; podman ps: .Labels is a map
    fmt = (
        f'{{{{index .Labels "{label}.working_dir"}}}}'
        if is_podman(engine)
        else f'{{{{.Label "{label}.working_dir"}}}}'
    )
    try:
        proc = subprocess.run(
            [engine_cli(engine), "ps", "-a", "--filter", f"label={label}={project}", "--format", fmt],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    here = os.path.realpath(stack)
    dirs = {d.strip() for d in proc.stdout.splitlines() if d.strip()} if proc.returncode == 0 else set()
    others = sorted(d for d in dirs if os.path.realpath(d) != here)
    return others[0] if others else None


def own_bridges(engine: str | None, project: str) -> frozenset[str]:
    """The host interface of this stack's own network, if it exists (a re-run must not trip on it)."""
    if engine is None:  # no engine: no network of ours either (the preflight says what is missing)
        return frozenset()
    podman, cli = is_podman(engine), engine_cli(engine)
    fmt = "{{.NetworkInterface}}" if podman else "{{.Id}}"
    try:
        proc = subprocess.run(
            [cli, "network", "inspect", "-f", fmt, f"{project}_release"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    if proc.returncode != 0 or not proc.stdout.strip():
        return frozenset()
    value = proc.stdout.strip().splitlines()[0]
    return frozenset({value if podman else f"br-{value[:12]}"})


def held_ports(stack: Path, plan: Plan, engine: str | None) -> set[int]:
    """Host ports this stack's own running containers hold (a re-run must not trip on them):
    the ports they publish, and the ports of its host-network services that are running."""
    if not (stack / STATE_FILE).is_file():
        return set()
    try:
        state = State.load(stack)
        compose = compose_for(stack, state)
        found = compose.states(compose_spec(stack, state))
    except ReleaserError:
        return set()
    host_bound = {s.name: [p.port for p in s.ports if p.compose_host_bound] for s in plan.services}
    held = set()
    for s in found:
        for p in s.ports:
            held.add(int(p.split("->")[0].rsplit(":", 1)[1]))
        if s.state in ("running", "restarting", "paused"):
            held.update(host_bound.get(s.service, ()))
    return held


def _images_missing_locally(engine: Engine, images: list[str]) -> list[str]:
    cli = engine.cli
    missing = []
    for ref in images:
        proc = subprocess.run([cli, "image", "inspect", ref], capture_output=True, check=False)
        if proc.returncode != 0:
            missing.append(ref)
    return missing
