#!/usr/bin/env python3
"""Benchmark: what a local docker-registry itself costs per small request, the floor under the
cost per image of `bundle` and `airgap --to`.

    .venv/bin/python bench/floor.py [--blobs 600] [--streams 1,8]

Against a fresh registry (tests/support/registry.py), with Python's bare http.client (no retries,
no auth, no budgets: as little client as there can be), for each stream count: --blobs uploads of
a 1 KiB blob, each the two requests the distribution API needs (POST a session, PUT the bytes with
their digest), then a HEAD of each, then a GET of each. Reported: milliseconds per request kind,
wall time over the whole batch. A load of an image of one own layer and its config sends two such
blobs, so twice the upload figure is the least an image can cost this registry on this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.registry import RegistryServer  # noqa: E402 - after sys.path


def measure(streams: int, n: int) -> list[float]:
    """ms per request of (upload's two, HEAD, GET) with `streams` at once, on a fresh registry."""
    with tempfile.TemporaryDirectory(prefix="releaser-floor-") as tmp:
        server = RegistryServer(Path(tmp) / "r").start()
        try:
            host, port = server.host.rsplit(":", 1)
            local = threading.local()

            def call(method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
                if not hasattr(local, "c"):
                    local.c = http.client.HTTPConnection(host, int(port), timeout=30)
                local.c.request(method, path, body=body, headers={"Content-Type": "application/octet-stream"})
                resp: http.client.HTTPResponse = local.c.getresponse()
                resp.read()
                return resp

            blobs = [os.urandom(1024) for _ in range(n)]
            digests = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]

            def upload(i: int) -> None:
                repo = f"floor/r{i % 300}"
                location = call("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
                sep = "&" if "?" in location else "?"
                path = location.split(server.host, 1)[-1]
                put = call("PUT", f"{path}{sep}digest={digests[i]}", blobs[i])
                assert put.status == 201, put.status

            def head(i: int) -> None:
                assert call("HEAD", f"/v2/floor/r{i % 300}/blobs/{digests[i]}").status == 200

            def get(i: int) -> None:
                assert call("GET", f"/v2/floor/r{i % 300}/blobs/{digests[i]}").status == 200

            row = []
            for fn, per in ((upload, 2), (head, 1), (get, 1)):
                with ThreadPoolExecutor(streams) as pool:
                    t = time.perf_counter()
                    list(pool.map(fn, range(n)))
                    row.append((time.perf_counter() - t) / (n * per) * 1e3)
            return row
        finally:
            server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blobs", type=int, default=600)
    ap.add_argument("--streams", default="1,8", help="comma-separated stream counts")
    args = ap.parse_args()
    print(f"{args.blobs} blobs of 1 KiB; ms per request (wall time over the batch / requests)\n")
    print("| streams | upload (POST + PUT) | HEAD | GET |")
    print("|---|---|---|---|")
    for streams in (int(s) for s in args.streams.split(",")):
        row = measure(streams, args.blobs)
        print(f"| {streams} | {row[0]:.2f} ms x 2 | {row[1]:.2f} ms | {row[2]:.2f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
