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

A signature counts when it verifies with one of the policy's keys (ECDSA, RSA or Ed25519, PEM), or is
a keyless Sigstore bundle that verifies against the policy's Sigstore trusted root with an identity the
policy names (`Keyless`, `SigstoreRoot`), and names the pinned digest itself: for a multi-platform image that is the index, whose digest covers
every platform's manifest digest, so a signed index pins each child (cosign signs the digest it is
given; `--recursive` signs the children too, which is accepted and not required). Nothing here
touches the network: the caller hands over the bytes (from the source registry, or from a bundle).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

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
MAX_PAYLOAD = 4 << 20  # a signature's, an attestation's or a bundle's layer: beyond it, refused

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
COSIGN_CERTIFICATE = "dev.sigstore.cosign/certificate"  # a keyless cosign 2 .sig layer's annotation
ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"  # Fulcio's OIDC issuer extension (a DER UTF8String)
ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"  # its first form (the raw string)
OTHER_NAME = "1.3.6.1.4.1.57264.1.7"  # Fulcio's SAN otherName (a username)

if TYPE_CHECKING:
    from sigstore.verify import Verifier


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


class NotARoot(Exception):
    """A file that is not a Sigstore trusted root; the message says why."""


@dataclass(frozen=True)
class Keyless:
    """One keyless identity of the policy: the OIDC issuer exactly as Fulcio's certificate names it,
    and a regular expression the certificate's identity (its email or URI) must match, searched as
    cosign's --certificate-identity-regexp is (anchor it with ^ and $)."""

    issuer: str
    identity: str

    def describe(self) -> str:
        return f"keyless /{self.identity}/ from {self.issuer}"

    def admits(self, issuer: str, identities: Iterable[str]) -> bool:
        pattern = re.compile(self.identity)
        return issuer == self.issuer and any(pattern.search(i) for i in identities)


@dataclass(frozen=True)
class RootSummary:
    """What a trusted root holds and how old it is, for people to judge it by."""

    source: str
    authorities: int  # certificate authorities (Fulcio)
    logs: int  # transparency logs (Rekor)
    ct_logs: int
    timestamp_authorities: int
    newest: str  # the newest start of validity among its keys and certificates (ISO 8601 date)
    ends: str  # the first end of validity among those still valid ("" when none ends)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "certificateAuthorities": self.authorities,
            "transparencyLogs": self.logs,
            "ctLogs": self.ct_logs,
            "timestampAuthorities": self.timestamp_authorities,
            "newest": self.newest,
            "ends": self.ends or None,
        }

    def describe(self, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        age = ""
        if self.newest:
            days = (now - datetime.fromisoformat(self.newest.replace("Z", "+00:00"))).days
            age = f"; newest key from {self.newest[:10]} ({days} days before now)"
        ends = (
            f"; the first of its current keys ends {self.ends[:10]}" if self.ends else "; no current key ends"
        )
        return (
            f"{self.source}: {self.authorities} certificate authorities, {self.logs} transparency logs, "
            f"{self.ct_logs} CT logs, {self.timestamp_authorities} timestamp authorities{age}{ends}"
        )


class SigstoreRoot:
    """A Sigstore trusted root (`application/vnd.dev.sigstore.trustedroot+json;version=0.1`, as
    Sigstore's TUF repository distributes it and `cosign trusted-root create` writes it): the
    certificate authorities, transparency logs, CT logs and timestamp authorities keyless signatures
    are verified against, offline. sigstore-python reads and verifies; imported only here."""

    def __init__(self, raw: bytes, source: str) -> None:
        self.source = source
        self.raw = raw
        try:
            doc = _json(raw)
            from sigstore.models import TrustedRoot
            from sigstore_models.trustroot.v1 import TrustedRoot as Inner

            self._root = TrustedRoot(Inner.from_json(raw))
        except Exception as exc:  # pydantic's and sigstore's errors alike: the file is not a root
            raise NotARoot(f"not a Sigstore trusted root ({_first_line(exc)})") from None
        kinds = ("certificateAuthorities", "tlogs", "ctlogs", "timestampAuthorities")
        if not doc.get("certificateAuthorities") or not doc.get("tlogs"):
            raise NotARoot(
                "a trusted root without a certificate authority or a transparency log verifies no keyless signature"
            )
        starts, ends = [], []
        now = datetime.now(UTC).isoformat()
        for kind in kinds:
            for item in doc.get(kind) or ():
                valid = _object(
                    _object(item).get("validFor") or _object(item.get("publicKey")).get("validFor")
                )
                if isinstance(valid.get("start"), str):
                    starts.append(valid["start"])
                end = valid.get("end")
                if isinstance(end, str) and end > now:
                    ends.append(end)
        self.summary = RootSummary(
            source=source,
            authorities=len(doc.get("certificateAuthorities") or ()),
            logs=len(doc.get("tlogs") or ()),
            ct_logs=len(doc.get("ctlogs") or ()),
            timestamp_authorities=len(doc.get("timestampAuthorities") or ()),
            newest=max(starts, default=""),
            ends=min(ends, default=""),
        )

    @cached_property
    def verifier(self) -> Verifier:
        from sigstore.verify import Verifier

        return Verifier(trusted_root=self._root)

    def verify(self, bundle: dict[str, Any]) -> tuple[bytes, str, tuple[str, ...]]:
        """A keyless Sigstore bundle with a DSSE envelope, verified offline: its certificate chains to
        one of the root's authorities at a time a timestamp authority or log of the root signed, its
        SCT is a CT log's of the root, its entry is in a log of the root (inclusion proof, signed
        checkpoint), and the envelope's signature is the certificate's key's. Returns (the in-toto
        payload, the certificate's OIDC issuer, its identities); ValueError saying why not."""
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import Bundle

        try:
            parsed = Bundle.from_json(json.dumps(_proto3_defaults(bundle)))
        except Exception as exc:
            raise ValueError(f"unreadable Sigstore bundle ({_first_line(exc)})") from None
        seen = _Seen()
        try:
            payload_type, payload = self.verifier.verify_dsse(parsed, seen)
        except SigstoreError as exc:
            raise ValueError(
                f"does not verify against the trusted root {self.source}: {_first_line(exc)}"
            ) from None
        if payload_type != IN_TOTO:
            raise ValueError(f"payloadType {payload_type!r}, not {IN_TOTO}")
        return payload, seen.issuer, seen.identities


class _Seen:
    """A sigstore-python verification policy that admits every certificate and keeps what it names
    (the policy's own identities are matched after, so that a mismatch can say whose it was)."""

    issuer = ""
    identities: tuple[str, ...] = ()

    def verify(self, cert: Any) -> None:
        from cryptography import x509

        self.issuer = _cert_issuer(cert)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return
        names = [
            *san.get_values_for_type(x509.RFC822Name),
            *san.get_values_for_type(x509.UniformResourceIdentifier),
        ]
        names += [
            o.value.decode(errors="replace")
            for o in san.get_values_for_type(x509.OtherName)
            if o.type_id.dotted_string == OTHER_NAME
        ]
        self.identities = tuple(names)


def _cert_issuer(cert: Any) -> str:
    """The OIDC issuer Fulcio wrote into the certificate (its v2 extension, else the first form)."""
    from cryptography import x509

    for oid, der in ((ISSUER_V2, True), (ISSUER_V1, False)):
        try:
            value = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
        except x509.ExtensionNotFound:
            continue
        if not der:
            return bytes(value).decode(errors="replace")
        if len(value) >= 2 and value[0] == 0x0C:  # UTF8String
            n, at = value[1], 2
            if n & 0x80:
                width = n & 0x7F
                n, at = int.from_bytes(value[2 : 2 + width], "big"), 2 + width
            return bytes(value[at : at + n]).decode(errors="replace")
    return ""


def _proto3_defaults(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle with the values proto3's JSON form leaves out when they are zero put back (a log's
    first entry: logIndex 0, an inclusion proof without hashes), which sigstore-python requires."""
    material = _object(bundle.get("verificationMaterial"))
    for entry in material.get("tlogEntries") or ():
        if isinstance(entry, dict):
            entry.setdefault("logIndex", "0")
            proof = entry.get("inclusionProof")
            if isinstance(proof, dict):
                proof.setdefault("logIndex", "0")
                proof.setdefault("hashes", [])
    return bundle


def _first_line(exc: BaseException) -> str:
    """What went wrong, in one line: pydantic's first error with where it is (its own first line
    only counts them), else the exception's first line."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the document"
            return f"{where}: {first['msg']}"[:300]
        except (TypeError, IndexError, KeyError):
            pass
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


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
    """What one image must carry: a signature by one of `keys` or of the `keyless` identities
    (verified against `root`), and an attestation of each of `attestations` (predicate types) by
    one of them; or nothing, with the reason (`exempt`)."""

    keys: tuple[TrustedKey, ...] = ()
    attestations: tuple[str, ...] = ()
    exempt: str = ""
    keyless: tuple[Keyless, ...] = ()
    root: SigstoreRoot | None = None


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
    root: RootSummary | None = None  # the trusted root keyless signatures were checked against

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
            "trustedRoot": self.root.to_json() if self.root is not None else None,
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


def read_attachment(manifest: dict[str, Any], blob: Callable[[str, int], bytes], rule: Rule) -> list[Found]:
    """The signatures and attestations in one attachment manifest (an image manifest: `.sig`,
    `.att`, or one Sigstore bundle referrer), verified with the rule's keys, or its keyless
    identities and trusted root. `blob(digest, size)` returns a layer's bytes (the caller checks the
    digest; sizes above MAX_PAYLOAD are never asked for). Anything else in the manifest (an SBOM
    file, an unknown layer) is not a signature and is skipped."""
    keys = rule.keys
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
            if not out[-1].signer and COSIGN_CERTIFICATE in _object(layer.get("annotations")):
                out[-1] = dataclasses.replace(
                    out[-1],
                    problem="keyless cosign .sig (a certificate, not a key): keyless signatures are "
                    "verified in Sigstore bundles (cosign 3)",
                )
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
            out.append(_keyless(doc, rule))
            continue
        envelope = doc.get("dsseEnvelope")
        if not isinstance(envelope, dict):
            out.append(
                Found(kind="signature", form=form, subject="", problem="a bundle without a DSSE envelope")
            )
            continue
        out.append(_dsse(envelope, form, keys, default_kind="signature"))
    return out


def _keyless(bundle: dict[str, Any], rule: Rule) -> Found:
    """A keyless Sigstore bundle: verified against the rule's trusted root, then its certificate's
    identity matched with the rule's keyless identities."""
    form = "sigstore bundle"
    if not rule.keyless or rule.root is None:
        return Found(
            kind="signature",
            form=form,
            subject="",
            problem="keyless (a certificate, not a key): the policy names no keyless identity for it",
        )
    try:
        payload, issuer, identities = rule.root.verify(bundle)
        statement = _json(payload)
    except ValueError as exc:
        return Found(kind="signature", form=form, subject="", problem=str(exc))
    predicate = statement.get("predicateType") if isinstance(statement.get("predicateType"), str) else ""
    kind = "signature" if predicate in (COSIGN_SIGN, "") else "attestation"
    who = f"{', '.join(identities) or 'no identity'} (keyless, {issuer or 'no issuer'})"
    admitted = any(k.admits(issuer, identities) for k in rule.keyless)
    return Found(
        kind=kind,
        form=form,
        subject=_statement_subject(statement),
        predicate_type="" if kind == "signature" else str(predicate),
        signer=who if admitted else "",
        problem="" if admitted else f"signed by {who}, which no keyless identity of the policy names",
    )


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
    root = rule.root.summary if rule.root is not None and rule.keyless else None
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
        root=root,
    )


def _keys(rule: Rule) -> str:
    return (
        " or ".join([*(k.source for k in rule.keys), *(k.describe() for k in rule.keyless)])
        or "a key (the policy names none)"
    )


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
