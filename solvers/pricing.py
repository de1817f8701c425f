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
  ``r = 2``.

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
        ``"bruteforce"``, ``"sweep"`` or ``"constant"``.
    """

    max_value: float
    values: np.ndarray
    hyperplanes: np.ndarray
    n_candidates: int
    method: str


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


def _pivot_frames(Y: np.ndarray, pivots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Origin (B, r), orthonormal 2-D complement basis (B, r, 2) and validity (B,)."""
    r = Y.shape[1]
    origin = Y[pivots[:, 0]]
    if r == 2:
        basis = np.broadcast_to(np.eye(2), (len(pivots), 2, 2))
        return origin, basis, np.ones(len(pivots), dtype=bool)
    if r == 3:  # complement of one direction: two cross products (much cheaper than SVD)
        D = Y[pivots[:, 1]] - origin
        length = np.linalg.norm(D, axis=1)
        a = D / np.where(length > 0, length, 1.0)[:, None]
        helper = np.zeros_like(a)
        helper[np.arange(len(a)), np.argmin(np.abs(a), axis=1)] = 1.0
        e1 = np.cross(a, helper)
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        e2 = np.cross(a, e1)
        return origin, np.stack([e1, e2], axis=2), length > RANK_TOL
    D = Y[pivots[:, 1:]] - origin[:, None, :]  # (B, r-2, r)
    _, s, vh = np.linalg.svd(D, full_matrices=True)
    basis = np.transpose(vh[:, r - 2 :, :], (0, 2, 1))  # (B, r, 2)
    return origin, basis, s[:, -1] > RANK_TOL


def _sweep_batch(Y, R, groups, pivots):
    """Values at every event of a batch of pivot sets.

    Returns ``values (B, 2N)`` and ``event_plane(b, e) -> U (len, r+1)`` for chosen events.
    """
    n, r = Y.shape
    p = R.shape[1]
    B = len(pivots)
    origin, basis, pivot_ok = _pivot_frames(Y, pivots)
    W = np.matmul(Y[None, :, :] - origin[:, None, :], basis)  # (B, N, 2)
    wnorm = np.sqrt(W[..., 0] ** 2 + W[..., 1] ** 2)
    valid = (wnorm > RANK_TOL) & pivot_ok[:, None]
    alpha = np.arctan2(W[..., 1], W[..., 0])
    two_pi = 2 * np.pi
    ang = np.concatenate([alpha - np.pi / 2, alpha + np.pi / 2], axis=1) % two_pi  # (B, 2N)
    order = np.argsort(ang, axis=1)
    sorted_ang = np.take_along_axis(ang, order, axis=1)
    gaps = np.diff(sorted_ang, axis=1, append=sorted_ang[:, :1] + two_pi)
    g = np.argmax(gaps, axis=1)
    rows1 = np.arange(B)
    phi0 = sorted_ang[rows1, g] + gaps[rows1, g] / 2
    rot = (g[:, None] + 1 + np.arange(2 * n)[None, :]) % (2 * n)
    order = np.take_along_axis(order, rot, axis=1)
    ev_j = order % n
    enter = order < n
    rows = rows1[:, None]
    ev_valid = valid[rows, ev_j]
    weight = np.where(enter, 1.0, -1.0) * ev_valid

    active0 = (valid & (((phi0[:, None] - (alpha - np.pi / 2)) % two_pi) < np.pi)).astype(float)
    # Per-point contributions [r_n w_n^T (p x 2, flattened), w_n (2)]: (B, N, 2p + 2).
    contrib = np.concatenate(
        [(R[None, :, :, None] * W[:, :, None, :]).reshape(B, n, 2 * p), W], axis=2
    )
    state = np.matmul(active0[:, None, :], contrib)  # (B, 1, 2p + 2)
    state = state + np.cumsum(contrib[rows, ev_j] * weight[..., None], axis=1)  # (B, 2N, 2p+2)
    w_ev = W[rows, ev_j]  # (B, 2N, 2)
    w_ev_norm = np.where(ev_valid, wnorm[rows, ev_j], 1.0)
    # enter at alpha - pi/2: n = (w1, -w0)/|w|; leave at alpha + pi/2: n = (-w1, w0)/|w|
    sgn = np.where(enter, 1.0, -1.0) / w_ev_norm
    nrm = np.stack([w_ev[..., 1] * sgn, -w_ev[..., 0] * sgn], axis=-1)  # (B, 2N, 2)
    Mn = np.matmul(state[..., : 2 * p].reshape(B, 2 * n, p, 2), nrm[..., None])[..., 0]
    cn = state[..., 2 * p] * nrm[..., 0] + state[..., 2 * p + 1] * nrm[..., 1]
    scale = (wnorm * valid).sum(axis=1)[:, None]
    clean = ev_valid & (cn > RECOMPUTE_BELOW * scale)
    values = np.where(clean, group_norms(Mn, groups) / np.where(clean, cn, 1.0), 0.0)
    # Low-activation events: recompute from the activations themselves.
    fb, fe = np.nonzero(ev_valid & ~clean)
    if fb.size:
        chunk = max(1, _TARGET_FLOATS // n)
        for s in range(0, fb.size, chunk):
            b, e = fb[s : s + chunk], fe[s : s + chunk]
            A = np.matmul(W[b], nrm[b, e][..., None])[..., 0]
            A[A <= ZERO_TOL] = 0.0
            A[np.arange(len(b)), ev_j[b, e]] = 0.0
            A[~valid[b]] = 0.0
            tot = A.sum(axis=1)
            ok = tot > 0
            vals = np.zeros(len(b))
            vals[ok] = group_norms((A[ok] @ R) / tot[ok, None], groups)
            values[b, e] = vals

    def event_plane(b: np.ndarray, e: np.ndarray) -> np.ndarray:
        normal = np.matmul(basis[b], nrm[b, e][..., None])[..., 0]  # (m, r)
        offset = -np.einsum("mr,mr->m", normal, origin[b])
        return np.hstack([normal, offset[:, None]])

    return values, event_plane


def _compiled_kernel():
    try:
        from ._sweep_numba import sweep_best
    except ImportError:  # numba missing: the numpy sweep does the same work
        return None
    return sweep_best


def _group_bounds(groups: Sequence[slice] | None, p: int) -> np.ndarray:
    if groups is None:
        return np.array([[0, p]], dtype=np.int64)
    return np.array([g.indices(p)[:2] for g in groups], dtype=np.int64)


def _plane(w: np.ndarray, enter: np.ndarray, basis: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Hyperplanes (m, r+1) of sweep events from their point's 2-D coordinates ``w (m, 2)``."""
    sgn = np.where(enter == 1, 1.0, -1.0) / np.linalg.norm(w, axis=1)
    nrm = np.stack([w[:, 1] * sgn, -w[:, 0] * sgn], axis=1)
    normal = np.matmul(basis, nrm[..., None])[..., 0]
    offset = -np.einsum("mr,mr->m", normal, origin)
    return np.hstack([normal, offset[:, None]])


def price_sweep(
    Y: np.ndarray,
    R: np.ndarray,
    *,
    groups: Sequence[slice] | None = None,
    top: int = 0,
    part: tuple[int, int] | None = None,
    compiled: bool = True,
) -> PricingResult:
    """Exact pricing by rotating hyperplanes around ``r - 1`` pivot points (``r >= 2``).

    ``compiled`` uses the numba kernel of :mod:`solvers._sweep_numba` when numba is
    installed (the numpy implementation otherwise, and as an independent reference).

    Same contract as :func:`price_bruteforce`; ``O(C(N, r-1) N log N)`` work in batches
    of bounded memory. With ``part=(i, k)`` only every ``k``-th pivot batch (offset ``i``)
    is swept: a *partial* pricing that finds true violators cheaply but proves nothing
    about the rest of ``E0`` (column generation uses it between full pricings).
    """
    n, r = Y.shape
    if r < 2:
        return price_bruteforce(Y, R, groups=groups, top=top)
    p = R.shape[1]
    per_pivot = 2 * n * (4 * p + 12) + n * (2 * p + 6)
    batch = max(1, _TARGET_FLOATS // per_pivot)
    best = _TopK(top, r + 1)
    n_cand = 0
    kernel = _compiled_kernel() if compiled else None
    if kernel is not None:
        batch = max(1, _TARGET_FLOATS // (3 * n))
    for index, pivots in enumerate(subset_batches(n, r - 1, batch)):
        if part is not None and index % part[1] != part[0] % part[1]:
            continue
        if kernel is not None:
            origin, basis, pivot_ok = _pivot_frames(Y, pivots)
            W = np.matmul(Y[None, :, :] - origin[:, None, :], basis)
            valid = (np.sqrt(W[..., 0] ** 2 + W[..., 1] ** 2) > RANK_TOL) & pivot_ok[:, None]
            bounds = _group_bounds(groups, R.shape[1])
            row_best, j, enter = kernel(W, valid, R, bounds, RECOMPUTE_BELOW, ZERO_TOL)
            n_cand += len(pivots) * 2 * (n - 1)
            best.push(
                row_best,
                lambda idx, W=W, j=j, e=enter, o=origin, bs=basis: _plane(
                    W[idx, j[idx]], e[idx], bs[idx], o[idx]
                ),
            )
            continue
        values, event_plane = _sweep_batch(Y, R, groups, pivots)
        n_cand += values.size
        # One candidate per pivot set (its best event): diverse atoms for column generation.
        best_event = np.argmax(values, axis=1)
        row_best = values[np.arange(len(values)), best_event]
        best.push(row_best, lambda idx, f=event_plane, e=best_event: f(idx, e[idx]))
    method = "sweep" if part is None else "partial-sweep"
    return PricingResult(best.best, best.values, best.planes, n_cand, method)


def price(
    Y: np.ndarray,
    R: np.ndarray,
    *,
    groups: Sequence[slice] | None = None,
    top: int = 0,
    method: str = "auto",
    part: tuple[int, int] | None = None,
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
