"""What every command of the CLI shares: the one error boundary, the output format, the option
conventions (docs/cli.md#conventions) and the groups that take a default sub-command.

The boundary is `ReleaserGroup.main`: whatever a command raises, and every usage error the
parser finds, ends there and nowhere else. A ReleaserError becomes its message and fix (or the
--json envelope) and its exit code; a usage error exit 2 (with the envelope under --json); an
interrupt exit 130; anything else is a bug: `error: internal error in <command> (please
report): <type>`, exit 70, with the traceback only under --debug or RELEASER_DEBUG=1.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import typer

# typer 0.29 carries its own copy of click (typer._click); its commands, contexts and exceptions
# are those classes, not the click package's (which is not a dependency at all).
from typer._click import core as click
from typer._click import exceptions as click_errors
from typer.core import TyperGroup, TyperOption

from .. import __version__
from ..errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    InputError,
    Interrupted,
    ReleaserError,
    UsageError,
)

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


class Result(Protocol):
    def to_json(self) -> dict[str, object]: ...


R = TypeVar("R", bound=Result)


class Format(StrEnum):
    text = "text"
    json = "json"


@dataclass
class Invocation:
    """The command being run and how it prints: the boundary needs both to report an error."""

    command: str = "releaser"
    as_json: bool = False
    debug: bool = False
    deprecations: list[str] = field(default_factory=list)

    def begin(self, *, as_json: bool) -> None:
        """A fresh invocation (tests run many in one process)."""
        self.command, self.as_json, self.debug, self.deprecations = "releaser", as_json, False, []


CURRENT = Invocation()


# The --json envelope's own format: raised when a key is removed or changes meaning (an added key
# does not raise it). Scripts check it; `version` is releaser's, for reports (docs/cli.md#json).
ENVELOPE_FORMAT = 1


def emit_json(ok: bool, key: str, value: object) -> None:
    envelope = {"ok": ok, "command": CURRENT.command, "format": ENVELOPE_FORMAT, "version": __version__}
    typer.echo(json.dumps({**envelope, key: value}, indent=2))


def run(
    command: str,
    as_json: bool,
    fn: Callable[[], R],
    text: Callable[[R], str],
    exit_code: Callable[[R], int] = lambda _: 0,
) -> int:
    """Call the library, print its result as text or as the --json envelope; return the exit code
    (0, or what `exit_code` says of the result: `quickstart status` when not ready). Errors are
    not handled here: they leave for the boundary."""
    CURRENT.command, CURRENT.as_json = command, as_json
    try:
        result = fn()
    except KeyboardInterrupt:
        raise Interrupted(command=command) from None  # out through the progress displays, to the boundary
    if as_json:
        emit_json(True, "result", result.to_json())
    else:
        typer.echo(text(result))
    return exit_code(result)


# Renamed options: (the command's first word, the old spelling) -> the name it has now. The old
# spelling keeps working, with a warning on stderr; CHANGELOG.md says when it goes.
RENAMED_OPTIONS = {
    ("quickstart", "--dir"): "--stack",  # `DIR` is the release everywhere; the stack is --stack
    ("doctor", "--dir"): "--stack",
    ("quickstart", "--registry"): "--to",  # the registry a bundle is loaded into is --to everywhere
}


def renamed_options(argv: list[str]) -> list[str]:
    """argv with each old option spelling of RENAMED_OPTIONS replaced by its name (warned once)."""
    command = next((a for a in argv if not a.startswith("-")), "")
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return [*out, *argv[i:]]
        name, eq, value = arg.partition("=")
        new = RENAMED_OPTIONS.get((command, name))
        if new:
            deprecated(name, new)
            arg = new + eq + value
        out.append(arg)
    return out


def deprecated(old: str, new: str) -> None:
    """Say once, on stderr, that an old spelling was used; it keeps working."""
    note = f"warning: {old} is deprecated: use {new} (same meaning; the old spelling still works)"
    if note not in CURRENT.deprecations:
        CURRENT.deprecations.append(note)
        typer.echo(note, err=True)


# ---------------------------------------------------------------- output format and paths

OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        metavar="text|json",
        help="Output format: text (default) or json (the same as --json).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (stable keys) instead of text.")]


def output_format(output: str | None, as_json: bool, *, legacy_path: bool = False) -> tuple[bool, str | None]:
    """(as_json, a legacy `-o PATH`): `-o`/`--output` is the output format, as in kubectl and helm.
    Where `-o` used to name a path (`legacy_path`), a value that is not a format is still taken as
    that path, with a deprecation warning."""
    if output is None:
        return as_json, None
    if output in ("text", "json"):
        return as_json or output == "json", None
    if legacy_path:
        return as_json, output
    raise UsageError(
        f"-o/--output {output!r} is not an output format", fix="use -o text or -o json (or --json)"
    )


def out_path(new: Path | None, out: Path | None, legacy: str | None, *, new_name: str) -> Path | None:
    """The value of a renamed path option: `new_name`, else the deprecated `--out`, else a
    deprecated `-o PATH` (from output_format), each old spelling with a warning."""
    value = pick(new, out, old_name="--out", new_name=new_name)
    if legacy is not None:
        kind = "DIR" if new_name.endswith("dir") else "FILE"
        value = pick(
            value, Path(legacy), old_name=f"-o {kind} (-o is now the output format)", new_name=new_name
        )
    return value  # type: ignore[no-any-return]


def group(name: str, *, default: str, help: str) -> typer.Typer:
    """A command group whose first word may be left out for its main action (`default`)."""
    cls = type(f"{name.title()}Group", (DefaultGroup,), {"default": default})
    return typer.Typer(cls=cls, name=name, no_args_is_help=True, context_settings=HELP_OPTIONS, help=help)


def pick(new: object, old: object, *, old_name: str, new_name: str) -> Any:
    """The value of a renamed option: the new spelling, else the old one (with a warning)."""
    if old is not None:
        deprecated(old_name, new_name)
        if new is None:
            return old
    return new


# ---------------------------------------------------------------- the boundary


def _json_requested(args: Sequence[str]) -> bool:
    for i, a in enumerate(args):
        if a == "--json" or a in ("-ojson", "--output=json"):
            return True
        if a in ("-o", "--output") and i + 1 < len(args) and args[i + 1] == "json":
            return True
    return False


def _command_of(ctx: click.Context | None) -> str:
    path = ctx.command_path if ctx is not None else ""
    return path.split(" ", 1)[1] if " " in path else "releaser"


def report(exc: BaseException) -> int:
    """The one place a failure becomes a message (or the --json envelope) and an exit code."""
    if isinstance(exc, click_errors.UsageError) and not isinstance(exc, click_errors.NoArgsIsHelpError):
        CURRENT.command = _command_of(exc.ctx)
        hint = f"see `{exc.ctx.command_path} --help`" if exc.ctx is not None else "see `releaser --help`"
        exc = UsageError(exc.format_message(), fix=hint)
    if isinstance(exc, OSError) and not isinstance(exc, ReleaserError):  # the file system said no
        where = f"{exc.filename}: " if exc.filename else ""
        exc = InputError(
            f"{where}{exc.strerror or exc}",
            fix="check that path: a directory where a file is expected (or the other way round), permissions, "
            "or free space",
        )
    if isinstance(exc, ReleaserError):
        if CURRENT.as_json:
            emit_json(False, "error", exc.to_json())
        else:
            typer.echo(exc.render(), err=True)
        return exc.exit_code
    if isinstance(exc, click_errors.ClickException):  # help for no arguments, file errors of click's own
        exc.show()
        return exc.exit_code
    if isinstance(exc, typer.Abort):  # EOF on a prompt
        return EXIT_INTERRUPTED
    message = f"internal error in {CURRENT.command} (please report): {type(exc).__name__}"
    if CURRENT.debug or os.environ.get("RELEASER_DEBUG") == "1":
        traceback.print_exception(exc)
    else:
        message += " (run again with --debug, or RELEASER_DEBUG=1, for the traceback)"
    if CURRENT.as_json:
        emit_json(False, "error", {"error": "InternalError", "message": message, "fix": None})
    else:
        typer.echo(f"error: {message}", err=True)
    return EXIT_INTERNAL


class ReleaserGroup(TyperGroup):
    """The root command: runs everything below it inside the boundary (`report`)."""

    def main(  # type: ignore[override]  # click's main is overloaded on standalone_mode
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        _flags_without_type(self)
        argv = list(sys.argv[1:] if args is None else args)
        CURRENT.begin(as_json=_json_requested(argv))
        try:
            argv = renamed_options(argv)
            rv = super().main(argv, prog_name or "releaser", complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except Exception as exc:  # the boundary: every failure ends here
            code = report(exc)
        if not standalone_mode:
            return code
        sys.stdout.flush()
        sys.stderr.flush()
        if code == EXIT_INTERRUPTED:
            # Exit now: worker threads may sit in a request to a registry that stopped answering (up
            # to the request timeout, times the retries), and Python would wait for each of them.
            # Temp files are already removed; upload state is on disk for the re-run.
            os._exit(code)
        sys.exit(code)


def _flags_without_type(command: click.Command) -> None:
    """Flags are shown as flags in help (`--json`), not with a `<bool>` value column."""
    ctx = click.Context(command, help_option_names=HELP_OPTIONS["help_option_names"])
    for p in [*command.params, command.get_help_option(ctx)]:
        if isinstance(p, TyperOption) and p.is_flag:
            p.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_without_type(sub)


class DefaultGroup(TyperGroup):
    """A group whose first argument may be left out: `releaser airgap BUNDLE --to R` is
    `releaser airgap load BUNDLE --to R`. When the first positional word is not one of the
    sub-commands, `default` is put in front (so a release directory named `logs` is started
    with `releaser quickstart ./logs` or `releaser quickstart up logs`)."""

    default = ""

    def _value_options(self) -> set[str]:
        """Option names of the sub-commands that take a value (to find the first positional word)."""
        out: set[str] = set()
        for cmd in self.commands.values():
            for p in cmd.params:
                if isinstance(p, TyperOption) and not p.is_flag and not p.count:
                    out.update(p.opts)
                    out.update(p.secondary_opts)
        return out

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in ctx.help_option_names:
            takes_value = self._value_options()
            i = 0
            while i < len(args) and args[i].startswith("-") and args[i] not in ("-", "--"):
                i += 2 if args[i] in takes_value else 1
            if i < len(args) and args[i] in self.commands:
                args = [args[i], *args[:i], *args[i + 1 :]]
            else:
                args = [self.default, *args]
        return super().parse_args(ctx, args)


def reflow(doc: str) -> str:
    """A docstring as help text: each paragraph's lines joined into one (the terminal wraps it at
    its own width), except `Example:` lines, which stay one per line, and paragraphs marked
    with a `\\b` line (tables), which stay exactly as written."""
    paragraphs = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines = para.splitlines()
        if lines and lines[0].strip() == "\b":
            paragraphs.append("\n".join(lines[1:]))
            continue
        out: list[str] = []
        for line in lines:
            if out and not line.startswith("Example:") and not out[-1].startswith("Example:"):
                out[-1] += " " + line.strip()
            else:
                out.append(line.strip())
        paragraphs.append("\n".join(out))
    return "\n\n".join(paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Every command's help text, reflowed (see reflow)."""
    for info in app.registered_commands:
        info.help = reflow(info.help or (info.callback.__doc__ if info.callback else "") or "")
