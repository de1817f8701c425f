"""The one tolerance rule of convexdict (``../shared/CONTRACTS.md``, docs/theory.md).

Every verdict (``certified``, ``certified_global``, "a block improves", "an SAE beats
another") compares two losses with :func:`within_tol`. Losses are nonnegative and scale
as ``s^2`` when the data and ``lam`` are scaled by ``s``; a rule of the form
``upper - lower <= tol * upper`` is therefore unchanged by any such scaling, unlike the
former ``tol * max(1, |upper|)``, which was absolute below a loss of 1.
"""

from __future__ import annotations

import math


def within_tol(upper: float, lower: float, tol: float) -> bool:
    """``upper - lower <= tol * upper``: the gap is closed to relative tolerance ``tol``.

    Parameters
    ----------
    upper : float
        An upper value (an explicit model's loss, ``>= 0``).
    lower : float
        A lower value (a verified bound, or another model's loss).
    tol : float
        Relative tolerance (``>= 0``).

    Returns
    -------
    bool
        False when either value is not finite (an unknown bound closes nothing). When
        ``upper == 0`` this requires ``lower >= 0``: a zero gap.

    Examples
    --------
    >>> within_tol(1.0, 1.0 - 1e-7, 1e-6), within_tol(1e-6, 1e-6 - 1e-13, 1e-6)
    (True, True)
    >>> within_tol(2e-6, 1e-6, 1e-6)
    False
    """
    upper, lower = float(upper), float(lower)
    if not (math.isfinite(upper) and math.isfinite(lower)):
        return False
    return upper - lower <= tol * upper


def relative_gap(upper: float, lower: float) -> float:
    """``(upper - lower) / upper`` (``0.0`` when ``upper == 0``; ``inf`` when unbounded).

    Parameters
    ----------
    upper, lower : float
        As in :func:`within_tol`.
    """
    upper, lower = float(upper), float(lower)
    if not math.isfinite(upper) or not math.isfinite(lower):
        return float("inf")
    if upper == 0.0:
        return 0.0 if lower >= 0.0 else float("inf")
    return (upper - lower) / abs(upper)


def improves(new: float, old: float, tol: float) -> bool:
    """``new`` beats ``old`` by more than the tolerance: ``not within_tol(old, new, tol)``.

    Parameters
    ----------
    new, old : float
        Two losses; ``old`` is the reference (e.g. the user's SAE).
    tol : float
        Relative tolerance.
    """
    new, old = float(new), float(old)
    if not math.isfinite(new):
        return False
    if not math.isfinite(old):
        return True
    return old - new > tol * old
