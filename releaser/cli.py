"""The `releaser` command line: parse -> call releaser.api -> print.

One error boundary: a ReleaserError becomes its message, its fix and its exit
code (docs/cli.md). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__, api
from .errors import ReleaserError

app = typer.Typer(
    name="releaser",
    help=(
        "One release.yaml -> a Compose quickstart, a Helm chart and (later) an airgap bundle, "
        "all pinned to the image digests of release.lock.yaml.\n\n"
        "Typical flow:  releaser init my-release/ ; releaser validate my-release/ ; "
        "releaser render my-release/ ; releaser check my-release/"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DirArg = Annotated[Path, typer.Argument(help="Directory holding release.yaml (and release.lock.yaml).",
                                        show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (stable keys) instead of text.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Where compose/<name>/ and charts/<name>/ live.")]


def _emit(command: str, as_json: bool, fn: Callable[[], Any], text: Callable[[Any], str]) -> None:
    try:
        result = fn()
    except ReleaserError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "command": command, "error": exc.to_json()}, indent=2))
        else:
            typer.echo(exc.render(), err=True)
        raise typer.Exit(exc.exit_code) from None
    if as_json:
        typer.echo(json.dumps({"ok": True, "command": command, "result": result.to_json()}, indent=2))
    else:
        typer.echo(text(result))


def _warnings(ws: Any) -> list[str]:
    return [w.render() for w in ws]


@app.command()
def init(directory: DirArg,
         force: Annotated[bool, typer.Option("--force", help="Overwrite an existing release.yaml.")] = False,
         as_json: JsonOpt = False) -> None:
    """Write a commented release.yaml to start from.

    Example:  releaser init my-release/
    """
    _emit("init", as_json, lambda: api.init_release(directory, force=force),
          lambda r: "\n".join([f"wrote {r.path}", "next:", *[f"  {s}" for s in r.next_steps]]))


InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Skip TLS verification (never in production).")]
PlainHttpOpt = Annotated[bool, typer.Option("--plain-http", help="Speak plain HTTP to registries "
                                            "(loopback registries fall back to it on their own).")]
CaFileOpt = Annotated[str | None, typer.Option("--ca-file", help="PEM bundle of CAs to trust for registries.")]
CredsOpt = Annotated[str | None, typer.Option(
    "--creds", envvar="RELEASER_CREDS", show_envvar=True,
    help="USER:PASSWORD for the registries. Else $RELEASER_REGISTRY_AUTH (host=USER:PASSWORD,...), "
         "else the Docker config file ($DOCKER_CONFIG/config.json).")]


@app.command()
def lock(directory: DirArg,
         platform: Annotated[list[str] | None, typer.Option(
             "--platform", help="Keep only this platform (os/arch[/variant]); re-pins to its manifest. "
                                "Overrides images.*.platforms.")] = None,
         refresh: Annotated[bool, typer.Option("--refresh", help="Re-resolve every image, even current ones.")]
         = False,
         check_only: Annotated[bool, typer.Option("--check", help="Resolve, compare with the lock, write nothing; "
                                                  "exit 3 when the lock is stale or tags moved.")] = False,
         insecure: InsecureOpt = False, plain_http: PlainHttpOpt = False, ca_file: CaFileOpt = None,
         creds: CredsOpt = None, as_json: JsonOpt = False) -> None:
    """Resolve every image of release.yaml to a digest and write release.lock.yaml.

    Indexes are pinned with their per-platform children. Images whose pin is still
    current are kept without contacting a registry (unless --refresh). A platform
    that disappears from an index is an error, never a silent drop.

    Example:  releaser lock my-release/
    Example:  releaser lock my-release/ --platform linux/amd64
    Example:  releaser lock my-release/ --check     # in CI: fail when a tag moved
    """
    opts = api.RegistryOptions(insecure=insecure, plain_http=plain_http, ca_file=ca_file, creds=creds)

    def text(r: api.LockResult) -> str:
        lines = [f"  {i['action']:8} {i['name']}: {i['pinned']}" + (f"  (was {i['previous']})" if i["previous"] else "")
                 for i in r.images]
        verb = "wrote" if r.written else "checked"
        lines.append(f"ok: {verb} {r.path}")
        return "\n".join(lines)

    _emit("lock", as_json, lambda: api.lock_release(directory, platforms=tuple(platform or ()), refresh=refresh,
                                                    check=check_only, registries=opts), text)


@app.command()
def validate(directory: DirArg, as_json: JsonOpt = False) -> None:
    """Check release.yaml (schema, then meaning) and the lock; report EVERY problem at once.

    Each problem names file:line, the JSON path and, where one is obvious, the fix.
    Exit 0 when valid (warnings do not fail), 1 when not, 3 when the lock is stale.

    Example:  releaser validate examples/bmp-tcpao
    """

    def text(r: api.ValidateResult) -> str:
        lines = _warnings(r.warnings)
        lines.append(f"ok: {r.release} {r.version} is valid ({len(r.services)} services, {len(r.images)} images;"
                     f" lock {r.lock})")
        return "\n".join(lines)

    _emit("validate", as_json, lambda: api.validate_release(directory), text)


@app.command()
def render(directory: DirArg, out: OutOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Render compose/<name>/ and charts/<name>/ from release.yaml and the lock.

    Refuses a missing or stale lock. Each output directory is written to a temp
    path and swapped in, so an interrupted render leaves the previous one intact.
    Rendering twice gives byte-identical files.

    Example:  releaser render examples/bmp-tcpao --out .
    """

    def text(r: api.RenderResult) -> str:
        lines = _warnings(r.warnings)
        lines += [f"  wrote   {w}" for w in r.written] + [f"  removed {x}" for x in r.removed]
        lines.append(f"ok: rendered {r.release}: {len(r.written)} file(s) changed, {r.unchanged} unchanged")
        lines.append(f"  compose: {r.compose_dir}/compose.yaml")
        lines.append(f"  chart:   {r.chart_dir}   (helm install {r.release} {r.chart_dir})")
        lines += [f"  image:   {i}" for i in r.images]
        lines += [f"  note:    {n}" for n in r.notes]
        return "\n".join(lines)

    _emit("render", as_json, lambda: api.render_release(directory, out=out), text)


@app.command()
def check(directory: DirArg, out: OutOpt = Path("."),
          helm: Annotated[str | None, typer.Option("--helm", help="helm binary (default: $RELEASER_HELM, then PATH).")]
          = None,
          as_json: JsonOpt = False) -> None:
    """Prove the lock, the compose files and the chart name the same digests.

    Renders in memory, runs `helm template` on the chart, collects every image
    reference from Compose and from the rendered manifests (fresh and committed)
    and compares them with the lock; also compares the committed outputs byte for
    byte. Lists every mismatch. Exit 0 when all agree, 4 on a digest mismatch,
    3 when committed outputs are merely out of date.

    Example:  releaser check examples/bmp-tcpao --out .
    """

    def text(r: api.CheckResult) -> str:
        lines = [f"ok: {r.release}: the lock, compose and the chart pin the same {len(r.images)} image(s)"]
        lines += [f"  {i}" for i in r.images]
        lines += [f"  checked {label}: {n} reference(s)" for label, n in r.sources.items()]
        return "\n".join(lines)

    _emit("check", as_json, lambda: api.check_release(directory, out=out, helm=helm), text)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"releaser {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """releaser: one release.yaml, three delivery modes, the same digests."""


def main() -> None:
    app(prog_name="releaser")


if __name__ == "__main__":
    sys.exit(main())
