"""releaser's probe image: the readiness checks of a release, run from outside the service's image.

A static binary (probe/ in the source tree, Go, no dependencies) in an image of its own, built
reproducibly by scripts/build_probe.py into releaser/probe/image/ (an OCI image layout over
linux/amd64 and linux/arm64; non-root, nothing but /probe). A release names it in release.yaml
(`probe: {image: NAME}`); `releaser probe push` publishes it to the release's registry, and from
there the lock pins it, the bundle carries it and `releaser check` covers it like any image.

It runs Compose's http/tcp health checks in the service's network namespace (the service's image
needs no shell, wget or nc: distroless and scratch images work) and the chart's `helm test` pod.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import ReleaserError

BINARY = "/probe"
UID = 65532


@dataclass(frozen=True, kw_only=True)
class ProbeImage:
    """The packaged layout: where, its index digest and the Go version that built it."""

    layout: Path
    digest: str
    go: str
    platforms: tuple[str, ...]


def image() -> ProbeImage:
    root = Path(str(resources.files("releaser"))) / "probe" / "image"
    try:
        build = json.loads((root / "build.json").read_text(encoding="utf-8"))
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
        top = index["manifests"][0]
        children = json.loads((root / "blobs" / "sha256" / top["digest"].split(":")[1]).read_bytes())
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise ReleaserError(
            f"releaser's probe image is missing from this installation ({root}: {e})",
            fix="in a source checkout run `make setup` (scripts/build_probe.py builds it with Go); "
            "a released wheel carries it",
        ) from None
    platforms = tuple(f"{c['platform']['os']}/{c['platform']['architecture']}" for c in children["manifests"])
    return ProbeImage(layout=root, digest=str(top["digest"]), go=str(build["go"]), platforms=platforms)


def checks_for(kind: str, host: str, port: int, path: str | None) -> str:
    """One check in the probe's syntax: http://HOST:PORT/PATH or tcp://HOST:PORT."""
    return f"http://{host}:{port}{path or '/'}" if kind == "http" else f"tcp://{host}:{port}"
