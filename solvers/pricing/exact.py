"""Exact pricing: the largest dual-constraint value over all realizable activation vertices.

Given reduced, full-affine-rank coordinates ``Y (N, r)`` and a residual ``R (N, p)``,
pricing computes

    max_{e in E0} max_g ||R[:, g]^T e||

where ``E0`` holds the normalised activations ``relu(Yt u) / sum(relu(Yt u))`` of every
hyperplane ``u`` through ``r`` affinely independent points, in both orientations
(THEORY section 2), and ``g`` runs over column groups (one group for an SAE or a
transcoder, one per layer for a crosscoder).

Two exact kernels:

* :func:`price_bruteforce` enumerates every ``r``-subset: ``O(N^{r+1} r)``.
* :func:`price_sweep` (``r >= 2``) fixes ``r - 1`` pivot points and rotates the
  hyperplane around them. The active set changes one point at a time, so the sums
  ``M_S = sum_{n in S} r_n w_n^T`` and ``c_S = sum_{n in S} w_n`` are running sums over
  the angularly sorted events: ``O(C(N, r-1) N log N)``, i.e. ``O(N^2 log N)`` for
  ``r = 2``. Three implementations of the same sweep: the compiled kernel of
  :mod:`convexdict_solvers.pricing._numba_kernel` (``r`` in 2..4, the default), the legacy compiled
  kernel
  of :mod:`convexdict_solvers.pricing._numba_sweep` (any ``r``) and numpy (the reference without
  numba).

An **event** is one (pivot set, point, orientation) candidate: the hyperplane through
the ``r - 1`` pivots and one more point off their affine span, with one of its two
normals. A full sweep prices every event of every valid pivot set; each hyperplane of
``E0`` is an event of ``r`` pivot sets.

Numerical conventions (documented limits of floating point): ``Y`` should be centred and
scaled to unit maximum norm (:class:`convexdict.convex.atoms.AffineFrame` does this). A point
whose signed distance to a hyperplane is below ``ZERO_TOL`` is on it (activation 0);
subsets whose affine span has a singular value below ``RANK_TOL`` are degenerate. Sweep
events whose total activation is small (where running sums lose relative accuracy) are
recomputed directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

import numpy as np
from convexdict_solvers.pricing.core import (  # noqa: F401  (re-exported: the pricing API)
    PRICE_SAFETY,
    RANK_TOL,
    RECOMPUTE_BELOW,
    TARGET_FLOATS,
    ZERO_TOL,
    PricingResult,
    TopK,
    activations,
    constant_result,
    count_candidates,
    group_bounds,
    group_norms,
    hyperplanes_through,
    price_bruteforce,
    subset_batches,
    sweep_cost,
)

KERNELS = ("auto", "fast", "legacy", "numpy")
_FAST_RANKS = (2, 3, 4)
_CHUNKS_PER_PART = 32
_EARLY_CHUNKS = 256


def _resolve_kernel(kernel: str, r: int) -> str:
    if kernel not in KERNELS:
        raise ValueError(
            f"The 'kernel' parameter must be one of {', '.join(map(repr, KERNELS))}. "
            f"Got {kernel!r}."
        )
    if kernel == "numpy":
        return kernel
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numpy"
    if kernel == "auto":
        return "fast" if r in _FAST_RANKS else "legacy"
    if kernel == "fast" and r not in _FAST_RANKS:
        raise ValueError(
            f"The 'kernel' parameter 'fast' handles affine dimension 2 to 4. Got {r}; "
            "use kernel='auto' (the legacy kernel then)."
        )
    return kernel


@dataclass(frozen=True)
class EarlyStop:
    """Ask a sweep to stop early: once a fraction ``min_fraction`` of the pivot sets has
    been swept and ``count`` pivot sets with a value above ``threshold`` have been found,
    chunks not yet started are skipped.

    The result is then a partial pricing (``method == "partial-sweep"``): its violators
    are true violators, but it proves nothing about the rest of ``E0``. When every
    chunk was swept anyway, the result is a full exact pricing (``method == "sweep"``).
    ``offset`` rotates the order in which chunks are visited (e.g. the round number).
    """

    threshold: float
    count: int
    offset: int = 0
    min_fraction: float = 1 / 16


def _price_fast(Y, R, groups, top: int, part) -> PricingResult:
    """The sweep of :mod:`convexdict_solvers.pricing._numba_kernel`: per chunk of pivot sets, its
    ``top``
    best pivot sets (by their best event), merged here."""
    from convexdict_solvers.pricing._numba_kernel import sweep_chunks

    n, r = Y.shape
    total = comb(n, r - 1)
    i, k, stop = 0, 1, EarlyStop(0.0, 0)
    if isinstance(part, EarlyStop):
        stop, n_chunks = part, min(total, _EARLY_CHUNKS)
    else:
        i, k = part if part is not None else (0, 1)
        i %= k
        n_chunks = max(1, min(total, k * _CHUNKS_PER_PART))
    top_v, top_u, events, swept = sweep_chunks(
        np.ascontiguousarray(Y, dtype=np.float64),
        np.ascontiguousarray(R, dtype=np.float64),
        group_bounds(groups, R.shape[1]),
        max(top, 1),
        n_chunks,
        i,
        k,
        float(stop.threshold),
        int(stop.count),
        int(np.ceil(stop.min_fraction * n_chunks)),
        int(stop.offset),
        RECOMPUTE_BELOW,
        ZERO_TOL,
        RANK_TOL,
    )
    best = TopK(top, r + 1)
    flat_u = top_u.reshape(-1, r + 1)
    best.push(top_v.reshape(-1), lambda idx: flat_u[idx])
    size = -(-total // n_chunks)
    n_piv = sum(min(total, (c + 1) * size) - c * size for c in np.flatnonzero(swept))
    method = "sweep" if swept.all() else "partial-sweep"
    return PricingResult(
        best.best, best.values, best.planes, n_piv * 2 * (n - 1), method, int(events.sum())
    )


def price_sweep(
    Y: np.ndarray,
    R: np.ndarray,
    *,
    groups: Sequence[slice] | None = None,
    top: int = 0,
    part: tuple[int, int] | EarlyStop | None = None,
    compiled: bool = True,
    kernel: str = "auto",
) -> PricingResult:
    """Exact pricing by rotating hyperplanes around ``r - 1`` pivot points (``r >= 2``).

    Same contract as :func:`price_bruteforce`; ``O(C(N, r-1) N log N)`` work. With
    ``part=(i, k)`` only every ``k``-th chunk of pivot sets (offset ``i``) is swept: a
    *partial* pricing that finds true violators cheaply but proves nothing about the
    rest of ``E0`` (column generation uses it between full pricings). With
    ``part=EarlyStop(...)`` the fast kernel stops once enough violators are found
    (:class:`EarlyStop`); the other kernels then sweep everything (a full pricing
    satisfies any early-stop request). ``method`` tells which one the result is.

    Parameters
    ----------
    kernel : {"auto", "fast", "legacy", "numpy"}
        ``"fast"``: :mod:`convexdict_solvers.pricing._numba_kernel` (``r`` in 2..4); ``"legacy"``:
        the
        previous compiled kernel (:mod:`convexdict_solvers.pricing._numba_sweep`, any ``r``, kept as
        a
        reference and for benchmarks); ``"numpy"``: the numpy implementation (also
        what the compiled kernels fall back to without numba). ``"auto"`` takes
        ``"fast"`` where it applies, else ``"legacy"``.
    compiled : bool
        False forces ``kernel="numpy"`` (kept for compatibility).
    """
    n, r = Y.shape
    if r < 2:
        return price_bruteforce(Y, R, groups=groups, top=top)
    choice = _resolve_kernel(kernel if compiled else "numpy", r)
    if choice == "fast":
        return _price_fast(Y, R, groups, top, part)
    from convexdict_solvers.pricing._batched_sweep import sweep_batched

    if isinstance(part, EarlyStop):
        part = None
    return sweep_batched(Y, R, groups, top, part, compiled=choice == "legacy")


def price(
    Y: np.ndarray,
    R: np.ndarray,
    *,
    groups: Sequence[slice] | None = None,
    top: int = 0,
    method: str = "auto",
    part: tuple[int, int] | EarlyStop | None = None,
) -> PricingResult:
    """Exact pricing with the kernel chosen by ``method`` (``auto``, ``sweep``, ``bruteforce``).

    ``auto`` takes the sweep for ``r >= 2`` unless brute force is cheaper. ``part`` asks
    the sweep for a partial pricing (see :func:`price_sweep`); it is ignored by brute force.
    """
    n, r = Y.shape
    if method == "auto":
        brute = count_candidates(n, r) * n * (r + 2)
        method = (
            "sweep" if r >= 2 and sweep_cost(n, r) * (4 * R.shape[1] + 8) < brute else "bruteforce"
        )
    if method == "sweep":
        return price_sweep(Y, R, groups=groups, top=top, part=part)
    if method == "bruteforce":
        return price_bruteforce(Y, R, groups=groups, top=top)
    raise ValueError(
        f"The 'method' parameter must be one of 'auto', 'sweep', 'bruteforce'. Got {method!r}."
    )
