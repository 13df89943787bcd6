"""The `releaser` command line: parse -> call releaser.api -> print.

One error boundary: a ReleaserError becomes its message, its fix and its exit
code (docs/cli.md). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import inspect
import json
import os
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
        "One release.yaml -> a Compose quickstart, a Helm chart and a signed airgap bundle, "
        "all pinned to the image digests of release.lock.yaml.\n\n"
        "Typical flow:  releaser init my-release/ ; releaser validate my-release/ ; releaser lock my-release/ ; "
        "releaser render my-release/ ; releaser check my-release/ ; releaser quickstart my-release/ ; "
        "releaser bundle my-release/ --key keys/releaser.key ; "
        "releaser airgap BUNDLE --to registry.local:5000 --key releaser.pub"
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
        try:
            result = fn()
        except OSError as exc:  # the file system said no: name the path, never a traceback
            where = f"{exc.filename}: " if exc.filename else ""
            raise ReleaserError(f"{where}{exc.strerror or exc}",
                                fix="check that path: a directory where a file is expected (or the other way "
                                    "round), permissions, or free space") from exc
    except KeyboardInterrupt:
        raise _Interrupted(command, as_json) from None  # out through the progress displays, to main()
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
CaFileOpt = Annotated[str | None, typer.Option(
    "--ca-file", help="PEM file of CAs to trust for registries, in addition to the system's CAs and those "
                      "filed under /etc/docker/certs.d/HOST/ or /etc/containers/certs.d/HOST/.")]


def _creds_from_flag(value: str | None) -> str | None:
    """A password given on the command line is readable by every user of the host (ps) and
    lands in shell history: say so, as `docker login -p` does (never echoing the value)."""
    if value and os.environ.get("RELEASER_CREDS") != value:
        typer.echo("warning: --creds on the command line can be read by other users of this host (ps) and stays "
                   "in shell history; prefer RELEASER_CREDS, RELEASER_REGISTRY_AUTH or `docker login`", err=True)
    return value


CredsOpt = Annotated[str | None, typer.Option(
    "--creds", envvar="RELEASER_CREDS", show_envvar=True, callback=_creds_from_flag,
    help="USER:PASSWORD for the registries (better from the environment than on the command line). Else "
         "$RELEASER_REGISTRY_AUTH (host=USER:PASSWORD,...), else the Docker config file "
         "($DOCKER_CONFIG/config.json) with its credential helpers.")]


@app.command()
def lock(directory: DirArg,
         platform: Annotated[list[str] | None, typer.Option(
             "--platform", help="Keep only this platform (os/arch\\[/variant]); re-pins to its manifest. "
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
def render(directory: DirArg, out: OutOpt = Path("."),
           package: Annotated[Path | None, typer.Option(
               "--package", help="Also write the chart as <name>-<version>.tgz into this directory: "
                                 "byte-identical for identical inputs (SOURCE_DATE_EPOCH sets its mtimes), "
                                 "ready for `helm push`.")] = None,
           as_json: JsonOpt = False) -> None:
    """Render compose/<name>/ and charts/<name>/ from release.yaml and the lock.

    Refuses a missing or stale lock. Each output directory is written to a temp
    path and swapped in, so an interrupted render leaves the previous one intact.
    Rendering twice gives byte-identical files.

    Example:  releaser render examples/bmp-tcpao --out .
    Example:  releaser render examples/bmp-tcpao --package dist/   # + dist/bmp-tcpao-1.4.0.tgz
    """

    def text(r: api.RenderResult) -> str:
        lines = _warnings(r.warnings)
        lines += [f"  wrote   {w}" for w in r.written] + [f"  removed {x}" for x in r.removed]
        lines.append(f"ok: rendered {r.release}: {len(r.written)} file(s) changed, {r.unchanged} unchanged")
        lines.append(f"  compose: {r.compose_dir}/compose.yaml")
        lines.append(f"  chart:   {r.chart_dir}   (helm install {r.release} {r.chart_dir})")
        lines += [f"  image:   {i}" for i in r.images]
        lines += [f"  note:    {n}" for n in r.notes]
        if r.package:
            lines.append(f"  package: {r.package} (sha256 {r.package_sha256})")
        return "\n".join(lines)

    _emit("render", as_json, lambda: api.render_release(directory, out=out, package=package), text)


@app.command()
def check(directory: DirArg, out: OutOpt = Path("."),
          helm: Annotated[str | None, typer.Option("--helm", help="helm binary (default: $RELEASER_HELM, then PATH).")]
          = None,
          bundle: Annotated[Path | None, typer.Option(
              "--bundle", help="Also compare this bundle's index.json (default: OUT/bundles/<name>-<version>.tar.zst "
                               "when it exists).")] = None,
          as_json: JsonOpt = False) -> None:
    """Prove the lock, the compose files, the chart (and the bundle) name the same digests.

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

    _emit("check", as_json, lambda: api.check_release(directory, out=out, helm=helm, bundle=bundle), text)


class _Progress:
    """Bytes confirmed, on stderr, only when it is a terminal (and never with --json)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), console=Console(stderr=True), transient=True)
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
        self.tasks[f"{self.label} total"] = self.bar.add_task(f"{self.label} total", total=sum(totals.values()))
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


KeyOpt = Annotated[Path, typer.Option("--key", help="Signing key (releaser.key) or, to verify, the publisher's "
                                                    "public key (releaser.pub).", show_default=False)]
PassFileOpt = Annotated[Path | None, typer.Option(
    "--passphrase-file", help="File whose first line is the key passphrase (else $RELEASER_KEY_PASSPHRASE). "
                              "Never pass the passphrase itself on the command line.")]


@app.command()
def keygen(out: Annotated[Path, typer.Option("--out", help="Directory for releaser.key and releaser.pub.")]
           = Path("keys"),
           passphrase_file: PassFileOpt = None,
           force: Annotated[bool, typer.Option("--force", help="Replace an existing key pair.")] = False,
           as_json: JsonOpt = False) -> None:
    """Make an ECDSA P-256 signing key pair for bundles.

    The private key (releaser.key, mode 0600) is PKCS#8 encrypted with the passphrase
    from $RELEASER_KEY_PASSPHRASE or --passphrase-file; releaser.pub is the
    SubjectPublicKeyInfo PEM you give to whoever verifies your bundles.

    Example:  RELEASER_KEY_PASSPHRASE=... releaser keygen --out keys/
    """
    _emit("keygen", as_json, lambda: api.keygen(out, passphrase_file=passphrase_file, force=force),
          lambda r: f"ok: wrote {r.private_key} (keep it secret) and {r.public_key} (publish it)\n"
                    f"  fingerprint: {r.fingerprint}")


@app.command()
def bundle(directory: DirArg, key: KeyOpt, passphrase_file: PassFileOpt = None,
           out: Annotated[Path | None, typer.Option("--out", "-o", help="Bundle path (default "
                                                    "bundles/<name>-<version>.tar.zst).")] = None,
           zstd_level: Annotated[int, typer.Option("--zstd-level", help="1 (fast) to 19 (small).")] = 3,
           threads: Annotated[int, typer.Option("--threads", help="zstd worker threads (-1: one per core).")] = -1,
           no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use or fill the local blob cache "
                                                  "($RELEASER_CACHE, else ~/.cache/releaser).")] = False,
           attachments: Annotated[bool, typer.Option(
               "--attachments/--no-attachments", help="Carry the signatures, attestations and SBOMs attached to "
               "each pinned digest (cosign's sha256-<hex>.sig/.att/.sbom tags and the OCI referrers tag "
               "sha256-<hex>), so policies that check them keep working behind the air gap.")] = True,
           insecure: InsecureOpt = False, plain_http: PlainHttpOpt = False, ca_file: CaFileOpt = None,
           creds: CredsOpt = None, as_json: JsonOpt = False) -> None:
    """Write a signed airgap bundle: every locked image as ONE OCI image layout, the chart
    (package and OCI artifact), the compose files, release.yaml and the lock.

    Blobs stream from the registry (or the local cache) through hashing into the
    archive; layers are never recompressed. Identical inputs (and SOURCE_DATE_EPOCH)
    give a byte-identical bundle.

    Example:  releaser bundle my-release/ --key keys/releaser.key
    """
    opts = api.RegistryOptions(insecure=insecure, plain_http=plain_http, ca_file=ca_file, creds=creds)
    with _Progress("bundle", not as_json) as prog:
        _emit("bundle", as_json, lambda: api.bundle_release(
            directory, key=key, out=out, passphrase_file=passphrase_file, level=zstd_level, threads=threads,
            use_cache=not no_cache, attachments=attachments, registries=opts, progress=prog),
            lambda r: f"ok: wrote {r.path} ({r.size:,} bytes, {r.blobs} blobs, {len(r.images)} images, "
                      f"{len(r.attachments)} attachments; {r.fetched:,} bytes fetched, the rest from the cache)\n"
                      f"  sha256: {r.sha256}\n  signer: {r.signer}"
                      + "".join(f"\n  attached: {a}" for a in r.attachments))


@app.command()
def airgap(what: Annotated[str, typer.Argument(help="'verify' to only verify, 'inspect' to list what the bundle "
                                               "holds, else the bundle to load.", show_default=False)],
           bundle_path: Annotated[Path | None, typer.Argument(help="The bundle (after 'verify' or 'inspect').",
                                                              show_default=False)] = None,
           key: Annotated[Path | None, typer.Option(
               "--key", help="The publisher's public key (default: releaser.pub). Optional for 'inspect', "
                             "which then shows the metadata unverified.", show_default=False)] = None,
           to: Annotated[str | None, typer.Option("--to", help="Target registry HOST[:PORT]\\[/PREFIX].")] = None,
           out: Annotated[Path, typer.Option("--out", "-o", help="Where values-airgap.yaml and "
                                             "compose.airgap.yaml are written.")] = Path("."),
           concurrency: Annotated[int, typer.Option("--concurrency", help="Parallel registry requests; up to 4 "
                                                    "of them stream large blobs from the archive at once (1: one "
                                                    "at a time).", min=1)] = 8,
           chunk_mb: Annotated[int, typer.Option("--chunk-size", help="MB per upload request. Blobs up to this "
                                                 "size go in one streamed PUT (fastest); bigger ones in PATCHes of "
                                                 "this size, and an interrupted one resumes at a chunk boundary. "
                                                 "Lower it on unreliable links.", min=1, max=4096)] = 256,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Verify the whole bundle and ask the registry "
                                                 "what the load would write (blobs, manifests, each tag created, "
                                                 "moved, kept or merged); write nothing, there or here.")] = False,
           insecure: InsecureOpt = False, plain_http: PlainHttpOpt = False, ca_file: CaFileOpt = None,
           creds: CredsOpt = None, as_json: JsonOpt = False) -> None:
    """Inspect a bundle, verify it, or verify it and load it into a private registry.

    Verification: signature (against YOUR copy of the publisher's public key) ->
    aggregate checksum -> every listed file -> no unlisted file -> safe member names
    -> every blob's digest. Every problem is listed; on any, nothing is pushed.
    Loading pushes only what the registry lacks, then manifests by digest, then
    tags, then the chart; a re-run after an interruption finishes the job.
    Signatures, attestations and SBOMs travel under their tags; where the registry
    already has such a tag (the site's own signature), the bundle's is merged in,
    never put in its place.

    'inspect' reads only the signed metadata at the head of the archive (milliseconds at
    any size): release, images with their pinned digests and platforms, chart, signer.

    Example:  releaser airgap inspect bundles/bmp-tcpao-1.4.0.tar.zst --key releaser.pub
    Example:  releaser airgap verify bundles/bmp-tcpao-1.4.0.tar.zst --key releaser.pub
    Example:  releaser airgap bundles/bmp-tcpao-1.4.0.tar.zst --to registry.local:5000 --key releaser.pub --dry-run
    Example:  releaser airgap bundles/bmp-tcpao-1.4.0.tar.zst --to registry.local:5000 --key releaser.pub
    """
    if what in ("verify", "inspect") and bundle_path is None:
        typer.echo(f"error: `releaser airgap {what}` needs the bundle path", err=True)
        raise typer.Exit(2)
    if what == "inspect":
        assert bundle_path is not None
        _emit("airgap inspect", as_json, lambda: api.inspect_bundle_file(bundle_path, key=key), _inspected)
        return
    key = key or Path("releaser.pub")
    if what == "verify":
        assert bundle_path is not None
        _emit("airgap verify", as_json, lambda: api.verify_bundle_file(bundle_path, key=key),
              lambda r: f"ok: {r.path} verified: {r.release} {r.version}, {r.files} files, {r.bytes:,} bytes, "
                        f"signed by {r.signer}\n" + "\n".join(f"  {i}" for i in r.images))
        return
    if bundle_path is not None or to is None:
        typer.echo("error: usage: releaser airgap BUNDLE --to HOST[:PORT][/PREFIX] --key releaser.pub\n"
                   "       releaser airgap verify BUNDLE --key releaser.pub", err=True)
        raise typer.Exit(2)
    opts = api.RegistryOptions(insecure=insecure, plain_http=plain_http, ca_file=ca_file, creds=creds,
                               chunk_mb=chunk_mb)
    if dry_run:
        _emit("airgap", as_json, lambda: api.airgap_load(Path(what), to=to, key=key, out=out, registries=opts,
                                                          concurrency=concurrency, dry_run=True), _planned)
        return
    with _Progress("load", not as_json) as prog:
        _emit("airgap", as_json, lambda: api.airgap_load(Path(what), to=to, key=key, out=out, registries=opts,
                                                          concurrency=concurrency, progress=prog),
              lambda r: "\n".join([
                  f"ok: loaded {r.release} {r.version} into {r.target}: {r.stats['blobs_pushed']} blobs pushed "
                  f"({r.stats['bytes_pushed']:,} bytes), {r.stats['blobs_skipped']} already there, "
                  f"{r.stats['blobs_mounted']} mounted, {r.stats['manifests_pushed']} manifests",
                  *(f"  {i}" for i in r.images), f"  chart: {r.chart}",
                  *(f"  merged with what the target had: {m}" for m in r.stats["attachments_merged"]),
                  *(f"  warning: {k}" for k in r.stats["attachments_kept"]),
                  f"  wrote {r.values_file} and {r.compose_override}", "", f"  {r.helm_install}"]))


def _planned(r: api.AirgapResult) -> str:
    """The dry run's report: what the load would write, tag by tag."""
    p = r.plan or {}
    changes = [t for t in p.get("tags", []) if t["action"] != "keep"]
    kept = len(p.get("tags", [])) - len(changes)

    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    lines = [f"ok: dry run, nothing written: loading {r.release} {r.version} into {r.target} would send "
             f"{n(p['blobsMissing'], 'blob')} ({p['bytesToSend']:,} bytes; {p['blobsPresent']} already there), push "
             f"{n(p['manifestsMissing'], 'manifest')} ({p['manifestsPresent']} already there) and change "
             f"{n(len(changes), 'tag')} ({kept} already as the bundle has them)"]
    width = max((len(t["action"]) for t in changes), default=0)
    lines += [f"  {'warning: ' if t['action'] == 'keep-theirs' else ''}{t['action']:<{width}}  {t['detail']}"
              for t in changes]
    lines.append(f"  then it would write {r.values_file} and {r.compose_override}")
    return "\n".join(lines)


def _inspected(r: api.InspectResult) -> str:
    trust = (f"signature and aggregate checksum verified with the given key (signer {r.signer})" if r.checked
             else f"NOT verified (no --key): the metadata below is what the bundle claims; signer {r.signer}")
    lines = [f"{r.release} {r.version}: {r.path} ({r.size:,} bytes; {r.files} listed files, {r.bytes:,} bytes unpacked; "
             f"format {r.format_version}, {r.tool})", f"  {trust}", f"  images ({len(r.images)}):"]
    width = max((len(i.name) for i in r.images), default=0)
    for i in r.images:
        kind = "index" if "index" in i.media_type or "list" in i.media_type else "manifest"
        where = f"{kind}: {', '.join(i.platforms)}" if i.platforms else kind
        lines += [f"    {i.name:<{width}}  {i.source}", f"    {'':<{width}}  = {i.reference}  ({where})"]
        lines += [f"    {'':<{width}}  + {t}" for t in i.attachments]
    lines.append(f"  chart: {r.chart['ref']}  {r.chart['digest']}")
    lines.append("  inspect reads only the head; `releaser airgap verify BUNDLE --key releaser.pub` checks every byte")
    return "\n".join(lines)


@app.command()
def doctor(directory: Annotated[Path | None, typer.Argument(help="A release directory: also check its published "
                                                           "ports and, with TCP-AO sidecars, the kernel.",
                                                           show_default=False)] = None,
           engine: Annotated[str | None, typer.Option("--engine", help="Force docker, podman, podman-compose or "
                                                      "docker-compose (default: the first that works).")] = None,
           skip: Annotated[list[str] | None, typer.Option("--skip", help="Skip one named check (repeatable), e.g. "
                                                          "--skip tcp-ao for a lab without CONFIG_TCP_AO.")] = None,
           bind_address: Annotated[str, typer.Option("--bind-address", help="Address public ports are published "
                                                     "on (BIND_ADDRESS in .env).")] = "127.0.0.1",
           as_json: JsonOpt = False) -> None:
    """Check this host for the Compose quickstart; each check passes or fails with a fix.

    Engine (Docker + Compose v2, then podman compose, podman-compose, docker-compose)
    and whether it answers; the release's published ports; disk space; for releases
    with TCP-AO sidecars, kernel TCP-AO support (getsockopt TCP_AO_INFO) and NET_ADMIN.
    Exit 0 when everything passes, 8 when a check fails.

    Example:  releaser doctor examples/bmp-tcpao
    Example:  releaser doctor examples/bmp-tcpao --skip tcp-ao
    """
    from .errors import _check_line

    _emit("doctor", as_json, lambda: api.doctor(directory, engine=engine, skip=tuple(skip or ()),
                                                bind_address=bind_address),
          lambda r: "\n".join([*(_check_line(c) for c in r.checks), "ok: this host can run the quickstart"]))



class _Readiness:
    """Live per-service status while the stack comes up: a table on a terminal, else one line
    per change (so logs of CI runs stay readable)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.live: Any = None
        self.last: dict[str, str] = {}

    def __enter__(self) -> _Readiness:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(stderr=True), refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def __call__(self, states: list[Any], elapsed: float, up_done: bool) -> None:
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


QS_ACTIONS = ("status", "logs", "down", "backup", "restore", "reset")


def _qs_hint(stack: Path) -> str:
    return "" if stack == Path("quickstart") else f" --dir {stack}"


def _qs_up_text(r: Any, stack: Path) -> str:
    d = _qs_hint(stack)
    lines = [f"ok: {r.release} {r.version} is up: {len(r.services)} services ready in {r.seconds:.0f} s "
             f"({r.engine}, {r.stack})"]
    lines += [f"  {name:<18} {url}" for name, url in r.urls]
    if r.registry:
        own = " (started for this stack; `down` stops it, `reset --yes` deletes it)" if r.local_registry else ""
        lines.append(f"  {'registry':<18} {r.registry}{own}")
    made = f"created {', '.join(r.secrets_created)}" if r.secrets_created else ""
    kept = f"kept {', '.join(r.secrets_kept)}" if r.secrets_kept else ""
    lines.append(f"  {'secrets':<18} {r.secrets_dir}/ ({'; '.join(x for x in (made, kept) if x)}; "
                 "values are never printed)")
    lines += [f"  {'status':<18} releaser quickstart status{d}",
              f"  {'logs':<18} releaser quickstart logs SERVICE{d}",
              f"  {'stop':<18} releaser quickstart down{d}   (keeps volumes and secrets)"]
    lines += [f"warning: {w}" for w in r.warnings]
    return "\n".join(lines)


def _qs_status_text(r: Any) -> str:
    lines = [f"{r.release} {r.version} ({r.engine}, {r.stack}):"]
    lines += [f"  {s.service:<18} {s.label():<14} {', '.join(s.ports)}" for s in r.services]
    lines.append("ok: every service is ready" if r.healthy else "not ready: see the states above "
                 "(releaser quickstart logs SERVICE)")
    return "\n".join(lines)


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def quickstart(
        what: Annotated[str, typer.Argument(
            help="A release directory or a bundle (*.tar.zst) to bring up; or one of: status, logs, down, "
                 "backup, restore, reset.", show_default=False)],
        arg: Annotated[str | None, typer.Argument(help="logs: the service; restore: the backup file.",
                                                  show_default=False)] = None,
        stack: Annotated[Path, typer.Option("--dir", envvar="RELEASER_QUICKSTART_DIR", show_envvar=True,
                                            help="The stack directory: compose files, .secrets/, state.")]
        = Path("quickstart"),
        engine: Annotated[str | None, typer.Option("--engine", help="Force docker, podman, podman-compose or "
                                                   "docker-compose (default: the first that works).")] = None,
        skip: Annotated[list[str] | None, typer.Option("--skip", help="Skip one named preflight check "
                                                       "(repeatable), e.g. --skip tcp-ao: the TCP-AO sidecars "
                                                       "then run their wire leg over PLAIN TCP (a lab only).")]
        = None,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for every service to be "
                                               "ready.")] = 180,
        key: Annotated[Path | None, typer.Option("--key", help="Bundle: the publisher's public key.")] = None,
        registry: Annotated[str | None, typer.Option("--registry", help="Bundle: the registry HOST[:PORT] to "
                                                     "load it into and run from; `local` starts one on "
                                                     "127.0.0.1 for this stack (needs docker-registry).")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="backup: the archive to write.")] = None,
        yes: Annotated[bool, typer.Option("--yes", help="reset: really delete volumes and secrets.")] = False,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="logs: keep following.")] = False,
        tail: Annotated[int | None, typer.Option("--tail", help="logs: only the last N lines.")] = None,
        insecure: InsecureOpt = False, plain_http: PlainHttpOpt = False, ca_file: CaFileOpt = None,
        creds: CredsOpt = None, as_json: JsonOpt = False) -> None:
    """Run the release's Compose stack on this host, and look after it.

    \b
    quickstart RELEASE_DIR        preflight, secrets, up, wait until ready
    quickstart BUNDLE --key PUB --registry HOST[:PORT]|local
                                  airgap: verify, load, run the same digests
    quickstart status             states and health (exit 9 if not ready)
    quickstart logs [SERVICE]     logs, secret values redacted
    quickstart down               stop; volumes and secrets stay
    quickstart backup --out F     volumes + config + secrets -> F (0600)
    quickstart restore F          put a backup back and start
    quickstart reset --yes        remove containers, volumes, secrets

    Secrets are generated on first run (CSPRNG) into DIR/.secrets/ (0700),
    mounted as files and never printed. A failed preflight check stops
    everything before anything starts; --skip NAME overrides one check.
    Exit codes: 0 ready, 8 preflight failed, 9 a service not ready (its last
    log lines are shown), 2 usage, 5 engine command failed.

    Example:  releaser quickstart examples/bmp-tcpao --skip tcp-ao
    """
    def say(msg: str) -> None:
        if not as_json:
            typer.echo(f"== {msg}", err=True)

    if what == "status":
        seen: list[Any] = []
        _emit("quickstart status", as_json, lambda: seen.append(api.quickstart_status(stack)) or seen[0],
              _qs_status_text)
        if not seen[0].healthy:
            raise typer.Exit(9)
        return
    if what == "logs":
        try:
            api.quickstart_logs(stack, arg, follow=follow, tail=tail, write=typer.echo)
        except ReleaserError as exc:
            typer.echo(exc.render(), err=True)
            raise typer.Exit(exc.exit_code) from None
        return
    if what == "down":
        _emit("quickstart down", as_json, lambda: api.quickstart_down(stack),
              lambda r: f"ok: {r.release} stopped; volumes and secrets kept (start again: releaser quickstart "
                        f"{'SOURCE'}{_qs_hint(stack)})")
        return
    if what == "reset":
        _emit("quickstart reset", as_json, lambda: api.quickstart_reset(stack, yes=yes),
              lambda r: "\n".join(["ok: removed", *(f"  - {t}" for t in r.removed)]))
        return
    if what == "backup":
        if out is None:
            typer.echo("error: usage: releaser quickstart backup --out backup.tar.zst", err=True)
            raise typer.Exit(2)
        _emit("quickstart backup", as_json, lambda: api.quickstart_backup(stack, out=out, say=say),
              lambda r: f"ok: wrote {r.path} ({r.bytes:,} bytes; volumes: {', '.join(r.volumes) or 'none'}; "
                        f"{len(r.files)} files incl. secrets: keep it as safe as .secrets/)\n  sha256: {r.sha256}")
        return
    if what == "restore":
        if arg is None:
            typer.echo("error: usage: releaser quickstart restore BACKUP.tar.zst", err=True)
            raise typer.Exit(2)
        with _Readiness(not as_json) as show:
            _emit("quickstart restore", as_json, lambda: api.quickstart_restore(Path(arg), stack, say=say,
                                                                                 on_update=show, timeout=timeout),
                  lambda r: f"ok: restored {r.release} from {r.path} (volumes: {', '.join(r.volumes) or 'none'}); "
                            f"{len(r.services)} services ready")
        return
    if arg is not None:
        typer.echo(f"error: unexpected argument {arg!r}; actions are {', '.join(QS_ACTIONS)}", err=True)
        raise typer.Exit(2)
    opts = api.RegistryOptions(insecure=insecure, plain_http=plain_http, ca_file=ca_file, creds=creds)
    with _Progress("load", not as_json) as prog, _Readiness(not as_json) as show:
        _emit("quickstart", as_json, lambda: api.quickstart_up(
            Path(what), stack=stack, engine=engine, skip=tuple(skip or ()), timeout=timeout, key=key,
            registry=registry, registries=opts, say=say, on_update=show, progress=prog),
            lambda r: _qs_up_text(r, stack))

def _version(value: bool) -> None:
    if value:
        typer.echo(f"releaser {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """releaser: one release.yaml, three delivery modes, the same digests."""


def _reflow(doc: str) -> str:
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


for _info in app.registered_commands:
    _info.help = _reflow(_info.help or (_info.callback.__doc__ if _info.callback else "") or "")


class _Interrupted(Exception):
    def __init__(self, command: str, as_json: bool) -> None:
        self.command = command
        self.as_json = as_json


def main() -> None:
    try:
        app(prog_name="releaser")
    except _Interrupted as i:  # Ctrl-C: the progress displays have been closed (cursor back) on the way here
        exc = ReleaserError(f"{i.command}: interrupted", fix="re-run the same command: nothing is left half "
                            "written (files are written to a temp name and renamed) and a registry load "
                            "sends only what the target still lacks")
        if i.as_json:
            typer.echo(json.dumps({"ok": False, "command": i.command, "error": exc.to_json()}, indent=2))
        else:
            typer.echo(exc.render(), err=True)
        # Exit now: worker threads may sit in a request to a registry that stopped answering (up
        # to the request timeout, times the retries), and Python would wait for each of them.
        # Temp files are already removed; upload state is on disk for the re-run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


if __name__ == "__main__":
    sys.exit(main())
