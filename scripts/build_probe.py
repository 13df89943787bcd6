"""Build releaser's probe image (probe/, Go, no dependencies) as an OCI image layout inside the
package: releaser/probe/image/. `releaser probe push` publishes it; releases pin it like any image.

Reproducible: CGO off, -trimpath, no build ID or VCS stamp, so the binaries depend on the source and
the Go version only; the layers are tars with sorted entries, mtime 0 and uid/gid 0, gzip with mtime
0; the config carries no date. Two builds with one Go version give the same digest (a test rebuilds
and compares). Rebuilt only when the source, this script or the Go version changes (build.json).

    python scripts/build_probe.py [--out DIR] [--force] [--pin-examples]

--pin-examples rewrites the probe's pin in examples/*/release.lock.yaml (digest, size and
per-platform children) to the image just built: the examples' committed outputs name it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "probe"
OUT = ROOT / "releaser" / "probe" / "image"
ARCHES = ("amd64", "arm64")
UID = 65532
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def go_version() -> str:
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    out = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def source_key(version: str) -> str:
    h = hashlib.sha256(version.encode())
    for path in sorted([*SOURCE.glob("*.go"), SOURCE / "go.mod", Path(__file__)]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _binary(arch: str, work: Path) -> bytes:
    out = work / f"probe-{arch}"
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOOS": "linux",
        "GOARCH": arch,
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=mod",
    }
    subprocess.run(
        ["go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", str(out), "."],
        cwd=SOURCE,
        env=env,
        check=True,
    )
    return out.read_bytes()


def _layer(binary: bytes) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("probe")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(binary), 0o755, 0, 0, 0
        tar.addfile(info, io.BytesIO(binary))
    data = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(data)
    return gz.getvalue(), _sha(data)


def build(out: Path, version: str, key: str) -> str:
    """Write the layout to `out` (replaced whole); returns the index digest."""
    with tempfile.TemporaryDirectory(prefix=".probe-", dir=out.parent) as tmp:
        work = Path(tmp)
        layout = work / "image"
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)

        def blob(data: bytes) -> str:
            digest = _sha(data)
            (blobs / digest.split(":")[1]).write_bytes(data)
            return digest

        manifests = []
        for arch in ARCHES:
            gz, diff_id = _layer(_binary(arch, work))
            config = _json(
                {
                    "architecture": arch,
                    "os": "linux",
                    "config": {
                        "User": f"{UID}:{UID}",
                        "Entrypoint": ["/probe"],
                        "Cmd": ["wait"],
                        "Labels": {
                            "org.opencontainers.image.title": "releaser probe",
                            "org.opencontainers.image.description": "readiness checks run from outside a service's image",
                            "dev.releaser.probe.go": version,
                        },
                    },
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                }
            )
            manifest = _json(
                {
                    "schemaVersion": 2,
                    "mediaType": MANIFEST,
                    "config": {"mediaType": CONFIG, "digest": blob(config), "size": len(config)},
                    "layers": [{"mediaType": LAYER, "digest": blob(gz), "size": len(gz)}],
                }
            )
            manifests.append(
                {
                    "mediaType": MANIFEST,
                    "digest": blob(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                }
            )
        index = _json({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests})
        digest = blob(index)
        (layout / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
        top = {"mediaType": INDEX, "digest": digest, "size": len(index)}
        (layout / "index.json").write_bytes(_json({"schemaVersion": 2, "manifests": [top]}))
        (layout / "build.json").write_bytes(_json({"digest": digest, "go": version, "key": key}) + b"\n")
        if out.exists():
            shutil.rmtree(out)
        layout.rename(out)
    return digest


def pin_examples(layout: Path) -> list[Path]:
    """Point the `probe` entry of each example lock at the packaged image (text edit: the rest of
    the file, its comments and order, stay as they are)."""
    import re

    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    index = json.loads((layout / "blobs" / "sha256" / top["digest"].split(":")[1]).read_text())
    changed = []
    for lock in sorted((ROOT / "examples").glob("*/release.lock.yaml")):
        text = lock.read_text()
        m = re.search(r"^  probe:\n(?:    .*\n|      .*\n|        .*\n)+", text, re.M)
        if not m:
            continue
        source = re.search(r"^    source: (.*)$", m.group(0), re.M)
        repo = re.search(r"^    repository: (.*)$", m.group(0), re.M)
        assert source and repo, lock
        lines = [
            "  probe:",
            f"    source: {source.group(1)}",
            f"    repository: {repo.group(1)}",
            f"    digest: {top['digest']}",
            f"    mediaType: {top['mediaType']}",
            f"    size: {top['size']}",
            "    platforms:",
        ]
        for c in index["manifests"]:
            lines += [
                f"      {c['platform']['os']}/{c['platform']['architecture']}:",
                f"        digest: {c['digest']}",
                f"        mediaType: {c['mediaType']}",
                f"        size: {c['size']}",
            ]
        new = text[: m.start()] + "\n".join(lines) + "\n" + text[m.end() :]
        if new != text:
            lock.write_text(new)
            changed.append(lock)
    return changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--force", action="store_true", help="build even when build.json says it is up to date")
    ap.add_argument(
        "--pin-examples", action="store_true", help="rewrite the probe's pin in the example locks"
    )
    args = ap.parse_args()
    if shutil.which("go") is None:
        print(
            "build_probe: needs Go (1.26) on PATH to build releaser's probe image (probe/)", file=sys.stderr
        )
        return 1
    version = go_version()
    key = source_key(version)
    out: Path = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp = out / "build.json"
    if not args.force and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        print(f"probe image: up to date ({json.loads(stamp.read_text())['digest']}, {version})")
    else:
        digest = build(out, version, key)
        print(f"probe image: built {digest} with {version} into {out}")
    if args.pin_examples:
        for lock in pin_examples(out):
            print(f"  pinned in {lock.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
