"""Compiled rotating-sweep kernel (numba) for affine dimension ``r`` in 2, 3, 4.

Same mathematics as the legacy kernel (:mod:`convexdict_solvers.pricing._numba_sweep`) and the numpy
sweep
(:mod:`convexdict_solvers.pricing.exact`): for every set of ``r - 1`` pivot points, rotate the
hyperplanes
through them and keep the running sums ``M = sum_{n in S} r_n w_n^T`` and
``c = sum_{n in S} w_n`` over the active set ``S``, where ``w_n`` are the 2-D coordinates
of point ``n`` in the orthogonal complement of the pivots' affine span.

**Event.** One event is one (pivot set, point, orientation) candidate: the hyperplane
through the pivots and one more valid point ``k``, with one of its two normals. A valid
pivot set has ``2 m`` events, ``m`` the number of points off its affine span (at most
``N - r + 1``); the kernel counts the events it prices.

What makes it fast, without changing the set of hyperplanes that are priced:

* **Half-turn order.** Point ``k`` enters the active set at normal angle
  ``alpha_k - pi/2`` and leaves at ``alpha_k + pi/2``: the two events are antipodal. Each
  point is sorted once, by the angle in ``[0, pi)`` of whichever of its two normals lies
  in the upper half plane (a division-only pseudo-angle, no ``arctan2``). The first half
  turn visits the events in that order, the second half turn the same order with every
  normal and every update negated. The start (normal angle ``0^-``) needs no gap search:
  ``k`` is active there iff ``w_k0 > 0`` or ``(w_k0 == 0 and w_k1 < 0)``.
* **Incremental order.** Consecutive pivot sets of a chunk differ in one point and the
  2-D frame is carried over (parallel transport of the previous basis), so the previous
  permutation is nearly sorted: an insertion sort repairs it in ``O(N + inversions)``.
  When the inversions exceed ``8 N`` it falls back to a heap sort (``O(N log N)``).
* **No allocation in the pivot loop:** every buffer is allocated once per chunk.
* **Squared comparisons:** an event is compared as ``|M h|^2 > best^2 (c . h)^2`` with
  the unnormalised normal ``h``; ``sqrt`` and division run only on improvements.
* **Balanced split:** pivot sets are numbered in lexicographic order, cut into equal
  chunks, and chunks are spread over the threads (``prange``).

Each chunk keeps its ``K`` best pivot sets (by their best event), with the hyperplane of
that event. Low-activation events (``c . n`` below ``recompute_below`` times the sum of
``|w|``) are recomputed from the activations, as in the legacy kernel.
"""

from __future__ import annotations

import numpy as np
from convexdict_solvers.pricing._sweep_parts import (
    _comb,
    _frame,
    _next_subset,
    _radix_sort,
    _unrank,
)
from numba import njit, prange


@njit(cache=True)
def _value2(M, h0, h1, bounds, v):
    """``max_g ||(M h)[g]||^2`` for the 2-D normal ``h`` (``v`` is scratch)."""
    for q in range(M.shape[0]):
        v[q] = M[q, 0] * h0 + M[q, 1] * h1
    best = 0.0
    for g in range(bounds.shape[0]):
        acc = 0.0
        for q in range(bounds[g, 0], bounds[g, 1]):
            acc += v[q] * v[q]
        if acc > best:
            best = acc
    return best


@njit(cache=True)
def _recompute(W, valid, R, k, n0, n1, bounds, zero_tol, v):
    """Value of the event with unit normal ``n`` from the activations themselves."""
    tot = 0.0
    for q in range(R.shape[1]):
        v[q] = 0.0
    for i in range(W.shape[0]):
        if i == k or not valid[i]:
            continue
        a = W[i, 0] * n0 + W[i, 1] * n1
        if a > zero_tol:
            tot += a
            for q in range(R.shape[1]):
                v[q] += a * R[i, q]
    if not tot > 0:
        return 0.0
    best = 0.0
    for g in range(bounds.shape[0]):
        acc = 0.0
        for q in range(bounds[g, 0], bounds[g, 1]):
            acc += v[q] * v[q]
        if acc > best:
            best = acc
    return np.sqrt(best) / tot


@njit(cache=True)
def _events(nv, ev, c0, c1, M, best, idx, hn, W, valid, R, bounds, zero_tol, v):
    """Both half turns of one pivot set: the best value above ``best``, its event
    (position in sweep order, -1 if none) and half turn (``+1`` first, ``-1`` second).

    ``M (p, 2)``, ``c0, c1`` hold the running sums at the start; ``ev`` the events.
    """
    p = M.shape[0]
    best2 = best * best
    best_i = -1
    best_f = 1.0
    for half in range(2):
        f = 1.0 if half == 0 else -1.0
        for i in range(nv):
            a0 = f * ev[i, 0]
            a1 = f * ev[i, 1]
            c0 += a0
            c1 += a1
            for qq in range(p):
                M[qq, 0] += ev[i, 5 + qq] * a0
                M[qq, 1] += ev[i, 5 + qq] * a1
            h0 = f * ev[i, 2]
            h1 = f * ev[i, 3]
            cn = c0 * h0 + c1 * h1
            if cn > ev[i, 4]:
                g2 = _value2(M, h0, h1, bounds, v)
                if g2 > best2 * cn * cn:
                    best = np.sqrt(g2) / cn
                    best2 = best * best
                    best_i, best_f = i, f
            else:  # low total activation: recompute from the activations
                k = idx[i]
                val = _recompute(W, valid, R, k, h0 / hn[k], h1 / hn[k], bounds, zero_tol, v)
                if val > best:
                    best, best2 = val, val * val
                    best_i, best_f = i, f
    return best, best_i, best_f


@njit(cache=True)
def _events4(nv, ev, c0, c1, M, best, idx, hn, W, valid, R, bounds, zero_tol, v):
    """:func:`_events` for one column group of at most 4 columns, the running sums in
    registers (``ev`` zero-padded to 4 residual columns)."""
    p = M.shape[0]
    m00, m01 = M[0, 0], M[0, 1]
    m10 = m11 = m20 = m21 = m30 = m31 = 0.0
    if p > 1:
        m10, m11 = M[1, 0], M[1, 1]
    if p > 2:
        m20, m21 = M[2, 0], M[2, 1]
    if p > 3:
        m30, m31 = M[3, 0], M[3, 1]
    best2 = best * best
    best_i = -1
    best_f = 1.0
    for half in range(2):
        f = 1.0 if half == 0 else -1.0
        for i in range(nv):
            a0 = f * ev[i, 0]
            a1 = f * ev[i, 1]
            c0 += a0
            c1 += a1
            r0, r1, r2, r3 = ev[i, 5], ev[i, 6], ev[i, 7], ev[i, 8]
            m00 += r0 * a0
            m01 += r0 * a1
            m10 += r1 * a0
            m11 += r1 * a1
            m20 += r2 * a0
            m21 += r2 * a1
            m30 += r3 * a0
            m31 += r3 * a1
            h0 = f * ev[i, 2]
            h1 = f * ev[i, 3]
            cn = c0 * h0 + c1 * h1
            if cn > ev[i, 4]:
                v0 = m00 * h0 + m01 * h1
                v1 = m10 * h0 + m11 * h1
                v2 = m20 * h0 + m21 * h1
                v3 = m30 * h0 + m31 * h1
                g2 = v0 * v0 + v1 * v1 + v2 * v2 + v3 * v3
                if g2 > best2 * cn * cn:
                    best = np.sqrt(g2) / cn
                    best2 = best * best
                    best_i, best_f = i, f
            else:  # low total activation: recompute from the activations
                k = idx[i]
                val = _recompute(W, valid, R, k, h0 / hn[k], h1 / hn[k], bounds, zero_tol, v)
                if val > best:
                    best, best2 = val, val * val
                    best_i, best_f = i, f
    return best, best_i, best_f


@njit(cache=True)
def _push(top_v, top_u, c, val, u):
    """Insert ``(val, u)`` into chunk ``c``'s top list if it beats the smallest kept."""
    K = top_v.shape[1]
    worst = 0
    for i in range(1, K):
        if top_v[c, i] < top_v[c, worst]:
            worst = i
    if val > top_v[c, worst]:
        top_v[c, worst] = val
        for t in range(u.shape[0]):
            top_u[c, worst, t] = u[t]


@njit(cache=True)
def _threshold(top_v, c):
    worst = top_v[c, 0]
    for i in range(1, top_v.shape[1]):
        if top_v[c, i] < worst:
            worst = top_v[c, i]
    return worst


@njit(cache=True, parallel=True)
def sweep_chunks(
    Y,
    R,
    bounds,
    K,
    n_chunks,
    part,
    n_parts,
    stop_above,
    stop_count,
    min_swept,
    offset,
    recompute_below,
    zero_tol,
    rank_tol,
):
    """Exact rotating sweep over every pivot set, in ``n_chunks`` balanced chunks.

    Parameters
    ----------
    Y : (N, r) float64, reduced coordinates, r in {2, 3, 4}
    R : (N, p) float64, residual
    bounds : (G, 2) int64, column groups ``[start, stop)``
    K : int, pivot sets kept per chunk (their best event each)
    n_chunks : int, number of chunks of consecutive pivot sets
    part, n_parts : int, sweep only the chunks ``c`` with ``c % n_parts == part``
    stop_above, stop_count, min_swept : float, int, int, early exit (``stop_count > 0``):
        chunks not yet started are skipped once ``min_swept`` chunks are done and
        ``stop_count`` kept pivot sets with a value above ``stop_above`` have been found
        (the counts are shared between threads without locks: they may run late, never
        early)
    offset : int, the chunks are visited in the order ``(offset + s) * stride mod
        n_chunks`` (``stride`` coprime to ``n_chunks``), spread over all pivot sets

    Returns
    -------
    top_v : (n_chunks, K) float64, best event values of the kept pivot sets (0: none)
    top_u : (n_chunks, K, r + 1) float64, their hyperplanes (unit normal, offset)
    events : (n_chunks,) int64, events priced per chunk
    swept : (n_chunks,) bool, chunks swept (all of them unless the early exit fired)
    """
    N, r = Y.shape
    p = R.shape[1]
    m = r - 1
    total = _comb(N, m)
    size = (total + n_chunks - 1) // n_chunks
    top_v = np.zeros((n_chunks, K))
    top_u = np.zeros((n_chunks, K, r + 1))
    events = np.zeros(n_chunks, dtype=np.int64)
    swept = np.zeros(n_chunks, dtype=np.bool_)
    found = np.zeros(1, dtype=np.int64)
    done = np.zeros(1, dtype=np.int64)
    stride = 1
    for cand in range(n_chunks // 2 + 1, n_chunks):  # coprime, far from 1
        a, b = cand, n_chunks
        while b:
            a, b = b, a % b
        if a == 1:
            stride = cand
            break
    bits, passes = (6, 4) if N <= 128 else (8, 3) if N <= 2048 else (11, 2)
    fast = p <= 4 and bounds.shape[0] == 1
    for slot in prange(n_chunks):
        c = ((offset + slot) * stride) % n_chunks
        if c % n_parts != part:
            continue
        if stop_count > 0 and found[0] >= stop_count and done[0] >= min_swept:
            continue
        start = c * size
        stop = min(total, start + size)
        if start >= stop:
            swept[c] = True
            continue
        # Scratch, allocated once per chunk: nothing is allocated in the pivot loop.
        piv = np.empty(m, dtype=np.int64)
        Q = np.empty((r, r))
        basis = np.zeros((2, r))
        tmp = np.empty(r)
        W = np.empty((N, 2))
        valid = np.empty(N, dtype=np.bool_)
        key = np.empty(N)
        hn = np.empty(N)
        idx = np.empty(N, dtype=np.int64)
        q = np.empty(N, dtype=np.int64)
        q2 = np.empty(N, dtype=np.int64)
        idx2 = np.empty(N, dtype=np.int64)
        fk = np.empty(N)
        cnt = np.empty((passes, 1 << bits), dtype=np.int64)
        # Per event in sweep order: the first half turn's update direction (2), its
        # unnormalised normal (2), the recompute floor, the residual row (p, padded to 4).
        ev = np.zeros((N, 5 + max(p, 4)))
        M = np.zeros((p, 2))
        v = np.empty(p)
        u = np.empty(r + 1)
        n_events = 0
        _unrank(start, N, m, piv)
        for t_piv in range(start, stop):
            if t_piv > start:
                _next_subset(piv, N)
            if not _frame(Y, piv, Q, basis, rank_tol, tmp):
                continue
            o = piv[0]
            scale = 0.0
            c0 = 0.0
            c1 = 0.0
            for qq in range(p):
                M[qq, 0] = 0.0
                M[qq, 1] = 0.0
            nv = 0
            for k in range(N):
                a0 = 0.0
                a1 = 0.0
                for t in range(r):
                    d = Y[k, t] - Y[o, t]
                    a0 += d * basis[0, t]
                    a1 += d * basis[1, t]
                W[k, 0] = a0
                W[k, 1] = a1
                hn[k] = np.sqrt(a0 * a0 + a1 * a1)
                valid[k] = hn[k] > rank_tol
                if not valid[k]:
                    continue
                scale += hn[k]
                idx[nv] = k
                nv += 1
                if a0 > 0 or (a0 == 0 and a1 < 0):  # active at the start: leaves first
                    c0 += a0
                    c1 += a1
                    for qq in range(p):
                        M[qq, 0] += R[k, qq] * a0
                        M[qq, 1] += R[k, qq] * a1
                    key[k] = 1.0 - (-a1) / (abs(a1) + a0)
                else:  # inactive at the start: enters first
                    key[k] = 1.0 - a1 / (abs(a1) - a0)
            _radix_sort(key, idx, nv, q, q2, idx2, fk, cnt, bits, passes)
            for i in range(nv):  # event data in sweep order, one row per point
                k = idx[i]
                a0 = W[k, 0]
                a1 = W[k, 1]
                if a0 > 0 or (a0 == 0 and a1 < 0):
                    ev[i, 0], ev[i, 1], ev[i, 2], ev[i, 3] = -a0, -a1, -a1, a0
                else:
                    ev[i, 0], ev[i, 1], ev[i, 2], ev[i, 3] = a0, a1, a1, -a0
                ev[i, 4] = recompute_below * scale * hn[k]
                for qq in range(p):
                    ev[i, 5 + qq] = R[k, qq]
            best = _threshold(top_v, c)
            if fast:
                best, best_i, best_f = _events4(
                    nv, ev, c0, c1, M, best, idx, hn, W, valid, R, bounds, zero_tol, v
                )
            else:
                best, best_i, best_f = _events(
                    nv, ev, c0, c1, M, best, idx, hn, W, valid, R, bounds, zero_tol, v
                )
            n_events += 2 * nv
            if best_i >= 0:
                k = idx[best_i]
                n0 = best_f * ev[best_i, 2] / hn[k]
                n1 = best_f * ev[best_i, 3] / hn[k]
                off = 0.0
                for t in range(r):
                    u[t] = basis[0, t] * n0 + basis[1, t] * n1
                    off -= u[t] * Y[o, t]
                u[r] = off
                _push(top_v, top_u, c, best, u)
        events[c] = n_events
        swept[c] = True
        if stop_count > 0:
            hits = 0
            for i in range(K):
                if top_v[c, i] > stop_above:
                    hits += 1
            found[0] += hits
            done[0] += 1
    return top_v, top_u, events, swept
