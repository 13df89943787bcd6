"""The ReleaserError tree.

Every error a user can cause is one of these. Each says what is wrong, where
(file, line, JSON path, image, digest) and how to fix it. Anything else that
escapes is a bug and the CLI lets it stay loud.
"""

from __future__ import annotations

from dataclasses import dataclass

# Exit codes the CLI maps errors to; documented in docs/cli.md.
EXIT_OK = 0
EXIT_INVALID = 1  # release.yaml / lock / inputs are wrong
EXIT_USAGE = 2  # bad command line (typer's own code)
EXIT_STALE = 3  # lock missing or stale, committed outputs out of date
EXIT_CHECK = 4  # `releaser check` found digest mismatches
EXIT_TOOL = 5  # an external program (helm, compose) is missing or failed
EXIT_REGISTRY = 6  # a registry is unreachable or answered with an error
EXIT_AUTH = 7  # a registry refused or asked for credentials
EXIT_PREFLIGHT = 8  # a host prerequisite (engine, port, disk, TCP-AO) is missing


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with an input, located precisely."""

    file: str
    line: int | None
    path: str  # JSON path, e.g. $.services.collector.ports[0].port
    message: str
    fix: str | None = None
    severity: str = "error"  # or "warning"

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def render(self) -> str:
        text = f"{self.where()}: {self.severity}: {self.path}: {self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "path": self.path,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
        }


class ReleaserError(Exception):
    """Base class: a problem the user can fix. `fix` says how."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text

    def to_json(self) -> dict[str, object]:
        return {"error": type(self).__name__, "message": self.message, "fix": self.fix}




class ValidationError(ReleaserError):
    """release.yaml (or the lock) has one or more problems; all are listed."""

    def __init__(self, problems: list[Problem]) -> None:
        problems = sorted(problems, key=lambda p: (p.file, p.line or 0, p.path))
        self.problems = [p for p in problems if p.severity == "error"]
        self.warnings = [p for p in problems if p.severity != "error"]
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} found")

    def render(self) -> str:
        lines = [p.render() for p in self.problems + self.warnings]
        lines.append(f"error: {self.message}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "error": "ValidationError",
            "message": self.message,
            "problems": [p.to_json() for p in self.problems + self.warnings],
        }


class LockError(ReleaserError):
    """The lock is missing, unreadable or does not match release.yaml."""

    exit_code = EXIT_STALE


class OutputsStaleError(ReleaserError):
    """Committed rendered outputs differ from what the release renders to."""

    exit_code = EXIT_STALE


class CheckError(ReleaserError):
    """`releaser check` found outputs that disagree about digests."""

    exit_code = EXIT_CHECK

    def __init__(self, mismatches: list[str], *, fix: str | None = None, exit_code: int = EXIT_CHECK) -> None:
        self.mismatches = mismatches
        self.exit_code = exit_code
        n = len(mismatches)
        super().__init__(f"{n} mismatch{'es' if n != 1 else ''} between the lock, the compose files and the chart",
                         fix=fix)

    def render(self) -> str:
        lines = [f"  - {m}" for m in self.mismatches]
        return "\n".join([*lines, super().render()])

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "mismatches": self.mismatches}


class ToolError(ReleaserError):
    """An external program is missing or failed."""

    exit_code = EXIT_TOOL


class UsageError(ReleaserError):
    """Arguments that make no sense together, a target that exists, etc."""


class PreflightError(ReleaserError):
    """One or more host checks failed; nothing was started."""

    exit_code = EXIT_PREFLIGHT

    def __init__(self, failed: list[object], checks: list[object]) -> None:
        self.failed = failed
        self.checks = checks
        n = len(failed)
        super().__init__(f"{n} host check{'s' if n != 1 else ''} failed",
                         fix="fix what each check says, or skip one explicitly with --skip NAME")

    def render(self) -> str:
        lines = [_check_line(c) for c in self.checks]
        return "\n".join([*lines, super().render()])

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "checks": [c.to_json() for c in self.checks]}  # type: ignore[attr-defined]


def _check_line(c: object) -> str:
    status, name, detail, fix = (getattr(c, k) for k in ("status", "name", "detail", "fix"))
    mark = {"pass": "ok  ", "fail": "FAIL", "skipped": "skip"}[status]
    return f"  {mark} {name}: {detail}" + (f"\n         fix: {fix}" if fix else "")
