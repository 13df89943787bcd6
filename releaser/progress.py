"""What a long stage reports progress to (the CLI draws it; the library never prints)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def set_totals(self, totals: dict[str, int]) -> None:
        """The bytes each image ("" for the chart) will count in all, before the first byte."""

    def __call__(self, name: str, n: int) -> None:
        """`n` more bytes done for image `name`."""
