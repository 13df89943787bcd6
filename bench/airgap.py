#!/usr/bin/env python3
"""Benchmark: releaser bundle / airgap --to / airgap verify against real baselines, side by side.

    .venv/bin/python bench/airgap.py [--mb 500] [--images 8] [--scale 3] [--rounds 3]

Generates a release of N images sharing a base layer (~MB in total) in a local
docker-registry, then measures in one run:

  bundle       releaser bundle                  vs  skopeo copy of each image into one OCI layout + tar | zstd -3
  load         releaser airgap B --to R          vs  skopeo copy --all of each image from that layout to R
  reload       a second releaser airgap --to of the same bundle (everything already there)
  verify       releaser airgap verify            vs  sha256sum of the same bundle bytes

reporting the median wall time of --rounds runs (releaser and baseline alternating, every
load into a fresh registry), the ratio baseline/releaser, each process's peak RSS and CPU
time (from wait4), and the CPU time the registry spent serving each step (from /proc). Then it measures releaser's peak RSS again at --scale times the size.
Nothing here asserts; results go to stdout as a Markdown table (and --json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from releaser.bundle.load import STREAMS  # noqa: E402 - frames uploaded at once
from tests.support.images import Layout  # noqa: E402 - after sys.path
from tests.support.registry import RegistryServer  # noqa: E402

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")

LAYER = "application/vnd.oci.image.layer.v1.tar"


# A tiny launcher (python -S, ~8 MB) spawns the measured command and reports its peak RSS from
# wait4: measuring from this (larger) process would report our own RSS for small children,
# because a child's peak RSS starts at its parent's before exec.
_LAUNCH = (
    "import os,sys,time;t=time.perf_counter();p=os.posix_spawnp(sys.argv[1],sys.argv[1:],os.environ);"
    "_,s,u=os.wait4(p,0);sys.stderr.write('\\n%d %d %f %f\\n'%(os.waitstatus_to_exitcode(s),u.ru_maxrss,"
    "time.perf_counter()-t,u.ru_utime+u.ru_stime))"
)


Sample = tuple[float, int, float]  # wall seconds, peak RSS in MB, CPU seconds (user + system)


def run(cmd: list[str] | str, *, env: dict[str, str] | None = None, shell: bool = False) -> Sample:
    """(wall seconds, peak RSS in MB, CPU seconds) of one command, its children included."""
    argv = ["/bin/sh", "-c", cmd] if shell else list(cmd)  # type: ignore[list-item]
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCH, *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    code, rss, wall, cpu = proc.stderr.strip().splitlines()[-1].split()
    if int(code) != 0:
        raise SystemExit(f"benchmark command failed: {cmd}\n{proc.stderr}")
    return float(wall), int(rss) // 1024, float(cpu)


def combined(steps: list[Sample]) -> Sample:
    """Several commands run one after the other, as one step."""
    return sum(w for w, _, _ in steps), max(r for _, r, _ in steps), sum(c for _, _, c in steps)


def server_cpu(server: RegistryServer) -> float:
    """CPU seconds (user + system) the registry process has used so far, from /proc."""
    assert server.proc is not None
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_layer(lay: Layout, name: str, size: int, rng: random.Random) -> tuple[str, int, str]:
    """A one-file uncompressed tar layer of `size` random bytes, streamed to disk.
    Returns (digest, size, diff_id); for an uncompressed layer the digest is the diff_id."""
    import hashlib

    header = tarfile.TarInfo(name)
    header.size = size
    head = header.tobuf(format=tarfile.USTAR_FORMAT)
    tmp = lay.root / "blobs" / "tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with tmp.open("wb") as f:
        for part in (head,):
            f.write(part)
            h.update(part)
        left = size
        while left:
            chunk = rng.randbytes(min(left, 16 << 20))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
        tail = b"\0" * ((-size) % 512) + b"\0" * 1024
        f.write(tail)
        h.update(tail)
    digest = "sha256:" + h.hexdigest()
    tmp.replace(lay.root / "blobs" / "sha256" / h.hexdigest())
    return digest, tmp.parent.joinpath("sha256", h.hexdigest()).stat().st_size, digest


def generate(layout: Path, n_images: int, total_mb: int, seed: int, own_kb: int = 0) -> list[str]:
    """N images: a shared base layer (~1/5 of the total) + one own layer each (own_kb KiB when
    given: the per-image cost case, where the bytes hardly count). Returns tags."""
    from tests.support.images import OCI_CONFIG, OCI_MANIFEST

    rng = random.Random(seed)
    base_mb = max(1, total_mb // 5)
    own = own_kb << 10 if own_kb else max(1, (total_mb - base_mb) // n_images) << 20
    lay = Layout(layout)
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    base = write_layer(lay, "base/blob.bin", base_mb << 20, rng)
    tags = []
    for i in range(n_images):
        layers = [base, write_layer(lay, f"app/{i}.bin", own, rng)]
        cfg = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [x[2] for x in layers]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": lay.blob(cfg), "size": len(cfg)},
                "layers": [{"mediaType": LAYER, "digest": d, "size": n} for d, n, _ in layers],
            }
        ).encode()
        tag = f"img{i}"
        lay.index.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": lay.blob(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        )
        tags.append(tag)
    lay.finish()
    return tags


def ingest_ceiling(server: RegistryServer, work: Path, mb: int, streams: int = 1) -> float:
    """MB/s of the registry taking `streams` streamed blob PUTs from curl at once (mb in all)."""
    import hashlib
    import time

    import requests

    urls, files = [], []
    for k in range(streams):
        blob = work / f"ceiling{k}.bin"
        data = random.Random(7 + k).randbytes(1 << 20)
        h = hashlib.sha256()
        with blob.open("wb") as f:
            for _ in range(mb // streams):
                f.write(data)
                h.update(data)
        resp = requests.post(f"{server.url}/v2/ceiling{k}/blobs/uploads/", timeout=30)
        loc = resp.headers["Location"]
        loc = loc if loc.startswith("http") else server.url + loc
        urls.append(f"{loc}{'&' if '?' in loc else '?'}digest=sha256:{h.hexdigest()}")
        files.append(blob)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(["curl", "-sf", "-T", str(f), "-H", "Content-Type: application/octet-stream", u])
        for f, u in zip(files, urls, strict=True)
    ]
    if any(p.wait() for p in procs):
        raise SystemExit("curl could not upload to the registry")
    wall = time.perf_counter() - start
    for f in files:
        f.unlink()
    return (mb // streams) * streams / wall


def setup(
    work: Path, n_images: int, total_mb: int, own_kb: int = 0
) -> tuple[RegistryServer, Path, list[str]]:
    src = RegistryServer(work / "src").start()
    layout = work / "gen"
    tags = generate(layout, n_images, total_mb, seed=total_mb, own_kb=own_kb)
    for tag in tags:
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{layout}:{tag}",
                f"docker://{src.host}/bench/{tag}:v1",
            ],
            check=True,
        )
    shutil.rmtree(layout)
    rel = work / "rel"
    rel.mkdir()
    import yaml

    doc = {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "bench", "version": "1.0.0"},
        "images": {t: {"ref": f"{src.host}/bench/{t}:v1"} for t in tags},
        "services": {t: {"image": t} for t in tags},
    }
    (rel / "release.yaml").write_text(yaml.safe_dump(doc))
    return src, rel, tags


def median(samples: list[Sample]) -> Sample:
    """The median wall time, the largest peak RSS and the median CPU time of several runs."""
    return (
        statistics.median(w for w, _, _ in samples),
        max(r for _, r, _ in samples),
        statistics.median(c for _, _, c in samples),
    )


def bench(
    total_mb: int, n_images: int, work: Path, env: dict[str, str], *, baselines: bool, rounds: int
) -> dict[str, object]:
    """Each step `rounds` times, releaser and its baseline alternating, every load into a fresh
    registry; the medians. This machine's run-to-run spread is large (shared cores), so one
    run of each proves little."""
    src, rel, tags = setup(work, n_images, total_mb)
    res: dict[str, object] = {"mb": total_mb, "images": n_images, "rounds": rounds}
    samples: dict[str, list[Sample]] = {}
    keys = work / "keys"
    try:
        subprocess.run([RELEASER, "lock", str(rel)], check=True, env=env, capture_output=True)
        subprocess.run([RELEASER, "keygen", "--out-dir", str(keys)], check=True, env=env, capture_output=True)
        bundle = work / "b.tar.zst"
        benv = {**env, "RELEASER_CACHE": str(work / "cache")}
        layout = work / "baseline-layout"
        for r in range(rounds):
            # each side writes a new file: replacing the last round's 500 MB would time the kernel freeing it
            bundle.unlink(missing_ok=True)
            (work / "baseline.tar.zst").unlink(missing_ok=True)
            before = server_cpu(src)
            samples.setdefault("bundle", []).append(
                run(
                    [
                        RELEASER,
                        "bundle",
                        str(rel),
                        "--signing-key",
                        str(keys / "releaser.key"),
                        "--out-file",
                        str(bundle),
                        "--no-cache",
                        "--no-installer",  # like for like: the baseline carries no installer
                    ],
                    env=benv,
                )
            )
            samples.setdefault("bundle_registry", []).append((0.0, 0, server_cpu(src) - before))
            if baselines:
                shutil.rmtree(layout, ignore_errors=True)
                before = server_cpu(src)
                steps = [
                    run(
                        [
                            "skopeo",
                            "copy",
                            "--quiet",
                            "--src-tls-verify=false",
                            f"docker://{src.host}/bench/{t}:v1",
                            f"oci:{layout}:{t}",
                        ]
                    )
                    for t in tags
                ]
                steps.append(
                    run(
                        f"tar -C {layout} -cf - . | zstd -3 -T0 -q -f -o {work / 'baseline.tar.zst'}",
                        shell=True,
                    )
                )
                samples.setdefault("bundle_baseline", []).append(combined(steps))
                samples.setdefault("bundle_baseline_registry", []).append((0.0, 0, server_cpu(src) - before))
            samples.setdefault("verify", []).append(
                run(
                    [RELEASER, "airgap", "verify", str(bundle), "--key", str(keys / "releaser.pub")], env=benv
                )
            )
            if baselines:
                samples.setdefault("verify_baseline", []).append(run(["sha256sum", str(bundle)]))
            dst = RegistryServer(work / f"dst{r}").start()
            try:
                for step in ("load", "reload"):
                    before = server_cpu(dst)
                    samples.setdefault(step, []).append(
                        run(
                            [
                                RELEASER,
                                "airgap",
                                str(bundle),
                                "--to",
                                dst.host,
                                "--key",
                                str(keys / "releaser.pub"),
                                "--out-dir",
                                str(work / "out"),
                            ],
                            env=benv,
                        )
                    )
                    samples.setdefault(f"{step}_registry", []).append((0.0, 0, server_cpu(dst) - before))
            finally:
                dst.stop()
                shutil.rmtree(work / f"dst{r}", ignore_errors=True)
            one = RegistryServer(work / f"one{r}").start()  # the same load, one request at a time
            try:
                samples.setdefault("load_one_stream", []).append(
                    run(
                        [
                            RELEASER,
                            "airgap",
                            str(bundle),
                            "--to",
                            one.host,
                            "--key",
                            str(keys / "releaser.pub"),
                            "--out-dir",
                            str(work / "out"),
                            "--concurrency",
                            "1",
                        ],
                        env=benv,
                    )
                )
            finally:
                one.stop()
                shutil.rmtree(work / f"one{r}", ignore_errors=True)
            if baselines:
                base_dst = RegistryServer(work / f"base-dst{r}").start()
                try:
                    for step in ("load_baseline", "reload_baseline"):
                        before = server_cpu(base_dst)
                        steps = [
                            run(
                                [
                                    "skopeo",
                                    "copy",
                                    "--all",
                                    "--quiet",
                                    "--dest-tls-verify=false",
                                    f"oci:{layout}:{t}",
                                    f"docker://{base_dst.host}/bench/{t}:v1",
                                ]
                            )
                            for t in tags
                        ]
                        samples.setdefault(step, []).append(combined(steps))
                        samples.setdefault(f"{step}_registry", []).append(
                            (0.0, 0, server_cpu(base_dst) - before)
                        )
                    if r == 0:
                        res["ceiling"] = ingest_ceiling(base_dst, work, 200)
                        res["ceiling_streams"] = ingest_ceiling(base_dst, work, 200, STREAMS)
                finally:
                    base_dst.stop()
                    shutil.rmtree(work / f"base-dst{r}", ignore_errors=True)
        res["bundle_size"] = bundle.stat().st_size
        for step, runs in samples.items():
            res[step] = median(runs)
            if not step.endswith("_registry"):
                res[f"{step}_runs"] = [w for w, _, _ in runs]
    finally:
        src.stop()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument(
        "--scale", type=int, default=3, help="repeat releaser runs at this multiple of --mb for RSS"
    )
    ap.add_argument("--rounds", type=int, default=3, help="runs of each step; medians are reported")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    env = {**os.environ, "RELEASER_KEY_PASSPHRASE": "benchmark passphrase"}
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="releaser-bench-") as tmp:
        out["base"] = bench(args.mb, args.images, Path(tmp) / "a", env, baselines=True, rounds=args.rounds)
    if args.scale > 1:
        with tempfile.TemporaryDirectory(prefix="releaser-bench-") as tmp:
            out["scaled"] = bench(
                args.mb * args.scale, args.images, Path(tmp) / "b", env, baselines=False, rounds=1
            )
    if args.json:
        print(json.dumps(out, indent=2))
        return
    b = out["base"]
    assert isinstance(b, dict)

    def row(label: str, ours: str, base: str | None, note: str = "") -> str:
        w, r, _ = b[ours]
        if base:
            bw, br, _ = b[base]
            return f"| {label} | {w:.2f} s | {r} MB | {bw:.2f} s | {br} MB | {bw / w:.2f}x | {note} |"
        return f"| {label} | {w:.2f} s | {r} MB | | | | {note} |"

    print(
        f"{args.images} images, {args.mb} MB generated (shared base layer), bundle "
        f"{b['bundle_size'] / 1e6:.0f} MB; median of {b['rounds']} rounds, largest peak RSS\n"
    )
    print("| step | releaser | peak RSS | baseline | baseline peak RSS | speed-up | |")
    print("|---|---|---|---|---|---|---|")
    print(
        row(
            "bundle",
            "bundle",
            "bundle_baseline",
            "baseline: skopeo copy xN into one OCI layout + tar | zstd -3 -T0",
        )
    )
    print(row("load (--to)", "load", "load_baseline", "baseline: skopeo copy --all xN, layout → registry"))
    lw = b["load"][0]  # type: ignore[index]
    rw = b["reload"][0]  # type: ignore[index]
    print(row("load --concurrency 1", "load_one_stream", None, "one frame, one request at a time"))
    print(
        row(
            "reload (same bundle again)",
            "reload",
            "reload_baseline" if "reload_baseline" in b else None,
            f"{100 * rw / lw:.1f} % of the first load; baseline: the same skopeo copies again",
        )
    )
    print(row("verify", "verify", "verify_baseline", "baseline: sha256sum of the bundle"))
    print(
        "\nEvery run (s): "
        + "; ".join(
            f"{k.removesuffix('_runs')} {', '.join(f'{w:.2f}' for w in v)}"
            for k, v in b.items()
            if k.endswith("_runs")
        )
    )
    size_mb = b["bundle_size"] / 1e6  # type: ignore[operator]
    print(
        f"\nRegistry ingest ceiling, 200 MB of streamed PUTs by curl: {b['ceiling']:.0f} MB/s in one stream, "
        f"{b['ceiling_streams']:.0f} MB/s in {STREAMS} at once. releaser load moved {size_mb:.0f} MB in {lw:.2f} s "
        f"({size_mb / lw:.0f} MB/s) including its full verification pass and start-up; {STREAMS} streams of "
        f"curl would take {size_mb / b['ceiling_streams']:.2f} s for the bytes alone."
    )

    def cpu(step: str) -> str:
        return f"{b[step][2]:.2f}"  # type: ignore[index]

    print(
        f"\nCPU seconds (user + system, medians; {os.cpu_count()} cores): bundle {cpu('bundle')} + source registry "
        f"{cpu('bundle_registry')} vs baseline {cpu('bundle_baseline')} + {cpu('bundle_baseline_registry')}; load "
        f"{cpu('load')} + target registry {cpu('load_registry')} vs skopeo {cpu('load_baseline')} + "
        f"{cpu('load_baseline_registry')}; reload {cpu('reload')} + {cpu('reload_registry')} vs "
        f"{cpu('reload_baseline')} + {cpu('reload_baseline_registry')}; verify {cpu('verify')} vs "
        f"{cpu('verify_baseline')}."
    )
    if "scaled" in out:
        s = out["scaled"]
        assert isinstance(s, dict)
        print(
            f"\nAt {s['mb']} MB: peak RSS bundle {s['bundle'][1]} MB, verify {s['verify'][1]} MB, "
            f"load {s['load'][1]} MB, reload {s['reload'][1]} MB"
        )


if __name__ == "__main__":
    main()
