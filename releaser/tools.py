"""External programs releaser drives (Helm), found the same way everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import ToolError

HELM_FIX = (
    "install Helm 3.19+ or Helm 4 and put it on PATH, or set RELEASER_HELM=/path/to/helm "
    "(in a checkout, scripts/setup.sh installs both into .tools/bin)"
)


def find_helm(explicit: str | None = None) -> str:
    """The helm binary: --helm, then $RELEASER_HELM, then `helm` on PATH."""
    for candidate in (explicit, os.environ.get("RELEASER_HELM")):
        if candidate:
            if shutil.which(candidate) or Path(candidate).is_file():
                return candidate
            raise ToolError(f"helm binary {candidate!r} does not exist", fix=HELM_FIX)
    found = shutil.which("helm")
    if not found:
        raise ToolError("helm is not installed (needed to render the chart's manifests)", fix=HELM_FIX)
    return found


def helm_template(
    chart_dir: Path,
    *,
    helm: str,
    release: str = "check",
    namespace: str = "default",
    values: list[Path] | None = None,
    set_values: list[str] | None = None,
    kube_version: str | None = None,
) -> str:
    """`helm template` of a chart directory; raises ToolError with helm's own message on failure."""
    cmd = [helm, "template", release, str(chart_dir), "--namespace", namespace]
    for v in values or []:
        cmd += ["-f", str(v)]
    for s in set_values or []:
        cmd += ["--set", s]
    if kube_version:
        cmd += ["--kube-version", kube_version]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except OSError as exc:
        raise ToolError(f"cannot run {helm}: {exc.strerror}", fix=HELM_FIX) from exc
    if proc.returncode != 0:
        raise ToolError(
            f"helm template {chart_dir} failed:\n{proc.stderr.strip()}",
            fix="run `releaser render` again; if the chart was edited by hand, revert the edit",
        )
    return proc.stdout
