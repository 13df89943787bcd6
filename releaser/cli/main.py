"""The root command: every command and group, --version/-v, --debug and `completion`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from typer._completion_classes import completion_init
from typer._completion_shared import get_completion_script

from .. import __version__
from . import airgap, bundle, probe, quickstart, release
from .base import CURRENT, HELP_OPTIONS, ReleaserGroup, reflow_help

app = typer.Typer(
    cls=ReleaserGroup,
    name="releaser",
    help=(
        "One release.yaml -> a Compose quickstart, a Helm chart and a signed airgap bundle, "
        "all pinned to the image digests of release.lock.yaml.\n\n"
        "Typical flow:  releaser init my-release/ ; releaser validate my-release/ ; releaser lock my-release/ ; "
        "releaser render my-release/ ; releaser check my-release/ ; releaser quickstart my-release/ ; "
        "releaser bundle my-release/ --signing-key keys/releaser.key ; "
        "releaser airgap BUNDLE --to registry.local:5000 --key releaser.pub"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
)

for _command in (
    release.init,
    release.validate,
    release.lock,
    release.render,
    release.check,
    release.diff,
    release.keygen,
    release.doctor,
):
    app.command()(_command)
app.add_typer(bundle.app)
app.add_typer(airgap.app)
app.add_typer(quickstart.app)
app.add_typer(probe.app)


# Shell completion is typer's (the script calls back with $_RELEASER_COMPLETE set); its classes
# are registered here because the root command has no --install-completion option of its own.
COMPLETE_VAR = "_RELEASER_COMPLETE"
completion_init()


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.command()
def completion(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.", show_default=False)]) -> int:
    """Print the shell completion script for releaser.

    Example:  releaser completion bash > /etc/bash_completion.d/releaser
    Example:  eval "$(releaser completion zsh)"
    """
    typer.echo(get_completion_script(prog_name="releaser", complete_var=COMPLETE_VAR, shell=shell.value))
    return 0


def _version(value: bool) -> None:
    if value:
        typer.echo(f"releaser {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-v", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="RELEASER_DEBUG", help="Show the traceback of an internal error."),
    ] = False,
) -> None:
    """releaser: one release.yaml, three delivery modes, the same digests."""
    CURRENT.debug = debug


reflow_help(app)


def main() -> None:
    """The console script."""
    typer.main.get_command(app).main(prog_name="releaser")


__all__ = ["app", "main"]
