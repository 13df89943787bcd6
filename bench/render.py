#!/usr/bin/env python3
"""Benchmark: `releaser render` of a large release, against `helm template` of the chart it writes.

    .venv/bin/python bench/render.py [--services 50] [--rounds 5]

Writes a release of N services (each with ports, probes, resources, a config file, scratch, a
NetworkPolicy flow from the one before it; every fifth stateful with a volume, every seventh
autoscaled, one job) and a lock with well-formed made-up digests, then times, alternating:

  render    releaser render DIR --out-dir OUT        vs  helm template of OUT/charts/<name>

reporting medians and peak RSS (wait4). Nothing here asserts (the target: under 1 s).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.airgap import RELEASER, run  # noqa: E402 - after sys.path

HELM = str(ROOT / ".tools" / "bin" / "helm")


def release(n: int) -> tuple[dict[str, object], dict[str, object]]:
    services: dict[str, object] = {}
    for i in range(n):
        svc: dict[str, object] = {
            "image": "app",
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
            "readiness": {"http": {"path": "/ready", "port": "http"}},
            "liveness": {"tcp": {"port": "http"}},
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
            "configs": [{"path": f"/etc/s{i}/app.yaml", "content": f"name: s{i}\n"}],
            "scratch": [{"path": "/tmp", "size": "32Mi"}],
            "metrics": {"port": "metrics"},
            "env": {"LOG_LEVEL": "info"},
        }
        if i % 5 == 4:
            svc.update(
                replicas=3, stateful=True, volumes=[{"name": "data", "mountPath": "/data", "size": "1Gi"}]
            )
        elif i % 7 == 6:
            svc["autoscale"] = {"min": 2, "max": 6, "cpu": 70}
        else:
            svc["replicas"] = 2
        if i:
            svc["ingress"] = [{"from": {"service": f"s{i - 1}"}, "ports": ["http"]}]
        services[f"s{i}"] = svc
    services["migrate"] = {
        "image": "app",
        "job": {"hooks": ["post-install", "pre-upgrade"]},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "dependsOn": ["s0"],
    }
    services["s1"]["dependsOn"] = ["migrate"]  # type: ignore[index]
    doc = {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "big", "version": "1.0.0"},
        "images": {"app": {"ref": "registry.example.org/acme/app:1.0.0"}},
        "services": services,
    }
    digest = "sha256:" + hashlib.sha256(b"app").hexdigest()
    lock = {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "ReleaseLock",
        "release": "big",
        "images": {
            "app": {
                "source": "registry.example.org/acme/app:1.0.0",
                "repository": "registry.example.org/acme/app",
                "digest": digest,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": 1024,
            }
        },
    }
    return doc, lock


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rel = Path(tmp) / "rel"
        rel.mkdir()
        doc, lock = release(args.services)
        (rel / "release.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        (rel / "release.lock.yaml").write_text(yaml.safe_dump(lock, sort_keys=False))
        ours, helm = [], []
        for r in range(args.rounds):
            out = Path(tmp) / f"out{r}"
            ours.append(run([RELEASER, "render", str(rel), "--out-dir", str(out)]))
            helm.append(run([HELM, "template", "rel", str(out / "charts" / "big")]))
    o, h = statistics.median(s[0] for s in ours), statistics.median(s[0] for s in helm)
    print(f"{args.services} services + 1 job; median of {args.rounds} rounds\n")
    print("| step | releaser render | peak RSS | helm template of its chart | peak RSS |")
    print("|---|---|---|---|---|")
    print(f"| render | {o:.2f} s | {max(s[1] for s in ours)} MB | {h:.2f} s | {max(s[1] for s in helm)} MB |")
    print(
        f"\nevery run (s): render {[round(s[0], 3) for s in ours]}; helm template {[round(s[0], 3) for s in helm]}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
