"""load.sh: the bundle's own loader for hosts with no Python (POSIX sh, openssl, sha256sum, skopeo).

Rendered at bundle time from what the signed metadata will hold (images, attachments, chart,
compose services), with the same values-airgap.yaml and compose.airgap.yaml `releaser airgap`
writes, for a placeholder registry the script replaces with its --to. docs/airgap.md#loadsh.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import jinja2

from .. import __version__
from ..format.records import BundledImage
from ..lock import split_reference
from ..target import Target
from .overrides import airgap_values, compose_override

PLACEHOLDER = "releaser-target.invalid"  # a registry host no one has (RFC 2606 .invalid)
_SAFE = re.compile(r"^[A-Za-z0-9._:/@+-]+$")  # what a reference, a tag or a digest is made of


@dataclass(frozen=True)
class Copy:
    verb: str  # copy | attach
    source: str  # ref.name in the bundle's OCI layout
    target: str  # path:tag under the target registry
    digest: str

    def __post_init__(self) -> None:
        for value in (self.source, self.target, self.digest):
            if not _SAFE.match(value):  # never true for a parsed reference; a quote would break sh
                raise ValueError(f"not a reference: {value!r}")


@cache
def _template() -> jinja2.Template:
    text = resources.files("releaser").joinpath("render/airgap/load.sh.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(text)  # sh, not HTML: every value is checked by Copy or is ours


def load_sh(
    *,
    name: str,
    version: str,
    images: Sequence[BundledImage],
    chart: tuple[str, str],
    compose: Mapping[str, str],
    delta: str | None = None,
) -> bytes:
    """The script, for a bundle holding `images` (in the layout under their source reference) and
    `chart` (ref charts/<name>:<version>, digest of its OCI manifest). In a delta bundle (`delta`
    describes its base) it verifies, then refuses to copy: skopeo needs every blob of a layout."""
    copies: list[Copy] = []
    untagged = []
    for img in images:
        registry, path, tag, _ = split_reference(img.source)
        if tag is None:
            untagged.append(img.name)
            continue
        copies.append(Copy("copy", f"{registry}/{path}:{tag}", f"{img.path}:{tag}", img.digest))
        copies += [
            Copy("attach", f"{img.repository}:{a.tag}", f"{img.path}:{a.tag}", a.digest)
            for a in img.attachments or ()
        ]
    ref, digest = chart
    copies.append(Copy("copy", ref, ref, digest))
    target = Target(host=PLACEHOLDER, prefix="")
    text = _template().render(
        name=name,
        version=version,
        tool=__version__,
        copies=copies,
        untagged=", ".join(untagged),
        placeholder=PLACEHOLDER,
        values=airgap_values(name, target).decode(),
        compose=compose_override(compose, images, target).decode(),
        delta=delta,
    )
    return text.encode()
