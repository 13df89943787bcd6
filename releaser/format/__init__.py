"""The bundle format (docs/bundle-format.md): its names and media types here, its typed records in
`records` (releaser.json, index.json, the parts). Shared by every stage that writes or reads a bundle
and by the renderers of the customer's files; imports only lock, errors, mediatypes and target."""

from pathlib import Path

from ..mediatypes import HELM_CONFIG, HELM_LAYER, OCI_INDEX, OCI_MANIFEST
from ..target import CHARTS

FORMAT_VERSION = 1
METADATA = "releaser.json"
SIGNATURE = "releaser.json.sig"
CHECKSUMS = "checksums.txt"
DEFAULT_KEY = Path("releaser.pub")  # the public key verify and load read when --key is not given
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "dev.releaser.image"
SUBJECT = "dev.releaser.subject"  # on an attachment's index.json entry: the digest it is attached to
# Tags by which signatures, attestations and SBOMs are attached to a digest sha256:<hex>: cosign's
# sha256-<hex>.sig / .att / .sbom, and the OCI referrers tag schema's sha256-<hex> (distribution
# spec v1.1, for registries without the referrers API).
ATTACHMENT_SUFFIXES = (".sig", ".att", ".sbom", "")
BUNDLES = Path("bundles")  # where bundle, merge and check put and look for bundles by default


def chart_ref(name: str, version: str) -> str:
    """The chart's reference in the bundle's OCI layout (index.json's ref.name): charts/<name>:<version>,
    the repository it is pushed to under the target (target.CHARTS) and its version as the tag."""
    return f"{CHARTS}/{name}:{version}"


def bundle_path(name: str, version: str, *, delta: bool = False, under: Path = BUNDLES) -> Path:
    """The default path of a release's bundle: bundles/<name>-<version>[-delta].tar.zst."""
    return under / f"{name}-{version}{'-delta' if delta else ''}.tar.zst"


__all__ = [
    "ATTACHMENT_SUFFIXES",
    "BUNDLES",
    "CHECKSUMS",
    "DEFAULT_KEY",
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
    "bundle_path",
    "chart_ref",
]
