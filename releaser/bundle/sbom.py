"""SBOMs where an image carries none (`releaser bundle --sbom`, docs/trust.md#sboms).

An image whose attachments hold no SBOM (no `.sbom` tag, no CycloneDX or SPDX attestation in its
`.att` tag or among its Sigstore bundle referrers) gets one: syft scans the pinned digest in the
source registry (`syft scan registry:REPO@DIGEST -o cyclonedx-json`), the document is made
reproducible (no random serial number, the bundle's SOURCE_DATE_EPOCH as its timestamp, keys
sorted), wrapped in an in-toto statement whose subject is the pinned digest, signed as a DSSE
envelope with the publisher's releaser key (ECDSA P-256, deterministic nonces) and attached the
way `cosign attest` does: a layer of the image's `.att` manifest (appended to the one the image
already has, whose layers are kept). `cosign verify-attestation --key releaser.pub --type cyclonedx`
then passes at the site. A carried SBOM is never replaced.

This module makes the bytes; bundle/write.py puts them in the layout.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .. import budgets
from ..errors import ToolError
from ..format.records import Attachment
from ..lock import LockedImage, split_reference
from ..registry import is_loopback, sha256_digest
from ..trust import DSSE, IN_TOTO, PREDICATE_TYPES, SIG_ANNOTATION, pae

CYCLONEDX = PREDICATE_TYPES["cyclonedx"]
SBOM_TYPES = frozenset({CYCLONEDX, PREDICATE_TYPES["spdx"], "https://spdx.dev/Document/v2.3"})
SBOM_ARTIFACTS = ("application/vnd.cyclonedx", "application/spdx", "text/spdx")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SYFT_TIMEOUT = 600.0


@dataclass(frozen=True)
class NewBlob:
    digest: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class MadeSbom:
    """What the layout gains for one image: the `.att` manifest (new, or the image's with one more
    layer), its config and the envelope; `replaces`: the `.att` manifest it stands in for, if any."""

    attachment: Attachment
    blobs: tuple[NewBlob, ...]
    replaces: str | None


def find_syft() -> str:
    """syft as $RELEASER_SYFT names it, else on PATH; ToolError with the fix when there is none."""
    named = os.environ.get("RELEASER_SYFT")
    if named and not (os.path.isfile(named) and os.access(named, os.X_OK)):
        raise ToolError(
            f"RELEASER_SYFT={named} is not an executable file",
            fix="point RELEASER_SYFT at the syft binary, or unset it to use the syft on PATH",
        )
    path = named or shutil.which("syft")
    if not path:
        raise ToolError(
            "--sbom needs syft (the SBOM generator), which was not found on PATH",
            fix="install syft (releaser's own setup builds 1.57.2 from its module: scripts/build_go_tools.py) "
            "or set RELEASER_SYFT=/path/to/syft; or bundle without --sbom",
        )
    return path


def carries_sbom(attachments: tuple[Attachment, ...], manifest: Mapping[str, bytes]) -> bool:
    """Does any attachment hold an SBOM? Read from the attachment manifests alone (annotations and
    artifact types), signed or not: an SBOM someone attached is carried as it is, never replaced."""
    for att in attachments:
        if att.tag.endswith(".sbom"):
            return True
        top = _doc(manifest.get(att.digest))
        docs = [top]
        children = top.get("manifests")
        for child in children[: budgets.MAX_REFERRERS] if isinstance(children, list) else []:
            if isinstance(child, dict):
                if str(child.get("artifactType", "")).startswith(SBOM_ARTIFACTS):
                    return True
                docs.append(_doc(manifest.get(str(child.get("digest", "")))))
        if any(_holds_sbom(doc) for doc in docs):
            return True
    return False


def _holds_sbom(doc: dict[str, Any]) -> bool:
    """A manifest that says it is an SBOM: a Sigstore bundle of an SBOM predicate, a `.att` layer
    annotated with one, or a layer whose media type is an SBOM format's."""
    annotations = doc.get("annotations")
    if isinstance(annotations, dict) and annotations.get("dev.sigstore.bundle.predicateType") in SBOM_TYPES:
        return True
    layers = doc.get("layers")
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, dict):
            continue
        notes = layer.get("annotations")
        if isinstance(notes, dict) and notes.get("predicateType") in SBOM_TYPES:
            return True
        if str(layer.get("mediaType", "")).startswith(SBOM_ARTIFACTS):
            return True
    return False


def _doc(content: bytes | None) -> dict[str, Any]:
    if content is None:
        return {}
    try:
        doc = budgets.loads(content)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def scan(syft: str, pin: LockedImage, *, mtime: int, plain_http: bool, ca_file: str | None) -> bytes:
    """syft's CycloneDX JSON for the pinned digest, made reproducible."""
    host = split_reference(pin.repository)[0]
    env = {
        **os.environ,
        "SYFT_CHECK_FOR_APP_UPDATE": "false",
        "SYFT_REGISTRY_INSECURE_USE_HTTP": "true" if plain_http or is_loopback(host) else "false",
        **({"SYFT_REGISTRY_CA_CERT": ca_file} if ca_file else {}),
    }
    try:
        proc = subprocess.run(
            [syft, "scan", f"registry:{pin.pinned}", "-o", "cyclonedx-json", "-q"],
            env=env,
            capture_output=True,
            check=False,
            timeout=SYFT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(
            f"syft did not finish scanning {pin.pinned} in {SYFT_TIMEOUT:.0f} s", fix="retry"
        ) from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise ToolError(
            f"syft could not scan {pin.pinned} (exit {proc.returncode}): {' / '.join(tail)}",
            fix="check that syft reaches the registry (it reads the same credentials as docker), or bundle without --sbom",
        )
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise ToolError(f"syft printed no JSON for {pin.pinned}", fix="check the syft version") from None
    if not isinstance(doc, dict):
        raise ToolError(f"syft printed no CycloneDX document for {pin.pinned}", fix="check the syft version")
    doc.pop("serialNumber", None)  # random per run
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        meta["timestamp"] = datetime.datetime.fromtimestamp(mtime, tz=datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def attest(
    sbom: bytes,
    pin: LockedImage,
    private: ec.EllipticCurvePrivateKey,
    existing: tuple[Attachment, ...],
    manifest: Mapping[str, bytes],
) -> MadeSbom:
    """The SBOM as a signed CycloneDX attestation of the pinned digest, in the image's `.att` manifest."""
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": CYCLONEDX,
        "subject": [{"name": pin.repository, "digest": {"sha256": pin.digest.split(":", 1)[1]}}],
        "predicate": json.loads(sbom),
    }
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    signature = private.sign(pae(IN_TOTO, payload), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    envelope = json.dumps(
        {
            "payloadType": IN_TOTO,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
        },
        separators=(",", ":"),
    ).encode()
    layer = {
        "mediaType": DSSE,
        "size": len(envelope),
        "digest": sha256_digest(envelope),
        "annotations": {SIG_ANNOTATION: "", "predicateType": CYCLONEDX},
    }
    tag = f"sha256-{pin.digest.split(':', 1)[1]}.att"
    old = next((a for a in existing if a.tag == tag), None)
    layers: list[object] = []
    if old is not None:
        kept = _doc(manifest.get(old.digest)).get("layers")
        layers = list(kept) if isinstance(kept, list) else []
    layers.append(layer)
    diff_ids = [str(item["digest"]) for item in layers if isinstance(item, dict)]
    config = json.dumps(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"} for _ in diff_ids],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        separators=(",", ":"),
    ).encode()
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256_digest(config)},
            "layers": layers,
        },
        separators=(",", ":"),
    ).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    return MadeSbom(
        attachment=Attachment(tag=tag, digest=digest, media_type=OCI_MANIFEST, subject=pin.digest),
        blobs=(
            NewBlob(sha256_digest(envelope), DSSE, envelope),
            NewBlob(sha256_digest(config), OCI_CONFIG, config),
            NewBlob(digest, OCI_MANIFEST, body),
        ),
        replaces=old.digest if old is not None else None,
    )


SbomFor = Callable[[LockedImage, tuple[Attachment, ...], Mapping[str, bytes]], MadeSbom | None]


def maker(
    private: ec.EllipticCurvePrivateKey, *, mtime: int, plain_http: bool = False, ca_file: str | None = None
) -> tuple[SbomFor, list[str]]:
    """The SBOM step for `assemble` (syft found now, so a missing one fails before anything is fetched),
    and the list it fills with the names of the images it made an SBOM for."""
    syft = find_syft()
    made: list[str] = []

    def make(pin: LockedImage, carried: tuple[Attachment, ...], held: Mapping[str, bytes]) -> MadeSbom | None:
        if carries_sbom(carried, held):
            return None
        sbom = scan(syft, pin, mtime=mtime, plain_http=plain_http, ca_file=ca_file)
        made.append(pin.name)
        return attest(sbom, pin, private, carried, held)

    return make, made
