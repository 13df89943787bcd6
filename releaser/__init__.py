"""releaser: one release.yaml -> Compose quickstart, Helm chart and airgap bundle, pinned to the same digests."""

__version__ = "0.1.0"
