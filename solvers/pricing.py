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
  :mod:`solvers._sweep_kernel` (``r`` in 2..4, the default), the legacy compiled kernel
  of :mod:`solvers._sweep_numba` (any ``r``) and numpy (the reference without numba).

An **event** is one (pivot set, point, orientation) candidate: the hyperplane through
the ``r - 1`` pivots and one more point off their affine span, with one of its two
normals. A full sweep prices every event of every valid pivot set; each hyperplane of
``E0`` is an event of ``r`` pivot sets.

Numerical conventions (documented limits of floating point): ``Y`` should be centred and
scaled to unit maximum norm (:class:`convexdict.atoms.AffineFrame` does this). A point
whose signed distance to a hyperplane is below ``ZERO_TOL`` is on it (activation 0);
subsets whose affine span has a singular value below ``RANK_TOL`` are degenerate. Sweep
events whose total activation is small (where running sums lose relative accuracy) are
recomputed directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

ZERO_TOL = 1e-11
RANK_TOL = 1e-10
RECOMPUTE_BELOW = 1e-4
# Relative inflation of a priced maximum before a residual is scaled into the dual
# feasible set, covering floating-point rounding in pricing.
PRICE_SAFETY = 1e-10
_TARGET_FLOATS = 4_000_000


@dataclass(frozen=True)
class PricingResult:
    """Outcome of exact pricing.

    Attributes
    ----------
    max_value : float
        ``max_{e in E0} ||R^T e||`` (0.0 when ``E0`` is empty).
    values : ndarray of shape (m,)
        The ``m <= top`` largest values found, descending.
    hyperplanes : ndarray of shape (m, r + 1)
        Hyperplanes ``u`` (acting on ``(y, 1)``) realising ``values``.
    n_candidates : int
        Number of (hyperplane, orientation) candidates evaluated.
    method : str
        ``"bruteforce"``, ``"sweep"``, ``"partial-sweep"`` or ``"constant"``.
    n_events : int
        Sweep events priced, counted by the kernel (``-1`` when the kernel does not
        count them: brute force, the legacy and numpy sweeps).
    """

    max_value: float
    values: np.ndarray
    hyperplanes: np.ndarray
    n_candidates: int
    method: str
    n_events: int = -1


def count_candidates(n: int, r: int) -> int:
    """Upper bound ``2 * C(n, r)`` on ``|E0|`` for ``n`` points of affine dimension ``r``."""
    return 1 if r == 0 else 2 * comb(n, r)


def sweep_cost(n: int, r: int) -> int:
    """Number of sweep events ``C(n, r - 1) * 2 (n - 1)`` (a work estimate)."""
    if r < 2:
        return count_candidates(n, r) * max(n, 1)
    return comb(n, r - 1) * 2 * max(n - 1, 1)


def group_norms(V: np.ndarray, groups: Sequence[slice] | None) -> np.ndarray:
    """``max_g ||V[..., g]||`` over column groups (all columns when ``groups`` is None)."""
    if groups is None:
        return np.sqrt(np.einsum("...p,...p->...", V, V))
    return np.max(np.stack([np.linalg.norm(V[..., g], axis=-1) for g in groups]), axis=0)


def activations(Y: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Activations ``relu(Yt @ u)`` with the on-hyperplane rule, shape ``(m, N)``.

    Parameters
    ----------
    Y : ndarray of shape (N, r)
    U : ndarray of shape (m, r + 1)
        Hyperplanes; the normal part ``U[:, :r]`` should have unit norm (``r >= 1``).
    """
    A = U[:, :-1] @ Y.T + U[:, -1:]
    A[A <= ZERO_TOL] = 0.0
    return A


class _TopK:
    """Keeps the ``k`` largest (value, hyperplane) pairs seen so far."""

    def __init__(self, k: int, dim: int) -> None:
        self.k = k
        self.values = np.empty(0)
        self.planes = np.empty((0, dim))
        self.best = 0.0

    def push(self, values: np.ndarray, planes_fn) -> None:
        if values.size == 0:
            return
        self.best = max(self.best, float(values.max()))
        if self.k <= 0:
            return
        m = min(self.k, values.size)
        idx = np.argpartition(-values, m - 1)[:m]
        idx = idx[values[idx] > 0]
        vals = np.concatenate([self.values, values[idx]])
        planes = np.vstack([self.planes, planes_fn(idx)])
        keep = np.argsort(-vals, kind="stable")[: self.k]
        self.values, self.planes = vals[keep], planes[keep]


def _constant_result(R: np.ndarray, groups, top: int) -> PricingResult:
    # r == 0: every point is the same; the only realizable activation is uniform.
    value = float(group_norms(R.mean(axis=0), groups))
    planes = np.ones((1, 1)) if top > 0 else np.empty((0, 1))
    values = np.array([value]) if top > 0 else np.empty(0)
    return PricingResult(value, values, planes, 1, "constant")


def subset_batches(n: int, size: int, batch: int) -> Iterator[np.ndarray]:
    it = combinations(range(n), size)
    while True:
        flat = np.fromiter((i for c in _take(it, batch) for i in c), dtype=np.intp)
        if flat.size == 0:
            return
        yield flat.reshape(-1, size)


def _take(it, k):
    for _ in range(k):
        try:
            yield next(it)
        except StopIteration:
            return


def hyperplanes_through(Y: np.ndarray, subsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-normal hyperplanes through each subset of ``r`` points.

    Parameters
    ----------
    Y : ndarray of shape (N, r)
    subsets : ndarray of shape (B, r)
        Point indices.

    Returns
    -------
    U : ndarray of shape (B, r + 1)
        ``U[:, :r]`` unit normal, ``U[:, r]`` offset.
    independent : ndarray of shape (B,)
        Whether the subset is affinely independent (others have arbitrary ``U``).
    """
    P = Y[subsets]  # (B, r, r)
    r = Y.shape[1]
    if r == 1:
        normal = np.ones((len(subsets), 1))
        return np.hstack([normal, -P[:, 0, :]]), np.ones(len(subsets), dtype=bool)
    D = P[:, 1:, :] - P[:, :1, :]  # (B, r-1, r)
    _, s, vh = np.linalg.svd(D, full_matrices=True)
    normal = vh[:, -1, :]  # orthogonal to all differences, unit norm
    offset = -np.einsum("br,br->b", normal, P[:, 0, :])
    return np.hstack([normal, offset[:, None]]), s[:, -1] > RANK_TOL


def price_bruteforce(
    Y: np.ndarray,
    R: np.ndarray,
    *,
    groups: Sequence[slice] | None = None,
    top: int = 0,
) -> PricingResult:
    """Exact pricing by enumerating every ``r``-subset of points (both orientations).

    Parameters
    ----------
    Y : ndarray of shape (N, r)
        Reduced coordinates of full affine rank (centred, unit max norm).
    R : ndarray of shape (N, p)
        Residual (dual candidate).
    groups : sequence of slice, optional
        Column groups of ``R`` (crosscoders); default one group.
    top : int
        How many of the largest candidates to return with their hyperplanes.

    Returns
    -------
    PricingResult
    """
    n, r = Y.shape
    if r == 0:
        return _constant_result(R, groups, top)
    best = _TopK(top, r + 1)
    batch = max(1, _TARGET_FLOATS // max(n, 1))
    n_cand = 0
    for subsets in subset_batches(n, r, batch):
        U, independent = hyperplanes_through(Y, subsets[:, :])
        U = U[independent]
        subsets = subsets[independent]
        for sign in (1.0, -1.0):
            Us = sign * U
            A = activations(Y, Us)
            np.put_along_axis(A, subsets, 0.0, axis=1)  # exactly on the hyperplane
            total = A.sum(axis=1)
            ok = total > 0
            values = np.zeros(len(Us))
            values[ok] = group_norms((A[ok] @ R) / total[ok, None], groups)
            n_cand += len(Us)
            best.push(values, lambda idx, Us=Us: Us[idx])
    return PricingResult(best.best, best.values, best.planes, n_cand, "bruteforce")


def _group_bounds(groups: Sequence[slice] | None, p: int) -> np.ndarray:
    if groups is None:
        return np.array([[0, p]], dtype=np.int64)
    return np.array([g.indices(p)[:2] for g in groups], dtype=np.int64)


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
    """The sweep of :mod:`solvers._sweep_kernel`: per chunk of pivot sets, its ``top``
    best pivot sets (by their best event), merged here."""
    from ._sweep_kernel import sweep_chunks

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
        _group_bounds(groups, R.shape[1]),
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
    best = _TopK(top, r + 1)
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
        ``"fast"``: :mod:`solvers._sweep_kernel` (``r`` in 2..4); ``"legacy"``: the
        previous compiled kernel (:mod:`solvers._sweep_numba`, any ``r``, kept as a
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
    from ._sweep_batched import sweep_batched

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
