"""The canonical loss split into its two parts (a plain record, no model needed)."""

from __future__ import annotations

from typing import NamedTuple


class LossTerms(NamedTuple):
    """The canonical loss split into its two parts (both already divided by ``N``)."""

    reconstruction: float
    penalty: float

    @property
    def total(self) -> float:
        """``reconstruction + penalty``."""
        return self.reconstruction + self.penalty
