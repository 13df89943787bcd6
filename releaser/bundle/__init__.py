"""The airgap bundle's stages: format names and typed records, the tar.zst archive, assembling and
writing, signing, verification, loading into a registry, attachment merges, the blob cache."""
