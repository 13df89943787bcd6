"""Kubernetes quantities (100m, 0.5, 64Mi, 1Gi) as numbers: what sums of resources and tmpfs sizes need."""

from __future__ import annotations

import re

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SCALE = {
    None: 1,
    "m": 0.001,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
}


def quantity(value: str) -> float | None:
    """A Kubernetes quantity as a number (CPU in cores, memory in bytes); None when not understood."""
    m = _QUANTITY.match(value.strip())
    return float(m.group(1)) * _SCALE[m.group(2)] if m else None


def byte_count(value: str) -> int | None:
    """A size quantity in whole bytes (64Mi -> 67108864); None when not understood."""
    q = quantity(value)
    return int(q) if q is not None else None
