"""Merging an attachment tag the target already has (releaser/bundle/attachments.py): the
rules on their own; tests/test_bundle.py runs them against a real registry."""

from __future__ import annotations

import json

import pytest

from releaser.bundle.attachments import CannotMerge, contains, merge
from releaser.registry import sha256_digest

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
SIG = "application/vnd.dev.cosign.simplesigning.v1+json"
PAYLOAD = "sha256:" + "a" * 64


def dump(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def cosign(signature: str) -> tuple[bytes, bytes]:
    """(manifest, config) of a one-signature .sig, as cosign writes it."""
    config = dump(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [PAYLOAD]},
        }
    )
    return dump(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": SIG,
                    "digest": PAYLOAD,
                    "size": 10,
                    "annotations": {"dev.cosignproject.cosign/signature": signature},
                }
            ],
        }
    ), config


def test_two_signatures_of_one_payload_are_two_layers_and_the_config_follows() -> None:
    theirs, their_config = cosign("c2l0ZQ==")
    ours, _ = cosign("cHVibGlzaGVy")  # same payload digest, another key's signature
    merged = merge(theirs, MANIFEST, ours, MANIFEST, their_config)
    assert merged is not None and merged.config is not None
    doc, cfg = json.loads(merged.manifest), json.loads(merged.config)
    assert [la["annotations"]["dev.cosignproject.cosign/signature"] for la in doc["layers"]] == [
        "c2l0ZQ==",
        "cHVibGlzaGVy",
    ]
    assert cfg["rootfs"]["diff_ids"] == [PAYLOAD, PAYLOAD] and len(cfg["history"]) == 2
    assert doc["config"] == {
        "mediaType": CONFIG,
        "digest": sha256_digest(merged.config),
        "size": len(merged.config),
    }
    assert contains(merged.manifest, ours) and contains(merged.manifest, theirs)
    assert merge(merged.manifest, MANIFEST, ours, MANIFEST, merged.config) is None  # never merged twice


def test_a_referrers_index_gains_the_descriptors_it_lacks() -> None:
    a = {"mediaType": MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1, "artifactType": "x"}
    b = {"mediaType": MANIFEST, "digest": "sha256:" + "2" * 64, "size": 1, "artifactType": "y"}
    theirs = dump({"schemaVersion": 2, "mediaType": INDEX, "manifests": [a]})
    ours = dump({"schemaVersion": 2, "mediaType": INDEX, "manifests": [b, a]})
    merged = merge(theirs, INDEX, ours, INDEX, None)
    assert merged is not None and merged.config is None
    assert json.loads(merged.manifest)["manifests"] == [a, b]
    assert merge(merged.manifest, INDEX, ours, INDEX, None) is None


def test_what_cannot_be_merged_is_refused_with_the_reason() -> None:
    sig, _ = cosign("c2l0ZQ==")
    index = dump({"schemaVersion": 2, "mediaType": INDEX, "manifests": []})
    with pytest.raises(CannotMerge, match="the target's is an index, the bundle's a manifest"):
        merge(index, INDEX, sig, MANIFEST, None)
    other, _ = cosign("b3RoZXI=")
    with pytest.raises(CannotMerge, match="was not read"):
        merge(other, MANIFEST, sig, MANIFEST, None)
    with pytest.raises(CannotMerge, match="is not an image config"):
        merge(other, MANIFEST, sig, MANIFEST, b'{"rootfs": {}}')


def test_an_artifact_with_an_empty_config_merges_its_layers_only() -> None:
    empty = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2}
    layer = {"mediaType": "text/spdx+json", "size": 3}
    theirs = dump(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": empty,
            "layers": [{**layer, "digest": "sha256:" + "3" * 64}],
        }
    )
    ours = dump(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": empty,
            "layers": [{**layer, "digest": "sha256:" + "4" * 64}],
        }
    )
    merged = merge(theirs, MANIFEST, ours, MANIFEST, None)
    assert merged is not None and merged.config is None
    assert [la["digest"][-1] for la in json.loads(merged.manifest)["layers"]] == ["3", "4"]
    assert json.loads(merged.manifest)["config"] == empty
