"""`releaser quickstart up|upgrade|rollback|history|status|logs|down|backup|restore|reset`: the release's Compose stack on
this host. `up` is the default: `releaser quickstart DIR` is `releaser quickstart up DIR`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import EXIT_UNHEALTHY, UsageError
from .base import (
    CURRENT,
    JsonOpt,
    OutputOpt,
    group,
    out_path,
    output_format,
    reflow_help,
    run,
)
from .display import ByteProgress, Readiness
from .options import (
    DEFAULT_STACK,
    CaFileOpt,
    CredsOpt,
    EngineOpt,
    InsecureOpt,
    PlainHttpOpt,
    StackOpt,
    legacy_out,
    registry_options,
)

if TYPE_CHECKING:
    from ..commands.quickstart import (
        HistoryResult,
        LogLines,
        QuickstartResult,
        RollbackResult,
        StatusResult,
        UpgradeResult,
    )


app = group(
    "quickstart",
    default="up",
    help="Run the release's Compose stack on this host, and look after it.\n\n"
    "`releaser quickstart DIR|BUNDLE` is short for `releaser quickstart up DIR|BUNDLE`. Secrets are generated "
    "on first run (CSPRNG) into STACK/.secrets/ (0700), mounted as files and never printed.\n\n"
    "Exit codes: 0 ready, 8 preflight failed, 9 a service not ready (its last log lines are shown), 2 usage, "
    "5 engine command failed.",
)

TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for every service to be ready.")
]


SkipOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--skip",
        help="Skip one named preflight check (repeatable), e.g. --skip tcp-ao: the TCP-AO sidecars then run "
        "their wire leg over PLAIN TCP (a lab only).",
    ),
]
BundleKeyOpt = Annotated[
    Path | None, typer.Option("--key", help="Bundle: the publisher's public key.", show_default=False)
]


def _hint(stack: Path) -> str:
    return "" if stack == DEFAULT_STACK else f" --stack {stack}"


def _say(as_json: bool) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if not as_json:
            typer.echo(f"== {msg}", err=True)

    return say


@app.command()
def up(
    source: Annotated[
        Path,
        typer.Argument(help="A release directory, or a bundle (*.tar.zst) to bring up.", show_default=False),
    ],
    stack: StackOpt = DEFAULT_STACK,
    engine: EngineOpt = None,
    skip: SkipOpt = None,
    timeout: TimeoutOpt = 180,
    key: BundleKeyOpt = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Bundle: the registry HOST[:PORT] to load it into and run from; `local` starts one on 127.0.0.1 "
            "for this stack (needs docker-registry).",
        ),
    ] = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = False,
    ca_file: CaFileOpt = None,
    creds: CredsOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Preflight, secrets, `compose up -d`, wait until every service is ready.

    A failed preflight check stops everything before anything starts; --skip NAME
    overrides one check. A bundle is verified and loaded into --to first, and
    the stack runs the same digests from there.

    Example:  releaser quickstart examples/bmp-tcpao --skip tcp-ao
    Example:  releaser quickstart bundles/bmp-tcpao-1.4.0.tar.zst --key releaser.pub --to local
    """
    from ..commands.quickstart import up as bring_up

    as_json, _ = output_format(output, as_json)
    opts = registry_options(insecure, plain_http, ca_file, creds)
    with ByteProgress("load", not as_json) as prog, Readiness(not as_json) as show:
        return run(
            "quickstart",
            as_json,
            lambda: bring_up(
                source,
                stack=stack,
                engine=engine,
                skip=tuple(skip or ()),
                timeout=timeout,
                key=key,
                registry=registry,
                registries=opts,
                say=_say(as_json),
                on_update=show,
                progress=prog,
            ),
            lambda r: _up_text(r, stack),
        )


def _up_text(r: QuickstartResult, stack: Path) -> str:
    d = _hint(stack)
    lines = [
        f"ok: {r.release} {r.version} is up: {len(r.services)} services ready in {r.seconds:.0f} s "
        f"({r.engine}, {r.stack})"
    ]
    lines += [f"  {name:<18} {url}" for name, url in r.urls]
    if r.registry:
        own = (
            " (started for this stack; `down` stops it, `reset --yes` deletes it)" if r.local_registry else ""
        )
        lines.append(f"  {'registry':<18} {r.registry}{own}")
    made = f"created {', '.join(r.secrets_created)}" if r.secrets_created else ""
    kept = f"kept {', '.join(r.secrets_kept)}" if r.secrets_kept else ""
    lines.append(
        f"  {'secrets':<18} {r.secrets_dir}/ ({'; '.join(x for x in (made, kept) if x)}; values are never printed)"
    )
    lines += [
        f"  {'status':<18} releaser quickstart status{d}",
        f"  {'logs':<18} releaser quickstart logs SERVICE{d}",
        f"  {'stop':<18} releaser quickstart down{d}   (keeps volumes and secrets)",
    ]
    lines += [f"warning: {w}" for w in r.warnings]
    return "\n".join(lines)


@app.command()
def upgrade(
    source: Annotated[
        Path,
        typer.Argument(
            help="The new release: a release directory, or a bundle (*.tar.zst).", show_default=False
        ),
    ],
    stack: StackOpt = DEFAULT_STACK,
    engine: EngineOpt = None,
    skip: SkipOpt = None,
    timeout: TimeoutOpt = 180,
    no_backup: Annotated[
        bool, typer.Option("--no-backup", help="Do not back up the volumes first (they are kept either way).")
    ] = False,
    key: BundleKeyOpt = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Bundle: the registry to load it into (default: the one the running bundle was loaded into).",
        ),
    ] = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = False,
    ca_file: CaFileOpt = None,
    creds: CredsOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Upgrade the running stack to a new release, health-gated, rolling back on failure.

    Preflights the new release (nothing changes when a check fails), records the running one as
    a revision, backs up its volumes (when it has any), writes the new files (secrets and volumes
    are kept), brings it up (its jobs, e.g. migrations, run first) and waits until every service
    is ready. When anything fails, the revision before is put back and brought up, and the exit
    is 9 with the failing service's last log lines.

    Example:  releaser quickstart upgrade examples/platform
    Example:  releaser quickstart upgrade bundles/platform-2.4.0.tar.zst --key releaser.pub
    """
    from ..commands.quickstart import upgrade as run_upgrade

    as_json, _ = output_format(output, as_json)
    opts = registry_options(insecure, plain_http, ca_file, creds)
    with ByteProgress("load", not as_json) as prog, Readiness(not as_json) as show:
        return run(
            "quickstart upgrade",
            as_json,
            lambda: run_upgrade(
                source,
                stack=stack,
                engine=engine,
                skip=tuple(skip or ()),
                timeout=timeout,
                key=key,
                registry=registry,
                registries=opts,
                take_backup=not no_backup,
                say=_say(as_json),
                on_update=show,
                progress=prog,
            ),
            lambda r: _upgrade_text(r, stack),
        )


def _upgrade_text(r: UpgradeResult, stack: Path) -> str:
    d = _hint(stack)
    lines = [
        f"ok: {r.release} upgraded {r.previous} -> {r.version} (revision {r.replaced} -> {r.revision}): "
        f"{len(r.up.services)} services ready in {r.up.seconds:.0f} s"
    ]
    if r.backup:
        lines.append(f"  {'backup':<18} {r.backup} (the volumes before the upgrade)")
    lines.append(f"  {'back again':<18} releaser quickstart rollback{d}")
    lines += [f"warning: {w}" for w in r.up.warnings]
    return "\n".join(lines)


@app.command()
def rollback(
    revision: Annotated[
        int | None,
        typer.Argument(
            help="The revision to go back to (default: the one the running revision replaced).", min=1
        ),
    ] = None,
    stack: StackOpt = DEFAULT_STACK,
    timeout: TimeoutOpt = 180,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Go back to an earlier revision on purpose: its files are put back (secrets and volumes stay
    as they are) and it is brought up; exit 9 when it is not ready in time.

    Example:  releaser quickstart rollback
    Example:  releaser quickstart rollback 2
    """
    from ..commands.quickstart import rollback as go_back

    as_json, _ = output_format(output, as_json)
    with Readiness(not as_json) as show:
        return run(
            "quickstart rollback",
            as_json,
            lambda: go_back(stack, revision, timeout=timeout, say=_say(as_json), on_update=show),
            _rollback_text,
        )


def _rollback_text(r: RollbackResult) -> str:
    return (
        f"ok: {r.release} rolled back {r.previous} -> {r.version} (revision {r.revision}): "
        f"{len(r.services)} services ready"
    )


@app.command()
def history(stack: StackOpt = DEFAULT_STACK, output: OutputOpt = None, as_json: JsonOpt = False) -> int:
    """The stack's revisions (recorded by upgrade and rollback), oldest first; * marks the one running.

    Example:  releaser quickstart history
    """
    from ..commands.quickstart import history as revisions

    as_json, _ = output_format(output, as_json)
    return run("quickstart history", as_json, lambda: revisions(stack), _history_text)


def _history_text(r: HistoryResult) -> str:
    lines = [f"{r.release}:", f"  {'':1} {'rev':>3}  {'version':<12} {'recorded':<20} {'outcome':<11} source"]
    for rev in r.revisions:
        mark = "*" if rev.number == r.current else ""
        lines.append(
            f"  {mark:1} {rev.number:>3}  {rev.version:<12} {rev.recorded:<20} {rev.outcome:<11} {rev.source}"
        )
        if rev.backup:
            lines.append(f"  {'':1} {'':>3}  backup: {rev.backup}")
    return "\n".join(lines)


@app.command()
def status(stack: StackOpt = DEFAULT_STACK, output: OutputOpt = None, as_json: JsonOpt = False) -> int:
    """Every service's state and health; exit 9 when not every service is ready.

    Example:  releaser quickstart status
    """
    from ..commands.quickstart import status as stack_status

    as_json, _ = output_format(output, as_json)
    return run(
        "quickstart status",
        as_json,
        lambda: stack_status(stack),
        _status_text,
        exit_code=lambda r: 0 if r.healthy else EXIT_UNHEALTHY,
    )


def _status_text(r: StatusResult) -> str:
    lines = [f"{r.release} {r.version} ({r.engine}, {r.stack}):"]
    lines += [f"  {s.service:<18} {s.label():<14} {', '.join(s.ports)}" for s in r.services]
    if r.other_stack:
        lines.append(
            f"not running here: {r.release}'s containers are the stack in {r.other_stack} "
            f"(releaser quickstart status --stack {r.other_stack})"
        )
    elif r.stopped:
        lines.append(
            "stopped: no container of this stack exists (start it with `releaser quickstart SOURCE`)"
        )
    else:
        lines.append(
            "ok: every service is ready"
            if r.healthy
            else "not ready: see the states above (releaser quickstart logs SERVICE)"
        )
    return "\n".join(lines)


@app.command()
def logs(
    service: Annotated[
        str | None, typer.Argument(help="The service (default: all).", show_default=False)
    ] = None,
    stack: StackOpt = DEFAULT_STACK,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following.")] = False,
    tail: Annotated[int | None, typer.Option("--tail", help="Only the last N lines.")] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """The stack's logs, with every secret value redacted.

    With --json, one envelope whose result holds the lines (not with --follow).

    Example:  releaser quickstart logs collector --tail 50
    """
    from ..commands.quickstart import collect_logs
    from ..commands.quickstart import logs as stream_logs

    as_json, _ = output_format(output, as_json)
    if as_json:
        if follow:
            raise UsageError(
                "--follow streams lines as they come; it cannot be one JSON document",
                fix="drop --json, or drop --follow",
            )
        return run("quickstart logs", True, lambda: collect_logs(stack, service, tail=tail), _no_text)
    CURRENT.command = "quickstart logs"
    stream_logs(stack, service, follow=follow, tail=tail, write=typer.echo)
    return 0


def _no_text(_: LogLines) -> str:  # pragma: no cover - only used with --json
    return ""


@app.command()
def down(stack: StackOpt = DEFAULT_STACK, output: OutputOpt = None, as_json: JsonOpt = False) -> int:
    """Stop and remove the containers and the network; volumes and secrets stay.

    Example:  releaser quickstart down
    """
    from ..commands.quickstart import down as stop
    from ..commands.quickstart import killed_on_stop

    as_json, _ = output_format(output, as_json)
    return run(
        "quickstart down",
        as_json,
        lambda: stop(stack),
        lambda r: (
            (f"warning: {killed_on_stop(r.killed)}\n" if r.killed else "")
            + f"ok: {r.release} stopped; volumes and secrets kept (start again: releaser quickstart "
            f"SOURCE{_hint(stack)})"
        ),
    )


@app.command()
def backup(
    out_file: Annotated[
        Path | None,
        typer.Option("--out-file", help="The archive to write (mode 0600: it holds the secrets)."),
    ] = None,
    stack: StackOpt = DEFAULT_STACK,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    out: Annotated[Path | None, legacy_out("--out-file")] = None,
) -> int:
    """Stop, copy volumes + config + secrets into one .tar.zst (0600), start again.

    Example:  releaser quickstart backup --out-file backup.tar.zst
    """
    from ..commands.quickstart import backup as take_backup

    as_json, legacy = output_format(output, as_json, legacy_path=True)
    target = out_path(out_file, out, legacy, new_name="--out-file")
    if target is None:
        raise UsageError(
            "backup needs the file to write", fix="releaser quickstart backup --out-file backup.tar.zst"
        )
    return run(
        "quickstart backup",
        as_json,
        lambda: take_backup(stack, out=target, say=_say(as_json)),
        lambda r: (
            f"ok: wrote {r.path} ({r.bytes:,} bytes; volumes: {', '.join(r.volumes) or 'none'}; "
            f"{len(r.files)} files incl. secrets: keep it as safe as .secrets/)\n  sha256: {r.sha256}"
        ),
    )


@app.command()
def restore(
    archive: Annotated[
        Path, typer.Argument(help="A backup written by `quickstart backup`.", show_default=False)
    ],
    stack: StackOpt = DEFAULT_STACK,
    timeout: TimeoutOpt = 180,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Put a backup's volumes, config and secrets back, then start and wait until ready.

    Example:  releaser quickstart restore backup.tar.zst
    """
    from ..commands.quickstart import restore as put_back

    as_json, _ = output_format(output, as_json)
    with Readiness(not as_json) as show:
        return run(
            "quickstart restore",
            as_json,
            lambda: put_back(archive, stack, say=_say(as_json), on_update=show, timeout=timeout),
            lambda r: (
                f"ok: restored {r.release} from {r.path} (volumes: {', '.join(r.volumes) or 'none'}); "
                f"{len(r.services)} services ready"
            ),
        )


@app.command()
def reset(
    stack: StackOpt = DEFAULT_STACK,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete volumes and secrets.")] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Remove containers, volumes and generated secrets; without --yes, list what it would delete (exit 2).

    Example:  releaser quickstart reset --yes
    """
    from ..commands.quickstart import reset as remove

    as_json, _ = output_format(output, as_json)
    return run(
        "quickstart reset",
        as_json,
        lambda: remove(stack, yes=yes),
        lambda r: "\n".join(["ok: removed", *(f"  - {t}" for t in r.removed)]),
    )


reflow_help(app)
