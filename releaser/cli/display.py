"""Live displays on stderr: byte progress of bundles and loads, readiness of the quickstart.
Drawn only on a terminal and never with --json; the library only reports to them."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # the type only: the quickstart stage is imported when it runs
    from ..quickstart.stack import ServiceState


class ByteProgress:
    """Bytes confirmed, on stderr, only when it is a terminal (and never with --json)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> ByteProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

    def set_totals(self, totals: dict[str, int]) -> None:
        """The bytes each image (\"\" for the chart) will count in all. The total line is added
        first, with the sum, so no frame ever shows a partial total."""
        if self.bar is None:
            return
        self.tasks[f"{self.label} total"] = self.bar.add_task(
            f"{self.label} total", total=sum(totals.values())
        )
        for name, total in sorted(totals.items()):
            self.tasks[name or "chart"] = self.bar.add_task(name or "chart", total=total)

    def __call__(self, name: str, n: int) -> None:
        """`n` more bytes confirmed for `name` (an image); a total line sums them."""
        if self.bar is None:
            return
        for key in (name or "chart", f"{self.label} total"):
            if key not in self.tasks:
                self.tasks[key] = self.bar.add_task(key, total=None)
            self.bar.advance(self.tasks[key], n)


class Readiness:
    """Live per-service status while the stack comes up: a table on a terminal, else one line
    per change (so logs of CI runs stay readable)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.live: Any = None
        self.last: dict[str, str] = {}

    def __enter__(self) -> Readiness:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(stderr=True), refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def __call__(self, states: list[ServiceState], elapsed: float, up_done: bool) -> None:
        if not self.enabled:
            return
        if self.live is not None:
            from rich.table import Table

            table = Table(title=f"waiting for services ({elapsed:.0f} s)", title_justify="left")
            for col in ("service", "state", "ports"):
                table.add_column(col)
            for s in states:
                style = "green" if s.ready else ("red" if s.failed else "yellow")
                table.add_row(s.service, f"[{style}]{s.label()}[/{style}]", ", ".join(s.ports))
            self.live.update(table)
            return
        for s in states:
            if self.last.get(s.service) != s.label():
                self.last[s.service] = s.label()
                typer.echo(f"  [{elapsed:5.1f}s] {s.service}: {s.label()}", err=True)


def trust_lines(verdicts: tuple[Any, ...] | None) -> str:
    """The trust policy's answer per image, for bundle, airgap, verify and inspect (text output)."""
    if verdicts is None:
        return "\n  trust: no policy in release.yaml: the images were taken whoever signed them"
    out = []
    roots = {v.root.describe(): None for v in verdicts if getattr(v, "root", None) is not None}
    out += [f"\n  trust: keyless signatures verified offline against the trusted root {r}" for r in roots]
    for v in verdicts:
        if v.exempt:
            out.append(f"\n  trust: {v.image} exempt ({v.exempt})")
            continue
        if not v.ok:
            out.append(f"\n  trust: {v.image} FAILS: {'; '.join(v.problems)}")
            continue
        attested = f"; attested: {', '.join(v.attested)}" if v.attested else ""
        out.append(f"\n  trust: {v.image} {v.digest[:19]}... signed by {', '.join(v.signers)}{attested}")
    return "".join(out)
