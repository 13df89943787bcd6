"""Attachments already in the target: merged, never replaced.

A signature, attestation or SBOM tag (`sha256-<hex>.sig/.att/.sbom`, or the OCI referrers
tag schema's `sha256-<hex>` index) is shared by everyone who attaches something to that
digest: cosign appends each new signature to the `.sig` manifest as one more layer, and a
client pushing a referrer to a registry without the referrers API adds it to the tag's
index. So when the target's tag already points at something else (the site signed the
image with its own key, say), loading the bundle's version over it would drop theirs.
Instead the two are merged the way those tools do it:

- an index (referrers tag schema): the target's descriptors, then the bundle's that it lacks
  (by digest);
- an image manifest (cosign): the target's layers, then the bundle's that it lacks (by digest
  and annotations: two signatures of one payload differ only in their annotation); the config's
  `rootfs.diff_ids` (and `history`, when it has one entry per layer) follow the layers, as
  cosign's own append writes them.

Anything else (an index against a manifest, a config that is not an image config) is left as
the target has it, and reported; the bundle's manifest is still pushed by digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import budgets
from ..mediatypes import INDEX_TYPES
from ..registry import sha256_digest

IMAGE_CONFIGS = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")


@dataclass(frozen=True)
class Merged:
    manifest: bytes  # the manifest to PUT under the tag
    config: bytes | None = None  # a new config blob to push first (cosign manifests)


class CannotMerge(Exception):
    """The two cannot be merged; the reason is the message."""


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _layer_key(d: dict[str, Any]) -> tuple[str, str]:
    return d["digest"], json.dumps(d.get("annotations") or {}, sort_keys=True)


def _theirs(content: bytes) -> dict[str, Any]:
    """The target's manifest, which may be anything: CannotMerge unless it has a manifest's or
    an index's shape (within budgets.loads)."""
    try:
        doc = budgets.loads(content)
    except ValueError as exc:
        raise CannotMerge(f"the target's manifest is not readable JSON ({exc})") from None
    ok = isinstance(doc, dict) and all(
        isinstance(doc.get(key, []), list)
        and all(isinstance(d, dict) and isinstance(d.get("digest"), str) for d in doc.get(key, []))
        for key in ("manifests", "layers")
    )
    if not ok or not isinstance(doc.get("config", {}), dict):
        raise CannotMerge("the target's manifest is neither an image manifest nor an index")
    return doc  # type: ignore[no-any-return]  # checked above


def config_descriptor(theirs: bytes) -> dict[str, Any]:
    """The config descriptor of the target's manifest ({} when it has none or is malformed)."""
    try:
        return _theirs(theirs).get("config") or {}
    except CannotMerge:
        return {}


def referrers_index(listed: list[dict[str, Any]], tagged: bytes | None) -> bytes:
    """One subject's referrers as the tag schema's index holds them: the descriptors the registry's
    referrers API listed, with those of its tag-schema index (`tagged`, when it has one: a registry
    whose API came later) that the API did not list, sorted by digest. The same referrers give the
    same bytes however they were found, so a bundle stays reproducible."""
    entries = {d["digest"]: d for d in listed}
    if tagged is not None:
        for d in _theirs(tagged).get("manifests") or ():
            if isinstance(d, dict) and isinstance(d.get("digest"), str):
                entries.setdefault(d["digest"], d)
    doc = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPES[0],
        "manifests": [entries[k] for k in sorted(entries)],
    }
    return _dump(doc)


def contains(theirs: bytes, ours: bytes) -> bool:
    """True when the target's manifest already holds everything the bundle's does (False when
    the target's is malformed: the merge then says so)."""
    try:
        t = _theirs(theirs)
    except CannotMerge:
        return False
    o = json.loads(ours)
    if "manifests" in o:
        return {d["digest"] for d in o["manifests"]} <= {d["digest"] for d in t.get("manifests", [])}
    return {_layer_key(d) for d in o.get("layers", [])} <= {_layer_key(d) for d in t.get("layers", [])}


def merge(
    theirs: bytes, their_type: str, ours: bytes, our_type: str, their_config: bytes | None
) -> Merged | None:
    """The target's manifest with what the bundle's adds (None: it adds nothing). Raises
    CannotMerge. `their_config` is the target manifest's config blob (image manifests only)."""
    if contains(theirs, ours):
        return None
    t, o = _theirs(theirs), json.loads(ours)
    if (their_type in INDEX_TYPES) != (our_type in INDEX_TYPES):
        raise CannotMerge(
            f"the target's is {'an index' if their_type in INDEX_TYPES else 'a manifest'}, "
            f"the bundle's {'an index' if our_type in INDEX_TYPES else 'a manifest'}"
        )
    if our_type in INDEX_TYPES:
        have = {d["digest"] for d in t.get("manifests", [])}
        t["manifests"] = [*t.get("manifests", []), *(d for d in o["manifests"] if d["digest"] not in have)]
        return Merged(manifest=_dump(t))
    have_layers = {_layer_key(d) for d in t.get("layers", [])}
    added = [d for d in o.get("layers", []) if _layer_key(d) not in have_layers]
    t["layers"] = [*t.get("layers", []), *added]
    cfg_desc = t.get("config") or {}
    if cfg_desc.get("mediaType") not in IMAGE_CONFIGS:
        return Merged(manifest=_dump(t))  # an artifact's (empty) config does not list layers
    if their_config is None:
        raise CannotMerge(f"the target's config {cfg_desc.get('digest')} was not read (over 1 MiB)")
    try:
        cfg = budgets.loads(their_config)
        rootfs = cfg["rootfs"]
        if not isinstance(rootfs.get("diff_ids"), list):
            raise TypeError("no diff_ids")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CannotMerge(
            f"the target's config {cfg_desc.get('digest')} is not an image config ({exc})"
        ) from None
    before = len(rootfs["diff_ids"])
    rootfs["diff_ids"] = [
        *rootfs["diff_ids"],
        *(d["digest"] for d in added),
    ]  # cosign's layers are uncompressed
    history = cfg.get("history")
    if isinstance(history, list) and history and len(history) == before:
        cfg["history"] = [*history, *([history[-1]] * len(added))]
    config = _dump(cfg)
    t["config"] = {**cfg_desc, "digest": sha256_digest(config), "size": len(config)}
    return Merged(manifest=_dump(t), config=config)
