"""The batched sweeps: numpy (the reference) and the legacy compiled kernel.

Both run :func:`convexdict_solvers.pricing.exact.price_sweep`'s rotating sweep over batches of pivot
sets
of bounded memory. The numpy implementation materialises every event of a batch; the
legacy kernel (:mod:`convexdict_solvers.pricing._numba_sweep`) sweeps one pivot set per thread with
``arctan2`` angles and a full sort of ``2 N`` events. Both are kept as independent
references for :mod:`convexdict_solvers.pricing._numba_kernel` (tests, benchmarks), and serve ``r >=
5``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from convexdict_solvers.pricing.core import (
    RANK_TOL,
    RECOMPUTE_BELOW,
    TARGET_FLOATS,
    ZERO_TOL,
    PricingResult,
    TopK,
    group_bounds,
    group_norms,
    subset_batches,
)


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
        chunk = max(1, TARGET_FLOATS // n)
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


def _plane(w: np.ndarray, enter: np.ndarray, basis: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Hyperplanes (m, r+1) of sweep events from their point's 2-D coordinates ``w (m, 2)``."""
    sgn = np.where(enter == 1, 1.0, -1.0) / np.linalg.norm(w, axis=1)
    nrm = np.stack([w[:, 1] * sgn, -w[:, 0] * sgn], axis=1)
    normal = np.matmul(basis, nrm[..., None])[..., 0]
    offset = -np.einsum("mr,mr->m", normal, origin)
    return np.hstack([normal, offset[:, None]])


def _compiled_kernel():
    try:
        from convexdict_solvers.pricing._numba_sweep import sweep_best
    except ImportError:  # numba missing: the numpy sweep does the same work
        return None
    return sweep_best


def sweep_batched(
    Y: np.ndarray,
    R: np.ndarray,
    groups: Sequence[slice] | None,
    top: int,
    part: tuple[int, int] | None,
    compiled: bool,
) -> PricingResult:
    """The sweep in batches of pivot sets: legacy numba kernel or numpy.

    Same contract as :func:`convexdict_solvers.pricing.exact.price_sweep` (``r >= 2``); ``part=(i,
    k)``
    sweeps every ``k``-th batch from ``i``.
    """
    n, r = Y.shape
    p = R.shape[1]
    per_pivot = 2 * n * (4 * p + 12) + n * (2 * p + 6)
    batch = max(1, TARGET_FLOATS // per_pivot)
    best = TopK(top, r + 1)
    n_cand = 0
    kernel = _compiled_kernel() if compiled else None
    if kernel is not None:
        batch = max(1, TARGET_FLOATS // (3 * n))
    for index, pivots in enumerate(subset_batches(n, r - 1, batch)):
        if part is not None and index % part[1] != part[0] % part[1]:
            continue
        if kernel is not None:
            origin, basis, pivot_ok = _pivot_frames(Y, pivots)
            W = np.matmul(Y[None, :, :] - origin[:, None, :], basis)
            valid = (np.sqrt(W[..., 0] ** 2 + W[..., 1] ** 2) > RANK_TOL) & pivot_ok[:, None]
            bounds = group_bounds(groups, R.shape[1])
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
