#!/usr/bin/env python3
"""Benchmark: the offline installer a bundle carries (installer/), what it adds and how long it takes.

    .venv/bin/python bench/installer.py [--rounds 3]

Builds installer/ exactly as `releaser bundle` does (every CPython and machine; wheels from the
cache or PyPI, hash-checked), then reports:

  size      bytes of installer/, and of those bytes as a zstd -3 tar.zst (what a bundle grows by:
            wheels are already compressed), per target and in all
  install   `sh installer/install.sh` into a fresh venv, no network    vs  a connected host's
            `python -m venv` + `pip install` of the same pinned versions from PyPI (no pip cache)

as medians of --rounds runs, alternating, with each process tree's peak RSS (wait4). Nothing
here asserts; results go to stdout as Markdown (and --json).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.airgap import run  # noqa: E402 - after sys.path
from releaser.bundle.archive import TarZstWriter  # noqa: E402
from releaser.bundle.cache import default_cache_dir  # noqa: E402
from releaser.bundle.installer import choose, installer_files, pinned  # noqa: E402


def materialise(dest: Path) -> tuple[int, int]:
    """installer/ under `dest`, as a bundle holds it; (bytes, bytes as a zstd -3 tar.zst)."""
    files = installer_files(default_cache_dir() / "wheels", mtime=0)
    raw = io.BytesIO()
    w = TarZstWriter(raw, level=3)
    total = 0
    for f in files:
        data = f.content if f.content is not None else f.path.read_bytes()  # type: ignore[union-attr]
        target = dest / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        w.add_bytes(f.name, data)
        total += len(data)
    w.close()
    return total, len(raw.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    python = str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        size, packed = materialise(work)
        per_target = {}
        for target in choose():
            wheels = [w for w in pinned().wheels if target in w.targets]
            per_target[target] = sum((default_cache_dir() / "wheels" / w.file).stat().st_size for w in wheels)
        own = next((work / "installer/wheels").glob("releaser-*.whl"))
        pins = work / "pins.txt"
        pins.write_text("\n".join(pinned().requires) + "\n")
        samples: dict[str, list[tuple[float, int, float]]] = {"install": [], "baseline": []}
        for r in range(args.rounds):
            samples["install"].append(
                run(
                    [
                        "sh",
                        str(work / "installer/install.sh"),
                        "--venv",
                        str(work / f"v{r}"),
                        "--python",
                        python,
                    ]
                )
            )
            samples["baseline"].append(
                run(
                    f"{python} -m venv {work}/b{r} && {work}/b{r}/bin/pip --isolated --disable-pip-version-check "
                    f"install --quiet --no-cache-dir --index-url https://pypi.org/simple -r {pins} {own}",
                    shell=True,
                )
            )
    result = {
        "rounds": args.rounds,
        "bytes": size,
        "packed": packed,
        "targets": per_target,
        "install": [s[0] for s in samples["install"]],
        "install_rss": max(s[1] for s in samples["install"]),
        "baseline": [s[0] for s in samples["baseline"]],
        "baseline_rss": max(s[1] for s in samples["baseline"]),
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    mi, mb = statistics.median(result["install"]), statistics.median(result["baseline"])  # type: ignore[arg-type]
    print(f"installer/: {size / 1e6:.1f} MB ({packed / 1e6:.1f} MB as tar.zst, what a bundle grows by)")
    for target, n in per_target.items():
        print(f"  {target}: {n / 1e6:.1f} MB of dependency wheels")
    print("\n| step | releaser | peak RSS | baseline | baseline peak RSS | ratio |")
    print("|---|---|---|---|---|---|")
    print(
        f"| install (no network) | {mi:.2f} s | {result['install_rss']} MB | {mb:.2f} s (venv + pip from PyPI) "
        f"| {result['baseline_rss']} MB | {mb / mi:.2f}x |"
    )
    print(f"\nevery run (s): install {result['install']}; baseline {result['baseline']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
