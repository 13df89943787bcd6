"""Build the Go programs the tests check releaser's work with, from their modules at pinned versions:
cosign 2 and cosign 3 (both signature formats the field uses: `.sig`/`.att` tags, and Sigstore
bundles attached as OCI referrers), syft (the SBOM generator `bundle --sbom` runs) and the oras CLI
(an independent client that lists referrers), and the tests' registry with the OCI referrers API
(tests/support/referrers_registry: go-containerregistry's registry package). Each module zip is checked against the h1: hash below (the one
the Go checksum database vouches for, so `go install` checks it too); the binaries are cached
outside the repository by module, version and Go version, and linked into .tools/bin.

    python scripts/build_go_tools.py [--force]

The keyless tests run a private Sigstore whose every service is the real one: Fulcio, TesseraCT
(certificate transparency), Rekor v2 (rekor-tiles) and the timestamp authority, each on POSIX
storage or in memory.

Cold: about 8 minutes on this kind of machine (cosign 2: 197 s, cosign 3: 135 s, syft: 156 s,
oras: a few seconds more), and the four Sigstore services after them; warm: nothing is built.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".tools" / "bin"


@dataclass(frozen=True)
class Tool:
    name: str  # the name in .tools/bin
    module: str
    version: str
    h1: str  # the module zip's hash, as go.sum and the checksum database record it
    package: str  # the main package, relative to the module
    why: str
    ldflags: str = ""  # more -ldflags (syft reads its version from main.version)


TOOLS = (
    Tool(
        "cosign2",
        "github.com/sigstore/cosign/v2",
        "v2.6.5",
        "h1:D7kFSWS2HzfD+LpEuBO89D1KfOAODlkWuuhzXS8yzi0=",
        "cmd/cosign",
        "signs as cosign 2 does: a .sig tag (simple signing) and .att tags (DSSE attestations)",
    ),
    Tool(
        "cosign3",
        "github.com/sigstore/cosign/v3",
        "v3.1.3",
        "h1:001JQRI/PJ/5T+g/kJ1KTvKFbb322+fomc+pHDZ/6sg=",
        "cmd/cosign",
        "signs as cosign 3 does: Sigstore bundles v0.3 attached as OCI referrers; verifies both formats",
    ),
    Tool(
        "syft",
        "github.com/anchore/syft",
        "v1.57.2",
        "h1:Vm+22QHzQfwy9WBlWeGOWBSByH6dt6SEjxrfOvQZsfM=",
        "cmd/syft",
        "the SBOM generator `bundle --sbom` runs (CycloneDX), and the one the tests use",
        "-X main.version=v1.57.2",
    ),
    Tool(
        "fulcio",
        "github.com/sigstore/fulcio",
        "v1.8.8",
        "h1:AtVoVQ4R7YaP6RHIH9puHyB398CHS/9WYc6d+gKf5Y0=",
        ".",
        "the keyless tests' certificate authority (a private Sigstore: tests/support/sigstore.py)",
    ),
    Tool(
        "tesseract",
        "github.com/transparency-dev/tesseract",
        "v0.1.1",
        "h1:KMyqb5/43noPwaBIuFxaWOnhtx360JRb1nEPqUVn1KQ=",
        "cmd/tesseract/posix",
        "the private Sigstore's certificate transparency log (Fulcio's certificates carry its SCTs)",
    ),
    Tool(
        "rekor-server",
        "github.com/sigstore/rekor-tiles/v2",
        "v2.3.0",
        "h1:HhMgH61UP0t899V8Fjt7pz1YdgOBptbaQdnCF+79cdc=",
        "cmd/rekor-server/posix",
        "the private Sigstore's transparency log (Rekor v2): each keyless signature's inclusion proof",
    ),
    Tool(
        "timestamp-server",
        "github.com/sigstore/timestamp-authority/v2",
        "v2.1.3",
        "h1:Fc+LjCTfik1lh3YLkaosENfkXa3R2Y1nswiUKutBdFA=",
        "cmd/timestamp-server",
        "the private Sigstore's timestamp authority: the signed time each keyless signature is checked at",
    ),
    Tool(
        "oras",
        "oras.land/oras",
        "v1.3.6",
        "h1:Lhsfr2tQLjsu/+CJZp6vYatwKT+62fbIUTlp4lUrfOA=",
        "cmd/oras",
        "an independent OCI client: `oras discover` lists the referrers a load wrote",
    ),
)


def _env(gobin: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-trimpath",
        "CGO_ENABLED": "0",
        "GOBIN": str(gobin),
    }


def go_version() -> str:
    out = subprocess.run(
        ["go", "env", "GOVERSION"], capture_output=True, text=True, env=_env(BIN), check=True
    )
    return out.stdout.strip()


def cache_dir() -> Path:
    base = os.environ.get("RELEASER_GO_TOOLS_CACHE") or str(Path.home() / ".cache" / "releaser" / "go-tools")
    return Path(base)


def build(tool: Tool, go: str, force: bool) -> tuple[Path, float]:
    """The tool's binary, built into the cache when it is not there (or `force`)."""
    where = cache_dir() / f"{tool.name}-{tool.version}-{go}"
    binary = where / "bin" / (Path(tool.package).name if tool.package != "." else Path(tool.module).name)
    if binary.exists() and not force:
        return binary, 0.0
    t = time.monotonic()
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{tool.module}@{tool.version}"],
        env=_env(BIN),
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        got = json.loads(proc.stdout).get("Sum")
    except json.JSONDecodeError:
        got = None
    if got != tool.h1:
        sys.exit(
            f"build_go_tools: {tool.module}@{tool.version}: the Go module proxy serves {got or 'nothing'} "
            f"({proc.stderr.strip()[-300:]}); pinned {tool.h1}. Fix: check GOPROXY, or the pin in {__file__}"
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{tool.name}-", dir=cache_dir()))
    try:
        proc = subprocess.run(
            [
                "go",
                "install",
                f"-ldflags=-s -w {tool.ldflags}".strip(),
                f"{tool.module}{'' if tool.package == '.' else '/' + tool.package}@{tool.version}",
            ],
            env=_env(staging / "bin"),
            cwd=tempfile.gettempdir(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            sys.exit(f"build_go_tools: building {tool.module}@{tool.version} failed:\n{tail}")
        shutil.rmtree(where, ignore_errors=True)
        staging.rename(where)  # whole or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return binary, time.monotonic() - t


LOCAL = (
    # (name in .tools/bin, the program's directory): the tests' own Go programs, built from their go.sum
    ("referrers-registry", ROOT / "tests" / "support" / "referrers_registry"),
)


def build_local(name: str, source: Path, go: str, force: bool) -> tuple[Path, float]:
    """One of the tests' own Go programs, built into the cache by the hash of its sources (go.sum pins
    every module it uses, which `go build` checks)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(source.iterdir()):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    where = cache_dir() / f"{name}-{h.hexdigest()[:16]}-{go}"
    binary = where / "bin" / name
    if binary.exists() and not force:
        return binary, 0.0
    t = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir()))
    try:
        proc = subprocess.run(
            ["go", "build", "-mod=readonly", "-ldflags=-s -w", "-o", str(staging / "bin" / name), "."],
            env=_env(staging / "bin"),
            cwd=source,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            sys.exit(
                f"build_go_tools: building {source} failed:\n{(proc.stdout + proc.stderr).strip()[-2000:]}"
            )
        shutil.rmtree(where, ignore_errors=True)
        staging.rename(where)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return binary, time.monotonic() - t


def link(path: Path, binary: Path) -> None:
    """`path` a symbolic link to `binary` (whatever was there before)."""
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(binary)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="build again even when cached")
    args = ap.parse_args()
    if shutil.which("go") is None:
        sys.exit("build_go_tools: needs Go (the tests' cosign is built from its module); install Go 1.26")
    go = go_version()
    cache_dir().mkdir(parents=True, exist_ok=True)
    BIN.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        binary, took = build(tool, go, args.force)
        link(BIN / tool.name, binary)
        print(
            f"{tool.name}: {tool.module}@{tool.version} ({go})"
            + (f", built in {took:.0f} s" if took else ", cached")
        )
    for name, source in LOCAL:
        binary, took = build_local(name, source, go, args.force)
        link(BIN / name, binary)
        print(
            f"{name}: {source.relative_to(ROOT)} ({go})"
            + (f", built in {took:.0f} s" if took else ", cached")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
