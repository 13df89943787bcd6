"""Names and media types of the bundle format (docs/bundle-format.md), shared by every stage."""

FORMAT_VERSION = 1
METADATA = "releaser.json"
SIGNATURE = "releaser.json.sig"
CHECKSUMS = "checksums.txt"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "dev.releaser.image"
