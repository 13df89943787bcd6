"""`releaser keygen`: the signing key pair for bundles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..bundle.sign import generate_keypair, passphrase


@dataclass(frozen=True, kw_only=True)
class KeygenResult:
    """The key pair `keygen` wrote and the public key's fingerprint."""

    private_key: str
    public_key: str
    fingerprint: str

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {"privateKey": self.private_key, "publicKey": self.public_key, "fingerprint": self.fingerprint}


def keygen(out: Path, *, passphrase_file: Path | None = None, force: bool = False) -> KeygenResult:
    """An ECDSA P-256 key pair: encrypted PKCS#8 private key, SubjectPublicKeyInfo PEM public key."""
    kp = generate_keypair(out, passphrase(passphrase_file), force=force)
    return KeygenResult(private_key=kp.private_key, public_key=kp.public_key, fingerprint=kp.fingerprint)
