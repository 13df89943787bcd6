"""The ReleaserError tree and the exit codes: every class and every code, here and only here.

Every error a user can cause is one of these. Each says what is wrong, where (file, line,
JSON path, image, digest, registry) and how to fix it. Recurring errors build their message
and fix from keyword arguments, so the same fix is written once. Context is added on the way
out with `add_note()` (rendered in front of the message: "images.gobmp (...): <message>"),
never by re-creating the error. Anything else that escapes is a bug: the CLI reports it as an
internal error (exit 70). docs/cli.md lists the codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# Exit codes; documented in docs/cli.md (a test checks that the two agree).
EXIT_OK = 0
EXIT_INVALID = 1  # release.yaml / lock / bundle / an input file is wrong; a target exists
EXIT_USAGE = 2  # bad command line; a destructive action without --yes
EXIT_STALE = 3  # lock missing or stale, committed outputs out of date
EXIT_CHECK = 4  # `releaser check` found digest mismatches
EXIT_TOOL = 5  # an external program (helm, compose, the engine) is missing or failed
EXIT_REGISTRY = 6  # a registry is unreachable or answered with an error
EXIT_AUTH = 7  # a registry refused or asked for credentials
EXIT_PREFLIGHT = 8  # a host prerequisite (engine, port, disk, TCP-AO) is missing
EXIT_UNHEALTHY = 9  # a quickstart service is not ready
EXIT_INTERNAL = 70  # a bug (EX_SOFTWARE): reported with the command, traceback under --debug
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES = {
    EXIT_OK: "success (warnings do not fail)",
    EXIT_INVALID: "invalid input",
    EXIT_USAGE: "bad command line",
    EXIT_STALE: "stale lock or outputs",
    EXIT_CHECK: "digest mismatch",
    EXIT_TOOL: "external program missing or failing",
    EXIT_REGISTRY: "registry error",
    EXIT_AUTH: "registry authentication",
    EXIT_PREFLIGHT: "host check failed",
    EXIT_UNHEALTHY: "quickstart service not ready",
    EXIT_INTERNAL: "internal error",
    EXIT_INTERRUPTED: "interrupted",
}

# Fix texts that several errors share.
FIX_COPY_BUNDLE = "copy the bundle again and compare its size and sha256 with the source"
FIX_ENGINE = (
    "check that the engine runs (releaser doctor) and has room (df -h); then run the same command again"
)


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
        self._message = message
        self.fix = fix

    @property
    def message(self) -> str:
        """The message with the context notes in front, the outermost first."""
        notes = getattr(self, "__notes__", [])
        return ": ".join([*reversed(notes), self._message])

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text

    def to_json(self) -> dict[str, object]:
        return {"error": type(self).__name__, "message": self.message, "fix": self.fix}

    def __str__(self) -> str:
        return self.message


class Interrupted(ReleaserError):
    """Ctrl-C: the command stopped at once; nothing is left half written."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, *, command: str) -> None:
        super().__init__(
            f"{command}: interrupted",
            fix="re-run the same command: nothing is left half written (files are written to a temp name "
            "and renamed) and a registry load sends only what the target still lacks",
        )


# ---------------------------------------------------------------- inputs and command line


class UsageError(ReleaserError):
    """A command line that makes no sense: a wrong option value, options that do not go together."""

    exit_code = EXIT_USAGE


class ConfirmationRequired(UsageError):
    """A destructive action was asked for without --yes; the message lists what it would delete."""


class InputError(ReleaserError):
    """A path or value given to a command is not there or not usable (a missing file, a target
    that already exists, a malformed environment variable)."""


class TargetExists(InputError):
    def __init__(self, path: Path | str, *, fix: str) -> None:
        super().__init__(f"{path} already exists", fix=fix)


class ValidationError(ReleaserError):
    """release.yaml (or the lock) has one or more problems; all are listed."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        ordered = sorted(problems, key=lambda p: (p.file, p.line or 0, p.path))
        self.problems = [p for p in ordered if p.severity == "error"]
        self.warnings = [p for p in ordered if p.severity != "error"]
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
    """The lock is missing, unreadable or does not match release.yaml (`warnings`: what else
    validation found, shown with it)."""

    exit_code = EXIT_STALE

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.warnings: list[Problem] = []

    def render(self) -> str:
        return "\n".join([*(w.render() for w in self.warnings), super().render()])

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        if self.warnings:
            out["problems"] = [w.to_json() for w in self.warnings]
        return out


class CheckError(ReleaserError):
    """`releaser check` found outputs that disagree about digests (or are merely stale: exit 3)."""

    exit_code = EXIT_CHECK

    def __init__(
        self,
        mismatches: list[str],
        *,
        fix: str | None = None,
        exit_code: int = EXIT_CHECK,
        between: str = "the lock, the compose files and the chart",
    ) -> None:
        self.mismatches = mismatches
        self.exit_code = exit_code
        n = len(mismatches)
        super().__init__(f"{n} mismatch{'es' if n != 1 else ''} between {between}", fix=fix)

    def render(self) -> str:
        lines = [f"  - {m}" for m in self.mismatches]
        return "\n".join([*lines, super().render()])

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "mismatches": self.mismatches}


class BaseMissing(ReleaserError):
    """A delta bundle relies on blobs the target registry does not serve; nothing was pushed."""

    exit_code = EXIT_CHECK

    def __init__(self, missing: list[str], *, target: str, fix: str) -> None:
        self.missing = missing
        n = len(missing)
        super().__init__(
            f"{target} lacks {n} blob{'s' if n != 1 else ''} this delta bundle relies on; nothing was pushed",
            fix=fix,
        )

    def render(self) -> str:
        return "\n".join([*(f"  - {m}" for m in self.missing), super().render()])

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "missing": self.missing}


class TrustError(ReleaserError):
    """Images that fail the release's trust policy (docs/trust.md); each problem names the image,
    its digest, what was required and what was found. `outcome` says what was left undone."""

    exit_code = EXIT_CHECK

    def __init__(self, problems: list[str], *, outcome: str, fix: str) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(
            f"{n} image requirement{'s' if n != 1 else ''} of the trust policy not met; {outcome}", fix=fix
        )

    def render(self) -> str:
        return "\n".join([*(f"  - {p}" for p in self.problems), super().render()])

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "problems": self.problems}


# ---------------------------------------------------------------- external programs


class ToolError(ReleaserError):
    """An external program is missing or failed."""

    exit_code = EXIT_TOOL


class EngineError(ToolError):
    """A container engine command failed; the fix is always to check the engine."""

    def __init__(self, message: str) -> None:
        super().__init__(message, fix=FIX_ENGINE)


# ---------------------------------------------------------------- registries


class RegistryError(ReleaserError):
    """A registry answered with an error, or could not be reached."""

    exit_code = EXIT_REGISTRY
    codes: tuple[str, ...] = ()  # the distribution spec's error codes of the answer, when it had any


class AuthError(RegistryError):
    """Credentials are missing or refused; retrying cannot help."""

    exit_code = EXIT_AUTH


class DigestMismatch(RegistryError):
    """Content did not hash to the digest it was asked for."""


# ---------------------------------------------------------------- bundles


class SigningError(ReleaserError):
    """A key cannot be read or a signature cannot be made."""


class ArchiveError(ReleaserError):
    """The archive is unreadable, truncated or not a tar.zst."""


class BundleDamaged(ArchiveError):
    """The bundle file is damaged or cut short at a known place."""

    def __init__(self, path: Path | str, detail: str) -> None:
        super().__init__(f"{path}: {detail}", fix=FIX_COPY_BUNDLE)


class MetadataError(ReleaserError):
    """Signed metadata (releaser.json, index.json) does not have the shape the format defines."""

    def __init__(self, *, path: str, expected: str, got: object) -> None:
        kind = "nothing" if got is None else type(got).__name__
        self.json_path = path
        super().__init__(
            f"{path}: expected {expected}, found {kind}",
            fix="this is not a bundle written by `releaser bundle` (see docs/bundle-format.md); get it again "
            "from its publisher",
        )


class VerificationError(ReleaserError):
    """The bundle failed verification; nothing was (or will be) pushed."""

    def __init__(
        self, path: Path, problems: list[str], *, outcome: str = "nothing was pushed", fix: str | None = None
    ) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(
            f"{path}: {n} verification problem{'s' if n != 1 else ''}; {outcome}",
            fix=fix or "get the bundle again from its publisher and check you have their public key",
        )

    def render(self) -> str:
        return "\n".join([*(f"  - {p}" for p in self.problems), super().render()])

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "problems": self.problems}


# ---------------------------------------------------------------- the quickstart


class _Check(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def fix(self) -> str | None: ...

    def to_json(self) -> dict[str, object]: ...


def check_line(c: _Check) -> str:
    """One host check as `doctor` and a failed preflight print it."""
    mark = {"pass": "ok  ", "fail": "FAIL", "skipped": "skip"}[c.status]
    return f"  {mark} {c.name}: {c.detail}" + (f"\n         fix: {c.fix}" if c.fix else "")


class PreflightError(ReleaserError):
    """One or more host checks failed; nothing was started."""

    exit_code = EXIT_PREFLIGHT

    def __init__(self, failed: Sequence[_Check], checks: Sequence[_Check]) -> None:
        self.failed = list(failed)
        self.checks = list(checks)
        n = len(failed)
        super().__init__(
            f"{n} host check{'s' if n != 1 else ''} failed",
            fix="fix what each check says, or skip one explicitly with --skip NAME",
        )

    def render(self) -> str:
        return "\n".join([*(check_line(c) for c in self.checks), super().render()])

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "checks": [c.to_json() for c in self.checks]}


class _State(Protocol):
    def to_json(self) -> dict[str, object]: ...


class StackError(ReleaserError):
    """The stack did not come up healthy; says which service and why, with its last log lines."""

    exit_code = EXIT_UNHEALTHY

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        logs: str = "",
        service: str | None = None,
        states: Sequence[_State] = (),
    ) -> None:
        super().__init__(message, fix=fix)
        self.logs = logs
        self.service = service
        self.states = list(states)

    def render(self) -> str:
        parts = []
        if self.logs:
            parts.append(f"last log lines of {self.service}:")
            parts.extend("  | " + line for line in self.logs.rstrip().splitlines())
        parts.append(super().render())
        return "\n".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            **super().to_json(),
            "service": self.service,
            "logs": self.logs,
            "services": [s.to_json() for s in self.states],
        }


class UpgradeFailed(StackError):
    """`quickstart upgrade`: the new release did not come up; the one before runs again."""

    def __init__(
        self, *, release: str, version: str, to: str, cause: ReleaserError, backup: str | None
    ) -> None:
        logs = cause.logs if isinstance(cause, StackError) else ""
        service = cause.service if isinstance(cause, StackError) else None
        restore = f"; its volumes as they were before: releaser quickstart restore {backup}" if backup else ""
        super().__init__(
            f"the upgrade of {release} to {to} failed ({cause.message}); {version} was put back and is ready",
            fix=f"fix what the log lines above show, then upgrade again; `releaser quickstart history` lists the "
            f"revisions{restore}",
            logs=logs,
            service=service,
            states=cause.states if isinstance(cause, StackError) else (),
        )
        self.rolled_back_to = version

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "rolledBackTo": self.rolled_back_to}


class RollbackFailed(StackError):
    """`quickstart upgrade` failed, and the release before it did not come up again either."""

    def __init__(
        self,
        *,
        release: str,
        version: str,
        to: str,
        cause: ReleaserError,
        again: ReleaserError,
        backup: str | None,
    ) -> None:
        restore = f"releaser quickstart restore {backup}" if backup else "releaser quickstart status"
        super().__init__(
            f"the upgrade of {release} to {to} failed ({cause.message}), and {version} did not come up again "
            f"({again.message})",
            fix=f"its files are back in place; see the log lines above, then: {restore}",
            logs=again.logs if isinstance(again, StackError) else "",
            service=again.service if isinstance(again, StackError) else None,
            states=again.states if isinstance(again, StackError) else (),
        )


class NoSpace(ReleaserError):
    """A file system has less free space than an output needs; nothing was written."""

    exit_code = EXIT_PREFLIGHT


class BudgetExceeded(ValueError):
    """An input is larger or deeper than its budget (releaser/budgets.py); the message says which.
    A ValueError, as the parse errors it sits beside: each caller names the file or registry."""
