"""The airgap bundle: archive, signing, verification and loading into a registry."""
