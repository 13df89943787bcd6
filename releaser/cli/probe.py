"""`releaser probe show|push`: the probe image that runs a release's http/tcp checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .base import JsonOpt, OutputOpt, group, output_format, run
from .options import CaFileOpt, CredsOpt, InsecureOpt, PlainHttpOpt, registry_options

if TYPE_CHECKING:
    from ..commands.probe import ProbeInfo, PushResult

app = group(
    "probe",
    default="show",
    help="releaser's probe image: a static checker (no shell, non-root) that runs Compose's http/tcp health "
    "checks from outside a service's image and the chart's `helm test` pod.\n\n"
    "Publish it beside the release's images, name it in release.yaml (`probe: {image: probe}` with "
    "`images.probe.ref` set to where you pushed it), and `releaser lock` pins it like any image.",
)


@app.command("show")
def show(output: OutputOpt = None, as_json: JsonOpt = False) -> int:
    """The probe image this releaser carries: its digest, platforms and the Go version that built it.

    Example:  releaser probe show --json
    """
    from ..commands.probe import show as probe_show

    as_json, _ = output_format(output, as_json)

    def text(r: ProbeInfo) -> str:
        return f"probe image {r.digest}\n  platforms: {', '.join(r.platforms)}\n  built with {r.go}"

    return run("probe show", as_json, probe_show, text)


@app.command("push")
def push(
    reference: Annotated[
        str,
        typer.Argument(
            metavar="REGISTRY/PATH:TAG",
            help="Where to publish it, e.g. registry.example.com/acme/releaser-probe:1.",
            show_default=False,
        ),
    ],
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = False,
    ca_file: CaFileOpt = None,
    creds: CredsOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Publish the probe image (an index over linux/amd64 and linux/arm64) to a registry.

    Blobs first, then the manifests, then the tag: an interrupted push leaves no tag on
    a half image, and running it again sends only what is missing.

    Example:  releaser probe push registry.example.com/acme/releaser-probe:1
    """
    from ..commands.probe import push as probe_push

    as_json, _ = output_format(output, as_json)
    opts = registry_options(insecure, plain_http, ca_file, creds)

    def text(r: PushResult) -> str:
        return (
            f"ok: pushed {r.reference}\n  {r.blobs_pushed} blobs sent, {r.blobs_present} already there\n"
            f"  release.yaml:  images: {{probe: {{ref: {r.reference.split('@')[0]}}}}}  and  probe: {{image: probe}}"
        )

    return run("probe push", as_json, lambda: probe_push(reference, opts), text)
