"""Compiled rotating-sweep kernel (numba): the same computation as the numpy sweep in
:mod:`convexdict_solvers.pricing.exact`, one pivot set at a time, without materialising all events.

Pivot sets are independent, so they run in parallel (``prange``; ``NUMBA_NUM_THREADS``
caps the threads). The first call compiles the kernel (about 10 s) and caches it on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _group_norm(v, bounds):
    best = 0.0
    for g in range(bounds.shape[0]):
        acc = 0.0
        for i in range(bounds[g, 0], bounds[g, 1]):
            acc += v[i] * v[i]
        if acc > best:
            best = acc
    return np.sqrt(best)


@njit(cache=True, parallel=True)
def sweep_best(W, valid, R, bounds, recompute_below, zero_tol):
    """Per pivot set: the best event's value, point index and orientation (1 = enter).

    Parameters
    ----------
    W : (B, N, 2) float64, point coordinates in each pivot set's 2-D complement
    valid : (B, N) bool, points off the pivots' affine span (and pivot set valid)
    R : (N, p) float64
    bounds : (G, 2) int64, column groups [start, stop)
    """
    B, N, _ = W.shape
    p = R.shape[1]
    best_val = np.zeros(B)
    best_j = np.zeros(B, dtype=np.int64)
    best_enter = np.zeros(B, dtype=np.int64)
    two_pi = 2.0 * np.pi
    for b in prange(B):
        alpha = np.empty(N)
        wn = np.empty(N)
        scale = 0.0
        for j in range(N):
            alpha[j] = np.arctan2(W[b, j, 1], W[b, j, 0])
            wn[j] = np.sqrt(W[b, j, 0] ** 2 + W[b, j, 1] ** 2)
            if valid[b, j]:
                scale += wn[j]
        ang = np.empty(2 * N)
        for j in range(N):
            ang[j] = (alpha[j] - np.pi / 2) % two_pi
            ang[N + j] = (alpha[j] + np.pi / 2) % two_pi
        order = np.argsort(ang)
        gbest = -1.0
        gidx = 0
        for t in range(2 * N):
            nxt = ang[order[t + 1]] if t + 1 < 2 * N else ang[order[0]] + two_pi
            gap = nxt - ang[order[t]]
            if gap > gbest:
                gbest = gap
                gidx = t
        phi0 = ang[order[gidx]] + gbest / 2
        M = np.zeros((p, 2))
        c = np.zeros(2)
        for j in range(N):
            if valid[b, j] and ((phi0 - (alpha[j] - np.pi / 2)) % two_pi) < np.pi:
                for q in range(p):
                    M[q, 0] += R[j, q] * W[b, j, 0]
                    M[q, 1] += R[j, q] * W[b, j, 1]
                c[0] += W[b, j, 0]
                c[1] += W[b, j, 1]
        v = np.empty(p)
        for s in range(2 * N):
            ev = order[(gidx + 1 + s) % (2 * N)]
            j = ev % N
            if not valid[b, j]:
                continue
            enter = ev < N
            w = 1.0 if enter else -1.0
            for q in range(p):
                M[q, 0] += w * R[j, q] * W[b, j, 0]
                M[q, 1] += w * R[j, q] * W[b, j, 1]
            c[0] += w * W[b, j, 0]
            c[1] += w * W[b, j, 1]
            n0 = w * W[b, j, 1] / wn[j]
            n1 = -w * W[b, j, 0] / wn[j]
            cn = c[0] * n0 + c[1] * n1
            if cn > recompute_below * scale:
                for q in range(p):
                    v[q] = M[q, 0] * n0 + M[q, 1] * n1
                val = _group_norm(v, bounds) / cn
            else:  # low total activation: recompute from the activations themselves
                tot = 0.0
                for q in range(p):
                    v[q] = 0.0
                for i in range(N):
                    if i == j or not valid[b, i]:
                        continue
                    a = W[b, i, 0] * n0 + W[b, i, 1] * n1
                    if a > zero_tol:
                        tot += a
                        for q in range(p):
                            v[q] += a * R[i, q]
                val = _group_norm(v, bounds) / tot if tot > 0 else 0.0
            if val > best_val[b]:
                best_val[b] = val
                best_j[b] = j
                best_enter[b] = 1 if enter else 0
    return best_val, best_j, best_enter
