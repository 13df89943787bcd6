"""`releaser bundle create|split|join|merge`: the signed airgap bundle. `create` is the default:
`releaser bundle DIR --signing-key K` is `releaser bundle create DIR --signing-key K`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UsageError
from .base import JsonOpt, OutputOpt, group, out_path, output_format, pick, run
from .display import ByteProgress, trust_lines
from .options import (
    BundleArg,
    CaFileOpt,
    CredsOpt,
    DirArg,
    InsecureOpt,
    PassFileOpt,
    PlainHttpOpt,
    PublicKeyOpt,
    legacy_out,
    registry_options,
)

if TYPE_CHECKING:
    from ..commands.bundle import BundleResult
    from ..commands.merge import MergeResult
    from ..commands.split import JoinResult, SplitResult
    from ..format.records import PartRecord

app = group(
    "bundle",
    default="create",
    help="Write a signed airgap bundle (or a delta against an older one), cut one into parts for removable "
    "media and join them again, or rebuild a full bundle from an older one and a delta.\n\n"
    "`releaser bundle DIR --signing-key KEY` is short for `releaser bundle create DIR --signing-key KEY`. "
    "Identical inputs (and SOURCE_DATE_EPOCH) give a byte-identical bundle.",
)

SplitSizeArg = Annotated[
    str,
    typer.Option(
        "--split-size",
        help="The largest part: e.g. 4G (GiB), 700M (MiB), 4GB (10^9 bytes), or bytes.",
        show_default=False,
    ),
]


@app.command()
def create(
    directory: DirArg,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            help="The private key that signs the bundle (releaser.key from keygen).",
            show_default=False,
        ),
    ] = None,
    passphrase_file: PassFileOpt = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out-file", help="The bundle to write (default bundles/<name>-<version>.tar.zst)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a bundle that exists at that path (refused otherwise).")
    ] = False,
    zstd_level: Annotated[int, typer.Option("--zstd-level", help="1 (fast) to 19 (small).")] = 3,
    threads: Annotated[int, typer.Option("--threads", help="zstd worker threads (-1: one per core).")] = -1,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Do not use or fill the local blob cache ($RELEASER_CACHE, else ~/.cache/releaser).",
        ),
    ] = False,
    attachments: Annotated[
        bool,
        typer.Option(
            "--attachments/--no-attachments",
            help="Carry the signatures, attestations and SBOMs attached to each pinned digest (cosign's "
            "sha256-<hex>.sig/.att/.sbom tags and the OCI referrers tag sha256-<hex>), so policies that check "
            "them keep working behind the air gap.",
        ),
    ] = True,
    sbom: Annotated[
        bool,
        typer.Option(
            "--sbom",
            help="Give each image that carries no SBOM one: a CycloneDX SBOM made by syft from the pinned "
            "digest, attested and signed with the signing key, attached as `cosign attest` does (so "
            "`cosign verify-attestation --key releaser.pub --type cyclonedx` passes at the site). A carried "
            "SBOM is never replaced. Needs syft (docs/trust.md#sboms).",
        ),
    ] = False,
    installer: Annotated[
        bool | None,
        typer.Option(
            "--installer/--no-installer",
            help="Carry installer/: releaser's wheels and those of its dependencies (pinned with hashes), "
            "and install.sh, so the customer installs releaser with no network. Default: a full bundle "
            "carries it; a delta carries what changed since its base bundle, and nothing when its base "
            "is a lock or an inventory (which do not say which installer the site has).",
            show_default=False,
        ),
    ] = None,
    installer_python: Annotated[
        str,
        typer.Option(
            "--installer-python",
            help="Only these CPython versions, comma-separated (default: every one supported, 3.11 to 3.14).",
        ),
    ] = "",
    split_size: Annotated[
        str | None,
        typer.Option(
            "--split-size",
            help="Write the bundle as parts of at most this size for removable media: NAME.tar.zst.001 (the "
            "signed head, which lists the others with their sizes and sha256), .002, ... e.g. 4G (GiB), 700M.",
            show_default=False,
        ),
    ] = None,
    installer_machine: Annotated[
        str,
        typer.Option(
            "--installer-machine",
            help="Only these Linux machines, comma-separated: x86_64, aarch64 (default: both).",
        ),
    ] = "",
    since: Annotated[
        Path | None,
        typer.Option(
            "--since",
            help="Write a delta bundle (<name>-<version>-delta.tar.zst) that leaves out the image layers this "
            "base holds: an older bundle, an older release.lock.yaml (or its release directory), or the "
            "inventory of the customer's registry (`releaser airgap inventory`). It carries every manifest, "
            "config, attachment, the chart and the compose files, and names its base in the signed head.",
            show_default=False,
        ),
    ] = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = False,
    ca_file: CaFileOpt = None,
    creds: CredsOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    key: Annotated[
        Path | None, typer.Option("--key", hidden=True, help="Deprecated: use --signing-key.")
    ] = None,
    out: Annotated[Path | None, legacy_out("--out-file")] = None,
) -> int:
    """Write a signed airgap bundle: every locked image as ONE OCI image layout, the chart
    (package and OCI artifact), the compose files, release.yaml and the lock.

    Blobs stream from the registry (or the local cache) through hashing into the
    archive; layers are never recompressed. Identical inputs (and SOURCE_DATE_EPOCH)
    give a byte-identical bundle.

    Example:  releaser bundle my-release/ --signing-key keys/releaser.key
    Example:  releaser bundle my-release/ --signing-key keys/releaser.key --installer-python 3.11,3.12
    Example:  releaser bundle my-release/ --signing-key keys/releaser.key --split-size 4G   # .001, .002, ...
    Example:  releaser bundle my-release/ --signing-key keys/releaser.key --since site.inventory.json   # a delta
    """
    from ..bundle.parts import parse_size
    from ..commands.bundle import bundle_release

    as_json, legacy = output_format(output, as_json, legacy_path=True)
    private = pick(signing_key, key, old_name="--key (for the private key)", new_name="--signing-key")
    if private is None:
        raise UsageError(
            "bundle needs the signing key",
            fix="pass --signing-key keys/releaser.key (from `releaser keygen`)",
        )
    target = out_path(out_file, out, legacy, new_name="--out-file")
    opts = registry_options(insecure, plain_http, ca_file, creds)

    def text(r: BundleResult) -> str:
        return (
            f"ok: wrote {r.path} ({r.size:,} bytes, {r.blobs} blobs, {len(r.images)} images, "
            f"{len(r.attachments)} attachments; {_fetched(r)})\n"
            f"  sha256: {r.sha256}\n  signer: {r.signer}"
            + "".join(f"\n  attached: {a}" for a in r.attachments)
            + "".join(f"\n{_part_line(p)}" for p in r.parts)
            + (
                f"\n  delta: against {r.delta.base.kind} {r.delta.base.name} {r.delta.base.version}".rstrip()
                + f" ({r.delta.base.digest}); relies on {len(r.delta.relies)} layers "
                f"({sum(b.size for b in r.delta.relies):,} bytes) being in the target"
                if r.delta is not None
                else ""
            )
            + (
                f"\n  installer: {r.installer_bytes:,} bytes of wheels and install.sh for "
                + ", ".join(r.installer_targets)
                if r.installer_bytes
                else f"\n  installer: {r.installer_note}"
            )
            + trust_lines(r.trust)
            + (f"\n  sbom: made by syft and attested for {', '.join(r.sboms)}" if r.sboms else "")
        )

    with ByteProgress("bundle", not as_json) as prog:
        return run(
            "bundle",  # as typed: `create` is the default action (as `airgap` is for load)
            as_json,
            lambda: bundle_release(
                directory,
                key=private,
                out=target,
                passphrase_file=passphrase_file,
                level=zstd_level,
                threads=threads,
                use_cache=not no_cache,
                attachments=attachments,
                installer=installer,
                installer_pythons=_csv(installer_python),
                installer_machines=_csv(installer_machine),
                split_size=parse_size(split_size) if split_size else None,
                since=since,
                registries=opts,
                progress=prog,
                force=force,
                sbom=sbom,
            ),
            text,
        )


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _fetched(r: BundleResult) -> str:
    """Where the image blobs came from: the registries, the cache, or both (bytes_in counts the
    installer's files too, which are not blobs)."""
    cached = r.bytes_in - r.fetched - r.installer_bytes
    if cached <= 0:
        return f"{r.fetched:,} bytes fetched"
    if r.fetched == 0:
        return f"{cached:,} bytes from the cache"
    return f"{r.fetched:,} bytes fetched, {cached:,} from the cache"


def _part_line(p: PartRecord) -> str:
    return f"  part {p.number}: {p.name} ({p.size:,} bytes, sha256 {p.sha256})"


@app.command()
def split(
    bundle: BundleArg,
    split_size: SplitSizeArg,
    signing_key: Annotated[
        Path,
        typer.Option(
            "--signing-key",
            help="The key that signed the bundle (its head is signed again, with the parts).",
            show_default=False,
        ),
    ],
    passphrase_file: PassFileOpt = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out-file", help="Name of the parts, without .001 (default: the bundle's own name)."),
    ] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Cut an existing bundle into parts: NAME.tar.zst.001 (the signed head, listing every other
    part's size and sha256), .002, ... The bundle is verified first with the signing key's own
    public key (only its signer can list its parts); the body's zstd frames are copied byte for
    byte. `cat NAME.tar.zst.* > NAME.tar.zst` or `releaser bundle join` puts them back.

    Example:  releaser bundle split bundles/bmp-tcpao-1.4.0.tar.zst --split-size 4G --signing-key keys/releaser.key
    """
    from ..bundle.parts import parse_size
    from ..commands.split import split_bundle

    as_json, _ = output_format(output, as_json)
    size = parse_size(split_size)

    def text(r: SplitResult) -> str:
        lines = [
            f"ok: split {r.source} into {len(r.parts) + 1} parts ({r.size:,} bytes)",
            f"  part 1: {r.first} (the signed head)",
        ]
        lines += [_part_line(p) for p in r.parts]
        if r.recompressed:
            lines.append(f"  {r.recompressed} members shared the head's zstd frame and were compressed again")
        return "\n".join(lines)

    return run(
        "bundle split",
        as_json,
        lambda: split_bundle(
            bundle, size=size, key=signing_key, out=out_file, passphrase_file=passphrase_file
        ),
        text,
    )


@app.command()
def join(
    bundle: BundleArg,
    key: PublicKeyOpt = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out-file", help="The joined bundle (default: the parts' name without .001)."),
    ] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Join the parts of a split bundle into one file, checking each against the size and sha256
    its signed head lists as it is copied; nothing is written if one differs. Not needed to
    verify or load a split bundle: those read the parts in sequence.

    Example:  releaser bundle join bmp-tcpao-1.4.0.tar.zst.001 --key releaser.pub
    """
    from ..commands.split import join_bundle

    as_json, _ = output_format(output, as_json)

    def text(r: JoinResult) -> str:
        return f"ok: joined {r.parts} parts into {r.path} ({r.size:,} bytes, sha256 {r.sha256})"

    return run(
        "bundle join",
        as_json,
        lambda: join_bundle(bundle, key=key or Path("releaser.pub"), out=out_file),
        text,
    )


@app.command()
def merge(
    old: Annotated[
        Path, typer.Argument(help="The bundle the delta was made against (or one holding its layers).")
    ],
    delta: Annotated[Path, typer.Argument(help="The delta bundle (`releaser bundle --since`).")],
    key: PublicKeyOpt = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out-file", help="The full bundle to write (default bundles/<name>-<version>.tar.zst)."
        ),
    ] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Rebuild the full bundle from an older bundle and a delta: byte for byte the file a full
    `releaser bundle` would have written, signed by the publisher (the delta carries the full
    bundle's signed head). Both are verified first; every member is checked as it is written.

    Example:  releaser bundle merge bmp-tcpao-1.4.0.tar.zst bmp-tcpao-1.5.0-delta.tar.zst --key releaser.pub
    """
    from ..commands.merge import merge_bundles

    as_json, _ = output_format(output, as_json)

    def text(r: MergeResult) -> str:
        return (
            f"ok: wrote {r.path} ({r.size:,} bytes): {r.release} {r.version}, {r.from_delta} members from the "
            f"delta, {r.from_base} from the older bundle\n  sha256: {r.sha256}"
        )

    return run(
        "bundle merge",
        as_json,
        lambda: merge_bundles(old, delta, key=key or Path("releaser.pub"), out=out_file),
        text,
    )
