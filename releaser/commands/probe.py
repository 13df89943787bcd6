"""`releaser probe show|push`: releaser's probe image, and publishing it where a release's images live."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import UsageError
from ..lock import split_reference
from ..probe import ProbeImage, image
from ..registry import RegistryOptions


@dataclass(frozen=True, kw_only=True)
class ProbeInfo:
    """The probe image releaser carries: its digest, Go version, platforms and OCI layout."""

    digest: str
    go: str
    platforms: tuple[str, ...]
    layout: str

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "digest": self.digest,
            "go": self.go,
            "platforms": list(self.platforms),
            "layout": self.layout,
        }


def show() -> ProbeInfo:
    """The probe image this releaser carries (`releaser probe`)."""
    p = image()
    return ProbeInfo(digest=p.digest, go=p.go, platforms=p.platforms, layout=str(p.layout))


@dataclass(frozen=True, kw_only=True)
class PushResult:
    """Where `probe push` put the probe image."""

    reference: str  # REGISTRY/PATH:TAG@DIGEST
    digest: str
    blobs_pushed: int
    blobs_present: int

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "reference": self.reference,
            "digest": self.digest,
            "blobsPushed": self.blobs_pushed,
            "blobsPresent": self.blobs_present,
        }


def _blob(p: ProbeImage, digest: str) -> Path:
    return p.layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def _opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


def push(ref: str, options: RegistryOptions) -> PushResult:
    """Blobs, then each platform's manifest, then the index by digest, then the tag: a registry
    that fails half way holds nothing a tag points to."""
    registry_host, path, tag, digest = split_reference(ref)
    if digest or not tag or "/" not in ref:
        raise UsageError(
            f"{ref!r}: expected REGISTRY/PATH:TAG, e.g. registry.example.com/acme/releaser-probe:1",
            fix="name the registry, the repository and a tag (no digest: the probe's digest is fixed)",
        )
    p = image()
    registry = options.factory()(registry_host)
    index = json.loads(_blob(p, p.digest).read_bytes())
    pushed = present = 0
    for child in index["manifests"]:
        manifest = json.loads(_blob(p, child["digest"]).read_bytes())
        for b in [manifest["config"], *manifest["layers"]]:
            result = registry.push_blob(path, b["digest"], int(b["size"]), _opener(_blob(p, b["digest"])))
            pushed, present = (pushed + 1, present) if result != "exists" else (pushed, present + 1)
        registry.put_manifest(
            path, child["digest"], _blob(p, child["digest"]).read_bytes(), child["mediaType"]
        )
    top = _blob(p, p.digest).read_bytes()
    registry.put_manifest(path, p.digest, top, index["mediaType"])
    registry.put_manifest(path, tag, top, index["mediaType"])
    return PushResult(
        reference=f"{registry_host}/{path}:{tag}@{p.digest}",
        digest=p.digest,
        blobs_pushed=pushed,
        blobs_present=present,
    )
