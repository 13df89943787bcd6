"""A running Compose stack: the compose command for the chosen engine, container states,
readiness polling, and volume export/import for backups.

Everything goes through the engine's own CLI (`docker compose`, `podman-compose`,
`podman`), so what the quickstart does is what a user could type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from ..errors import EngineError, ReleaserError, StackError, ToolError
from .doctor import Engine


@dataclass(frozen=True, kw_only=True)
class ComposeFile:
    """What the quickstart needs to know about compose.yaml (parsed, never executed)."""

    project: str
    services: tuple[str, ...]
    healthchecked: frozenset[str]
    users: dict[str, tuple[int, int]]  # service -> (uid, gid); root when unset
    secret_consumers: dict[str, list[str]]  # secret -> services that mount it
    volumes: dict[str, tuple[str, str]]  # volume -> (a service that mounts it, mount path)
    images: dict[str, str]  # service -> image reference
    netns_parent: dict[str, str]  # sidecar -> the service whose network namespace it shares
    jobs: frozenset[str] = frozenset()  # services that run once (label dev.releaser.job): exit 0 is done
    probes: dict[str, str] = field(default_factory=dict)  # service -> the probe container running its check
    depends: dict[str, tuple[str, ...]] = field(
        default_factory=dict
    )  # service -> what it needs started first

    @classmethod
    def read(cls, files: list[Path]) -> ComposeFile:
        doc: dict[str, Any] = {}
        for f in files:  # later files override image references (compose.airgap.yaml)
            part = yaml.safe_load(f.read_text()) or {}
            if not doc:
                doc = part
            else:
                for svc, over in (part.get("services") or {}).items():
                    doc["services"].setdefault(svc, {}).update(over)
        # a service in a profile is not started (compose.podman.yaml's volume owners)
        services = {n: s for n, s in (doc.get("services") or {}).items() if not s.get("profiles")}
        users: dict[str, tuple[int, int]] = {}
        consumers: dict[str, list[str]] = {}
        volumes: dict[str, tuple[str, str]] = {}
        for name, svc in services.items():
            uid, _, gid = str(svc.get("user", "0")).partition(":")
            users[name] = (int(uid), int(gid or uid))
            for s in svc.get("secrets") or []:
                consumers.setdefault(s["source"] if isinstance(s, dict) else s, []).append(name)
            for v in svc.get("volumes") or []:
                if isinstance(v, dict) and v.get("type") == "volume":
                    volumes.setdefault(v["source"], (name, v["target"]))
                elif isinstance(v, str) and not v.startswith((".", "/", "~")) and v.count(":") >= 1:
                    source, target = v.split(":")[:2]  # NAME:/PATH[:OPTS] (compose.podman.yaml's :U)
                    volumes.setdefault(source, (name, target))
        return cls(
            project=doc.get("name", ""),
            services=tuple(services),
            healthchecked=frozenset(n for n, s in services.items() if s.get("healthcheck")),
            users=users,
            secret_consumers=consumers,
            volumes=volumes,
            images={n: s.get("image", "") for n, s in services.items()},
            netns_parent={
                n: str(s["network_mode"])[len("service:") :]
                for n, s in services.items()
                if str(s.get("network_mode", "")).startswith("service:")
            },
            jobs=frozenset(
                n for n, s in services.items() if (s.get("labels") or {}).get("dev.releaser.job") == "true"
            ),
            probes={  # the service a probe judges: its label (a TCP-AO sidecar's leg probe), else its namespace's owner
                str(
                    (s.get("labels") or {}).get("dev.releaser.service")
                    or str(s["network_mode"])[len("service:") :]
                ): n
                for n, s in services.items()
                if (s.get("labels") or {}).get("dev.releaser.probe") == "true"
                and str(s.get("network_mode", "")).startswith("service:")
            },
            depends={
                n: tuple(
                    d
                    for d in [
                        *(s.get("depends_on") or ()),
                        str(s.get("network_mode", ""))[len("service:") :],
                    ]
                    if d in services
                )
                for n, s in services.items()
            },
        )

    def first_tier(self) -> list[str]:
        """The run-once jobs and everything they need (what they depend on, and what that depends
        on), in compose-file order: on podman the quickstart starts these first and waits for the
        jobs to finish, since no service may depend on a job there (compose.podman.yaml)."""
        needed: set[str] = set()
        todo = list(self.jobs)
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                todo.extend(self.depends.get(name, ()))
        return [n for n in self.services if n in needed]

    def start_order(self, services: list[str]) -> list[str]:
        """`services` with each one after the service whose network namespace it shares (a sidecar,
        a probe): podman starts containers in the order it is given and does not start a stopped
        namespace owner first, so a container started before it stays exited. Stable otherwise."""

        def depth(name: str) -> int:
            n, seen = 0, {name}
            while (name := self.netns_parent.get(name, "")) and name not in seen:
                seen.add(name)
                n += 1
            return n

        return sorted(services, key=depth)

    @property
    def shown(self) -> tuple[str, ...]:
        """The services a user sees: a probe container is its service's health, not a row of its own."""
        hidden = set(self.probes.values())
        return tuple(n for n in self.services if n not in hidden)


@dataclass(frozen=True, kw_only=True)
class ServiceState:
    service: str
    container: str = ""
    state: str = (
        "waiting"  # waiting (no container yet) | created | running | restarting | exited | dead | paused
    )
    health: str = ""  # healthy | unhealthy | starting | "" (no health check)
    exit_code: int = 0
    ports: tuple[str, ...] = ()
    job: bool = False  # runs once: exited 0 is done, anything else a failure
    health_container: str = ""  # where its health check runs when not in itself (its probe container)
    ids: tuple[str, ...] = ()  # the engine's IDs of its container and of its probe container

    @property
    def ready(self) -> bool:
        if self.job:
            return self.state == "exited" and self.exit_code == 0
        return self.state == "running" and self.health in ("healthy", "")

    @property
    def failed(self) -> bool:
        if self.job:
            return (self.state == "exited" and self.exit_code != 0) or self.state in ("dead", "restarting")
        # restarting: it exited and the restart policy brings it back; a healthy start never does that
        return self.state in ("exited", "dead", "restarting") or self.health == "unhealthy"

    def label(self) -> str:
        if self.job and self.state == "exited" and self.exit_code == 0:
            return "completed"
        if self.state == "running" and self.health:
            return self.health
        if self.state == "exited":
            return f"exited ({self.exit_code})"
        return self.state

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "container": self.container,
            "state": self.state,
            "health": self.health,
            "exitCode": self.exit_code,
            "ports": list(self.ports),
        }


@dataclass
class Compose:
    """The compose command of one engine, run in the stack directory."""

    engine: Engine
    directory: Path
    files: list[str]
    project: str
    env: dict[str, str] | None = None
    _podman: bool = field(init=False)

    def __post_init__(self) -> None:
        self._podman = self.engine.podman

    @property
    def podman(self) -> bool:
        """podman's compose: a stopped container does not come back as it was (a tmpfs loses its
        mode; a container sharing another's network namespace exits), so the stack is recreated."""
        return self._podman

    def argv(self, *args: str) -> list[str]:
        files = [a for f in self.files for a in ("-f", f)]
        return [*self.engine.compose, *files, "-p", self.project, *args]

    def run(
        self, *args: str, check: bool = True, timeout: float | None = 600, stdin: IO[bytes] | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.argv(*args)
        try:
            proc = subprocess.run(
                cmd,
                cwd=self.directory,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=self.env,
                stdin=stdin,
            )
        except FileNotFoundError as exc:
            raise ToolError(
                f"{cmd[0]} is not installed", fix="releaser doctor lists what is missing"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise EngineError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            raise ToolError(
                f"`{' '.join(cmd[len(self.engine.compose) :])}` failed (exit {proc.returncode}): "
                f"{_tail(proc.stderr or proc.stdout, 12)}",
                fix="see the message above; `releaser doctor` checks the engine",
            )
        return proc

    def run_logged(
        self, *args: str, out: IO[bytes], timeout: float = 600, stop: threading.Event | None = None
    ) -> int:
        """Run with stdout and stderr into `out` (which can be read while it runs); the exit code.
        Stopped (SIGTERM, then SIGKILL) past `timeout` or once `stop` is set: a caller that gave up
        waiting leaves no `compose up` running behind it (podman-compose starts one container after
        another, and would go on starting the rest of a stack the quickstart reported failed)."""
        cmd = self.argv(*args)
        try:
            # a process group of its own: stopping it stops what it started (podman-compose's
            # `podman wait` would outlive it); Ctrl-C stops it through the caller's `stop`
            proc = subprocess.Popen(
                cmd,
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise ToolError(
                f"{cmd[0]} is not installed", fix="releaser doctor lists what is missing"
            ) from exc
        deadline = time.monotonic() + timeout
        while True:
            try:
                return proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                late = time.monotonic() > deadline
                if not late and not (stop is not None and stop.is_set()):
                    continue
                _stop_group(proc)
                if late:
                    raise EngineError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from None
                return proc.returncode

    def engine_cli(self) -> str:
        return self.engine.cli

    # -------------------------------------------------------------- states
    def states(self, spec: ComposeFile) -> list[ServiceState]:
        """Every service's state, in compose-file order. A service with a health check that the
        engine does not report on yet (it does not, for a moment after the start) is `starting`,
        never taken for a service without one."""
        found = self._podman_ps() if self._podman else self._docker_ps()
        out = []
        for name in spec.shown:
            st = found.get(name, ServiceState(service=name))
            probe = found.get(spec.probes.get(name, ""))
            if name in spec.probes and st.state == "running":
                st = dataclasses.replace(
                    st,
                    health=_probe_health(probe),
                    health_container=probe.container if probe else "",
                    ids=st.ids + (probe.ids if probe else ()),
                )
            elif name in spec.healthchecked and st.state == "running" and not st.health:
                st = dataclasses.replace(st, health="starting")
            if name in spec.jobs:
                st = dataclasses.replace(st, job=True)
            if st.state == "restarting" and st.exit_code == 0 and st.container:
                # `compose ps` says 0 for a container between restarts; the engine keeps the last one
                st = dataclasses.replace(st, exit_code=self.last_exit_code(st.container))
            out.append(st)
        return out

    def stop(self, spec: ComposeFile) -> tuple[str, ...]:
        """`compose stop`. Returns the services that did not stop on their stop signal and were
        killed at the end of their grace period (exit code 137 and not out of memory): their PID 1
        ignores the signal, and every stop of them waits the whole grace period."""
        running = [s for s in self.states(spec) if s.container and s.state in ("running", "restarting")]
        self.run("stop")
        return tuple(
            s.service
            for s in running
            if self.inspect(s.container, "{{.State.ExitCode}} {{.State.OOMKilled}}").split()
            == ["137", "false"]
        )

    def leftovers(self) -> list[str]:
        """The IDs of the project's containers that still exist (after `down`: podman-compose 1.6
        can leave one behind, which then holds its volumes)."""
        label = "io.podman.compose.project" if self._podman else "com.docker.compose.project"
        found: list[str] = []
        for query in (f"label={label}={self.project}", f"name={self.project}-volume-"):  # and volume helpers
            proc = subprocess.run(
                [self.engine_cli(), "ps", "-aq", "--filter", query],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
                env=self.env,
            )
            found += [i for i in proc.stdout.split() if i not in found] if proc.returncode == 0 else []
        return found

    def remove_containers(self, ids: list[str]) -> None:
        """Remove these containers (podman: with the containers that share their namespaces, which
        would otherwise keep them)."""
        depend = ["--depend"] if self._podman else []
        subprocess.run(
            [self.engine_cli(), "rm", "-f", *depend, *ids],
            capture_output=True,
            check=False,
            timeout=120,
            env=self.env,
        )

    def inspect(self, container: str, fmt: str) -> str:
        """`ENGINE inspect --format FMT CONTAINER`: what it printed, or "" when it failed."""
        proc = subprocess.run(
            [self.engine_cli(), "inspect", "--format", fmt, container],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env=self.env,
        )
        return proc.stdout if proc.returncode == 0 else ""

    def last_exit_code(self, container: str) -> int:
        try:
            return int(self.inspect(container, "{{.State.ExitCode}}").strip())
        except ValueError:
            return 0

    def _docker_ps(self) -> dict[str, ServiceState]:
        proc = self.run("ps", "--all", "--format", "json", check=False, timeout=60)
        if proc.returncode != 0:
            return {}
        text = proc.stdout.strip()
        rows: list[dict[str, Any]] = []
        if text.startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        out = {}
        for r in rows:
            ports = tuple(
                sorted(
                    {
                        f"{p.get('URL')}:{p['PublishedPort']}->{p['TargetPort']}/{p.get('Protocol', 'tcp')}"
                        for p in r.get("Publishers") or []
                        if p.get("PublishedPort")
                    }
                )
            )
            out[r["Service"]] = ServiceState(
                service=r["Service"],
                container=r.get("Name", ""),
                ids=(str(r.get("ID", "")),) if r.get("ID") else (),
                state=r.get("State", ""),
                health=r.get("Health", "") or "",
                exit_code=int(r.get("ExitCode") or 0),
                ports=ports,
            )
        return out

    def _podman_ps(self) -> dict[str, ServiceState]:
        proc = subprocess.run(
            [
                "podman",
                "ps",
                "-a",
                "--format",
                "json",
                "--filter",
                f"label=io.podman.compose.project={self.project}",
            ],
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            return {}
        out = {}
        for r in json.loads(proc.stdout):
            labels = r.get("Labels") or {}
            svc = labels.get("com.docker.compose.service") or labels.get("io.podman.compose.service", "")
            status = r.get("Status", "")
            health = next((h for h in ("unhealthy", "healthy", "starting") if f"({h})" in status), "")
            name = (r.get("Names") or [""])[0]
            ports = tuple(
                sorted(
                    {
                        f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/"
                        f"{p.get('protocol', 'tcp')}"
                        for p in r.get("Ports") or []
                        if p.get("host_port")
                    }
                )
            )
            out[svc] = ServiceState(
                service=svc,
                container=name,
                ids=(str(r.get("Id", "")),) if r.get("Id") else (),
                state=r.get("State", ""),
                health=health,
                exit_code=int(r.get("ExitCode") or 0),
                ports=ports,
            )
        return out

    def run_healthchecks(self, states: list[ServiceState]) -> None:
        """podman 4.3 runs no health checks by itself (no systemd timers here): run them."""
        if not self._podman:
            return
        for s in states:
            if s.state == "running" and s.health == "starting" and s.container:
                subprocess.run(
                    ["podman", "healthcheck", "run", s.health_container or s.container],
                    capture_output=True,
                    check=False,
                    timeout=30,
                    env=self.env,
                )

    def logs(self, service: str, tail: int = 30) -> str:
        proc = self.run("logs", "--no-color", "--tail", str(tail), service, check=False, timeout=60)
        return proc.stdout + proc.stderr

    def health_output(self, container: str) -> str:
        """What the container's last health checks printed, with their exit codes (the engine keeps
        the last few probes): a service that logs nothing still says why it is not healthy."""
        try:
            health = json.loads(self.inspect(container, "{{json .State.Health}}") or "null") or {}
        except ValueError:
            return ""
        probes = health.get("Log") or [] if isinstance(health, dict) else []
        return "\n".join(
            f"exit {p.get('ExitCode')}: {str(p.get('Output') or '').strip() or '(no output)'}"
            for p in probes[-3:]
            if isinstance(p, dict)
        )

    # -------------------------------------------------------------- volumes
    def export_volume(self, container: str, path: str, out: IO[bytes]) -> None:
        """Write the content of `path` in a (stopped) container, a volume, to `out` as a tar whose
        names are relative to the volume's root ("./seq"): the backup's engine-neutral form.
        (`docker cp CTR:/a/b -` names entries "b/...", `podman cp` names them "/...".)"""
        cli = self.engine_cli()
        base = path.rstrip("/").rsplit("/", 1)[-1]
        proc = subprocess.Popen(
            [cli, "cp", f"{container}:{path}", "-"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        assert proc.stdout is not None
        try:
            with (
                tarfile.open(fileobj=proc.stdout, mode="r|") as src,
                tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as dst,
            ):
                for info in src:
                    name = info.name.lstrip("/")
                    if not self._podman and (name == base or name.startswith(base + "/")):
                        name = name[len(base) :].lstrip("/")
                    info.name = "./" + name if name else "."
                    dst.addfile(info, src.extractfile(info) if info.isfile() else None)
        except tarfile.TarError as exc:
            proc.kill()
            raise EngineError(f"{cli} cp {container}:{path} gave no readable tar ({exc})") from exc
        finally:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            code = proc.wait()
        if code != 0:
            raise EngineError(f"{cli} cp {container}:{path} failed: {err.strip()}")

    @contextlib.contextmanager
    def volume_helper(
        self, volume: str, mount_path: str, image: str, *, create: bool = False
    ) -> Iterator[tuple[str, str]]:
        """A container created from the service's own `image` (never started) with the stack's named
        `volume` mounted, for copying in and out of it: the service containers have read-only root
        file systems, into which Docker 20.10's `docker cp` refuses to write even where a volume is
        mounted, and after `down` there is no service container at all. Yields (container, path of
        the volume in it); removed afterwards. `create`: make the volume when it does not exist."""
        cli = self.engine_cli()
        full = f"{self.project}_{volume}"
        if subprocess.run(
            [cli, "volume", "inspect", full], capture_output=True, check=False, env=self.env
        ).returncode:
            raise EngineError(f"volume {full} does not exist: the stack never ran here, or reset removed it")
        base = mount_path.rstrip("/").rsplit("/", 1)[-1] or "data"
        helper = f"{self.project}-volume-{volume}"[:60]
        subprocess.run([cli, "rm", "-f", helper], capture_output=True, check=False, env=self.env)
        made = subprocess.run(
            [
                cli,
                "create",
                "--name",
                helper,
                "--entrypoint",
                "/bin/true",
                "-v",
                f"{full}:/restore/{base}",
                image,
            ],
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
        )
        if made.returncode != 0:
            raise EngineError(f"{cli} create (a helper for volume {volume}) failed: {made.stderr.strip()}")
        try:
            yield helper, f"/restore/{base}"
        finally:
            subprocess.run([cli, "rm", "-f", helper], capture_output=True, check=False, env=self.env)

    def import_volume(self, volume: str, mount_path: str, image: str, data: IO[bytes]) -> None:
        """Unpack a tar written by export_volume into a named volume, owners and modes kept (through
        a helper container: volume_helper)."""
        cli = self.engine_cli()
        base = mount_path.rstrip("/").rsplit("/", 1)[-1] or "data"
        with (
            self.volume_helper(volume, mount_path, image, create=True) as (helper, _),
            tempfile.TemporaryFile() as staged,
        ):
            # docker cp unpacks "<base>/..." into the parent; podman cp unpacks into the path itself
            with (
                tarfile.open(fileobj=data, mode="r|") as src,
                tarfile.open(fileobj=staged, mode="w|", format=tarfile.PAX_FORMAT) as dst,
            ):
                for info in src:
                    rel = info.name[2:] if info.name.startswith("./") else info.name.lstrip("./")
                    info.name = (f"{base}/{rel}" if rel else base) if not self._podman else (rel or ".")
                    dst.addfile(info, src.extractfile(info) if info.isfile() else None)
            staged.seek(0)
            target = f"{helper}:/restore" if not self._podman else f"{helper}:/restore/{base}"
            proc = subprocess.run(
                [cli, "cp", "-", target], stdin=staged, capture_output=True, check=False, env=self.env
            )
        if proc.returncode != 0:
            raise EngineError(
                f"{cli} cp into volume {volume} failed: {proc.stderr.decode(errors='replace').strip()}"
            )


def _probe_health(probe: ServiceState | None) -> str:
    """A service's health as its probe container reports it: not running yet is `starting`; a probe
    container that stopped or restarts cannot vouch for the service: `unhealthy`."""
    if probe is None or probe.state in ("", "waiting", "created"):
        return "starting"
    if probe.state != "running":
        return "unhealthy"
    return probe.health or "starting"


def _tail(text: str, n: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-n:])


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group `proc` leads (started with start_new_session), SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # what it started and left behind


Update = Callable[[list[ServiceState], float, bool], None]


def up_and_wait(
    compose: Compose,
    spec: ComposeFile,
    *,
    timeout: float,
    on_update: Update | None = None,
    poll: float = 1.0,
    redact: Callable[[str], str] = lambda s: s,
) -> list[ServiceState]:
    """`compose up -d` in the background while polling every service until all are ready.

    Ready: running, and healthy when the service has a health check. Fails at once when a
    service exits or turns unhealthy, or when `up` itself fails; otherwise at the deadline.
    """
    # containers an earlier run made but the engine never started hold nothing, and keep the engine
    # settings of their creation (a rerun after fixing the host would meet the same refusal): made anew
    never_started = [i for s in compose.states(spec) if s.state == "created" for i in reversed(s.ids)]
    if never_started:
        compose.remove_containers(never_started)
    deadline = time.monotonic() + timeout
    first = spec.first_tier() if compose.podman else []
    if first and len(first) < len(spec.services):
        # podman: the jobs and what they need first, until every job has exited 0; then the rest by
        # name (`up` with no names would start the jobs again)
        _up_some(compose, spec, first, deadline, on_update, poll, redact)
        rest = [n for n in spec.services if n not in spec.jobs]
        return _up_some(compose, spec, rest, deadline, on_update, poll, redact, began=deadline - timeout)
    return _up_some(compose, spec, [], deadline, on_update, poll, redact)


def _up_some(
    compose: Compose,
    spec: ComposeFile,
    names: list[str],
    deadline: float,
    on_update: Update | None,
    poll: float,
    redact: Callable[[str], str],
    began: float | None = None,
) -> list[ServiceState]:
    """`compose up -d` of `names` (every service when empty), waited for until they are ready;
    the times shown count from `began` (the start of the first part) when given."""
    result: dict[str, Any] = {}
    # what `compose up` prints, readable while it runs: a deadline that passes while it is still
    # starting a service (podman-compose starts one container after another) shows where it is
    log = tempfile.NamedTemporaryFile(prefix="releaser-up-", suffix=".log")  # noqa: SIM115 - closed below
    timeout = max(1.0, deadline - time.monotonic())

    def output() -> str:
        return Path(log.name).read_bytes()[-(64 << 10) :].decode("utf-8", "replace")

    def run_up() -> None:
        result["thread"] = threading.current_thread()
        try:
            result["code"] = compose.run_logged(
                "up", "-d", "--remove-orphans", *names, out=log, timeout=timeout + 60, stop=stopping
            )
        except ReleaserError as exc:
            result["error"] = exc

    stopping = threading.Event()
    try:
        return _wait_for_up(
            compose,
            spec,
            timeout,
            on_update,
            poll,
            redact,
            run_up,
            result,
            output,
            set(names or spec.services),
            time.monotonic() - began if began is not None else 0.0,
        )
    finally:
        stopping.set()  # a `compose up` still running when the wait gave up is stopped, not left behind
        if "thread" in result:
            result["thread"].join(timeout=15)
        log.close()


def _wait_for_up(
    compose: Compose,
    spec: ComposeFile,
    timeout: float,
    on_update: Update | None,
    poll: float,
    redact: Callable[[str], str],
    run_up: Callable[[], None],
    result: dict[str, Any],
    output: Callable[[], str],
    wanted: set[str],
    shown_from: float = 0.0,
) -> list[ServiceState]:
    """up_and_wait's loop: `run_up` in a thread, the `wanted` services polled until all are ready,
    a failure, or the deadline; `output()` is what `compose up` printed so far. Returns every
    service's state."""
    # containers of an earlier run (a failed one: unhealthy, restarting, exited) say nothing about this
    # one until `up` has recreated or restarted them: they count once `up` is done, or when new
    earlier = {i for s in compose.states(spec) for i in s.ids}
    worker = threading.Thread(target=run_up, daemon=True)
    start = time.monotonic()
    worker.start()
    states: list[ServiceState] = []
    up_finished_at: float | None = None
    while True:
        elapsed = time.monotonic() - start
        up_done = not worker.is_alive()  # before reading the states: they are then this run's
        every = compose.states(spec)
        states = [s for s in every if s.service in wanted]
        compose.run_healthchecks(states)
        if on_update:
            on_update(every, shown_from + elapsed, up_done)
        refused = _refused_start(output(), every)  # this run's output: this run's refusals
        if refused is not None:  # podman-compose would wait for it until the deadline
            raise _failure(
                compose,
                refused[0],
                every,
                redact,
                f"{refused[0].service}: the engine could not start its container: {redact(refused[1])}",
                refused=True,
            )
        failed = _blame(spec, [s for s in states if up_done or not earlier.intersection(s.ids)])
        if failed is not None:
            worker.join(timeout=5)
            raise _failure(
                compose,
                failed,
                every,
                redact,
                f"{failed.service} "
                + (
                    "is unhealthy (its health check fails)"
                    if failed.health == "unhealthy"
                    else f"{failed.state} (exit code {failed.exit_code})"
                ),
            )
        if up_done:
            if "error" in result:
                raise result["error"]
            if result["code"] != 0:
                msg = _tail(redact(output()), 8)
                states = compose.states(spec)  # after the failure: who is down now
                culprit = _blame(spec, states) or next(
                    (s for s in states if not s.ready and s.container and f"-{s.service}-" in msg), None
                )
                if culprit is None:
                    raise StackError(
                        f"`compose up` failed (exit {result['code']}): {msg}",
                        states=states,
                        fix="fix what the message names, then run the same command again",
                    )
                raise _failure(
                    compose,
                    culprit,
                    states,
                    redact,
                    f"{culprit.service} is {culprit.label()} (exit code {culprit.exit_code}); "
                    f"`compose up` failed: {msg}",
                )
            if all(s.ready for s in states):
                return compose.states(spec)
            missing = [s.service for s in states if s.state in ("waiting", "created")]
            if missing and up_finished_at is not None and time.monotonic() - up_finished_at > 15:
                raise StackError(
                    f"`compose up` finished but did not start {', '.join(missing)}: "
                    f"{_tail(redact(output()), 12)}",
                    states=states,
                    fix="fix what the engine says above, then run the same command again",
                )
            if up_finished_at is None:
                up_finished_at = time.monotonic()
        if elapsed > timeout:
            worker.join(timeout=1)
            late = next((s for s in states if not s.ready), states[0])
            still = (
                f"; `compose up` is still running, its last lines: {_tail(redact(output()), 8)}"
                if worker.is_alive() and late.state in ("created", "waiting")
                else ""
            )
            raise _failure(
                compose,
                late,
                every,
                redact,
                f"{late.service} is not ready after {timeout:.0f} s (state: {late.label()}){still}",
            )
        time.sleep(poll)


def wait_ready(
    compose: Compose,
    spec: ComposeFile,
    services: list[str],
    *,
    timeout: float,
    poll: float = 1.0,
    redact: Callable[[str], str] = lambda s: s,
) -> list[ServiceState]:
    """After `compose start` of `services`: poll until each is ready (running, and healthy where it has
    a health check), or fail at the deadline naming the one to blame. Not at the first exit: a
    container that shares a namespace owner restarted just before it may exit once and be started
    again by its restart policy (podman), so a state is final only at the deadline."""
    start = time.monotonic()
    while True:
        states = compose.states(spec)
        compose.run_healthchecks(states)
        mine = [s for s in states if s.service in services]
        if all(s.ready for s in mine):
            return states
        if time.monotonic() - start > timeout:
            late = _blame(spec, mine) or next(s for s in mine if not s.ready)
            raise _failure(
                compose,
                late,
                states,
                redact,
                f"{late.service} is not ready {timeout:.0f} s after starting again (state: {late.label()})",
            )
        time.sleep(poll)


def _blame(spec: ComposeFile, states: list[ServiceState]) -> ServiceState | None:
    """The service to blame for a failure, if any: the first one that exited, restarts or is
    unhealthy; but a sidecar dies with the service whose network it shares, so when that
    service is not ready it is the one to blame."""
    failed = next((s for s in states if s.failed), None)
    if failed is None:
        return None
    parent = next((s for s in states if s.service == spec.netns_parent.get(failed.service)), None)
    if parent is not None and not parent.ready and parent.container:
        return (
            parent
            if parent.failed
            else ServiceState(
                service=parent.service,
                container=parent.container,
                state="restarting",
                exit_code=parent.exit_code,
            )
        )
    return failed


def _failure(
    compose: Compose,
    svc: ServiceState,
    states: list[ServiceState],
    redact: Callable[[str], str],
    message: str,
    *,
    refused: bool = False,
) -> StackError:
    logs = redact(_tail(compose.logs(svc.service), 30)) if svc.container else ""
    probes = (
        redact(compose.health_output(svc.health_container or svc.container))
        if svc.container and svc.health
        else ""
    )
    if probes:
        logs = "\n".join(x for x in (logs.rstrip(), f"its last health checks: {probes}") if x)
    held = _HELD.search(message) if refused else None
    if held:
        fix = (
            f"another container ({held.group(2)[:12]}) holds {held.group(1)} in the engine's host-wide address "
            f"database (rootful podman shares one for every storage root): remove it (podman rm -f "
            f"{held.group(2)[:12]}), or give this release another network.subnet in release.yaml; then run "
            "the quickstart again (volumes and secrets are kept)"
        )
    elif refused:
        fix = (
            "the engine refused to start the container, for the reason above: fix what it names on this "
            "host (`releaser doctor` checks the engine), then run the quickstart again (volumes and "
            "secrets are kept)"
        )
    else:
        where = (
            f"the log lines above (all of them: releaser quickstart logs {svc.service})"
            if logs
            else f"its logs (releaser quickstart logs {svc.service}: empty so far)"
        )
        fix = f"read {where}; fix the cause and run the quickstart again (volumes and secrets are kept)"
    return StackError(message, service=svc.service, logs=logs, states=states, fix=fix)


_HELD = re.compile(r"requested ip address (\S+) is already allocated to container ID ([0-9a-f]+)")
_REFUSED = re.compile(r'Error: unable to start container "?([0-9a-f]{12,64})"?: (.+)')


def _refused_start(output: str, states: list[ServiceState]) -> tuple[ServiceState, str] | None:
    """A container the engine refused to start, from what `compose up` printed (podman prints
    `Error: unable to start container "ID": WHY` and podman-compose goes on waiting for it), as
    (its service, the engine's reason); None when there is none."""
    for match in _REFUSED.finditer(output):
        cid, why = match.group(1), match.group(2).strip()
        for s in states:
            if any(i.startswith(cid) or cid.startswith(i) for i in s.ids if i):
                return s, why
    return None
