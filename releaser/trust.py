"""The trust policy's checks: what is attached to an image digest, read and verified offline with the
policy's public keys (docs/trust.md).

Three attachment formats, as cosign writes them today:

- cosign's `.sig` tag (cosign 2): an image manifest whose layers are simple-signing payloads
  (`application/vnd.dev.cosign.simplesigning.v1+json`), each signed in its annotation
  `dev.cosignproject.cosign/signature`; the payload names the signed digest
  (`critical.image.docker-manifest-digest`);
- cosign's `.att` tag (cosign 2): layers that are DSSE envelopes of in-toto statements
  (`application/vnd.dsse.envelope.v1+json`); the statement names its subject's digest and its
  predicate type (SLSA provenance, CycloneDX, ...);
- Sigstore bundles v0.3 (cosign 3), attached as OCI referrers (the referrers API, or the tag schema's
  `sha256-<hex>` index where the registry has none): a DSSE envelope whose statement is cosign's
  signature (`https://sigstore.dev/cosign/sign/v1`) or an attestation.

A signature counts when it verifies with one of the policy's keys (ECDSA, RSA or Ed25519, PEM) and
names the pinned digest itself: for a multi-platform image that is the index, whose digest covers
every platform's manifest digest, so a signed index pins each child (cosign signs the digest it is
given; `--recursive` signs the children too, which is accepted and not required). Nothing here
touches the network: the caller hands over the bytes (from the source registry, or from a bundle).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

# cosign's --type names -> the predicate types its attestations carry (cosign attest --help)
PREDICATE_TYPES = {
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "cyclonedx": "https://cyclonedx.org/bom",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
    "custom": "https://cosign.sigstore.dev/attestation/v1",
}
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"  # a cosign 3 signature's predicate type
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle"  # + .v0.3+json (any v0.x)
IN_TOTO = "application/vnd.in-toto+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
MAX_PAYLOAD = 4 << 20
MAX_KEY_BYTES = (
    64 << 10
)  # a PEM public key file  # a signature's, an attestation's or a bundle's layer: beyond it, refused

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class NotAKey(Exception):
    """A file that is not a public key this module can verify with; the message says why."""


@dataclass(frozen=True)
class TrustedKey:
    """One public key of the policy: where it came from, its id (sha256 of its DER form, as
    cosign's bundles hint it) and the key."""

    source: str
    key_id: str  # sha256:<hex> of the DER SubjectPublicKeyInfo
    key: PublicKey

    @classmethod
    def load(cls, pem: bytes, source: str) -> TrustedKey:
        """A PEM public key (ECDSA P-256/P-384, RSA, Ed25519), as `cosign generate-key-pair` writes."""
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise NotAKey(f"not a PEM public key ({exc})") from None
        if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
            raise NotAKey(f"a {type(key).__name__}: only ECDSA, RSA and Ed25519 keys sign images")
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(source=source, key_id="sha256:" + hashlib.sha256(der).hexdigest(), key=key)

    def verifies(self, signature: bytes, data: bytes) -> bool:
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                digest = hashes.SHA384() if self.key.curve.key_size > 256 else hashes.SHA256()
                self.key.verify(signature, data, ec.ECDSA(digest))
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                self.key.verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Found:
    """One signature or attestation read from an attachment, and what it proved."""

    kind: str  # signature | attestation
    form: str  # cosign .sig | cosign .att | sigstore bundle
    subject: str  # the digest it names ("" when unreadable)
    predicate_type: str = ""  # attestations: what they attest
    signer: str = ""  # the source of the policy key that verified it ("" when none did)
    problem: str = ""  # why it proves nothing (unreadable, no key verifies it, keyless)

    def to_json(self) -> dict[str, str]:
        out = {"kind": self.kind, "form": self.form, "subject": self.subject}
        if self.predicate_type:
            out["predicateType"] = self.predicate_type
        out["signer" if self.signer else "problem"] = self.signer or self.problem
        return out


@dataclass(frozen=True)
class Rule:
    """What one image must carry: a signature by one of `keys`, and an attestation of each of
    `attestations` (predicate types) by one of them; or nothing, with the reason (`exempt`)."""

    keys: tuple[TrustedKey, ...] = ()
    attestations: tuple[str, ...] = ()
    exempt: str = ""


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one image digest."""

    image: str
    digest: str
    ok: bool
    exempt: str = ""
    signers: tuple[str, ...] = ()
    attested: tuple[str, ...] = ()  # predicate types proven
    problems: tuple[str, ...] = ()  # what was required and not found, each naming what was found
    found: tuple[Found, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "digest": self.digest,
            "ok": self.ok,
            "exempt": self.exempt or None,
            "signers": list(self.signers),
            "attested": list(self.attested),
            "problems": list(self.problems),
            "found": [f.to_json() for f in self.found],
        }


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def _json(data: bytes) -> dict[str, Any]:
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _statement_subject(statement: dict[str, Any]) -> str:
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        return ""
    digests = subjects[0].get("digest") if isinstance(subjects[0], dict) else None
    hexdigest = digests.get("sha256") if isinstance(digests, dict) else None
    return f"sha256:{hexdigest}" if isinstance(hexdigest, str) else ""


def _dsse(envelope: dict[str, Any], form: str, keys: Iterable[TrustedKey], *, default_kind: str) -> Found:
    """A DSSE envelope of an in-toto statement: which key verifies it, what it names and attests."""
    try:
        payload_type = envelope.get("payloadType")
        payload = _b64(envelope.get("payload"))
        sigs = [_b64(s.get("sig")) for s in envelope.get("signatures") or [] if isinstance(s, dict)]
        if payload_type != IN_TOTO:
            raise ValueError(f"payloadType {payload_type!r}, not {IN_TOTO}")
        statement = _json(payload)
    except (ValueError, AttributeError) as exc:
        return Found(kind=default_kind, form=form, subject="", problem=f"unreadable DSSE envelope: {exc}")
    predicate = statement.get("predicateType") if isinstance(statement.get("predicateType"), str) else ""
    kind = "signature" if predicate == COSIGN_SIGN else "attestation" if predicate else default_kind
    subject = _statement_subject(statement)
    signed = pae(IN_TOTO, payload)
    signer = next((k.source for k in keys for s in sigs if k.verifies(s, signed)), "")
    return Found(
        kind=kind,
        form=form,
        subject=subject,
        predicate_type="" if kind == "signature" else str(predicate),
        signer=signer,
        problem="" if signer else "no key of the policy verifies its signature",
    )


def read_attachment(
    manifest: dict[str, Any], blob: Callable[[str, int], bytes], keys: Iterable[TrustedKey]
) -> list[Found]:
    """The signatures and attestations in one attachment manifest (an image manifest: `.sig`,
    `.att`, or one Sigstore bundle referrer), verified with `keys`. `blob(digest, size)` returns a
    layer's bytes (the caller checks the digest; sizes above MAX_PAYLOAD are never asked for).
    Anything else in the manifest (an SBOM file, an unknown layer) is not a signature and is skipped."""
    keys = tuple(keys)
    out: list[Found] = []
    layers = manifest.get("layers")
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, dict):
            continue
        media_type, digest, size = layer.get("mediaType"), layer.get("digest"), layer.get("size")
        if not isinstance(media_type, str) or not isinstance(digest, str) or not isinstance(size, int):
            continue
        form = (
            "cosign .sig"
            if media_type == SIMPLE_SIGNING
            else "cosign .att"
            if media_type == DSSE
            else "sigstore bundle"
            if media_type.startswith(SIGSTORE_BUNDLE)
            else ""
        )
        if not form:
            continue
        if not 0 <= size <= MAX_PAYLOAD:
            out.append(
                Found(
                    kind="signature",
                    form=form,
                    subject="",
                    problem=f"{digest}: {size} bytes, above the budget",
                )
            )
            continue
        data = blob(digest, size)
        if form == "cosign .sig":
            out.append(_simple_signing(layer, data, keys))
            continue
        try:
            doc = _json(data)
        except ValueError as exc:
            out.append(Found(kind="signature", form=form, subject="", problem=f"{digest}: not JSON ({exc})"))
            continue
        if form == "cosign .att":
            out.append(_dsse(doc, form, keys, default_kind="attestation"))
            continue
        material = _object(doc.get("verificationMaterial"))
        if "certificate" in material or "x509CertificateChain" in material:
            out.append(
                Found(
                    kind="signature",
                    form=form,
                    subject="",
                    problem="keyless (a certificate, not a key): not verified by a key policy",
                )
            )
            continue
        envelope = doc.get("dsseEnvelope")
        if not isinstance(envelope, dict):
            out.append(
                Found(kind="signature", form=form, subject="", problem="a bundle without a DSSE envelope")
            )
            continue
        out.append(_dsse(envelope, form, keys, default_kind="signature"))
    return out


def _simple_signing(layer: dict[str, Any], payload: bytes, keys: tuple[TrustedKey, ...]) -> Found:
    annotations = _object(layer.get("annotations"))
    try:
        sig = _b64(annotations.get(SIG_ANNOTATION))
        doc = _json(payload)
        subject = doc["critical"]["image"]["docker-manifest-digest"]
        if not isinstance(subject, str):
            raise ValueError("no docker-manifest-digest")
    except (ValueError, KeyError, TypeError) as exc:
        return Found(
            kind="signature", form="cosign .sig", subject="", problem=f"unreadable simple signing: {exc}"
        )
    signer = next((k.source for k in keys if k.verifies(sig, payload)), "")
    return Found(
        kind="signature",
        form="cosign .sig",
        subject=subject,
        signer=signer,
        problem="" if signer else "no key of the policy verifies its signature",
    )


def judge(image: str, digest: str, rule: Rule, found: Iterable[Found]) -> Verdict:
    """Does what was found attached to `digest` satisfy `rule`? Each unmet requirement is one problem,
    naming what was found instead."""
    found = tuple(found)
    if rule.exempt:
        return Verdict(image=image, digest=digest, ok=True, exempt=rule.exempt, found=found)
    good = [f for f in found if f.signer and f.subject == digest]
    signers = tuple(sorted({f.signer for f in good if f.kind == "signature"}))
    attested = tuple(sorted({f.predicate_type for f in good if f.kind == "attestation"}))
    problems = []
    if not signers:
        problems.append(
            f"no signature of {digest} by {_keys(rule)}; found: {_describe(found, 'signature', digest)}"
        )
    for wanted in rule.attestations:
        if wanted not in attested:
            problems.append(
                f"no {wanted} attestation of {digest} by {_keys(rule)}; found: {_describe(found, 'attestation', digest)}"
            )
    return Verdict(
        image=image,
        digest=digest,
        ok=not problems,
        signers=signers,
        attested=attested,
        problems=tuple(problems),
        found=found,
    )


def _keys(rule: Rule) -> str:
    return " or ".join(k.source for k in rule.keys) or "a key (the policy names none)"


def _describe(found: tuple[Found, ...], kind: str, digest: str) -> str:
    mine = [f for f in found if f.kind == kind]
    if not mine:
        return f"no {kind} at all"
    parts = []
    for f in mine:
        what = f"{f.form}{' ' + f.predicate_type if f.predicate_type else ''}"
        if f.subject and f.subject != digest:
            parts.append(f"{what} for another digest ({f.subject})")
        elif f.problem:
            parts.append(f"{what}: {f.problem}")
        else:
            parts.append(f"{what} by {f.signer}")
    return "; ".join(parts)
