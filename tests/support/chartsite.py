"""The values only a site knows, for tests that render a generated chart."""

from __future__ import annotations

from pathlib import Path

from releaser.render.helm import LINT_VALUES


def site(chart: Path) -> list[str]:
    """`-f ci/lint-values.yaml` of a chart directory that has one: the TCP-AO peers' nodes and
    addresses at the Compose addresses, without which a chart with sidecars refuses to render."""
    lint = chart / LINT_VALUES
    return ["-f", str(lint)] if lint.exists() else []
