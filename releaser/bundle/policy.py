"""The release's trust policy applied to a bundle's images, at both ends (docs/trust.md).

At `bundle` time (`at_publisher`): the policy comes from release.yaml, its keys from the files it
names; what is attached to each pinned digest is what `assemble` gathered from the source registry
(the attachment manifests it holds, the signature payloads fetched here, each checked against its
digest). The policy and the keys' PEM go into the signed head (`TrustRecord`), so that at the site
(`at_site`) the same checks run offline on what the bundle itself carries, after the bundle verified
and before anything is pushed. The checks themselves are releaser/trust.py's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from .. import budgets
from ..budgets import MAX_KEY_BYTES, MAX_ROOT_BYTES
from ..errors import ArchiveError, InputError, RegistryError, TrustError
from ..format import ATTACHMENT_SUFFIXES, OCI_INDEX
from ..format.records import Attachment, BundledImage, TrustRecord, TrustRuleRecord
from ..fs import UnreadableInput, read_input
from ..lock import Lock, split_reference
from ..model import Release
from ..registry import RegistryFor, sha256_digest
from ..trust import (
    MAX_PAYLOAD,
    Found,
    Keyless,
    NotAKey,
    NotARoot,
    Rule,
    SigstoreRoot,
    TrustedKey,
    Verdict,
    judge,
    read_attachment,
)
from .archive import small_members
from .attachments import referrers_index

Blobs = Callable[[str, int], bytes]  # (digest, size) -> the bytes, checked against the digest


def trust_record(release: Release, directory: Path) -> TrustRecord | None:
    """release.yaml's policy as the head carries it, the key files read (validate checked them)."""
    if release.trust is None:
        return None
    root_dir = Path(os.path.realpath(directory))
    keys = {}
    for rel in release.trust_keys:
        try:
            keys[rel] = read_input(Path(os.path.realpath(root_dir / rel)), MAX_KEY_BYTES).decode("ascii")
        except (FileNotFoundError, UnreadableInput, UnicodeDecodeError) as exc:
            raise InputError(
                f"trust key {rel}: {exc}",
                fix="give the public key file release.yaml names (releaser validate)",
            ) from None
    root = None
    if release.trusted_root is not None:
        rel = release.trusted_root
        try:
            text = read_input(Path(os.path.realpath(root_dir / rel)), MAX_ROOT_BYTES).decode("utf-8")
        except (FileNotFoundError, UnreadableInput, UnicodeDecodeError) as exc:
            raise InputError(
                f"trust.trustedRoot {rel}: {exc}",
                fix="give the Sigstore trusted root file release.yaml names (releaser validate)",
            ) from None
        root = (rel, text)
    return TrustRecord(
        keys=keys,
        images={
            name: TrustRuleRecord(
                keys=r.keys,
                attestations=r.attestations,
                exempt=r.exempt,
                keyless=tuple((k.issuer, k.identity) for k in r.keyless),
            )
            for name, r in release.trust
        },
        trusted_root=root,
    )


def sigstore_root(record: TrustRecord | None) -> SigstoreRoot | None:
    """The carried Sigstore trusted root, read (None when the policy has no keyless rule)."""
    if record is None or record.trusted_root is None:
        return None
    path, text = record.trusted_root
    try:
        return SigstoreRoot(text.encode(), path)
    except NotARoot as exc:
        raise InputError(
            f"trust.trustedRoot {path}: {exc}",
            fix="give the Sigstore trusted root (trusted_root.json) of the instance the images were signed with",
        ) from None


def _rules(record: TrustRecord) -> dict[str, Rule]:
    loaded = {}
    for path, pem in record.keys.items():
        try:
            loaded[path] = TrustedKey.load(pem.encode(), path)
        except NotAKey as exc:
            raise InputError(f"trust key {path}: {exc}", fix="give the public key (cosign.pub)") from None
    root = sigstore_root(record)
    return {
        name: Rule(
            keys=tuple(loaded[k] for k in r.keys),
            attestations=r.attestations,
            exempt=r.exempt,
            keyless=tuple(Keyless(issuer=i, identity=p) for i, p in r.keyless),
            root=root,
        )
        for name, r in record.images.items()
    }


def check(
    record: TrustRecord | None,
    images: tuple[BundledImage, ...] | list[BundledImage],
    manifest: Callable[[str], bytes | None],
    blob: Blobs,
) -> tuple[Verdict, ...]:
    """Each image's verdict: what is attached to its pinned digest (its attachment manifests by
    `manifest(digest)`, an index's children too, their payloads by `blob`) judged by its rule. No
    policy: no verdicts. An image the policy has no rule for fails (validate refuses such a policy)."""
    if record is None:
        return ()
    rules = _rules(record)
    out = []
    for img in images:
        rule = rules.get(img.name)
        if rule is None:
            out.append(
                Verdict(
                    image=img.name, digest=img.digest, ok=False, problems=("the policy has no rule for it",)
                )
            )
            continue
        found: list[Found] = []
        for att in img.attachments or ():
            found += _read(att.digest, manifest, blob, rule)
        out.append(judge(img.name, img.digest, rule, found))
    return tuple(out)


def _read(digest: str, manifest: Callable[[str], bytes | None], blob: Blobs, rule: Rule) -> list[Found]:
    """The signatures and attestations of one attachment: a manifest, or an index (the referrers tag
    schema) whose children are manifests; anything unreadable is left out (and so proves nothing)."""
    content = manifest(digest)
    if content is None:
        return []
    try:
        doc = budgets.loads(content)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    children = doc.get("manifests")
    if isinstance(children, list):
        out: list[Found] = []
        for child in children[: budgets.MAX_REFERRERS]:
            if isinstance(child, dict) and isinstance(child.get("digest"), str):
                sub = manifest(child["digest"])
                if sub is not None:
                    try:
                        sub_doc = budgets.loads(sub)
                    except ValueError:
                        continue
                    if isinstance(sub_doc, dict) and not isinstance(sub_doc.get("manifests"), list):
                        out += read_attachment(sub_doc, blob, rule)
        return out
    return read_attachment(doc, blob, rule)


def refuse(verdicts: tuple[Verdict, ...], *, outcome: str, fix: str) -> None:
    """TrustError naming every unmet requirement (image, digest, required, found), if any."""
    problems = [f"{v.image} ({v.digest}): {p}" for v in verdicts if not v.ok for p in v.problems]
    if problems:
        raise TrustError(problems, outcome=outcome, fix=fix)


def at_publisher(
    record: TrustRecord | None,
    images: list[BundledImage],
    manifests: Mapping[str, bytes],
    registry_for: RegistryFor,
) -> tuple[Verdict, ...]:
    """`bundle`: the verdicts from what the source registry attaches (the manifests as assemble holds
    them, by digest; payloads fetched from each image's repository, checked against their digests)."""
    out: list[Verdict] = []
    for img in images:
        host, path, _, _ = split_reference(img.repository)

        def fetch(digest: str, size: int, host: str = host, path: str = path) -> bytes:
            held = manifests.get(digest)  # made here (an SBOM attestation): not in the registry
            return held if held is not None else b"".join(registry_for(host).iter_blob(path, digest, size))

        out += check(record, [img], manifests.get, fetch)
    return tuple(out)


def at_lock(release: Release, directory: Path, lock: Lock, registry_for: RegistryFor) -> tuple[Verdict, ...]:
    """`lock`: the verdicts for the digests just resolved, from what their registries attach to each
    (the attachment tags of the pinned digest, an index's children read as the referrers tag schema
    lists them); nothing when release.yaml sets no policy."""
    record = trust_record(release, directory)
    if record is None:
        return ()
    found_manifests: dict[str, bytes] = {}
    carried = []
    for pin in lock.images:
        host, path, _, _ = split_reference(pin.repository)
        registry = registry_for(host)
        attachments = []
        for suffix in ATTACHMENT_SUFFIXES:
            tag = f"sha256-{pin.digest.split(':', 1)[1]}{suffix}"
            digest = registry.tag_digest(path, tag)
            if digest is None:
                continue
            m = registry.get_manifest(path, digest)
            if m.is_index and len(m.children()) > budgets.MAX_REFERRERS:  # each child is one more request
                raise RegistryError(
                    f"{pin.repository}:{tag} lists {len(m.children())} attachments, more than the "
                    f"{budgets.MAX_REFERRERS} read under one digest",
                    fix=f"remove the stale signatures and attestations attached to {pin.digest} (cosign clean)",
                )
            found_manifests[digest] = m.content
            for child in m.children() if m.is_index else ():
                found_manifests[child["digest"]] = registry.get_manifest(path, child["digest"]).content
            attachments.append(
                Attachment(tag=tag, digest=digest, media_type=m.descriptor.media_type, subject=pin.digest)
            )
        referrers = registry.referrers(path, pin.digest)  # the referrers API, where the registry has one
        if referrers:
            tag = f"sha256-{pin.digest.split(':', 1)[1]}"
            tagged = next((a for a in attachments if a.tag == tag), None)
            content = referrers_index(
                referrers, found_manifests[tagged.digest] if tagged is not None else None
            )
            digest = sha256_digest(content)
            found_manifests[digest] = content
            for child in referrers:
                found_manifests[child["digest"]] = registry.get_manifest(path, child["digest"]).content
            attachments = [a for a in attachments if a.tag != tag]
            attachments.append(Attachment(tag=tag, digest=digest, media_type=OCI_INDEX, subject=pin.digest))
        carried.append(
            BundledImage(
                name=pin.name,
                source=pin.source,
                repository=pin.repository,
                digest=pin.digest,
                media_type=pin.media_type,
                attachments=tuple(attachments),
            )
        )
    return at_publisher(record, carried, found_manifests, registry_for)


def at_site(
    record: TrustRecord | None, images: tuple[BundledImage, ...], bundle: Path, small: Mapping[str, bytes]
) -> tuple[Verdict, ...]:
    """`airgap` and `quickstart BUNDLE`: the verdicts from what the verified bundle carries (`small`:
    the small JSON blobs verification kept, by digest; a larger payload is read from the archive's
    small members, its digest checked)."""
    extra: dict[str, bytes] = {}

    def content(digest: str) -> bytes | None:
        if digest in small:
            return small[digest]
        if not extra and record is not None:
            extra.update(
                {
                    "sha256:" + name.rsplit("/", 1)[1]: data
                    for name, data in small_members(bundle, limit=MAX_PAYLOAD).items()
                    if name.startswith("blobs/sha256/")
                }
            )
        data = extra.get(digest)
        if data is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ArchiveError(f"{bundle}: blob {digest} does not hash to its name")
        return data

    def blob(digest: str, size: int) -> bytes:
        data = content(digest)
        return data if data is not None and len(data) == size else b""

    return check(record, images, content, blob)
