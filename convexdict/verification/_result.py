"""The :class:`Verification` record returned by :func:`convexdict.verify`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

NAN_PAIR = (math.nan, math.nan)
STATUSES = ("verified", "refuted", "out_of_reach")


@dataclass
class Verification:
    """Outcome of checking a certificate file.

    Attributes
    ----------
    verified : bool
        ``status == "verified"``.
    status : {"verified", "refuted", "out_of_reach"}
    reason : str
        Why (for ``refuted``: the failing check, e.g. the violated atom or the claim outside
        its interval).
    upper_interval : tuple of float
        Floats ``(a, b)`` enclosing the model's exact loss (``(inf, inf)`` without a model;
        ``(nan, nan)`` when not checked).
    lower_interval : tuple of float
        Floats enclosing the exact dual value of the exactly centred ``R``: a valid lower
        bound on every model's loss at every width once ``R`` was found feasible on all of
        ``E0`` (``(nan, nan)`` when feasibility was not established).
    claimed_upper, claimed_lower, tol : float
        The file's claims.
    exact : bool
        False for the float verdict (plain float64, not rigorous).
    timings : dict of str to float
        Seconds per stage (``load``, ``hash``, ``upper``, ``lower``, ``enumerate``,
        ``total``).
    details : dict
        Exact affine dimension ``rank`` (and the finder's ``finder_rank``), subsets
        enumerated, degenerate subsets, float-filter fallbacks (signs, norms), the largest
        ``||R^T e|| / lam`` seen (float estimate), ...
    """

    verified: bool
    status: str
    reason: str
    upper_interval: tuple[float, float]
    lower_interval: tuple[float, float]
    claimed_upper: float = math.nan
    claimed_lower: float = math.nan
    tol: float = math.nan
    exact: bool = True
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: the verdict, the rigorous intervals and the reason."""
        lo, hi = self.lower_interval, self.upper_interval
        return (
            f"{self.status.upper()}: lower in [{lo[0]:.17g}, {lo[1]:.17g}], upper in "
            f"[{hi[0]:.17g}, {hi[1]:.17g}] (tol {self.tol:g}, "
            f"{self.timings.get('total', 0.0):.2f} s): {self.reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite floats as strings)."""
        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return str(value)
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value

        return clean(asdict(self))
