"""The customer's documents: the image catalog (images.json, images.md) and INSTALL.md.

Rendered from the plan and the lock (`releaser render --docs`), and at bundle time with what
only the bundle knows (each image's size in it, its attachments): the same functions, so the
files in a bundle, `releaser airgap inspect BUNDLE --catalog` and `render --docs` agree. Every
output is deterministic (sorted keys, the release's own order, no dates).
docs/airgap.md#the-customers-documents describes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from ..format.records import Attachment, BundledImage
from ..lock import Lock
from ..model import Resources
from ..plan import TCPAO_NODE_LABEL, Plan
from ..quantities import quantity
from ..target import Target
from .helm_values import site_values_example
from .shell import random_alnum

ATTACHMENT_KINDS = {".sig": "signature", ".att": "attestation", ".sbom": "sbom"}


def attachment_kind(tag: str) -> str:
    """signature | attestation | sbom (cosign's tag suffixes) | referrers (the OCI referrers tag schema)."""
    return next((kind for suffix, kind in ATTACHMENT_KINDS.items() if tag.endswith(suffix)), "referrers")


@dataclass(frozen=True, kw_only=True)
class CatalogSource:
    """What the catalog is made of: the lock, which services use each image, and (from a bundle)
    each image's size and attachments."""

    name: str
    version: str
    lock: Lock
    used_by: Mapping[str, tuple[str, ...]]  # image name -> compose services using it
    bundled: Mapping[str, BundledImage] | None = None  # None: rendered before any bundle exists
    chart: tuple[str, str] | None = None  # (ref, digest of its OCI manifest), from a bundle

    @classmethod
    def of_plan(cls, plan: Plan, lock: Lock) -> CatalogSource:
        return cls(name=plan.name, version=plan.version, lock=lock, used_by=used_by(compose_images(plan)))


def compose_images(plan: Plan) -> dict[str, str]:
    """Compose service -> image name, as releaser.json records it (Plan.compose_containers)."""
    return plan.compose_containers()


def used_by(compose: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Image name -> the services that run it, sorted."""
    out: dict[str, list[str]] = {}
    for service, image in sorted(compose.items()):
        out.setdefault(image, []).append(service)
    return {k: tuple(v) for k, v in out.items()}


def catalog(src: CatalogSource) -> dict[str, object]:
    """The image catalog as images.json holds it (docs/airgap.md#imagesjson)."""
    images: list[dict[str, object]] = []
    for pin in src.lock.images:
        bundled = src.bundled.get(pin.name) if src.bundled is not None else None
        if pin.platforms:
            platforms = [
                {"platform": p.platform, "digest": p.digest, "mediaType": p.media_type, "size": p.size}
                for p in pin.platforms
            ]
        else:
            platforms = [
                {
                    "platform": pin.platform,
                    "digest": pin.digest,
                    "mediaType": pin.media_type,
                    "size": pin.size,
                }
            ]
        attachments = None
        if bundled is not None and bundled.attachments is not None:
            attachments = [_attachment(a) for a in bundled.attachments]
        images.append(
            {
                "name": pin.name,
                "source": pin.source,
                "reference": pin.pinned,
                "digest": pin.digest,
                "mediaType": pin.media_type,
                "platforms": platforms,
                "size": bundled.size if bundled is not None else None,
                "attachments": attachments,
                "usedBy": list(src.used_by.get(pin.name, ())),
            }
        )
    sizes = [i["size"] for i in images]
    total = sum(s for s in sizes if isinstance(s, int)) if all(isinstance(s, int) for s in sizes) else None
    return {
        "catalogVersion": 1,
        "release": {"name": src.name, "version": src.version},
        "images": images,
        "totalSize": total,
        "chart": {"ref": src.chart[0], "digest": src.chart[1]} if src.chart else None,
    }


def _attachment(a: Attachment) -> dict[str, object]:
    return {
        "kind": attachment_kind(a.tag),
        "tag": a.tag,
        "digest": a.digest,
        "mediaType": a.media_type,
        "subject": a.subject,
    }


def catalog_json(src: CatalogSource) -> bytes:
    return (json.dumps(catalog(src), indent=2, sort_keys=True) + "\n").encode()


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "(known once bundled)"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def images_md(src: CatalogSource) -> bytes:
    """images.md: the catalog for people (the same facts as images.json)."""
    cat = catalog(src)
    images = cat["images"]
    assert isinstance(images, list)
    lines = [
        f"# Images of {src.name} {src.version}",
        "",
        "Every image is pinned by digest; the same digests are in the chart, the Compose files and",
        "the bundle. Sizes are the bytes each image takes in the bundle (manifests, config and",
        "compressed layers; a layer two images share is counted in both).",
        "",
        "| image | source | pinned digest | platforms | size | attachments | used by |",
        "|---|---|---|---|---|---|---|",
    ]
    for img in images:
        platforms = ", ".join(str(p["platform"] or "not recorded") for p in img["platforms"])
        atts = img["attachments"]
        att = "(not looked up)" if atts is None else ", ".join(a["kind"] for a in atts) or "none"
        lines.append(
            f"| {img['name']} | `{img['source']}` | `{img['digest']}` | {platforms} | {_size(img['size'])} "
            f"| {att} | {', '.join(img['usedBy']) or '-'} |"
        )
    lines += ["", f"Total: {_size(cat['totalSize'])}.", ""]
    for img in images:
        lines += [f"## {img['name']}", "", f"- pinned: `{img['reference']}` ({img['mediaType']})"]
        for p in img["platforms"]:
            lines.append(f"- {p['platform'] or 'platform not recorded'}: `{p['digest']}` ({p['size']} bytes)")
        for a in img["attachments"] or ():
            lines.append(f"- {a['kind']} `{a['tag']}`: `{a['digest']}` (attached to `{a['subject']}`)")
        lines.append("")
    chart = cat["chart"]
    if isinstance(chart, dict):
        lines += ["## chart", "", f"- `{chart['ref']}`: `{chart['digest']}`", ""]
    return "\n".join(lines).encode()


# --- resources: Kubernetes quantities, summed -------------------------------------------------


def _cpu(cores: float) -> str:
    return f"{round(cores * 1000)}m" if cores < 1 else f"{cores:g}"


def _mem(n: float) -> str:
    return f"{n / (1 << 30):g}Gi" if n >= 1 << 30 and n % (1 << 30) == 0 else f"{n / (1 << 20):g}Mi"


@dataclass(frozen=True)
class _Row:
    what: str
    copies: int  # counted in the sums (0 for a job, which runs only once in a while)
    shown: str  # the replicas column
    resources: Resources


def _rows(plan: Plan) -> list[_Row]:
    rows = []
    for svc in plan.services:
        if svc.job:
            copies, shown = 0, "job, runs once"
        elif svc.workload == "DaemonSet":
            copies, shown = 1, "1 per node"
        elif svc.autoscale:
            copies, shown = svc.autoscale.min, f"{svc.autoscale.min}-{svc.autoscale.max} (autoscaled)"
        else:
            copies, shown = svc.replicas, str(svc.replicas)
        rows.append(_Row(svc.name, copies, shown, svc.resources))
        if svc.sidecar:
            rows.append(_Row(f"{svc.name} (TCP-AO sidecar)", copies, shown, svc.sidecar.resources))
            if svc.sidecar.leg_probe:  # the pod's tcpao-leg container: the wire leg in its readiness
                rows.append(_Row(f"{svc.name} (TCP-AO leg probe)", copies, shown, plan.probe_resources))
    return rows


def _resources_table(plan: Plan) -> list[str]:
    lines = [
        "| container | replicas | CPU request | memory request | CPU limit | memory limit |",
        "|---|---|---|---|---|---|",
    ]
    sums: dict[str, float | None] = {"rcpu": 0.0, "rmem": 0.0, "lcpu": 0.0, "lmem": 0.0}
    for row in _rows(plan):
        req, lim = dict(row.resources.requests), dict(row.resources.limits)
        cells = [req.get("cpu"), req.get("memory"), lim.get("cpu"), lim.get("memory")]
        for key, cell in zip(sums, cells, strict=True):
            if row.copies == 0:
                continue
            amount = quantity(cell) if cell else None
            total = sums[key]
            sums[key] = None if amount is None or total is None else total + amount * row.copies
        lines.append(f"| {row.what} | {row.shown} | " + " | ".join(c or "-" for c in cells) + " |")

    def fmt(key: str, f: object) -> str:
        v = sums[key]
        return "-" if v is None else f(v)  # type: ignore[operator]

    lines.append(
        f"| **sum (x replicas)** | | {fmt('rcpu', _cpu)} | {fmt('rmem', _mem)} | {fmt('lcpu', _cpu)} "
        f"| {fmt('lmem', _mem)} |"
    )
    return lines


def _ports_table(plan: Plan) -> list[str]:
    lines = [
        "| service | port | protocol | reachable from | Compose host port | Kubernetes |",
        "|---|---|---|---|---|---|",
    ]
    for svc in plan.services:
        where = "the node's own address (hostNetwork)" if svc.host_network else "a Service"
        for p in svc.ports:
            public = "outside the release" if p.public else "the release only"
            host = f"{p.host_port} (`{p.knob}`)" if p.compose_published else "-"
            lines.append(f"| {svc.name} | {p.port} ({p.name}) | {p.protocol} | {public} | {host} | {where} |")
        if svc.sidecar:
            sc = svc.sidecar
            lines.append(
                f"| {svc.name} (TCP-AO {sc.role}) | {sc.listen_port} | TCP | peer {sc.peer_ip} only | "
                f"host network | the node's own address (hostNetwork) |"
            )
    return lines


def _compose_alone(plan: Plan) -> list[str]:
    """INSTALL.md's Compose without releaser: the secret files (made as the quickstart makes them),
    then Docker Compose or podman-compose with compose.airgap.yaml from step 3."""
    files = plan.compose_secret_files()
    make = [
        f"{random_alnum(f.length)} > {f.path}   # a new random value, read by {f.readers}"
        if f.length
        else f"cp ../../../{f.key} {f.path}   # yours (the file ./{f.key} of step 4), read by {f.readers}"
        for f in files
    ]
    lines = [
        "or with Compose alone, from the bundle's compose directory.",
        *(
            [
                "First the secret files: Compose mounts each, as it is on this host, into the containers",
                "that read it, so each must be readable by their users; the directory keeps others out:",
            ]
            if files
            else []
        ),
        "",
        "```",
        f"cd bundle/compose/{plan.name}",
    ]
    if files:
        lines += [
            "install -d -m 0700 .secrets",
            *make,
            "chmod 0444 .secrets/*   # or, as root, chown each to its readers' UID and chmod 0400",
        ]
    lines += [
        "```",
        "",
        "then with Docker Compose v2 (`--wait`: until every check passes and every job has exited 0):",
        "",
        "```",
        "docker compose -f compose.yaml -f ../../../compose.airgap.yaml up -d --wait",
        "```",
        "",
        "or with podman-compose (compose.podman.yaml: podman's own volume ownership, tmpfs without",
        "uid/gid; `podman ps` shows the health of each check as it runs):",
        "",
        "```",
        "podman-compose -f compose.podman.yaml -f ../../../compose.airgap.yaml up -d",
        "```",
        "",
    ]
    return lines


def install_md(plan: Plan, lock: Lock) -> bytes:
    """INSTALL.md for the customer who receives the bundle."""
    bundle = f"{plan.name}-{plan.version}.tar.zst"
    n = plan.name
    tcpao = [s for s in plan.services if s.sidecar]
    secrets = [
        f"kubectl create secret generic {name} --from-file={key}=./{key}    # {who}"
        for name, key, who in plan.external_secrets
    ]
    lines = [
        f"# Installing {n} {plan.version}",
        "",
        plan.description or "",
        "",
        "Everything below works on a host with no network access but the private registry. The",
        "commands are meant to be copied; replace `registry.local:5000` with your registry and",
        "`publisher.pub` with the publisher's public key, which you received separately.",
        "",
        "## What is in the bundle",
        "",
        "| path | what |",
        "|---|---|",
        "| `releaser.json`, `releaser.json.sig` | the signed metadata; the signature covers `checksums.txt` |",
        "| `checksums.txt` | the SHA-256 of every other file (`sha256sum -c` format) |",
        "| `INSTALL.md`, `images.md`, `images.json` | this guide and the image catalog |",
        "| `load.sh` | loads the images and chart with skopeo, no Python needed |",
        "| `installer/` | `install.sh` and the wheels of `releaser` and its dependencies (when included) |",
        "| `oci-layout`, `index.json`, `blobs/` | every image, signature and the chart, as an OCI image layout |",
        f"| `chart/{n}-{plan.version}.tgz` | the Helm chart |",
        f"| `compose/{n}/` | the Compose quickstart |",
        f"| `quadlet/{n}/` | systemd units for podman 5.0 or later (Quadlet), with their README.md |",
        "| `release/` | `release.yaml` and `release.lock.yaml` it was made from |",
        "",
        f"Images: {len(lock.images)}, listed with their digests, platforms and sizes in `images.md`.",
        "",
        "## 1. Verify before running anything from it",
        "",
        "From the directory that holds the bundle (one file, or its parts `.001`, `.002`, ...) and",
        "`publisher.pub`, with nothing but zstd, tar, openssl and sha256sum:",
        "",
        "```",
        f"mkdir bundle && cat {bundle}* | zstd -dc | tar -x -C bundle",
        "openssl base64 -d -A -in bundle/releaser.json.sig -out releaser.json.sig.der",
        "openssl dgst -sha256 -verify publisher.pub -signature releaser.json.sig.der bundle/releaser.json",
        "grep -A4 '\"checksums\"' bundle/releaser.json | grep sha256   # the same hash as the next line",
        "sha256sum bundle/checksums.txt",
        "(cd bundle && sha256sum -c --quiet --strict checksums.txt) && echo all files intact",
        "```",
        "",
        "`Verified OK`, the same hash twice and `all files intact` mean every file is as the",
        "publisher signed it, `installer/` and `load.sh` included. With `releaser` (step 2) the same",
        f"checks, and every blob's digest, are `releaser airgap verify {bundle} --key publisher.pub`,",
        "which reads the bundle without unpacking it.",
        "",
        "## 2. Install releaser from the bundle (optional)",
        "",
        "Needs CPython 3.11, 3.12, 3.13 or 3.14 with its `venv` module, on Linux x86_64 or aarch64",
        "(glibc 2.28 or newer). Debian 12's `python3` is 3.11; on RHEL 9 (`python3` is 3.9) run",
        "`dnf install python3.11` first; on Ubuntu 22.04 (3.10), `apt install python3.11-venv`.",
        "",
        "```",
        "sh bundle/installer/install.sh     # ./releaser-venv from the bundle's wheels: no network, every hash checked",
        "```",
        "",
        "## 3. Load the images and the chart into your registry",
        "",
        "```",
        f"releaser-venv/bin/releaser airgap {bundle} --to registry.local:5000 --key publisher.pub",
        "# or, with no Python at all (POSIX sh, openssl, sha256sum, skopeo):",
        "sh bundle/load.sh --key publisher.pub --to registry.local:5000",
        "```",
        "",
        "Both verify everything first and push nothing when a check fails, keep every digest, and",
        "write `values-airgap.yaml`, `compose.airgap.yaml` and `registries-airgap.conf` here. Later, "
        f"`releaser-venv/bin/releaser airgap check {bundle} --to registry.local:5000 --key publisher.pub`",
        "confirms the registry still serves all of it.",
        "",
        "## 4. Install",
        "",
        "Kubernetes (Helm 3 or 4):",
        "",
        *(
            [
                "The TCP-AO peers run on nodes you choose, and each is keyed to the other's node address,",
                "which only you know: write them in `site.yaml` (the chart refuses to install without them,",
                'naming each; see "TCP-AO host prerequisites" below):',
                "",
                "```yaml",
                *site_values_example(plan),
                "```",
                "",
            ]
            if plan.site_peers
            else []
        ),
        "```",
        *secrets,
        f"helm install {n} {Target.parse('registry.local:5000').chart_url(n)} --version {plan.version} "
        f"-f values-airgap.yaml{' -f site.yaml' if plan.site_peers else ''}",
        "```",
        "",
        "One host, with the quickstart (secrets generated, readiness awaited; Docker Compose v2 or podman):",
        "",
        "```",
        f"releaser-venv/bin/releaser quickstart {bundle} --key publisher.pub --to registry.local:5000",
        "```",
        "",
        *_compose_alone(plan),
        "One host with podman 5.0 or later and systemd (Quadlet units, started at boot): podman pulls",
        "from your registry by the same digests once step 3's `registries-airgap.conf` is installed,",
        f"then the commands of `bundle/quadlet/{n}/README.md`, as root, from that directory:",
        "",
        "```",
        f"install -m 0644 registries-airgap.conf /etc/containers/registries.conf.d/50-{n}-airgap.conf",
        f"cd bundle/quadlet/{n}   # then README.md's commands",
        "```",
        "",
        "One host with podman 5.0 or later, without a cluster or units (`podman kube play` of the chart):",
        'the same `registries-airgap.conf`, then the commands of the chart\'s README ("podman kube play"),',
        "from the chart's directory:",
        "",
        "```",
        f"install -m 0644 registries-airgap.conf /etc/containers/registries.conf.d/50-{n}-airgap.conf",
        f"tar -xzf bundle/chart/{n}-{plan.version}.tgz -C bundle/chart",
        f'cd bundle/chart/{n}   # then README.md\'s "podman kube play" commands',
        "```",
        "",
        "## Ports",
        "",
        *_ports_table(plan),
        "",
        "## Resources",
        "",
        "Requests and limits per container, as the chart sets them (Kubernetes quantities). A sum",
        "is shown when every container sets that value (`-` otherwise); it counts autoscaled services",
        "at their minimum, a DaemonSet once per node, and jobs not at all.",
        "",
        *_resources_table(plan),
        "",
    ]
    if tcpao:
        names = ", ".join(s.name for s in tcpao)
        lines += [
            "## TCP-AO host prerequisites",
            "",
            f"{names} talk to their BGP/BMP peers over TCP-AO (RFC 5925) through a sidecar:",
            "",
            "- a Linux kernel with `CONFIG_TCP_AO` (6.7 or newer) on every node that runs them;",
            f"  label those nodes: `kubectl label node NODE {TCPAO_NODE_LABEL}=true`;",
            "- each runs on the node `services.<name>.tcpao.node` names (site.yaml above), and its",
            "  `peerIP` is the address of its peer's node, the one the peer's packets come from",
            "  (`kubectl get node NODE -o wide`, INTERNAL-IP); when a peer moves, change both;",
            "- no NAT between the peers (TCP-AO signs addresses and ports): the sidecars use the",
            "  host network, so their ports must be free on the node and open in its firewall;",
            "- the shared key, created before installing (the `kubectl create secret` line above);",
            *(
                [
                    "  16 bytes for `cmac-aes` (AES-128-CMAC-96, what routers speak; 24 or 32 only between",
                    "  Linux peers: the kernel refuses any other length), the same on both peers;",
                ]
                if plan.aes_key_secrets
                else ["  1 to 80 bytes, the same on both peers;"]
            ),
            "- `releaser doctor` checks the kernel, the ports and the key on a Compose host.",
            "",
        ]
    return "\n".join(lines).encode()
