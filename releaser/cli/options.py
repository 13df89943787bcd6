"""Options shared by several commands, each with one meaning everywhere (docs/cli.md#conventions):
`--key` is always a public key (the publisher's, to verify), `--signing-key` the private one,
`--out-dir` always a directory, `--out-file` always a file, `-o/--output` the output format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..registry import RegistryOptions

DirArg = Annotated[
    Path, typer.Argument(help="Directory holding release.yaml (and release.lock.yaml).", show_default=False)
]
BundleArg = Annotated[Path, typer.Argument(help="The bundle (*.tar.zst).", show_default=False)]

InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Skip TLS verification (never in production).")]
PlainHttpOpt = Annotated[
    bool,
    typer.Option(
        "--plain-http",
        help="Speak plain HTTP to registries (loopback registries fall back to it on their own).",
    ),
]
CaFileOpt = Annotated[
    str | None,
    typer.Option(
        "--ca-file",
        help="PEM file of CAs to trust for registries, in addition to the system's CAs and those "
        "filed under /etc/docker/certs.d/HOST/ or /etc/containers/certs.d/HOST/.",
    ),
]


def _creds_from_flag(value: str | None) -> str | None:
    """A password given on the command line is readable by every user of the host (ps) and
    lands in shell history: say so, as `docker login -p` does (never echoing the value)."""
    if value and os.environ.get("RELEASER_CREDS") != value:
        typer.echo(
            "warning: --creds on the command line can be read by other users of this host (ps) and stays "
            "in shell history; prefer RELEASER_CREDS, RELEASER_REGISTRY_AUTH or `docker login`",
            err=True,
        )
    return value


CredsOpt = Annotated[
    str | None,
    typer.Option(
        "--creds",
        envvar="RELEASER_CREDS",
        show_envvar=True,
        callback=_creds_from_flag,
        help="USER:PASSWORD for the registries (better from the environment than on the command line). Else "
        "$RELEASER_REGISTRY_AUTH (host=USER:PASSWORD,...), else the Docker config file "
        "($DOCKER_CONFIG/config.json) with its credential helpers.",
    ),
]


def registry_options(
    insecure: bool, plain_http: bool, ca_file: str | None, creds: str | None, chunk_mb: int = 256
) -> RegistryOptions:
    # imported here: the registry client (requests, ~60 ms) only for the commands that use one
    from ..registry import RegistryOptions

    return RegistryOptions(
        insecure=insecure, plain_http=plain_http, ca_file=ca_file, creds=creds, chunk_mb=chunk_mb
    )


PublicKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="The publisher's public key (releaser.pub) to verify the bundle with. Default: ./releaser.pub.",
        show_default=False,
    ),
]
PassFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="File whose first line is the key passphrase (else $RELEASER_KEY_PASSPHRASE). "
        "Never pass the passphrase itself on the command line.",
    ),
]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Force docker, podman, podman-compose or docker-compose (default: the first that works).",
    ),
]


def legacy_out(help_for: str) -> object:
    """The old `--out` spelling of an option that was renamed: hidden, kept for scripts."""
    return typer.Option("--out", hidden=True, help=f"Deprecated: use {help_for}.")


StackOpt = Annotated[
    Path,
    typer.Option(
        "--stack",
        envvar="RELEASER_QUICKSTART_DIR",
        show_envvar=True,
        help="The stack directory: compose files, .secrets/, state.",
    ),
]
DEFAULT_STACK = Path("quickstart")  # as releaser/quickstart/state.py DEFAULT_DIR (the CLI does not load it)
