"""The release author's commands: init, validate, lock, render, check, diff, keygen, doctor (bundle: bundle.py).

Each function binds options, calls one function of releaser.commands and prints its result.
A command's library module is imported when the command runs, not when the CLI starts: an
airgap load then never imports jsonschema or jinja2 (docs/architecture.md#start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import Problem, check_line
from .base import JsonOpt, OutputOpt, out_path, output_format, pick, run
from .display import trust_lines
from .options import (
    DEFAULT_STACK,
    CaFileOpt,
    CredsOpt,
    DirArg,
    EngineOpt,
    InsecureOpt,
    PassFileOpt,
    PlainHttpOpt,
    StackOpt,
    legacy_out,
    registry_options,
)

if TYPE_CHECKING:
    from ..commands.check import CheckResult
    from ..commands.diff import DiffResult
    from ..commands.lock import LockResult
    from ..commands.render import RenderResult
    from ..commands.validate import ValidateResult

OutDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--out-dir", help="Where compose/<name>/ and charts/<name>/ live. Default: the current directory."
    ),
]


def _warnings(ws: tuple[Problem, ...]) -> list[str]:
    return [w.render() for w in ws]


def init(
    directory: DirArg,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing release.yaml.")] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Write a commented release.yaml to start from.

    Example:  releaser init my-release/
    """
    from ..commands.init import init_release

    as_json, _ = output_format(output, as_json)
    return run(
        "init",
        as_json,
        lambda: init_release(directory, force=force),
        lambda r: "\n".join([f"wrote {r.path}", "next:", *[f"  {s}" for s in r.next_steps]]),
    )


def lock(
    directory: DirArg,
    platform: Annotated[
        list[str] | None,
        typer.Option(
            "--platform",
            help="Keep only this platform (os/arch\\[/variant]); re-pins to its manifest. "
            "Overrides images.*.platforms.",
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Re-resolve every image, even current ones.")
    ] = False,
    check_only: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Resolve, compare with the lock, write nothing; exit 3 when the lock is stale or tags moved.",
        ),
    ] = False,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = False,
    ca_file: CaFileOpt = None,
    creds: CredsOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Resolve every image of release.yaml to a digest and write release.lock.yaml.

    Indexes are pinned with their per-platform children. Images whose pin is still
    current are kept without contacting a registry (unless --refresh). A platform
    that disappears from an index is an error, never a silent drop.

    Example:  releaser lock my-release/
    Example:  releaser lock my-release/ --platform linux/amd64
    Example:  releaser lock my-release/ --check     # in CI: fail when a tag moved
    """
    from ..commands.lock import lock_release

    as_json, _ = output_format(output, as_json)
    opts = registry_options(insecure, plain_http, ca_file, creds)

    def text(r: LockResult) -> str:
        lines = [
            f"  {i.action:8} {i.name}: {i.pinned}" + (f"  (was {i.previous})" if i.previous else "")
            for i in r.images
        ]
        lines.append(f"ok: {'wrote' if r.written else 'checked'} {r.path}")
        return "\n".join(lines) + (trust_lines(r.trust) if r.trust is not None else "")

    return run(
        "lock",
        as_json,
        lambda: lock_release(
            directory, platforms=tuple(platform or ()), refresh=refresh, check=check_only, registries=opts
        ),
        text,
    )


def validate(directory: DirArg, output: OutputOpt = None, as_json: JsonOpt = False) -> int:
    """Check release.yaml (schema, then meaning) and the lock; report EVERY problem at once.

    Each problem names file:line, the JSON path and, where one is obvious, the fix.
    Exit 0 when valid (warnings do not fail), 1 when not, 3 when the lock is stale.

    Example:  releaser validate examples/bmp-tcpao
    """
    from ..commands.validate import validate_release

    as_json, _ = output_format(output, as_json)

    def text(r: ValidateResult) -> str:
        lines = _warnings(r.warnings)
        lines.append(
            f"ok: {r.release} {r.version} is valid ({len(r.services)} services, {len(r.images)} images; lock {r.lock})"
        )
        return "\n".join(lines)

    return run("validate", as_json, lambda: validate_release(directory), text)


def render(
    directory: DirArg,
    out_dir: OutDirOpt = None,
    package: Annotated[
        Path | None,
        typer.Option(
            "--package",
            help="Also write the chart as <name>-<version>.tgz into this directory: "
            "byte-identical for identical inputs (SOURCE_DATE_EPOCH sets its mtimes), ready for `helm push`.",
        ),
    ] = None,
    docs: Annotated[
        bool,
        typer.Option(
            "--docs",
            help="Also write install/<name>/: INSTALL.md, images.md and images.json as a bundle carries them "
            "(sizes and attachments are known only once bundled).",
        ),
    ] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    out: Annotated[Path | None, legacy_out("--out-dir")] = None,
) -> int:
    """Render compose/<name>/, charts/<name>/ and quadlet/<name>/ from release.yaml and the lock.

    quadlet/<name>/ holds systemd units for podman 5.0 or later (one pod per service), pinned to
    the same digests, with a README.md that installs them.

    Refuses a missing or stale lock. Each output directory is written to a temp
    path and swapped in, so an interrupted render leaves the previous one intact.
    Rendering twice gives byte-identical files.

    Example:  releaser render examples/bmp-tcpao --out-dir .
    Example:  releaser render examples/bmp-tcpao --package dist/   # + dist/bmp-tcpao-1.4.0.tgz
    Example:  releaser render examples/bmp-tcpao --out-dir out --docs   # + out/install/bmp-tcpao/INSTALL.md
    """
    from ..commands.render import render_release

    as_json, legacy = output_format(output, as_json, legacy_path=True)
    root = _out_dir(out_dir, out, legacy)

    def text(r: RenderResult) -> str:
        lines = _warnings(r.warnings)
        lines += [f"  wrote   {w}" for w in r.written] + [f"  removed {x}" for x in r.removed]
        lines.append(f"ok: rendered {r.release}: {len(r.written)} file(s) changed, {r.unchanged} unchanged")
        lines.append(f"  compose: {r.compose_dir}/compose.yaml")
        lines.append(f"  chart:   {r.chart_dir}   (helm install {r.release} {r.chart_dir})")
        lines.append(f"  quadlet: {r.quadlet_dir}   (podman 5: {r.quadlet_dir}/README.md)")
        lines += [f"  image:   {i}" for i in r.images]
        lines += [f"  note:    {n}" for n in r.notes]
        if r.package:
            lines.append(f"  package: {r.package} (sha256 {r.package_sha256})")
        return "\n".join(lines)

    return run(
        "render", as_json, lambda: render_release(directory, out=root, package=package, docs=docs), text
    )


def _out_dir(out_dir: Path | None, out: Path | None, legacy: str | None) -> Path:
    """--out-dir, else the deprecated --out or -o DIR, else the current directory."""
    return out_path(out_dir, out, legacy, new_name="--out-dir") or Path(".")


def check(
    directory: DirArg,
    out_dir: OutDirOpt = None,
    helm: Annotated[
        str | None, typer.Option("--helm", help="helm binary (default: $RELEASER_HELM, then PATH).")
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Also compare this bundle's index.json (default: OUT_DIR/bundles/<name>-<version>.tar.zst "
            "when it exists).",
        ),
    ] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    out: Annotated[Path | None, legacy_out("--out-dir")] = None,
) -> int:
    """Prove the lock, the compose files, the chart (and the bundle) name the same digests.

    Renders in memory, runs `helm template` on the chart, collects every image
    reference from Compose and from the rendered manifests (fresh and committed)
    and compares them with the lock; also compares the committed outputs byte for
    byte. Lists every mismatch. Exit 0 when all agree, 4 on a digest mismatch,
    3 when committed outputs are merely out of date.

    Example:  releaser check examples/bmp-tcpao --out-dir .
    """
    from ..commands.check import check_release

    as_json, legacy = output_format(output, as_json, legacy_path=True)
    root = _out_dir(out_dir, out, legacy)

    def text(r: CheckResult) -> str:
        lines = [f"ok: {r.release}: the lock, compose and the chart pin the same {len(r.images)} image(s)"]
        lines += [f"  {i}" for i in r.images]
        lines += [f"  checked {label}: {n} reference(s)" for label, n in r.sources.items()]
        return "\n".join(lines)

    return run("check", as_json, lambda: check_release(directory, out=root, helm=helm, bundle=bundle), text)


def diff(
    old: Annotated[
        str,
        typer.Argument(
            help="The release before: a release directory, DIR@GIT-REV (the directory as git holds it at a tag, "
            "branch or commit), a release.lock.yaml, or a bundle.",
            show_default=False,
        ),
    ],
    new: Annotated[
        str, typer.Argument(help="The release after, in any of the same forms.", show_default=False)
    ],
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when anything differs (as `git diff --exit-code`).")
    ] = False,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Ask no registry: byte counts only when both sides are bundles (which hold their manifests).",
        ),
    ] = False,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = False,
    ca_file: CaFileOpt = None,
    creds: CredsOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """What a new release changes, from metadata alone: images added, removed and re-pinned (per
    platform), the bytes a delta bundle would carry (against a full bundle and a per-image
    differential), services, chart values and Compose files that changed, and what needs care on
    upgrade (a volume no longer mounted, a port that moved, a job that runs, a workload that
    changes kind). No layer is read: sizes come from manifests (the source registry for a
    directory or lock, the bundle's own for a bundle).

    Example:  releaser diff examples/platform@v2.3.0 examples/platform
    Example:  releaser diff bundles/stella-2.3.0.tar.zst bundles/stella-2.4.0.tar.zst --json
    """
    from ..commands.diff import diff as diff_releases

    as_json, _ = output_format(output, as_json)
    opts = registry_options(insecure, plain_http, ca_file, creds)

    def text(r: DiffResult) -> str:
        return diff_text(r)

    result: list[DiffResult] = []

    def call() -> DiffResult:
        result.append(diff_releases(old, new, registries=opts, offline=offline))
        return result[0]

    code = run("diff", as_json, call, text)
    return 1 if code == 0 and exit_code and result and result[0].changed else code


def diff_text(r: DiffResult) -> str:
    lines = [f"{r.release}: {r.versions[0] or r.old} -> {r.versions[1] or r.new}"]
    if not r.changed:
        lines.append("  no change (compared: " + ", ".join(r.compared) + ")")
    for i in r.images:
        if i.change == "repinned":
            lines.append(f"  image {i.name}: {i.old} -> {i.new}")
            lines += [f"    {p}: {o or '(none)'} -> {n or '(none)'}" for p, o, n in i.platforms]
        else:
            lines.append(f"  image {i.name}: {i.change} ({i.new or i.old})")
    if r.bytes is not None:
        b = r.bytes
        lines.append(
            f"  bytes: a delta carries {b.delta:,} (a full bundle {b.full:,}; per changed image {b.image_level:,})"
        )
    elif r.bytes_note:
        lines.append(f"  bytes: {r.bytes_note}")
    for what, groups in (("service", r.services), ("value", r.values), ("compose file", r.compose)):
        for change, names in groups.items():
            for n in names:
                extra = (
                    f" ({', '.join(r.changed_fields[n])})"
                    if what == "service" and n in r.changed_fields
                    else ""
                )
                lines.append(f"  {what} {change}: {n}{extra}")
    lines += [f"  care: {c}" for c in r.care]
    if "services" not in r.compared:
        lines.append(
            "  (a lock alone has images only: pass release directories or bundles to compare the rest)"
        )
    return "\n".join(lines)


def keygen(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Directory for releaser.key and releaser.pub. Default: keys/."),
    ] = None,
    passphrase_file: PassFileOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key pair.")] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    out: Annotated[Path | None, legacy_out("--out-dir")] = None,
) -> int:
    """Make an ECDSA P-256 signing key pair for bundles.

    The private key (releaser.key, mode 0600) is PKCS#8 encrypted with the passphrase
    from $RELEASER_KEY_PASSPHRASE or --passphrase-file; releaser.pub is the
    SubjectPublicKeyInfo PEM you give to whoever verifies your bundles.

    Example:  RELEASER_KEY_PASSPHRASE=... releaser keygen --out-dir keys/
    """
    from ..commands.keys import keygen as make_keys

    as_json, _ = output_format(output, as_json)
    target = pick(out_dir, out, old_name="--out", new_name="--out-dir") or Path("keys")
    return run(
        "keygen",
        as_json,
        lambda: make_keys(target, passphrase_file=passphrase_file, force=force),
        lambda r: (
            f"ok: wrote {r.private_key} (keep it secret) and {r.public_key} (publish it)\n"
            f"  fingerprint: {r.fingerprint}"
        ),
    )


def doctor(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="A release directory: also check its published ports and, with TCP-AO sidecars, the kernel.",
            show_default=False,
        ),
    ] = None,
    engine: EngineOpt = None,
    skip: Annotated[
        list[str] | None,
        typer.Option(
            "--skip",
            help="Skip one named check (repeatable), e.g. --skip tcp-ao for a lab without CONFIG_TCP_AO.",
        ),
    ] = None,
    bind_address: Annotated[
        str,
        typer.Option("--bind-address", help="Address public ports are published on (BIND_ADDRESS in .env)."),
    ] = "127.0.0.1",
    stack: StackOpt = DEFAULT_STACK,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Check this host for the Compose quickstart; each check passes or fails with a fix.

    Engine (Docker + Compose v2, then podman compose, podman-compose, docker-compose)
    and whether it answers; the release's published ports; disk space; for releases
    with TCP-AO sidecars, kernel TCP-AO support (setsockopt TCP_AO_INFO), the TCP-AO keys
    already in the stack's .secrets/ (1-80 bytes), and NET_ADMIN when a sidecar sets
    tcpao.runAsRoot. Exit 0 when everything passes, 8 when a check fails.

    Example:  releaser doctor examples/bmp-tcpao
    Example:  releaser doctor examples/bmp-tcpao --skip tcp-ao
    """
    from ..commands.doctor import doctor as check_host

    as_json, _ = output_format(output, as_json)
    return run(
        "doctor",
        as_json,
        lambda: check_host(
            directory, engine=engine, skip=tuple(skip or ()), bind_address=bind_address, stack=stack
        ),
        lambda r: "\n".join([*(check_line(c) for c in r.checks), "ok: this host can run the quickstart"]),
    )
