#!/usr/bin/env python3
"""Write releaser/installer/wheels.json: the wheels of releaser's runtime dependencies for every
CPython and Linux machine the offline installer supports, each with its PyPI URL and sha256.

`releaser bundle` downloads exactly these files (hash-checked) into the bundle's installer/;
nothing is resolved at bundle time. Versions are those of requirements/dev.lock, the set the test
suite runs, so the customer gets what was tested. Run after changing requirements/*.in:

    .venv/bin/python scripts/lock-installer.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "releaser/installer/wheels.json"
PYTHONS = ("3.11", "3.12", "3.13", "3.14")
MACHINES = ("x86_64", "aarch64")
# glibc 2.28 and newer (RHEL 8+, Debian 10+, Ubuntu 18.10+); pip ranks them in this order
MANYLINUX = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_26", "manylinux_2_17", "manylinux2014")


def pins() -> list[str]:
    """name==version of every package in requirements/dev.lock (the tested versions)."""
    text = (ROOT / "requirements/dev.lock").read_text()
    return re.findall(r"^([A-Za-z0-9_.\-]+==[^\s\\]+)", text, re.M)


def resolve(python: str, machine: str, constraints: Path) -> list[dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "--isolated", "install", "--quiet", "--dry-run",
               "--ignore-installed", "--index-url", "https://pypi.org/simple", "--report", str(report),
               "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
               "--target", str(Path(tmp) / "t"), "-c", str(constraints),
               "-r", str(ROOT / "requirements/runtime.in")]  # fmt: skip
        for tag in MANYLINUX:
            cmd += ["--platform", f"{tag}_{machine}"]
        subprocess.run(cmd, check=True)
        doc = json.loads(report.read_text())
    out = []
    for item in doc["install"]:
        info = item["download_info"]
        out.append(
            {
                "name": item["metadata"]["name"].lower().replace("_", "-"),
                "version": item["metadata"]["version"],
                "file": info["url"].rsplit("/", 1)[1],
                "url": info["url"],
                "sha256": info["archive_info"]["hashes"]["sha256"],
            }
        )
    return out


def main() -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        constraints.write("\n".join(pins()) + "\n")
        constraints.flush()
        wheels: dict[str, dict[str, object]] = {}
        targets = []
        for python in PYTHONS:
            for machine in MACHINES:
                target = f"cp{python.replace('.', '')}-{machine}"
                targets.append({"target": target, "python": python, "machine": machine})
                for w in resolve(python, machine, Path(constraints.name)):
                    entry = wheels.setdefault(str(w["file"]), {**w, "targets": []})
                    entry["targets"].append(target)  # type: ignore[union-attr]
                print(f"{target}: resolved", file=sys.stderr)
    requires = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements/runtime.in").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    doc = {
        "comment": "written by scripts/lock-installer.py; do not edit",
        "requires": requires,  # releaser's own wheel's Requires-Dist: the runtime pins the tests ran
        "manylinux": list(MANYLINUX),
        "targets": targets,
        "wheels": [wheels[k] for k in sorted(wheels)],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(wheels)} wheels for {len(targets)} targets", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
