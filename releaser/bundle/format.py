"""Names and media types of the bundle format (docs/bundle-format.md), shared by every stage."""

from ..mediatypes import HELM_CONFIG, HELM_LAYER, OCI_INDEX, OCI_MANIFEST

FORMAT_VERSION = 1
METADATA = "releaser.json"
SIGNATURE = "releaser.json.sig"
CHECKSUMS = "checksums.txt"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "dev.releaser.image"
SUBJECT = "dev.releaser.subject"  # on an attachment's index.json entry: the digest it is attached to
# Tags by which signatures, attestations and SBOMs are attached to a digest sha256:<hex>: cosign's
# sha256-<hex>.sig / .att / .sbom, and the OCI referrers tag schema's sha256-<hex> (distribution
# spec v1.1, for registries without the referrers API).
ATTACHMENT_SUFFIXES = (".sig", ".att", ".sbom", "")

__all__ = [
    "ATTACHMENT_SUFFIXES",
    "CHECKSUMS",
    "FORMAT_VERSION",
    "HELM_CONFIG",
    "HELM_LAYER",
    "IMAGE_NAME",
    "METADATA",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "REF_NAME",
    "SIGNATURE",
    "SUBJECT",
]
