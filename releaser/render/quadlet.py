"""Plan -> Quadlet units (podman >= 5.0): the release as systemd services on one podman host.

Translation only, like render/compose.py, whose choices it shares (the same digests, user, read-only
root, dropped capabilities, tmpfs scratch, health checks, resources, fixed addresses). The units:

- `<release>.network`: the release network (the plan's subnet, when it fixes one);
- `<release>-<claim>.volume`: one per volume;
- `<release>-<service>.pod`: one pod per long-running service. Its members share the pod's network
  namespace, as Compose's `network_mode: service:` and a Kubernetes pod do: the service, the
  container running its http/tcp check from releaser's probe image (`<service>-probe`), and its
  TCP-AO sidecar (`<service>-tcpao`), which is how the sidecar's local legs stay on 127.0.0.1 and
  its wire leg leaves from the service's fixed address, with the probe of that leg
  (`<service>-tcpao-probe`: the probe's leg:// check). The pod publishes the service's public
  ports and carries its address and DNS name on the release network;
- `<release>-<name>.container`: each container. A run-once job is a oneshot service that its
  dependents order after (`service_completed_successfully`); a service with a readiness check
  becomes active only when healthy (`Notify=healthy`), so its dependents start after that
  (`service_healthy`); volumes are given to the service's user by podman's `U` option (the
  Compose volume owners are not needed); secrets are podman secrets (`<release>-<name>`);
  configs and the TCP-AO configuration are read-only files next to the units, relabelled for
  SELinux (`Z` for one reader).

Why `.pod` units (podman 5.0 and later) rather than `.kube` over the chart's pods: a `.kube` unit
needs the chart rendered at the site and runs it through `podman kube play`, which drops what it
does not support (see docs/kubernetes.md); the pod units are the Compose stack's own shape, read
by podman's generator key by key (the tests run it and boot the units under systemd).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import model as m
from ..names import SIDECAR_SUFFIX
from ..plan import LEG_TIMING, RUN_SECRETS, TCPAO_KEY_FILE, Plan, PlanService
from ..probe import BINARY as PROBE_BINARY
from ..probe import UID as PROBE_UID
from ..probe import checks_for
from .compose import container_resources, leg_check, start_period, tcpao_config
from .shell import random_alnum

MIN_PODMAN = "5.0"  # .pod units and Pod= (podman 5.0); Notify=healthy (podman 5.0)
LABEL = "dev.releaser"

Section = tuple[str, list[tuple[str, str]]]


@dataclass(frozen=True)
class _Names:
    """Unit and object names of one release, spelled once."""

    release: str

    def unit(self, name: str) -> str:
        return f"{self.release}-{name}"

    def service(self, name: str) -> str:  # the systemd service of a .container unit
        return f"{self.unit(name)}.service"

    def pod(self, service: str) -> str:
        return f"{self.unit(service)}.pod"

    def secret(self, name: str) -> str:  # the podman secret of .secrets/<name>
        return name if name.startswith(f"{self.release}-") else f"{self.release}-{name}"

    @property
    def network(self) -> str:
        return f"{self.release}.network"

    def volume(self, claim: str) -> str:
        return f"{self.unit(claim)}.volume"


_PLAIN = re.compile(r"[A-Za-z0-9_./:=,@+-]+")


def _escape(text: str) -> str:
    """A value that ends up in the generated service's ExecStart, where systemd expands `%`
    specifiers and `$VARIABLES`: both doubled, so the container gets the text as written."""
    return text.replace("%", "%%").replace("$", "$$")


def _word(arg: str) -> str:
    """One word of Exec=/Environment= as podman's generator splits it (systemd's quoting rules)."""
    arg = _escape(arg)
    if _PLAIN.fullmatch(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _words(args: Iterable[str]) -> str:
    return " ".join(_word(a) for a in args)


def _unit_file(header: str, sections: Sequence[Section]) -> bytes:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name, items in sections:
        if not items and name != "Install":
            continue
        lines += ["", f"[{name}]", *(f"{k}={v}" for k, v in items)]
    return ("\n".join(lines) + "\n").encode()


def _labels(plan: Plan, service: str, extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    labels = [
        (f"{LABEL}.release", plan.name),
        (f"{LABEL}.version", plan.version),
        (f"{LABEL}.service", service),
        *extra,
    ]
    return [("Label", _word(f"{k}={v}")) for k, v in labels]


def _hardening(
    uid: int, gid: int, caps: Sequence[str], scratch: Sequence[tuple[str, int | None]]
) -> list[tuple[str, str]]:
    out = [("User", str(uid)), ("Group", str(gid)), ("ReadOnly", "true"), ("DropCapability", "all")]
    out += [("AddCapability", c) for c in caps]
    out.append(("NoNewPrivileges", "true"))
    # podman's U gives the tmpfs to the container's user (uid=/gid= are Docker's; podman refuses them)
    out += [("Tmpfs", f"{path}:rw,mode=0700,U" + (f",size={size}" if size else "")) for path, size in scratch]
    return out


def _podman_args(res: dict[str, object], extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Resources as podman run's options, which every podman 5 takes."""
    args = list(extra)
    limits = res.get("resources", {})
    assert isinstance(limits, dict)
    for section, flags in (
        ("limits", {"cpus": "--cpus", "memory": "--memory"}),
        ("reservations", {"memory": "--memory-reservation"}),
    ):
        for key, flag in flags.items():
            value = (limits.get(section) or {}).get(key)
            if value is not None:
                args.append(f"{flag}={value}")
    return [("PodmanArgs", " ".join(args))] if args else []


def _health(
    kind_cmd: list[str], interval: int, timeout: int, retries: int, start: int
) -> list[tuple[str, str]]:
    return [
        ("HealthCmd", _escape(json.dumps(kind_cmd))),
        ("HealthInterval", f"{interval}s"),
        ("HealthTimeout", f"{timeout}s"),
        ("HealthRetries", str(retries)),
        ("HealthStartPeriod", f"{start}s"),
        ("Notify", "healthy"),  # the unit is active once healthy: dependents start after that
    ]


class _Render:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.n = _Names(plan.name)
        self.files: dict[str, bytes] = {}
        self.secret_files: dict[str, str] = {}  # podman secret -> .secrets/<file> (the Compose stack's)
        self.owners = {s.volume_owner for s in plan.services if s.volume_owner}

    def header(self, what: str) -> str:
        p = self.plan
        return (
            f"{p.name} {p.version}: {what}\n"
            f"Quadlet unit (podman >= {MIN_PODMAN}) generated by releaser from release.yaml and release.lock.yaml.\n"
            "Do not edit: change release.yaml and run `releaser render`; site changes go in a drop-in\n"
            "(<unit>.d/*.conf). Install: README.md next to this file."
        )

    def depends(self, svc: PlanService) -> list[tuple[str, str]]:
        """Compose's depends_on as systemd ordering: each dependency's service is required and
        started first (a job: exited 0; a service with a check: healthy, by its Notify=healthy)."""
        units = [self.n.service(dep) for dep, _ in svc.depends_on if dep not in self.owners]
        return [("Requires", u) for u in units] + [("After", u) for u in units]

    def pod(self, svc: PlanService) -> None:
        items: list[tuple[str, str]] = [("PodName", self.n.unit(svc.name))]
        if svc.compose_network == "host":
            items.append(("Network", "host"))
        else:
            items.append(("Network", self.n.network))
            if svc.address:
                items.append(("IP", svc.address))
            items.append(("NetworkAlias", svc.name))
            items += [
                ("PublishPort", f"127.0.0.1:{p.host_port}:{p.port}/{p.protocol.lower()}")
                for p in svc.ports
                if p.compose_published
            ]
        # podman 5.4's generator refuses Label= in [Pod]: the labels go through podman pod create's option
        labels = [f"--label={v}" for _, v in _labels(self.plan, svc.name)]
        items.append(("PodmanArgs", " ".join(labels)))
        self.files[self.n.pod(svc.name)] = _unit_file(
            self.header(f"the pod of {svc.name} (the service, its readiness probe and TCP-AO sidecar)"),
            [
                ("Unit", [("Description", f"{self.plan.name}: {svc.name}'s pod")]),
                ("Pod", items),
                ("Install", [("WantedBy", "multi-user.target default.target")]),
            ],
        )

    def container(self, svc: PlanService) -> None:
        plan, n = self.plan, self.n
        items: list[tuple[str, str]] = [
            ("ContainerName", n.unit(svc.name)),
            ("Image", plan.image(svc.image).pinned),
        ]
        if svc.job:
            items.append(("Network", n.network) if svc.compose_network != "host" else ("Network", "host"))
        else:
            items.append(("Pod", n.pod(svc.name)))
        if svc.command:
            items.append(("Entrypoint", _escape(json.dumps(list(svc.command)))))
        if svc.args:
            items.append(("Exec", _words(svc.args)))
        env = [(name, value) for name, value, _ in svc.env]
        env += [(s.env_file, s.file) for s in svc.secrets if s.env_file]
        env += [(c.env_file, c.path) for c in svc.configs if c.env_file]
        items += [("Environment", _word(f"{k}={v}")) for k, v in sorted(env)]
        scratch = [(x.path, x.size_bytes) for x in svc.scratch]
        items += _hardening(svc.uid, svc.gid, [c.name for c in svc.capabilities], scratch)
        items += [("Volume", f"{n.volume(v.claim)}:{v.mount_path}:U") for v in svc.volumes]
        for c in svc.configs:
            items.append(("Volume", f"./{c.compose_file}:{c.path}:ro,Z"))
            self.files[c.compose_file] = c.content.encode()
        for s in svc.secrets:
            name = s.compose_file.rsplit("/", 1)[-1]
            self.secret_files[n.secret(name)] = s.compose_file
            items.append(
                (
                    "Secret",
                    f"{n.secret(name)},type=mount,target={s.file},uid={svc.uid},gid={svc.gid},mode=0400",
                )
            )
        h = svc.readiness
        if h is not None and not svc.probe:
            test = (
                ["wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{h.port}{h.path}"]
                if h.kind == "http"
                else ["nc", "-z", "127.0.0.1", str(h.port)]
                if h.kind == "tcp"
                else list(h.command)
            )
            items += _health(test, h.interval, h.timeout, h.retries, start_period(svc))
        if svc.init:
            items.append(("RunInit", "true"))
        if svc.stop_grace_period_seconds is not None:
            items.append(("StopTimeout", str(svc.stop_grace_period_seconds)))
        items += _labels(
            plan, svc.name, [(f"{LABEL}.capability.{c.name}", c.justification) for c in svc.capabilities]
        )
        extra = [f"--stop-signal={svc.stop_signal}"] if svc.stop_signal else []
        items += _podman_args(container_resources(svc.resources), extra)
        service = [("Type", "oneshot"), ("RemainAfterExit", "yes")] if svc.job else [("Restart", "always")]
        self.files[f"{n.unit(svc.name)}.container"] = _unit_file(
            self.header(
                f"{svc.name}"
                + (" (runs once)" if svc.job else "")
                + (f": {svc.description}" if svc.description else "")
            ),
            [
                ("Unit", [("Description", f"{plan.name}: {svc.name}"), *self.depends(svc)]),
                ("Container", items),
                ("Service", [*service, ("TimeoutStartSec", "900")]),
                ("Install", [("WantedBy", "multi-user.target default.target")]),
            ],
        )

    def member(self, svc: PlanService, name: str, what: str, items: list[tuple[str, str]]) -> None:
        """A container in svc's pod that lives and dies with svc (Compose: `restart: true`)."""
        app = self.n.service(svc.name)
        self.files[f"{self.n.unit(name)}.container"] = _unit_file(
            self.header(f"{what} of {svc.name}, in its pod"),
            [
                (
                    "Unit",
                    [
                        ("Description", f"{self.plan.name}: {what} of {svc.name}"),
                        ("BindsTo", app),
                        ("After", app),
                    ],
                ),
                ("Container", [("ContainerName", self.n.unit(name)), *items]),
                ("Service", [("Restart", "always"), ("TimeoutStartSec", "900")]),
                ("Install", [("WantedBy", "multi-user.target default.target")]),
            ],
        )

    def probe(self, svc: PlanService) -> None:
        h = svc.readiness
        assert h is not None and h.port is not None and svc.probe
        check = [
            PROBE_BINARY,
            "--quiet",
            "--timeout",
            str(h.timeout),
            checks_for(h.kind, "127.0.0.1", h.port, h.path),
        ]
        health = _health(check, h.interval, h.timeout, h.retries, start_period(svc))
        self.probe_of(svc, svc.probe, "the readiness probe", health, judged=svc.name)

    def probe_of(
        self, svc: PlanService, name: str, what: str, health: list[tuple[str, str]], *, judged: str
    ) -> None:
        """A probe-image container in svc's pod whose health is `judged`'s (its label)."""
        plan = self.plan
        assert plan.probe_image is not None
        items = [
            ("Image", plan.image(plan.probe_image).pinned),
            ("Pod", self.n.pod(svc.name)),
            ("Exec", "wait"),
        ]
        items += _hardening(PROBE_UID, PROBE_UID, [], ())
        items += health
        items += _labels(plan, judged, [(f"{LABEL}.probe", "true")])
        items += _podman_args(container_resources(m.Resources(limits=plan.probe_resources.limits)))
        self.member(svc, name, what, items)

    def sidecar(self, svc: PlanService) -> None:
        sc = svc.sidecar
        assert sc is not None
        plan, n = self.plan, self.n
        items = [
            ("Image", plan.image(sc.image).pinned),
            ("Pod", n.pod(svc.name)),
            (
                "Entrypoint",
                _escape(json.dumps(["tcpao-proxy", "--mode", sc.role, "--config", sc.config_path])),
            ),
        ]
        items += _hardening(sc.uid, sc.gid, [c.name for c in sc.capabilities], (("/tmp", None),))
        items.append(("Volume", f"./tcpao/{sc.compose_config}:{sc.config_path}:ro,Z"))
        self.files[f"tcpao/{sc.compose_config}"] = tcpao_config(svc.name, sc).encode()
        self.secret_files[n.secret(sc.key_secret)] = f".secrets/{sc.key_secret}"
        items.append(
            (
                "Secret",
                f"{n.secret(sc.key_secret)},type=mount,target={RUN_SECRETS}/{TCPAO_KEY_FILE},uid={sc.uid},gid={sc.gid},mode=0400",
            )
        )
        items += _labels(
            plan,
            f"{svc.name}-{SIDECAR_SUFFIX}",
            [(f"{LABEL}.capability.{c.name}", c.justification) for c in sc.capabilities],
        )
        items += _podman_args(container_resources(sc.resources))
        self.member(svc, f"{svc.name}-{SIDECAR_SUFFIX}", "the TCP-AO sidecar", items)

    def leg_probe(self, svc: PlanService) -> None:
        """The TCP-AO wire leg's check (Compose's `<service>-tcpao-probe`), in the sidecar's pod."""
        sc, t = svc.sidecar, LEG_TIMING
        assert sc is not None and sc.leg_probe is not None
        health = _health(leg_check(sc), t.interval, t.timeout, t.retries, t.start)
        judged = f"{svc.name}-{SIDECAR_SUFFIX}"
        self.probe_of(svc, sc.leg_probe, "the TCP-AO wire leg's probe", health, judged=judged)

    def network(self) -> None:
        items = [("NetworkName", self.plan.name)]
        if self.plan.subnet:
            items.append(("Subnet", self.plan.subnet))
        items.append(("Label", f"{LABEL}.release={self.plan.name}"))
        self.files[self.n.network] = _unit_file(
            self.header("the release network"),
            [("Unit", [("Description", f"{self.plan.name}: the release network")]), ("Network", items)],
        )

    def volume(self, claim: str) -> None:
        self.files[self.n.volume(claim)] = _unit_file(
            self.header(f"the volume {claim}"),
            [
                ("Unit", [("Description", f"{self.plan.name}: the volume {claim}")]),
                (
                    "Volume",
                    [("VolumeName", self.n.unit(claim)), ("Label", f"{LABEL}.release={self.plan.name}")],
                ),
            ],
        )


def render_quadlet(plan: Plan) -> dict[str, bytes]:
    """Plan -> {relative path: content} under quadlet/<release>/."""
    r = _Render(plan)
    if any(s.compose_network != "host" for s in plan.services):
        r.network()
    for claim in sorted({v.claim for s in plan.services for v in s.volumes}):
        r.volume(claim)
    for svc in plan.services:
        if not svc.job:
            r.pod(svc)
        r.container(svc)
        if svc.probe:
            r.probe(svc)
        if svc.sidecar:
            r.sidecar(svc)
            if svc.sidecar.leg_probe:
                r.leg_probe(svc)
    r.files["README.md"] = _readme(plan, r).encode()
    return dict(sorted(r.files.items()))


def _secret_variable(secret: str) -> str:
    return secret.upper().replace("-", "_") + "_FILE"


def _readme(plan: Plan, r: _Render) -> str:
    generated = {f.path: f.length for f in plan.compose_secret_files()}
    units = [f"{r.n.unit(s.name)}{'' if s.job else '-pod'}.service" for s in plan.services]
    provided = sorted(s for s, path in r.secret_files.items() if not generated.get(path))
    lines = [
        f"# {plan.name} {plan.version} as Quadlet units",
        "",
        f"systemd units for podman {MIN_PODMAN} or later (Debian 13, RHEL 9.5 and 10, Fedora 40 and later),",
        "generated by releaser from the same lock as the Compose quickstart and the Helm chart: every image",
        "is pinned by the same digest. One pod per service holds the service, the container running its",
        "readiness check and its TCP-AO sidecar; a service starts once what it depends on is ready (a job:",
        "exited 0; a service with a check: healthy).",
        "",
        "## Install",
        "",
        "As root, from this directory (rootless, with `~/.config/containers/systemd/`, `systemctl --user` and"
        " `loginctl enable-linger`, is not tested: releaser's docs/outputs.md)"
        + (
            ", with "
            + ", ".join(f"`{_secret_variable(s)}`" for s in provided)
            + " naming the file you provide"
            if provided
            else ""
        )
        + ":",
        "",
        "```sh",
        f"install -d -m 0755 /etc/containers/systemd/{plan.name}",
        f"cp -r . /etc/containers/systemd/{plan.name}/",
    ]
    for secret, path in sorted(r.secret_files.items()):
        length = generated.get(path)
        if length:
            lines.append(
                f"podman secret exists {secret} || {random_alnum(length)} | podman secret create {secret} -"
            )
        else:
            var = _secret_variable(secret)
            lines.append(
                f'podman secret create --replace {secret} "${{{var}:?set {var} to the file that holds {secret}, which you provide}}"'
            )
    lines += [
        "systemctl daemon-reload",
        f"systemctl start {' '.join(units)}",
        "```",
        "",
        "The units start at boot by themselves (`[Install] WantedBy=`): Quadlet services are generated and",
        "are not enabled with `systemctl enable`. A job runs again at each start of the stack. Run again,",
        "the commands keep the generated secrets and replace the ones you provide with your file.",
        "",
        "## Upgrade",
        "",
        "From the new version's directory, the same commands install its units over these (remove by hand",
        "the units of a service it no longer has; `releaser diff` names them), then make every container",
        "anew from its new digest, the jobs first:",
        "",
        "```text",
        f"systemctl restart {' '.join(units)}",
        "```",
        "",
        "## Site settings",
        "",
        "Settings keep the release's defaults. Change one with a drop-in beside the unit rather than by",
        "editing it (`releaser render` writes the units again); an empty key first resets a list. For",
        "example, another host port, and a knob:",
        "",
        "```ini",
        "# /etc/containers/systemd/NAME/UNIT.pod.d/site.conf",
        "[Pod]",
        "PublishPort=",
        "PublishPort=127.0.0.1:9090:8080/tcp",
        "",
        "# /etc/containers/systemd/NAME/UNIT.container.d/site.conf",
        "[Container]",
        "Environment=KEY=VALUE",
        "```",
        "",
        "then `systemctl daemon-reload` and restart the pod's service. Published ports listen on 127.0.0.1.",
    ]
    if plan.compose_omissions:
        lines += [
            "",
            "## Not expressed here (Kubernetes only)",
            "",
            "Quadlet runs the Compose stack's shape: one host.",
        ]
        lines += ["", *(f"- {o}" for o in plan.compose_omissions)]
    return "\n".join(lines) + "\n"
