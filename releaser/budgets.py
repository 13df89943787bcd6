"""The budgets every parser of untrusted input works within, in one place (docs/security.md#budgets).

A bundle, a registry's answer and a release file may come from someone else. Each parser
stops at these limits with an ordinary error naming the file or registry, never a hang, a
traceback or unbounded memory. (The YAML budgets live beside the YAML loader:
releaser/yamlsource.py MAX_BYTES, MAX_VALUES, MAX_DEPTH.)
"""

from __future__ import annotations

import json
from typing import Any

from .errors import BudgetExceeded, RegistryError

# JSON: bundle metadata, index.json, manifests, configs, registry answers.
MAX_JSON_BYTES = 4 << 20  # the distribution spec: registries SHOULD accept manifests up to 4 MiB
MAX_JSON_DEPTH = 64  # a manifest nests 4 deep, a config 5; nothing legitimate comes near
MAX_KEPT_JSON = 256 << 20  # manifests and configs a verification keeps for the load, all together

# Files a user names besides the release and lock (read with releaser.fs.read_input).
MAX_KEY_BYTES = 64 << 10  # a PEM key (signing or public) is a few hundred bytes
MAX_ROOT_BYTES = 1 << 20  # a Sigstore trusted root (the public one is about 10 KiB)

# Registry answers.
MAX_ANSWER_BYTES = 4 << 20  # any body read whole: a manifest, a token, a tag list, an error
MAX_CATALOG = 100_000  # repositories a registry's catalog may list (an inventory reads it)
MAX_REFERRERS = 1000  # signatures and attestations read under one subject (a referrers index)
MAX_TAGS = 10_000  # tags of one repository an inventory reads
MAX_INVENTORY_BYTES = (
    64 << 20
)  # an inventory file: ~800,000 digests, far beyond a site's release repositories
MAX_REDIRECTS = 5  # a registry redirects blobs once, to storage; a loop is a fault
MIN_RATE = 1024  # bytes/s: a body slower than this over a whole timeout is a stalled server
DEFAULT_TIMEOUT = 60.0  # seconds to connect, and for a stalled answer ($RELEASER_REGISTRY_TIMEOUT)

# tar members of a bundle (besides what the signed head declares: members and bytes).
MAX_MEMBERS = 200_000  # when the head does not say: a bundle of 500 images holds ~20,000
MAX_EXTRA_MEMBERS = 1000  # beyond what a signed head declares, each reported, before the reading stops
MAX_NAME_BYTES = 4096  # PATH_MAX
MAX_PAX_BYTES = 64 << 10  # one pax or GNU long-name record
MEMBER_OVERHEAD = 4 << 10  # tar header, pax record and padding per member, at most

# zstd.
MAX_WINDOW = 1 << 27  # 128 MiB, zstd's own default limit (`zstd --long` writes no more)
MIN_WINDOW = 1 << 20


def window_for(declared_bytes: int | None) -> int:
    """The largest zstd window a reader accepts: no more than the archive's declared content needs."""
    if not declared_bytes:
        return MAX_WINDOW
    return max(MIN_WINDOW, min(MAX_WINDOW, 1 << max(0, declared_bytes - 1).bit_length()))


def loads(data: bytes | str, *, limit: int = MAX_JSON_BYTES, depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads within the size and depth budgets. Raises ValueError (BudgetExceeded when a
    budget is exceeded, json.JSONDecodeError when it is not JSON)."""
    if len(data) > limit:
        raise BudgetExceeded(f"{len(data)} bytes of JSON, more than the {limit} allowed")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise BudgetExceeded(f"JSON nested deeper than {depth} levels") from None
    if _depth(doc) > depth:
        raise BudgetExceeded(f"JSON nested deeper than {depth} levels")
    return doc


def _depth(doc: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level)
            stack += [(child, level + 1) for child in node if isinstance(child, dict | list)]
    return deepest


def json_object(content: bytes, what: str) -> dict[str, Any]:
    """A registry's answer as a JSON object, or RegistryError saying what it is instead."""
    try:
        doc = loads(content)
    except BudgetExceeded as exc:
        raise RegistryError(f"{what} is too big or too deep: {exc}", fix=BROKEN_ANSWER) from None
    except ValueError:
        raise RegistryError(f"{what} is not JSON", fix=BROKEN_ANSWER) from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} is a JSON {type(doc).__name__}, not an object", fix=BROKEN_ANSWER)
    return doc


BROKEN_ANSWER = (
    "this is not what an OCI registry answers: check the address (a proxy or a web server may be "
    "answering instead), or the registry's logs"
)
