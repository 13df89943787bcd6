"""Do the Compose file and the chart say the same of each service? What both express: the
container's command and arguments, its plain environment, its readiness endpoint, and the ports
Compose publishes (the chart's container ports). Read from `docker compose config --format json`
(interpolation resolved, as the engine sees it) and `helm template` (as the cluster sees it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .chartsite import site

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
NEWEST_KUBERNETES = "1.37.0"  # the newest kubernetes-validate knows (tests/test_chart.py KUBE_VERSIONS)


def check_outputs(out: Path, compose_cmd: list[str], compose_env: dict[str, str], helms: list[str]) -> None:
    """`render --out-dir out` as every consumer reads it: `docker compose config`, `helm template`
    with each of `helms`, every manifest strictly valid for the newest Kubernetes, and the two
    outputs saying the same of each service."""
    (compose,) = (out / "compose").iterdir()
    (chart,) = (out / "charts").iterdir()
    cmd = [*compose_cmd, "--project-directory", str(compose), "-f", str(compose / "compose.yaml"), "config"]
    proc = subprocess.run([*cmd, "--format", "json"], capture_output=True, text=True, env=compose_env,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, (cmd, proc.stderr, (compose / "compose.yaml").read_text())
    model = json.loads(proc.stdout)
    for helm in helms:
        proc = subprocess.run([helm, "template", "check", str(chart), *site(chart)], capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        assert proc.returncode == 0, (helm, proc.stderr)
        manifests = [d for d in yaml.safe_load_all(proc.stdout) if d]
        for doc in manifests:
            try:
                kubernetes_validate.validate(doc, NEWEST_KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        found = disagreements(model, manifests)
        assert found == [], (found, (compose / "compose.yaml").read_text())


def _literal(value: Any) -> Any:
    """A value as the container gets it: `compose config`'s output is a Compose file again, and the
    kubelet reads a container's command, args and env values, so in both a literal `$` is `$$`."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [_literal(v) for v in value]
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    return value


def disagreements(compose: dict[str, Any], manifests: list[dict[str, Any]]) -> list[str]:
    """Every place where the two outputs say different things of one service (empty: they agree)."""
    out: list[str] = []
    services = _literal(compose.get("services") or {})
    for doc in manifests:
        if doc.get("kind") not in WORKLOADS:
            continue
        name = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        svc = services.get(name)
        if svc is None:
            out.append(f"{name}: in the chart, not in compose.yaml")
            continue
        pod = doc["spec"]["template"]["spec"]
        (main,) = [c for c in pod["containers"] if c["name"] == name]
        main = {**main, **{k: _literal(main[k]) for k in ("command", "args") if k in main}}
        main["env"] = [
            {**e, "value": _literal(e["value"])} if "value" in e else e for e in main.get("env") or []
        ]
        if (main.get("command") or None) != (svc.get("entrypoint") or None):
            out.append(f"{name}: command {main.get('command')} vs entrypoint {svc.get('entrypoint')}")
        if (main.get("args") or None) != (svc.get("command") or None):
            out.append(f"{name}: args {main.get('args')} vs command {svc.get('command')}")
        env = {e["name"]: e["value"] for e in main.get("env") or [] if "value" in e}
        theirs = svc.get("environment") or {}
        for key, value in env.items():
            if theirs.get(key) != value:
                out.append(f"{name}: env {key}={value!r} vs {theirs.get(key)!r}")
        ports = {p["containerPort"] for p in main.get("ports") or []}
        for p in svc.get("ports") or []:
            if int(p["target"]) not in ports:
                out.append(
                    f"{name}: Compose publishes {p['target']}, the chart's container has {sorted(ports)}"
                )
        out += _readiness(name, main, services)
    return out


def _readiness(name: str, main: dict[str, Any], services: dict[str, Any]) -> list[str]:
    """An httpGet/tcpSocket readiness probe is the check Compose runs: in the service's probe
    container (`<name>-probe`, the probe's URL) or in its own healthcheck."""
    probe = main.get("readinessProbe") or {}
    ports = {p["name"]: p["containerPort"] for p in main.get("ports") or []}
    if "httpGet" in probe:
        port = ports.get(probe["httpGet"]["port"], probe["httpGet"]["port"])
        want = f"http://127.0.0.1:{port}{probe['httpGet']['path']}"
    elif "tcpSocket" in probe:
        port = ports.get(probe["tcpSocket"]["port"], probe["tcpSocket"]["port"])
        want = f"tcp://127.0.0.1:{port}"
    else:
        return []
    checker = services.get(f"{name}-probe") or services[name]
    test = [str(t) for t in (checker.get("healthcheck") or {}).get("test") or []]
    if want in test or (want.startswith("tcp://") and test[-4:] == ["nc", "-z", "127.0.0.1", str(port)]):
        return []
    return [f"{name}: readiness {want} in the chart, Compose checks {test}"]
