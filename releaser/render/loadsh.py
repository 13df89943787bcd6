"""load.sh: the bundle's own loader for hosts with no Python (POSIX sh, openssl, sha256sum, skopeo;
cosign, when present, for the trust policy the bundle carries).

Rendered at bundle time from what the signed metadata will hold (images, attachments, chart,
compose services), with the same values-airgap.yaml, compose.airgap.yaml and registries-airgap.conf `releaser airgap`
writes, for a placeholder registry the script replaces with its --to. docs/airgap.md#loadsh.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import jinja2

from .. import __version__
from ..format.records import BundledImage, TrustRecord
from ..lock import split_reference
from ..mediatypes import INDEX_TYPES
from ..target import Target
from .overrides import airgap_values, compose_override, registries_airgap

PLACEHOLDER = "releaser-target.invalid"  # a registry host no one has (RFC 2606 .invalid)
_SAFE = re.compile(r"^[A-Za-z0-9._:/@+-]+\Z")  # what a reference, a tag or a digest is made of


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


@dataclass(frozen=True)
class TrustCheck:
    """What load.sh asks cosign of one loaded image: a signature verified by one of `signers` (each
    a list of cosign arguments), and for each attestation type one attestation verified by one of
    them. `ref` is the image's path@digest under the target."""

    image: str
    ref: str
    path: str  # the image's path under the target (how load.sh names what it left out)
    signers: tuple[str, ...]  # each: cosign verify's arguments, quoted for sh
    unsigned: str  # the message when no signer verifies, quoted for sh
    attestations: tuple[tuple[str, str], ...] = ()  # (the type, the message when none verifies), quoted
    # the local layout cosign checks before the copy: the image, its .sig and .att manifests
    digest: str = ""
    media_type: str = ""
    kind: str = "image"  # cosign's layout kind: image | imageIndex
    sig: str = ""
    sig_media_type: str = ""
    att: str = ""
    att_media_type: str = ""
    referrers: str = ""  # "1" when it carries Sigstore bundle referrers (checked in the registry)

    @property
    def var(self) -> str:
        return self.image.replace("-", "_")  # a DNS label: letters, digits and '-'

    def __post_init__(self) -> None:
        for value in (self.ref, self.image, self.digest, self.media_type, self.sig, self.sig_media_type,
                      self.att, self.att_media_type):  # fmt: skip
            if value and not _SAFE.match(value):
                raise ValueError(f"not a reference: {value!r}")


def _trust_checks(
    images: Sequence[BundledImage], trust: TrustRecord | None
) -> tuple[list[TrustCheck], dict[str, str], str | None]:
    """load.sh's cosign checks for the carried policy: one per image that is not exempt; the key
    files they name (file name in the script's work directory -> PEM); the trusted root's JSON."""
    if trust is None:
        return [], {}, None
    files = {path: f"key-{i}.pub" for i, path in enumerate(trust.keys)}
    pems = {files[path]: pem if pem.endswith("\n") else pem + "\n" for path, pem in trust.keys.items()}
    out = []
    for img in images:
        rule = trust.images.get(img.name)
        if rule is None or rule.exempt:
            continue
        signers = [f'--insecure-ignore-tlog=true --key "$work/trust/{files[k]}"' for k in rule.keys] + [
            '--trusted-root "$work/trust/trusted_root.json" '
            f"--certificate-oidc-issuer {shlex.quote(i)} --certificate-identity-regexp {shlex.quote(r)}"
            for i, r in rule.keyless
        ]
        wanted = " or ".join([*rule.keys, *(f"keyless /{r}/ from {i}" for i, r in rule.keyless)])
        hexdigest = img.digest.split(":", 1)[1]
        by_tag = {a.tag: a for a in img.attachments or () if a.subject == img.digest}
        sig, att = by_tag.get(f"sha256-{hexdigest}.sig"), by_tag.get(f"sha256-{hexdigest}.att")
        out.append(
            TrustCheck(
                image=img.name,
                ref=f"{img.path}@{img.digest}",
                digest=img.digest,
                media_type=img.media_type,
                kind="imageIndex" if img.media_type in INDEX_TYPES else "image",
                sig=sig.digest if sig else "",
                sig_media_type=sig.media_type if sig else "",
                att=att.digest if att else "",
                att_media_type=att.media_type if att else "",
                referrers="1" if f"sha256-{hexdigest}" in by_tag else "",
                path=img.path,
                signers=tuple(signers),
                unsigned=shlex.quote(f"no signature of {img.digest} by {wanted} verifies"),
                attestations=tuple(
                    (shlex.quote(a), shlex.quote(f"no {a} attestation by {wanted} verifies"))
                    for a in rule.attestations
                ),
            )
        )
    root = trust.trusted_root[1] if trust.trusted_root is not None else None
    return out, pems, root


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
    trust: TrustRecord | None = None,
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
    checks, keys, root = _trust_checks(images, trust)
    text = _template().render(
        policy=trust is not None,
        checks=checks,
        keys=keys,
        root=root,
        name=name,
        version=version,
        tool=__version__,
        copies=copies,
        untagged=", ".join(untagged),
        placeholder=PLACEHOLDER,
        values=airgap_values(name, target).decode(),
        compose=compose_override(compose, images, target).decode(),
        registries=registries_airgap(name, images, target, plain_http=False).decode(),
        registries_insecure=registries_airgap(name, images, target, plain_http=True).decode(),
        delta=delta,
    )
    return text.encode()
