"""Names and media types of the bundle format (docs/bundle-format.md), shared by every stage."""

from ..mediatypes import HELM_CONFIG, HELM_LAYER, OCI_INDEX, OCI_MANIFEST

FORMAT_VERSION = 1
METADATA = "releaser.json"
SIGNATURE = "releaser.json.sig"
CHECKSUMS = "checksums.txt"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "dev.releaser.image"

__all__ = ["CHECKSUMS", "FORMAT_VERSION", "HELM_CONFIG", "HELM_LAYER", "IMAGE_NAME", "METADATA", "OCI_INDEX",
           "OCI_MANIFEST", "REF_NAME", "SIGNATURE"]
