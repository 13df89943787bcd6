#!/usr/bin/env python3
"""Benchmark: the byte paths of two commits side by side, in one run on one machine.

    .venv/bin/python bench/compare.py REV [--against REV2] [--mb 480] [--images 8] [--rounds 5]
                                          [--layer-kb N] [--rev-path DIR] [--json]

REV (and --against, default: the working tree) are checked out with `git worktree` into a
temporary directory and run with this venv's Python (`python -m releaser`, the tree first on
PYTHONPATH), so both use the same interpreter and dependencies. One release of --images images
(--mb in all, sharing a base layer, in a local docker-registry: bench/airgap.py's generator;
--layer-kb N gives each image its own layer of N KiB instead, the cost-per-image case) is
then, --rounds times, the two sides alternating which goes first:

  bundle   releaser bundle (no cache, no installer where the tree has one)
  load     releaser airgap BUNDLE --to R, each into a fresh registry
  reload   the same load again (everything already there)

Reported per step: each side's median wall time, peak RSS and median CPU time, and the median of
the per-round ratios (REV / the other): 1.10 means REV took 10 % longer. Options are spelled as
both trees accept them (the old spellings still work, with a warning, on newer trees). Nothing
here asserts; the figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from airgap import Sample, run, setup  # noqa: E402 - bench/airgap.py: the generator and the launcher

from tests.support.registry import RegistryServer  # noqa: E402

STEPS = ("bundle", "load", "reload")


class Side:
    """One commit: its checked-out tree and how to run its CLI."""

    def __init__(self, name: str, tree: Path, extra: str = "") -> None:
        self.name, self.tree = name, tree
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(tree), extra) if p)}
        # the code that runs must be this tree's: `python -m` puts the working directory first on
        # sys.path (ahead of PYTHONPATH), which from the repository's root would be today's code
        where = subprocess.run(
            [sys.executable, "-P", "-c", "import releaser; print(releaser.__file__)"],
            env=self.env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not Path(where).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"{name}: releaser imports from {where}, not from {tree}")
        # `bundle` became a group (`bundle create` the default command): its options are in
        # `bundle create --help`; an older tree has no such command and lists them in `bundle --help`
        helptext = "".join(
            subprocess.run(
                [*self.cmd(), *command, "--help"], env=self.env, capture_output=True, text=True, check=False
            ).stdout
            for command in (["bundle"], ["bundle", "create"])
        )
        self.no_installer = ["--no-installer"] if "--no-installer" in helptext else []
        if "--installer" in helptext and not self.no_installer:
            raise SystemExit(f"{name}: carries an installer that its `bundle` cannot be told to leave out")

    def cmd(self) -> list[str]:
        return [sys.executable, "-P", "-m", "releaser"]  # -P: not the working directory's releaser


def checkout(rev: str, into: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(into), rev], check=True)
    return into


def rounds_of(
    sides: list[Side], work: Path, n_images: int, mb: int, rounds: int, layer_kb: int = 0
) -> dict[str, dict[str, list[Sample]]]:
    src, rel, _ = setup(work, n_images, mb, own_kb=layer_kb)
    samples: dict[str, dict[str, list[Sample]]] = {s.name: {k: [] for k in STEPS} for s in sides}
    try:
        first = sides[0]
        rels = {}
        for side in sides:  # each side bundles from a lock it wrote (lock formats differ between commits)
            rels[side.name] = work / f"rel-{len(rels)}"
            shutil.copytree(rel, rels[side.name])
            subprocess.run(
                [*side.cmd(), "lock", str(rels[side.name])], env=side.env, check=True, capture_output=True
            )
        subprocess.run(
            [*first.cmd(), "keygen", "--out", str(work / "keys")],
            env=first.env,
            check=True,
            capture_output=True,
        )
        for r in range(rounds):
            for side in sides if r % 2 == 0 else list(reversed(sides)):
                env = {
                    **side.env,
                    "RELEASER_KEY_PASSPHRASE": "bench-only-passphrase",
                    "RELEASER_CACHE": str(work / "cache"),
                }
                bundle = work / f"{side.name}-{r}.tar.zst"
                samples[side.name]["bundle"].append(
                    run(
                        [
                            *side.cmd(),
                            "bundle",
                            str(rels[side.name]),
                            "--key",
                            str(work / "keys/releaser.key"),
                            "--out",
                            str(bundle),
                            "--no-cache",
                            *side.no_installer,
                        ],
                        env=env,
                    )
                )
                target = RegistryServer(work / f"dst-{side.name}-{r}").start()
                try:
                    load = [*side.cmd(), "airgap", str(bundle), "--to", target.host, "--key",
                            str(work / "keys/releaser.pub"), "--out", str(work / f"out-{side.name}")]  # fmt: skip
                    samples[side.name]["load"].append(run(load, env=env))
                    samples[side.name]["reload"].append(run(load, env=env))
                finally:
                    target.stop()
                    shutil.rmtree(work / f"dst-{side.name}-{r}", ignore_errors=True)
                bundle.unlink()
    finally:
        src.stop()
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="the commit to compare (e.g. ef14ef2, HEAD~1)")
    ap.add_argument("--against", default="", help="the other commit (default: the working tree)")
    ap.add_argument("--mb", type=int, default=480)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--layer-kb", type=int, default=0, help="each image's own layer in KiB (0: from --mb)")
    ap.add_argument(
        "--rev-path",
        default="",
        help="more PYTHONPATH for REV, for a dependency it had that this venv lacks (e.g. before ef14ef2's "
        "successor dropped oras-py: pip install --no-deps --target /tmp/rev-deps oras==0.2.43)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for rev in filter(None, (args.rev, args.against)):
        known = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            capture_output=True,
            check=False,
        )
        if known.returncode != 0:
            ap.error(
                f"{rev} names no commit of {ROOT} (fix: a commit id, tag or HEAD~N that `git log` shows)"
            )
    os.environ.setdefault("RELEASER_KEY_PASSPHRASE", "bench-only-passphrase")
    with tempfile.TemporaryDirectory(prefix="releaser-compare-") as tmp:
        base = Path(tmp)
        trees = []
        try:
            a = checkout(args.rev, base / "a")
            trees.append(a)
            if args.against:
                b = checkout(args.against, base / "b")
                trees.append(b)
            else:
                b = ROOT
            sides = [Side(args.rev, a, args.rev_path), Side(args.against or "working tree", b)]
            work = base / "work"
            work.mkdir()
            samples = rounds_of(sides, work, args.images, args.mb, args.rounds, args.layer_kb)
        finally:
            for t in trees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(t)], check=False)
    report: dict[str, object] = {"rev": args.rev, "against": args.against or "working tree", "mb": args.mb,
                                 "images": args.images, "layer_kb": args.layer_kb, "rounds": args.rounds,
                                 "steps": {}}  # fmt: skip
    lines = [
        f"{args.images} images, {args.mb} MB"
        + (f" (own layers of {args.layer_kb} KiB)" if args.layer_kb else "")
        + f", {args.rounds} rounds: {args.rev} vs {report['against']}",
        "",
        f"| step | {args.rev} s | {report['against']} s | ratio (median of rounds) | peak RSS MB | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    x, y = sides[0].name, sides[1].name
    for step in STEPS:
        sa, sb = samples[x][step], samples[y][step]
        ratio = statistics.median(p[0] / q[0] for p, q in zip(sa, sb, strict=True))
        row = {
            x: {"wall": statistics.median(s[0] for s in sa), "rss": max(s[1] for s in sa),
                "cpu": statistics.median(s[2] for s in sa)},
            y: {"wall": statistics.median(s[0] for s in sb), "rss": max(s[1] for s in sb),
                "cpu": statistics.median(s[2] for s in sb)},
            "ratio": ratio,
        }  # fmt: skip
        report["steps"][step] = row  # type: ignore[index]
        lines.append(
            f"| {step} | {row[x]['wall']:.2f} | {row[y]['wall']:.2f} | {ratio:.2f}x | "  # type: ignore[index]
            f"{row[x]['rss']} / {row[y]['rss']} | {row[x]['cpu']:.2f} / {row[y]['cpu']:.2f} |"  # type: ignore[index]
        )
    print(json.dumps(report, indent=2) if args.json else "\n".join(lines))


if __name__ == "__main__":
    main()
