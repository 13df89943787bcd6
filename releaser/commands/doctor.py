"""`releaser doctor`: can this host run the Compose quickstart?"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import LockError, PreflightError, UsageError
from ..pipeline import load_plan, release_dir
from ..plan import plan_ports
from ..quickstart.doctor import ENGINES, Check, detect_engine, run_checks
from ..quickstart.preflight import host_ports, own_bridges, registries_to_pull, service_ports
from ..quickstart.secrets import SECRETS_DIR
from ..quickstart.state import DEFAULT_DIR
from ..release import load_release
from ..tcpao import CMAC


@dataclass(frozen=True, kw_only=True)
class DoctorResult:
    """The host checks of `doctor`, each with its outcome and fix."""

    checks: tuple[Check, ...]

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {"checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True, kw_only=True)
class _Needs:
    """What a release asks of the host: ports, TCP-AO, registries, its network."""

    ports: list[tuple[str, int, str, str | None]]
    tcpao: bool = False
    tcpao_root: bool = False
    tcpao_keys: tuple[str, ...] = ()  # Secret names, read from the quickstart stack's .secrets/
    cmac_keys: frozenset[str] = frozenset()  # those used with cmac-aes
    registries: list[str] | None = None
    subnet: str | None = None
    own: frozenset[str] = frozenset()


def _needs(directory: Path, engine: str | None, stack: Path) -> _Needs:
    try:  # with a current lock: exactly what the quickstart would check
        plan, _ = load_plan(directory)
    except LockError:  # no lock yet: the release's own ports, no registry check
        release, _ = load_release(release_dir(directory))
        ports = host_ports([(s.name, plan_ports(s)) for s in release.services], stack)
        ao = [s.tcpao for s in release.services if s.tcpao]
        return _Needs(
            ports=ports,
            tcpao=bool(ao),
            tcpao_root=any(t.run_as_root for t in ao),
            tcpao_keys=tuple(sorted({t.key_secret for t in ao})),
            cmac_keys=frozenset(t.key_secret for t in ao if t.mac_algorithm == CMAC),
        )
    found, _ = detect_engine(engine)
    return _Needs(
        ports=host_ports(service_ports(plan), stack),
        tcpao=any(s.sidecar for s in plan.services),
        tcpao_root=any(s.sidecar.run_as_root for s in plan.services if s.sidecar),
        tcpao_keys=tuple(sorted({s.sidecar.key_secret for s in plan.services if s.sidecar})),
        cmac_keys=plan.aes_key_secrets,
        registries=registries_to_pull(plan, found) if found else [],
        subnet=plan.subnet,
        own=own_bridges(found.kind if found else None, plan.name) if plan.subnet else frozenset(),
    )


def doctor(
    directory: Path | None = None,
    *,
    engine: str | None = None,
    skip: tuple[str, ...] = (),
    bind_address: str = "127.0.0.1",
    stack: Path = DEFAULT_DIR,
) -> DoctorResult:
    """Host prerequisites of the Compose quickstart; raises PreflightError when any check fails."""
    if engine is not None and engine not in ENGINES:
        raise UsageError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}", fix="pick one of them")
    needs = _needs(directory, engine, stack) if directory is not None else _Needs(ports=[])
    checks = run_checks(
        ports=needs.ports,
        tcpao=needs.tcpao,
        engine=engine,
        skip=frozenset(skip),
        bind_address=bind_address,
        disk_path=directory or Path("."),
        registries=needs.registries or [],
        subnet=needs.subnet,
        own_interfaces=needs.own,
        tcpao_root=needs.tcpao_root,
        tcpao_keys=[stack / SECRETS_DIR / name for name in needs.tcpao_keys],
        cmac_keys={stack / SECRETS_DIR / name for name in needs.cmac_keys},
    )
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise PreflightError(failed, checks)
    return DoctorResult(checks=tuple(checks))
