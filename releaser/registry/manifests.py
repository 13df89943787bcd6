"""Manifests as the client reads them: the exact bytes with their media type, descriptors checked
for shape (within the budgets), and the sha256 digest.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ..budgets import BROKEN_ANSWER as _BROKEN_ANSWER
from ..budgets import json_object
from ..errors import RegistryError
from ..mediatypes import INDEX_TYPES, MANIFEST_TYPES

ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A manifest or index exactly as the registry served it."""

    descriptor: Descriptor
    content: bytes
    origin: str = ""  # where it came from, for messages: host/repo@digest

    @property
    def is_index(self) -> bool:
        return self.descriptor.media_type in INDEX_TYPES

    def json(self) -> dict[str, Any]:
        """The manifest as a JSON object; RegistryError when it is none (within budgets.loads)."""
        return json_object(self.content, f"{self.origin or self.descriptor.digest}: the manifest")

    def children(self) -> list[dict[str, Any]]:
        """An index's `manifests`, each checked to be a descriptor (digest, mediaType, size, and
        a platform object when there is one); RegistryError naming the first that is not."""
        entries = self.json().get("manifests")
        if not isinstance(entries, list):
            raise RegistryError(f"{self._where()} has no manifests list", fix=_BROKEN_ANSWER)
        return [self._descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries)]

    def blobs(self) -> list[dict[str, Any]]:
        """An image manifest's config and layers, each checked to be a descriptor."""
        doc = self.json()
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise RegistryError(f"{self._where()}: layers is not a list", fix=_BROKEN_ANSWER)
        return [self._descriptor(doc.get("config"), "config")] + [
            self._descriptor(e, f"layers[{i}]") for i, e in enumerate(layers)
        ]

    def _where(self) -> str:
        return f"{self.origin or self.descriptor.digest}: the {'index' if self.is_index else 'manifest'}"

    def _descriptor(self, e: object, key: str) -> dict[str, Any]:
        if (
            isinstance(e, dict)
            and isinstance(e.get("digest"), str)
            and _DIGEST.fullmatch(e["digest"])
            and isinstance(e.get("mediaType"), str)
            and type(e.get("size")) is int
            and e["size"] >= 0
            and isinstance(e.get("platform", {}), dict)
            and isinstance(e.get("urls", []), list)
        ):
            return e
        raise RegistryError(
            f"{self._where()}: {key} is not a descriptor (sha256 digest, mediaType, size)", fix=_BROKEN_ANSWER
        )


_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
