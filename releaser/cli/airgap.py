"""`releaser airgap verify|inspect|check|inventory|load`: the customer's side of a bundle. `load` is the default:
`releaser airgap BUNDLE --to R` is `releaser airgap load BUNDLE --to R`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..format import DEFAULT_KEY
from .base import JsonOpt, OutputOpt, group, out_path, output_format, reflow_help, run
from .display import ByteProgress, trust_lines
from .options import (
    BundleArg,
    CaFileOpt,
    CredsOpt,
    InsecureOpt,
    PlainHttpOpt,
    PublicKeyOpt,
    legacy_out,
    registry_options,
)

if TYPE_CHECKING:
    from ..commands.airgap import InspectResult, VerifyResult
    from ..commands.audit import CheckRegistryResult
    from ..commands.inventory import InventoryResult
    from ..commands.load import AirgapResult


app = group(
    "airgap",
    default="load",
    help="Inspect a bundle, verify it, or verify it and load it into a private registry.\n\n"
    "`releaser airgap BUNDLE --to HOST[:PORT]\\[/PREFIX]` is short for `releaser airgap load BUNDLE --to ...`.",
)


@app.command()
def verify(
    bundle: BundleArg, key: PublicKeyOpt = None, output: OutputOpt = None, as_json: JsonOpt = False
) -> int:
    """Verify a bundle: signature (against YOUR copy of the publisher's public key) -> aggregate
    checksum -> every listed file -> no unlisted file -> safe member names -> every blob's digest.
    Every problem is listed. Nothing is written anywhere.

    Example:  releaser airgap verify bundles/bmp-tcpao-1.4.0.tar.zst --key releaser.pub
    """
    from ..commands.airgap import verify as verify_file

    as_json, _ = output_format(output, as_json)

    def text(r: VerifyResult) -> str:
        return (
            f"ok: {r.path} verified: {r.release} {r.version}, {r.files} files, {r.bytes:,} bytes, "
            f"signed by {r.signer}\n"
            + (
                f"  a DELTA bundle against {r.delta_base}: it loads only into a registry that holds that base\n"
                if r.delta_base
                else ""
            )
            + "\n".join(f"  {i}" for i in r.images)
            + trust_lines(r.trust)
        )

    with ByteProgress("verify", not as_json) as prog:
        return run(
            "airgap verify", as_json, lambda: verify_file(bundle, key=key or DEFAULT_KEY, progress=prog), text
        )


@app.command()
def inspect(
    bundle: BundleArg,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="The publisher's public key: checks the signature of what is shown. Without it the metadata is "
            "shown unverified.",
            show_default=False,
        ),
    ] = None,
    catalog: Annotated[
        bool,
        typer.Option(
            "--catalog",
            help="Print the image catalog instead (images.md; with --json, images.json): every image, its "
            "source, digest, platforms and their digests, size in the bundle, attachments, the services using it.",
        ),
    ] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """What a bundle holds, from the signed metadata at the head of the archive (milliseconds at
    any size): release, images with their pinned digests and platforms, chart, signer.

    Example:  releaser airgap inspect bundles/bmp-tcpao-1.4.0.tar.zst --key releaser.pub
    Example:  releaser airgap inspect bundles/bmp-tcpao-1.4.0.tar.zst --key releaser.pub --catalog --json
    """
    from ..commands.airgap import inspect as inspect_file
    from ..commands.airgap import inspect_catalog

    as_json, _ = output_format(output, as_json)
    if catalog:
        return run(
            "airgap inspect",
            as_json,
            lambda: inspect_catalog(bundle, key=key),
            lambda r: (
                r.markdown
                + ("" if r.checked else "\nNOT verified (no --key): this is what the bundle claims.\n")
            ),
        )
    return run("airgap inspect", as_json, lambda: inspect_file(bundle, key=key), _inspected)


@app.command()
def check(
    bundle: BundleArg,
    to: Annotated[
        str,
        typer.Option(
            "--to", help="The registry HOST[:PORT]\\[/PREFIX] it was loaded into.", show_default=False
        ),
    ],
    key: PublicKeyOpt = None,
    sample: Annotated[
        int,
        typer.Option(
            "--sample",
            help="How many blobs to read as well as ask for (a ranged GET of one byte each), spread over all of "
            "them: a pull-through cache may answer HEAD for a blob it does not hold.",
            min=0,
        ),
    ] = 8,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Parallel registry requests.", min=1)] = 8,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = False,
    ca_file: CaFileOpt = None,
    creds: CredsOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Does the registry really serve the bundle? Verifies the bundle, then fetches and hashes
    every manifest and index a load puts there, asks for every blob, reads a sample of them, and
    resolves every tag. Lists everything missing or different (exit 4); writes nothing.

    Example:  releaser airgap check bundles/bmp-tcpao-1.4.0.tar.zst --to registry.local:5000 --key releaser.pub
    """
    from ..commands.audit import check_registry

    as_json, _ = output_format(output, as_json)
    opts = registry_options(insecure, plain_http, ca_file, creds, 256)

    def text(r: CheckRegistryResult) -> str:
        a = r.audit
        return (
            f"ok: {r.target} serves all of {r.release} {r.version}: {a.manifests} manifests (fetched and hashed), "
            f"{a.blobs} blobs ({a.sampled} of them read), {a.tags} tags"
        )

    return run(
        "airgap check",
        as_json,
        lambda: check_registry(
            bundle, to=to, key=key or DEFAULT_KEY, registries=opts, concurrency=concurrency, sample=sample
        ),
        text,
    )


@app.command()
def inventory(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="The registry HOST[:PORT]\\[/PREFIX] to list (the one bundles are loaded into).",
            show_default=False,
        ),
    ],
    out_file: Annotated[
        Path,
        typer.Option("--out-file", help="The inventory to write (send it to the publisher)."),
    ] = Path("site.inventory.json"),
    repository: Annotated[
        list[str] | None,
        typer.Option(
            "--repository",
            help="List this repository (a path under the prefix, e.g. bmp/gobmp); repeatable. Default: every "
            "repository the registry's catalog lists under the prefix.",
            show_default=False,
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="List the repositories of the release in this bundle (read from its head).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Parallel registry requests.", min=1)] = 8,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = False,
    ca_file: CaFileOpt = None,
    creds: CredsOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """What the registry holds, for the publisher's next delta bundle: every repository (of the
    catalog under the prefix, those named, or the release's), its tags, the manifests they reach
    and the blobs those name, in a small JSON file. Reads manifests only, never a blob.

    The publisher then writes a bundle that carries only the layers this registry lacks:
    releaser bundle my-release/ --signing-key K --since site.inventory.json

    Example:  releaser airgap inventory --from registry.local:5000 --out-file site.inventory.json
    """
    from ..commands.inventory import inventory

    as_json, _ = output_format(output, as_json)
    opts = registry_options(insecure, plain_http, ca_file, creds, 256)

    def text(r: InventoryResult) -> str:
        return (
            f"ok: wrote {r.path}: {r.registry} holds {r.repositories} repositories, {r.tags} tags, "
            f"{r.manifests} manifests, {r.blobs} blobs\n  sha256: {r.sha256}\n"
            f"  next: send it to the publisher, who runs `releaser bundle DIR --signing-key K --since {r.path}`"
        )

    return run(
        "airgap inventory",
        as_json,
        lambda: inventory(
            source=source,
            out=out_file,
            repositories=tuple(repository or ()),
            bundle=bundle,
            registries=opts,
            concurrency=concurrency,
        ),
        text,
    )


@app.command()
def load(
    bundle: BundleArg,
    to: Annotated[
        str, typer.Option("--to", help="Target registry HOST[:PORT]\\[/PREFIX].", show_default=False)
    ],
    key: PublicKeyOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            help="Where values-airgap.yaml, compose.airgap.yaml and registries-airgap.conf are written. Default: .",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            help="Parallel registry requests; up to 4 of them stream large blobs from the archive at once "
            "(1: one at a time).",
            min=1,
        ),
    ] = 8,
    chunk_mb: Annotated[
        int,
        typer.Option(
            "--chunk-size",
            help="MB per upload request. Blobs up to this size go in one streamed PUT (fastest); bigger ones in "
            "PATCHes of this size, and an interrupted one resumes at a chunk boundary. Lower it on unreliable links.",
            min=1,
            max=4096,
        ),
    ] = 256,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Verify the whole bundle and ask the registry what the load would write (blobs, manifests, each "
            "tag created, moved, kept or merged); write nothing, there or here.",
        ),
    ] = False,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = False,
    ca_file: CaFileOpt = None,
    creds: CredsOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    out: Annotated[Path | None, legacy_out("--out-dir")] = None,
) -> int:
    """Verify a bundle, then load it into a private registry.

    Verification comes first and is whole: on any problem nothing is pushed. Loading
    pushes only what the registry lacks, then manifests by digest, then tags, then the
    chart; a re-run after an interruption finishes the job. Signatures, attestations and
    SBOMs travel under their tags; where the registry already has such a tag (the site's
    own signature), the bundle's is merged in, never put in its place.

    Example:  releaser airgap bundles/bmp-tcpao-1.4.0.tar.zst --to registry.local:5000 --key releaser.pub --dry-run
    Example:  releaser airgap bundles/bmp-tcpao-1.4.0.tar.zst --to registry.local:5000 --key releaser.pub
    """
    from ..commands.load import load_bundle

    as_json, legacy = output_format(output, as_json, legacy_path=True)
    target = out_path(out_dir, out, legacy, new_name="--out-dir")
    opts = registry_options(insecure, plain_http, ca_file, creds, chunk_mb)

    def go(progress: ByteProgress | None = None) -> AirgapResult:
        return load_bundle(
            bundle,
            to=to,
            key=key or DEFAULT_KEY,
            out=target or Path("."),
            registries=opts,
            concurrency=concurrency,
            progress=progress,
            dry_run=dry_run,
        )

    if dry_run:
        with ByteProgress("verify", not as_json) as prog:  # the dry run's long step is hashing the bundle
            return run("airgap", as_json, lambda: go(prog), _planned)
    with ByteProgress("load", not as_json) as prog:
        return run("airgap", as_json, lambda: go(prog), _loaded)


def _loaded(r: AirgapResult) -> str:
    s = r.stats
    head = (
        f"ok: {r.release} {r.version} was already all in {r.target} (every image, attachment and chart under "
        "its tag, and every blob they reference): nothing sent. The bundle's signed head was verified; "
        "its body was not read again (`releaser airgap verify` checks every byte)"
        if s.in_place
        else f"ok: loaded {r.release} {r.version} into {r.target}: {s.blobs_pushed} blobs pushed "
        f"({s.bytes_pushed:,} bytes), {s.blobs_skipped} already there, "
        f"{s.blobs_mounted} mounted, {s.manifests_pushed} manifests"
    )
    return "\n".join(
        [
            head,
            *(f"  {i}" for i in r.images),
            f"  chart: {r.chart}",
            *(f"  merged with what the target had: {m}" for m in s.attachments_merged),
            *(f"  warning: {k}" for k in s.attachments_kept),
            f"  wrote {r.values_file}, {r.compose_override} and {r.registries_conf}",
            *(trust_lines(r.trust).splitlines()[1:] if r.trust != () else []),
            "",
            f"  {r.helm_install}",
        ]
    )


def _planned(r: AirgapResult) -> str:
    """The dry run's report: what the load would write, tag by tag."""
    assert r.plan is not None
    p = r.plan
    changes = [t for t in p.tags if t.action != "keep"]
    kept = len(p.tags) - len(changes)

    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    lines = [
        f"ok: dry run, nothing written: loading {r.release} {r.version} into {r.target} would send "
        f"{n(p.blobs_missing, 'blob')} ({p.bytes_to_send:,} bytes; {p.blobs_present} already there), push "
        f"{n(p.manifests_missing, 'manifest')} ({p.manifests_present} already there) and change "
        f"{n(len(changes), 'tag')} ({kept} already as the bundle has them)"
    ]
    width = max((len(t.action) for t in changes), default=0)
    lines += [
        f"  {'warning: ' if t.action == 'keep-theirs' else ''}{t.action:<{width}}  {t.detail}"
        for t in changes
    ]
    lines.append(f"  then it would write {r.values_file}, {r.compose_override} and {r.registries_conf}")
    return "\n".join(lines)


def _inspected(r: InspectResult) -> str:
    trust = (
        f"signature and aggregate checksum verified with the given key (signer {r.signer})"
        if r.checked
        else f"NOT verified (no --key): the metadata below is what the bundle claims; signer {r.signer}"
    )
    lines = [
        f"{r.release} {r.version}: {r.path} ({r.size:,} bytes; {r.files} listed files, {r.bytes:,} bytes unpacked; "
        f"format {r.format_version}, {r.tool})",
        f"  {trust}",
    ]
    if r.delta_base is not None:
        b = r.delta_base
        lines.append(
            f"  a DELTA bundle: against {b['kind']} {b['name']} {b['version']}".rstrip()
            + f" ({b['digest']}); it loads only into a registry that holds that base (an upgrade)"
        )
    lines.append(f"  images ({len(r.images)}):")
    width = max((len(i.name) for i in r.images), default=0)
    for i in r.images:
        kind = "index" if "index" in i.media_type or "list" in i.media_type else "manifest"
        where = f"{kind}: {', '.join(i.platforms)}" if i.platforms else kind
        lines += [f"    {i.name:<{width}}  {i.source}", f"    {'':<{width}}  = {i.reference}  ({where})"]
        lines += [f"    {'':<{width}}  + {t}" for t in i.attachments]
        if i.policy is not None:
            lines.append(f"    {'':<{width}}  ! trust policy: {i.policy} (checked by verify and the load)")
    if r.trusted_root is not None:
        lines.append(
            f"  ! keyless signatures are checked against the Sigstore trusted root {r.trusted_root.describe()}"
        )
    lines.append(f"  chart: {r.chart['ref']}  {r.chart['digest']}")
    if r.parts:
        lines.append(
            f"  parts: {len(r.parts) + 1} (part 1: the head); {r.parts_present} of the {len(r.parts)} it lists "
            "are beside it with their size"
        )
        lines += [
            f"    part {p.number}: {p.name} ({p.size:,} bytes, sha256 {p.sha256[:12]}…)"
            + ("" if p.number <= r.parts_present + 1 else "  MISSING or another size")
            for p in r.parts
        ]
    lines.append(
        "  inspect reads only the head; `releaser airgap verify BUNDLE --key releaser.pub` checks every byte"
    )
    return "\n".join(lines)


reflow_help(app)
