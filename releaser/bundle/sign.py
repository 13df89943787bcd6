"""ECDSA P-256 signing of releaser.json.

The signature is base64 of the DER ECDSA signature over SHA-256 of the exact
bytes of releaser.json: the format `openssl dgst -sha256 -verify pub.pem
-signature sig.der` (after base64 -d) and `cosign verify-blob --key pub.pem
--signature releaser.json.sig --insecure-ignore-tlog` both accept.
The private key is PKCS#8, encrypted with a passphrase that comes from an
environment variable or a file, never from a command-line value.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..budgets import MAX_KEY_BYTES
from ..errors import SigningError, TargetExists
from ..fs import UnreadableInput, atomic_write, read_input

PASSPHRASE_ENV = "RELEASER_KEY_PASSPHRASE"
KEY_NAME = "releaser.key"
PUB_NAME = "releaser.pub"


@dataclass(frozen=True, kw_only=True)
class KeyPair:
    private_key: str
    public_key: str
    fingerprint: str


def passphrase(file: Path | None = None) -> bytes:
    """The key passphrase: from `file` (first line), else $RELEASER_KEY_PASSPHRASE."""
    if file is not None:
        try:
            with file.open("rb") as fh:  # bytes: a passphrase need not be UTF-8 (nor is it ever printed)
                lines = fh.read(64 << 10).splitlines()
        except OSError as exc:
            raise SigningError(
                f"cannot read passphrase file {file}: {exc.strerror}",
                fix="point --passphrase-file at a readable file",
            ) from exc
        value = lines[0] if lines else b""
    else:
        value = os.environb.get(PASSPHRASE_ENV.encode(), b"")
    if len(value) < 8:
        where = f"{file}" if file else f"${PASSPHRASE_ENV}"
        raise SigningError(
            f"no usable passphrase in {where} (at least 8 characters)",
            fix=f"export {PASSPHRASE_ENV}=... or pass --passphrase-file FILE; never put it on the "
            "command line",
        )
    return value


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key's public half (what releaser.pub holds)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(public_pem: bytes) -> str:
    key = serialization.load_pem_public_key(public_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return "sha256:" + digest.finalize().hex()


def generate_keypair(out: Path, secret: bytes, *, force: bool = False) -> KeyPair:
    """Write out/releaser.key (encrypted PKCS#8, mode 0600) and out/releaser.pub (SPKI PEM)."""
    key_path, pub_path = out / KEY_NAME, out / PUB_NAME
    for p in (key_path, pub_path):
        if p.exists() and not force:
            raise TargetExists(
                p,
                fix="pass --force to replace it (old signatures will no "
                "longer verify with the new key), or choose another --out",
            )
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    atomic_write(key_path, private, mode=0o600)
    atomic_write(pub_path, public)
    return KeyPair(private_key=str(key_path), public_key=str(pub_path), fingerprint=fingerprint(public))


def load_private_key(path: Path, secret: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        data = read_input(path, MAX_KEY_BYTES)
    except UnreadableInput as exc:
        raise SigningError(f"signing key {exc}", fix=exc.fix) from exc
    except OSError as exc:
        raise SigningError(
            f"cannot read signing key {path}: {exc.strerror}",
            fix="create one with `releaser keygen --out keys/`",
        ) from exc
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except (ValueError, TypeError) as exc:
        raise SigningError(
            f"cannot decrypt signing key {path}: wrong passphrase or not a PKCS#8 PEM key",
            fix=f"check ${PASSPHRASE_ENV} / --passphrase-file",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SigningError(f"{path} is not an ECDSA P-256 key", fix="create one with `releaser keygen`")
    return key


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """base64(DER(ECDSA-P256(SHA-256(data)))) plus a newline."""
    # RFC 6979 deterministic nonces: the same key and bytes give the same signature, so a bundle
    # is byte-identical for identical inputs; verifiers see an ordinary ECDSA signature.
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))) + b"\n"


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(read_input(path, MAX_KEY_BYTES))
    except UnreadableInput as exc:
        raise SigningError(f"public key {exc}", fix=exc.fix) from exc
    except OSError as exc:
        raise SigningError(
            f"cannot read public key {path}: {exc.strerror}",
            fix="pass --key with the publisher's releaser.pub",
        ) from exc
    except ValueError as exc:
        raise SigningError(
            f"{path} is not a PEM public key", fix="pass the publisher's releaser.pub"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SigningError(f"{path} is not an ECDSA public key", fix="pass the publisher's releaser.pub")
    return key


def verify_signature(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    try:
        der = base64.b64decode(signature.strip(), validate=True)
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False
