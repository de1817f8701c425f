"""Shared pieces of exact pricing: tolerances, the result record, candidate counts,
activations, and the brute-force reference (:mod:`convexdict_solvers.pricing.exact` has the
conventions and the sweeps)."""

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
TARGET_FLOATS = 4_000_000


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


class TopK:
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


def constant_result(R: np.ndarray, groups, top: int) -> PricingResult:
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
        return constant_result(R, groups, top)
    best = TopK(top, r + 1)
    batch = max(1, TARGET_FLOATS // max(n, 1))
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


def group_bounds(groups: Sequence[slice] | None, p: int) -> np.ndarray:
    if groups is None:
        return np.array([[0, p]], dtype=np.int64)
    return np.array([g.indices(p)[:2] for g in groups], dtype=np.int64)


