#!/usr/bin/env python3
"""The airgap rehearsal of the built-in example, end to end, on this machine only.

1. builds STAND-IN images for examples/bmp-tcpao (busybox-based, reproducible: they are
   placeholders with the example's names, not the real gobmp/gobgp/nats/tcpao-proxy),
2. pushes them to a local "publisher" registry, and points a copy of the example at it,
3. releaser lock / render / check / keygen / bundle,
4. releaser airgap verify, then airgap --to a second, "private" registry,
5. proves with skopeo that the private registry serves the lock's digests, and renders
   the chart with values-airgap.yaml (helm template) to show it pulls them by digest,
6. starts a private Docker engine and runs `releaser quickstart BUNDLE --to PRIVATE`:
   the Compose stack runs from the private registry by the locked digests, and the
   collector shows the speaker's lines arriving through both TCP-AO sidecars (over PLAIN
   TCP where the kernel lacks TCP-AO, which it says),
7. stops what it started. Nothing is left behind: the stack is reset, the engine and the
   registries are stopped, and this run's temp directory is removed.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from releaser.quickstart.doctor import tcp_ao_supported  # noqa: E402 - after sys.path
from tests.support import engine as engine_mod  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.docs import commands  # noqa: E402
from tests.support.registry import RegistryServer, free_port  # noqa: E402

RELEASER = str(ROOT / ".venv" / "bin" / "releaser")
HELM = str(ROOT / ".tools" / "bin" / "helm")


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def sh(*cmd: str, env: dict[str, str]) -> str:
    print("$ " + " ".join(cmd).replace(str(ROOT) + "/", ""), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    out = proc.stderr + proc.stdout  # progress first, then the result
    print("\n".join("  " + line for line in out.rstrip().splitlines()), flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"rehearsal failed at: {' '.join(cmd)} (exit {proc.returncode})")
    return proc.stdout


# RELEASER_REHEARSAL_SUBNET: another /24 for the stack's network than the example's 10.77.0, for a
# run beside another stack of the example (the test suite runs it so)
SUBNET = os.environ.get("RELEASER_REHEARSAL_SUBNET", "10.77.0")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="releaser-rehearsal-"))
    env = {
        **os.environ,
        "RELEASER_CACHE": str(work / "cache"),
        # a throwaway key for this run only; real keys take their passphrase from a secret store
        "RELEASER_KEY_PASSPHRASE": secrets.token_urlsafe(24),
    }
    publisher = RegistryServer(work / "publisher").start()
    private = RegistryServer(work / "private").start()
    try:
        step("stand-in images (placeholders for the example's images, built from busybox)")
        release_text = (ROOT / "examples/bmp-tcpao/release.yaml").read_text()
        rel = work / "bmp-tcpao"
        rel.mkdir()
        (rel / "release.yaml").write_text(
            images.publish_standins(release_text, work / "layout", publisher.host).replace(
                "10.77.0.", f"{SUBNET}."
            )
        )
        for path, tag in re.findall(r"ref: registry\.example\.org/(\S+?):(\S+)", release_text):
            print(f"  pushed stand-in {publisher.host}/{path}:{tag}")

        step("lock, render, check")
        sh(RELEASER, "lock", str(rel), env=env)
        sh(RELEASER, "render", str(rel), "--out-dir", str(work / "out"), env=env)
        sh(RELEASER, "check", str(rel), "--out-dir", str(work / "out"), "--helm", HELM, env=env)

        step("sign and bundle")
        sh(RELEASER, "keygen", "--out-dir", str(work / "keys"), env=env)
        bundle = work / "bmp-tcpao-1.4.0.tar.zst"
        sh(
            RELEASER,
            "bundle",
            str(rel),
            "--signing-key",
            str(work / "keys/releaser.key"),
            "--out-file",
            str(bundle),
            env=env,
        )

        step("on the disconnected side: inspect, verify, load into the private registry")
        pub = str(work / "keys/releaser.pub")
        sh(RELEASER, "airgap", "inspect", str(bundle), "--key", pub, env=env)
        sh(RELEASER, "airgap", "verify", str(bundle), "--key", pub, env=env)
        sh(
            RELEASER,
            "airgap",
            str(bundle),
            "--to",
            private.host,
            "--key",
            pub,
            "--out-dir",
            str(work / "site"),
            env=env,
        )

        step("independent checks")

        # the commands of docs/airgap.md "Verifying with other tools", run as written there, in one
        # shell, from a directory holding the bundle under the page's name and releaser.pub (skopeo
        # aside: the page reads an image of its own example)
        site = work / "site-check"
        (site / "bundles").mkdir(parents=True)
        os.link(bundle, site / "bundles/demo-1.0.0.tar.zst")  # zstd will not read through a symbolic link
        shutil.copy(pub, site / "releaser.pub")
        block = next(
            b for b in commands(ROOT / "docs/airgap.md", "tests/test_docs_run.py") if "openssl dgst" in b.text
        )
        script = [ln for ln in block.lines() if not ln.startswith("skopeo ")]
        done = subprocess.run(["sh", "-ec", "\n".join(script)], cwd=site, capture_output=True, text=True)
        for ln in script:
            print(f"  $ {ln}")
        print("".join(f"    {line}\n" for line in (done.stdout + done.stderr).splitlines()[-3:]), end="")
        if done.returncode != 0 or "Verified OK" not in done.stdout:
            raise SystemExit(f"rehearsal failed: docs/airgap.md's commands: {done.stderr.strip()}")
        x = site / "x"
        files = len((x / "checksums.txt").read_text().splitlines())
        print(
            f"  sha256sum: all {files} files listed in checksums.txt match; openssl: the signature is the key's"
        )

        lock = yaml.safe_load((rel / "release.lock.yaml").read_text())
        for _, entry in sorted(lock["images"].items()):
            path = entry["repository"].split("/", 1)[1]
            tag = entry["source"].rsplit(":", 1)[1]
            got = images.skopeo_digest(f"{private.host}/{path}:{tag}")
            mark = "ok" if got == entry["digest"] else "MISMATCH"
            print(
                f"  skopeo: {private.host}/{path}:{tag} -> {got} [{mark}: lock pins {entry['digest'][:19]}...]"
            )
            if got != entry["digest"]:
                raise SystemExit("rehearsal failed: the private registry does not serve the locked digest")
        chart = subprocess.run(
            [
                HELM,
                "pull",
                f"oci://{private.host}/charts/bmp-tcpao",
                "--version",
                "1.4.0",
                "--plain-http",
                "-d",
                str(work),
            ],
            capture_output=True,
            text=True,
        )
        if chart.returncode != 0:
            raise SystemExit(f"rehearsal failed: helm pull: {chart.stderr}")
        # the site's own values: the nodes that run the TCP-AO peers (the chart has no default)
        site = work / "site/site.yaml"
        site.write_text(
            "services:\n"
            "  collector: {tcpao: {node: node-a, peerIP: 192.0.2.20}}\n"
            "  speaker: {tcpao: {node: node-b, peerIP: 192.0.2.10}}\n"
        )
        rendered = subprocess.run(
            [
                HELM,
                "template",
                "bmp",
                str(work / "bmp-tcpao-1.4.0.tgz"),
                "-f",
                str(work / "site/values-airgap.yaml"),
                "-f",
                str(site),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pulled = sorted(set(re.findall(r"image: (\S+)", rendered)))
        print("  helm template with values-airgap.yaml and site.yaml pulls:")
        for ref in pulled:
            print(f"    {ref}")
        if not all(r.startswith(private.host + "/") and "@sha256:" in r for r in pulled):
            raise SystemExit("rehearsal failed: the chart does not pull everything from the private registry")
        quickstart(work, bundle, pub, private.host, env, lock)
        print(
            "\nok: the bundle verified, loaded, and the private registry serves exactly the locked digests;"
        )
        print("    the Compose quickstart ran them from there and carried traffic through both sidecars")
    finally:
        publisher.stop()
        private.stop()
        shutil.rmtree(work, ignore_errors=True)


def quickstart(work: Path, bundle: Path, pub: str, registry: str, env: dict[str, str], lock: dict) -> None:
    import time

    import requests

    step("the Compose quickstart from the bundle (a private Docker engine on this machine)")
    missing = engine_mod.available()
    if missing:
        raise SystemExit(
            f"rehearsal failed: cannot start a Docker engine here (missing: {', '.join(missing)}); "
            "run scripts/setup.sh as root"
        )
    has_ao, detail = tcp_ao_supported()
    port = free_port()
    with engine_mod.DockerEngine() as eng:
        # the Compose v2 plugin and the tools setup.sh installed, also when run outside `make`
        qenv = {
            **env,
            "DOCKER_HOST": eng.host,
            "RELEASER_QUICKSTART_DIR": str(work / "stack"),
            "COLLECTOR_HTTP_PORT": str(port),
            "DOCKER_CONFIG": str(ROOT / ".tools" / "docker"),
            "PATH": f"{ROOT / '.tools' / 'bin'}:{env['PATH']}",
        }
        skip = [] if has_ao else ["--skip", "tcp-ao"]
        if not has_ao:
            print(
                f"  {detail}:\n  the sidecars' wire leg runs over PLAIN TCP in this rehearsal (--skip tcp-ao)"
            )
        try:
            sh(RELEASER, "quickstart", str(bundle), "--key", pub, "--to", registry, *skip, env=qenv)
            ids = subprocess.run(
                ["docker", "ps", "-q"], env=qenv, capture_output=True, text=True, check=True
            ).stdout.split()
            running = sorted(
                set(
                    subprocess.run(
                        ["docker", "inspect", "-f", "{{.Config.Image}}", *ids],
                        env=qenv,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.split()
                )
            )
            digests = {e["digest"] for e in lock["images"].values()}
            print("  containers run:")
            for ref in running:
                print(f"    {ref}")
            if {r.split("@")[-1] for r in running} != digests:
                raise SystemExit("rehearsal failed: the running containers are not the locked digests")
            print(
                f"  speaker -> initiator sidecar 127.0.0.1:5000 -> terminator sidecar {SUBNET}.10:1790 "
                "-> collector 127.0.0.1:11019"
            )
            lines: list[str] = []
            deadline = time.monotonic() + 30
            while len(lines) < 3 and time.monotonic() < deadline:
                time.sleep(1)
                try:
                    lines = requests.get(f"http://127.0.0.1:{port}/received", timeout=3).text.splitlines()
                except requests.RequestException as exc:
                    print(f"  (collector not answering yet: {exc.__class__.__name__})")
            if len(lines) < 3:
                raise SystemExit("rehearsal failed: no traffic arrived at the collector")
            print(f"  the collector received (http://127.0.0.1:{port}/received):")
            for line in lines[:3]:
                print(f"    {line}")
            sh(RELEASER, "quickstart", "status", env=qenv)
        finally:
            if (work / "stack" / "quickstart.json").exists():  # else nothing was started
                sh(RELEASER, "quickstart", "reset", "--yes", env=qenv)


if __name__ == "__main__":
    main()
