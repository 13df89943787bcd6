"""Tiny test images, built reproducibly as an OCI image layout, pushed with skopeo.

Base layer: Debian's busybox-static (/bin/busybox + applet links), shared by every
image. Each image adds a small layer of its own. A multi-platform image is an OCI
index over linux/amd64 and linux/arm64 manifests (the arm64 one is a stand-in with
the same binary: tests never run it). Every byte is deterministic: sorted tar
entries, mtime 0, uid/gid 0, gzip mtime 0, so digests are stable across runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
BUSYBOX = Path("/bin/busybox")
APPLETS = ["sh", "cat", "echo", "nc", "wget", "httpd", "sleep", "ls", "true"]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(
    files: dict[str, bytes],
    links: dict[str, str] | None = None,
    owned_dirs: dict[str, tuple[int, int]] | None = None,
) -> tuple[bytes, str]:
    """(gzip bytes, diff_id) of a deterministic tar. `owned_dirs`: extra directories and their uid:gid."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries: list[tuple[str, bytes | None, str | None]] = [(p, d, None) for p, d in files.items()]
        entries += [(p, None, t) for p, t in (links or {}).items()]
        owned = owned_dirs or {}
        parents = {str(Path(p).parent) for p, _, _ in entries} | set(owned)
        for d in list(parents):
            parents.update(str(a) for a in Path(d).parents)
        for d in sorted(parents - {"."}):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            info.uid, info.gid = owned.get(d, (0, 0))
            tar.addfile(info)
        for path, data, target in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if target is not None:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
                tar.addfile(info)
            else:
                assert data is not None
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6) as f:
        f.write(tar_bytes)
    return gz.getvalue(), sha(tar_bytes)


@dataclass
class Layout:
    """An OCI image layout being written."""

    root: Path
    index: list[dict[str, object]] = field(default_factory=list)

    def blob(self, data: bytes) -> str:
        digest = sha(data)
        path = self.root / "blobs" / "sha256" / digest.split(":")[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(data)
        return digest

    def finish(self) -> None:
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (self.root / "index.json").write_text(
            json.dumps(
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index}, separators=(",", ":")
            )
        )


_BASE: tuple[bytes, str] | None = None


def base_layer() -> tuple[bytes, str]:
    global _BASE
    if _BASE is None:
        _BASE = layer({"bin/busybox": BUSYBOX.read_bytes()}, {f"bin/{a}": "busybox" for a in APPLETS})
    return _BASE


def image_manifest(
    lay: Layout,
    name: str,
    arch: str,
    extra: dict[str, bytes],
    *,
    size_pad: int = 0,
    entrypoint: list[str] | None = None,
    links: dict[str, str] | None = None,
    owned_dirs: dict[str, tuple[int, int]] | None = None,
) -> dict[str, object]:
    """Write config + layers + manifest of one platform image; returns its descriptor."""
    layers = [base_layer()]
    files = {f"app/{name}.txt": f"stand-in image {name} for {arch}\n".encode(), **extra}
    if size_pad:
        # incompressible but deterministic filler, for benchmarks and chunked uploads
        filler = b"".join(hashlib.sha256(f"{name}-{i}".encode()).digest() for i in range(size_pad // 32))
        files[f"app/{name}.bin"] = filler
    layers.append(layer(files, links, owned_dirs))
    config: dict[str, object] = {
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": entrypoint or ["/bin/sh"],
            "User": "65532:65532",
            "Labels": {"org.opencontainers.image.title": f"releaser test stand-in: {name}"},
            **({"Env": ["PATH=/usr/local/bin:/bin"]} if entrypoint else {}),
        },
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
    }
    cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": lay.blob(cfg), "size": len(cfg)},
        "layers": [{"mediaType": OCI_LAYER, "digest": lay.blob(gz), "size": len(gz)} for gz, _ in layers],
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    return {
        "mediaType": OCI_MANIFEST,
        "digest": lay.blob(body),
        "size": len(body),
        "platform": {"architecture": arch, "os": "linux"},
    }


def build(
    root: Path,
    name: str,
    tag: str,
    *,
    platforms: tuple[str, ...] = ("amd64",),
    extra: dict[str, bytes] | None = None,
    size_pad: int = 0,
    **image: object,
) -> dict[str, object]:
    """Add image `name:tag` to the layout at `root`; an index when several platforms.
    `image`: entrypoint / links / owned_dirs for image_manifest."""
    lay = Layout(root)
    if (root / "index.json").exists():
        lay.index = json.loads((root / "index.json").read_text())["manifests"]
    children = [
        image_manifest(lay, name, arch, extra or {}, size_pad=size_pad, **image)  # type: ignore[arg-type]
        for arch in platforms
    ]
    if len(children) == 1:
        desc = {k: v for k, v in children[0].items() if k != "platform"}
    else:
        idx = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, separators=(",", ":")
        ).encode()
        desc = {"mediaType": OCI_INDEX, "digest": lay.blob(idx), "size": len(idx)}
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    lay.index = [
        d for d in lay.index if d.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    lay.index.append(desc)
    lay.finish()
    return desc


def push(
    layout: Path,
    tag: str,
    dest: str,
    *,
    tls_verify: bool = False,
    creds: str | None = None,
    cert_dir: Path | None = None,
) -> None:
    """skopeo copy --all oci:LAYOUT:TAG docker://DEST (an independent client, preserving digests)."""
    cmd = [
        "skopeo",
        "copy",
        "--all",
        "--quiet",
        f"--dest-tls-verify={'true' if tls_verify else 'false'}",
        "--preserve-digests",
        f"oci:{layout}:{tag}",
        f"docker://{dest}",
    ]
    if creds:
        cmd.insert(2, f"--dest-creds={creds}")
    if cert_dir:
        cmd.insert(2, f"--dest-cert-dir={cert_dir}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"skopeo copy failed: {proc.stderr}")


def skopeo_digest(
    ref: str, *, tls_verify: bool = False, creds: str | None = None, cert_dir: Path | None = None
) -> str:
    """The digest the registry serves for `ref`, as skopeo sees it (inspect --raw | sha256)."""
    cmd = [
        "skopeo",
        "inspect",
        "--raw",
        f"--tls-verify={'true' if tls_verify else 'false'}",
        f"docker://{ref}",
    ]
    if creds:
        cmd.insert(3, f"--creds={creds}")
    if cert_dir:
        cmd.insert(3, f"--cert-dir={cert_dir}")
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"skopeo inspect failed: {proc.stderr.decode()}")
    return sha(proc.stdout)


def have_tools() -> list[str]:
    return [t for t in ("skopeo", "docker-registry", "htpasswd") if shutil.which(t) is None]


# ------------------------------------------------------------------ runnable stand-ins
STANDINS = Path(__file__).parent / "standins"
# image name (last path element) -> role the stand-in plays in examples/bmp-tcpao
STANDIN_ROLES = {
    "gobmp-tls": "collector",
    "gobgp-stunnel": "speaker",
    "nats": "bus",
    "tcpao-proxy": "proxy",
    # examples/platform
    "console": "console",
    "api": "api",
    "worker": "worker",
    "store": "store",
    # `releaser init`'s template
    "web": "web",
    "redis": "redis",
}


def build_standin(
    root: Path,
    name: str,
    tag: str,
    *,
    platforms: tuple[str, ...] = ("amd64",),
    extra: dict[str, bytes] | None = None,
) -> dict[str, object]:
    """A RUNNABLE stand-in for one image of the example (busybox scripts in tests/support/standins):
    collector/speaker/bus answer their health checks, the speaker sends one numbered line per
    second to its BMP target and keeps its counter in its volume, the collector stores what
    arrives (served at /received on its HTTP port), the tcpao-proxy relays over PLAIN TCP.
    `extra`: more files (another version of the same stand-in)."""
    role = STANDIN_ROLES[name]
    scripts = {
        f"usr/local/bin/{f.name}": f.read_bytes() for f in sorted(STANDINS.iterdir()) if f.name != "nc"
    }
    scripts["usr/local/bin/nc"] = (STANDINS / "nc").read_bytes()  # busybox nc plus -z, ahead on PATH
    links = {
        f"bin/{a}": "busybox" for a in ("timeout", "sed", "head", "wc", "mkdir", "hostname", "id", "sort")
    }
    owned = {"var/lib/gobgp": (65532, 65532)} if role == "speaker" else {}
    entry = ["/usr/local/bin/tcpao-proxy"] if role == "proxy" else ["/usr/local/bin/standin", role]
    return build(
        root,
        f"stand-in-{name}",
        tag,
        platforms=platforms,
        extra={**scripts, **(extra or {})},
        entrypoint=entry,
        links=links,
        owned_dirs=owned,
    )


def push_probe(dest: str) -> None:
    """releaser's own probe image, published as a user does: `releaser probe push` (TLS unverified:
    the tests' registries have self-signed certificates or speak plain HTTP on loopback)."""
    from releaser.commands.probe import push as probe_push
    from releaser.registry import RegistryOptions

    probe_push(dest, RegistryOptions(insecure=True))


def publish_standins(release_text: str, layout: Path, host: str, *, probe: bool = True) -> str:
    """Build the runnable stand-ins of every `registry.example.org/...` image named in an
    example release.yaml (two platforms for gobmp-tls and gobgp-stunnel, like the real ones),
    push them to the registry `host`, and return the release text pointed at that registry.
    `probe=False`: leave releaser's probe image to the caller (`releaser probe push`)."""
    import re

    for full, path, tag in re.findall(r"ref: (registry\.example\.org/(\S+?):([^\s},]+))", release_text):
        name = path.rsplit("/", 1)[1]
        if name == "releaser-probe":
            if probe:
                push_probe(f"{host}/{path}:{tag}")
            continue
        multi = ("amd64", "arm64") if name in ("gobmp-tls", "gobgp-stunnel") else ("amd64",)
        build_standin(layout, name, full, platforms=multi)
        push(layout, full, f"{host}/{path}:{tag}")
    return release_text.replace("registry.example.org", host)


EXAMPLE_RELEASE = Path(__file__).resolve().parents[2] / "examples" / "bmp-tcpao" / "release.yaml"


def platform_release(work: Path, host: str) -> Path:
    """`work/platform/`: examples/platform (release.yaml and its config files) pointed at `host`,
    where its stand-ins are pushed. Returns the release directory (not yet locked)."""
    src = EXAMPLE_RELEASE.parents[1] / "platform"
    rel = work / "platform"
    shutil.copytree(src / "config", rel / "config")
    (rel / "release.yaml").write_text(
        publish_standins((src / "release.yaml").read_text(), work / "layout", host)
    )
    return rel


def failing_platform(rel: Path, dest: Path) -> Path:
    """A copy of the platform release `rel` at `dest` whose migration job fails (its stand-in's
    `--fail`), not yet locked."""
    shutil.copytree(rel, dest)
    text = (dest / "release.yaml").read_text()
    (dest / "release.yaml").write_text(
        text.replace('"--wait-for-store=120s"]', '"--wait-for-store=120s", "--fail"]')
    )
    (dest / "release.lock.yaml").unlink(missing_ok=True)
    return dest


def standin_release(work: Path, host: str, *, subnet: str = "10.77.0") -> Path:
    """`work/bmp-tcpao/`: the example's release.yaml pointed at `host`, where its stand-ins are
    pushed (layout kept in `work/layout`). Returns the release directory (not yet locked).
    `subnet`: the /24 of its Compose network (the example's 10.77.0 unless said), so that stacks of
    two test modules can run at once on engines of their own without their bridges clashing."""
    rel = work / "bmp-tcpao"
    rel.mkdir(parents=True)
    text = publish_standins(EXAMPLE_RELEASE.read_text(), work / "layout", host)
    (rel / "release.yaml").write_text(text.replace("10.77.0.", f"{subnet}."))
    return rel


def edge_release(
    work: Path, images_: dict[str, object], web: dict[str, object], *, name: str = "edge"
) -> Path:
    """`work/NAME/`: a release of a test's own beside the examples, one service `web` (the platform's
    console stand-in, a public port 8181) with what `web` adds or replaces; `images_` holds its image
    `web` (and `probe`, which it then uses). Returns the release directory (not yet locked)."""
    rel = work / name
    rel.mkdir()
    doc: dict[str, object] = {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name, "version": "0.1.0"},
        "images": images_,
        **({"probe": {"image": "probe"}} if "probe" in images_ else {}),
        "services": {
            "web": {
                "image": "web",
                "ports": [{"name": "http", "port": 8181, "exposure": "public"}],
                "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
                **web,
            }
        },
    }
    (rel / "release.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return rel


# ------------------------------------------------------------ things attached to an image
# Signatures, attestations and SBOMs in the formats the tools that make them store them,
# written by hand (cosign cannot be installed here) and pushed with skopeo like everything else.

COSIGN_SIGNATURE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SPDX = "application/spdx+json"


def attached_tag(subject: str, suffix: str) -> str:
    """cosign's tag scheme (suffix .sig/.att/.sbom) and the OCI referrers tag schema (suffix "")."""
    return f"sha256-{subject.split(':', 1)[1]}{suffix}"


def _single_layer(lay: Layout, payload: bytes, media_type: str, annotations: dict[str, str]) -> bytes:
    """A cosign-style manifest: an image config whose one diff_id is the payload, one layer."""
    cfg = json.dumps(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [sha(payload)]},
        },
        separators=(",", ":"),
    ).encode()
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(cfg), "digest": lay.blob(cfg)},
            "layers": [
                {
                    "mediaType": media_type,
                    "size": len(payload),
                    "digest": lay.blob(payload),
                    "annotations": annotations,
                }
            ],
        },
        separators=(",", ":"),
    ).encode()


def _tagged(root: Path, tag: str, body: bytes, media_type: str) -> str:
    lay = Layout(root)
    if (root / "index.json").exists():
        lay.index = json.loads((root / "index.json").read_text())["manifests"]
    digest = lay.blob(body)
    lay.index = [
        d for d in lay.index if d.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    lay.index.append(
        {
            "mediaType": media_type,
            "digest": digest,
            "size": len(body),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    lay.finish()
    return digest


def cosign_signature(root: Path, subject: str, docker_reference: str, key: object) -> tuple[str, bytes, str]:
    """What `cosign sign --key` stores for `subject`: a simple-signing payload naming the digest,
    its ECDSA P-256 / SHA-256 signature in base64 as the layer's annotation. Written to the layout
    under tag sha256-<hex>.sig; returns (tag, payload, base64 signature)."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": subject},
                "type": "cosign container image signature",
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()
    sig = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()  # type: ignore[attr-defined]
    lay = Layout(root)
    body = _single_layer(lay, payload, COSIGN_SIGNATURE, {"dev.cosignproject.cosign/signature": sig})
    tag = attached_tag(subject, ".sig")
    _tagged(root, tag, body, OCI_MANIFEST)
    return tag, payload, sig


def cosign_attestation(root: Path, subject: str) -> str:
    """What `cosign attest` stores: a DSSE envelope of an in-toto statement, tag sha256-<hex>.att."""
    import base64

    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "stand-in", "digest": {"sha256": subject.split(":")[1]}}],
            "predicate": {"builder": {"id": "releaser-tests"}},
        },
        separators=(",", ":"),
    ).encode()
    envelope = json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(statement).decode(),
            "signatures": [{"keyid": "", "sig": "dGVzdA=="}],
        },
        separators=(",", ":"),
    ).encode()
    lay = Layout(root)
    body = _single_layer(lay, envelope, DSSE_ENVELOPE, {"predicateType": "https://slsa.dev/provenance/v0.2"})
    tag = attached_tag(subject, ".att")
    _tagged(root, tag, body, OCI_MANIFEST)
    return tag


def referrers_sbom(root: Path, subject: dict[str, object], name: str = "stand-in") -> str:
    """An SBOM as an OCI 1.1 artifact with `subject`, listed in the referrers tag schema's index
    (tag sha256-<hex>), as a client writes it for a registry without the referrers API."""
    lay = Layout(root)
    sbom = json.dumps({"spdxVersion": "SPDX-2.3", "name": name, "packages": []}).encode()
    empty = lay.blob(b"{}")
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SPDX,
            "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [{"mediaType": SPDX, "digest": lay.blob(sbom), "size": len(sbom)}],
            "subject": subject,
        },
        separators=(",", ":"),
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": lay.blob(artifact),
                    "size": len(artifact),
                    "artifactType": SPDX,
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    tag = attached_tag(str(subject["digest"]), "")
    _tagged(root, tag, index, OCI_INDEX)
    return tag


def put_raw(layout: Path, tag: str, host: str, repo: str) -> None:
    """Push `tag` of the layout with plain distribution-spec requests (monolithic blob uploads,
    manifests PUT children first), for what skopeo 1.9 will not copy unchanged (an index of
    OCI 1.1 artifacts). Plain HTTP test registries only."""
    import requests

    index = json.loads((layout / "index.json").read_text())["manifests"]
    top = next(d for d in index if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)

    def blob(digest: str) -> bytes:
        return (layout / "blobs/sha256" / digest.split(":")[1]).read_bytes()

    def push(desc: dict[str, object], reference: str) -> None:
        body = blob(str(desc["digest"]))
        doc = json.loads(body)
        for child in doc.get("manifests", []):
            push(child, child["digest"])
        for d in [doc.get("config"), *doc.get("layers", [])]:
            if d:
                r = requests.post(f"http://{host}/v2/{repo}/blobs/uploads/", timeout=30)
                assert r.status_code == 202, r.text
                location = requests.compat.urljoin(f"http://{host}/", r.headers["Location"])
                r = requests.put(
                    location,
                    params={"digest": d["digest"]},
                    data=blob(d["digest"]),
                    headers={"Content-Type": "application/octet-stream"},
                    timeout=30,
                )
                assert r.status_code == 201, r.text
        r = requests.put(
            f"http://{host}/v2/{repo}/manifests/{reference}",
            data=body,
            headers={"Content-Type": str(desc["mediaType"])},
            timeout=30,
        )
        assert r.status_code == 201, r.text

    push(top, tag)
