"""Pieces of the compiled sweep (:mod:`convexdict_solvers.pricing._numba_kernel`): pivot sets in
lexicographic order, the 2-D frame of a pivot set, and the radix sort of angle keys.

All functions are numba-compiled, allocation-free and work on caller-provided scratch.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _comb(n, k):
    if k < 0 or k > n:
        return 0
    out = 1
    for i in range(k):
        out = out * (n - i) // (i + 1)
    return out


@njit(cache=True)
def _unrank(t, n, m, out):
    """Write the ``t``-th ``m``-subset of ``range(n)`` (lexicographic) into ``out``."""
    a = 0
    for pos in range(m):
        c = a
        while True:
            cnt = _comb(n - c - 1, m - pos - 1)
            if t < cnt:
                break
            t -= cnt
            c += 1
        out[pos] = c
        a = c + 1


@njit(cache=True)
def _next_subset(piv, n):
    m = piv.shape[0]
    i = m - 1
    while i >= 0 and piv[i] == n - m + i:
        i -= 1
    if i < 0:
        return
    piv[i] += 1
    for j in range(i + 1, m):
        piv[j] = piv[j - 1] + 1


@njit(cache=True)
def _orthonormalise(v, Q, nq):
    """Remove from ``v`` its components along ``Q[:nq]`` (twice); return the norm left."""
    for _ in range(2):
        for i in range(nq):
            dot = 0.0
            for t in range(v.shape[0]):
                dot += v[t] * Q[i, t]
            for t in range(v.shape[0]):
                v[t] -= dot * Q[i, t]
    s = 0.0
    for t in range(v.shape[0]):
        s += v[t] * v[t]
    s = np.sqrt(s)
    if s > 0:
        for t in range(v.shape[0]):
            v[t] /= s
    return s


@njit(cache=True)
def _frame(Y, piv, Q, basis, rank_tol, tmp):
    """Orthonormal basis ``basis (2, r)`` of the complement of the pivots' affine span.

    ``Q (r, r)`` and ``tmp (r,)`` are scratch (rows of ``Q``: orthonormal directions of
    the span, then the basis). Returns whether the pivot set is affinely independent:
    the smallest singular value of its differences exceeds ``rank_tol`` (the criterion
    of :func:`convexdict_solvers.pricing.exact._pivot_frames`, computed in closed form).
    """
    r = Y.shape[1]
    o = piv[0]
    if r == 2:
        basis[0, 0], basis[0, 1], basis[1, 0], basis[1, 1] = 1.0, 0.0, 0.0, 1.0
        return True
    if r == 3:
        s2 = 0.0
        for t in range(3):
            Q[0, t] = Y[piv[1], t] - Y[o, t]
            s2 += Q[0, t] ** 2
        smin = np.sqrt(s2)
        if not smin > rank_tol:
            return False
        for t in range(3):
            Q[0, t] /= smin
    else:  # r == 4: smallest singular value of the 2 x 4 differences, without cancellation
        for t in range(r):
            Q[0, t] = Y[piv[1], t] - Y[o, t]
            Q[1, t] = Y[piv[2], t] - Y[o, t]
        g11 = g22 = g12 = wedge = 0.0
        for t in range(r):
            g11 += Q[0, t] ** 2
            g22 += Q[1, t] ** 2
            g12 += Q[0, t] * Q[1, t]
            for u in range(t + 1, r):
                wedge += (Q[0, t] * Q[1, u] - Q[0, u] * Q[1, t]) ** 2
        lmax = 0.5 * (g11 + g22 + np.sqrt((g11 - g22) ** 2 + 4.0 * g12 * g12))
        if not (lmax > 0 and np.sqrt(wedge / lmax) > rank_tol):
            return False
        _orthonormalise(Q[0], Q, 0)
        _orthonormalise(Q[1], Q, 1)
    # Complement: project the standard basis vector with the largest projection (the
    # largest diagonal entry of the projector, at least 1/2 then 1/4), twice.
    nq = piv.shape[0] - 1
    for i in range(2):
        best = -1.0
        e = 0
        for j in range(r):
            dj = 1.0
            for s in range(nq):
                dj -= Q[s, j] * Q[s, j]
            if dj > best:
                best, e = dj, j
        for t in range(r):
            tmp[t] = 1.0 if t == e else 0.0
            for s in range(nq):
                tmp[t] -= Q[s, e] * Q[s, t]
        nrm = np.sqrt(best)
        for t in range(r):
            Q[nq, t] = tmp[t] / nrm
            basis[i, t] = Q[nq, t]
        nq += 1
    return True


@njit(cache=True)
def _radix_sort(key, idx, n, q, q2, idx2, fk, cnt, bits, passes):
    """Sort ``idx[:n]`` by ``key[idx]`` (values in ``[0, 2)``), ascending, in place.

    A stable LSD radix sort on the leading ``bits * passes`` bits of the key, then an
    insertion sort on the full float keys, which only has to repair keys closer than
    ``2 ** (1 - bits * passes)`` (``O(n + such pairs)``). ``q, q2, idx2, fk`` (n,) and
    ``cnt`` (passes, 2 ** bits) are scratch.
    """
    radix = 1 << bits
    mask = radix - 1
    scale = float(1 << (bits * passes - 1))
    for d in range(passes):
        for b in range(radix):
            cnt[d, b] = 0
    for i in range(n):
        v = int(key[idx[i]] * scale)
        q[i] = v
        for d in range(passes):
            cnt[d, (v >> (bits * d)) & mask] += 1
    for d in range(passes):
        tot = 0
        for b in range(radix):
            c = cnt[d, b]
            cnt[d, b] = tot
            tot += c
    src_q, src_i, dst_q, dst_i = q, idx, q2, idx2
    for d in range(passes):
        shift = bits * d
        for i in range(n):
            b = (src_q[i] >> shift) & mask
            j = cnt[d, b]
            cnt[d, b] = j + 1
            dst_q[j] = src_q[i]
            dst_i[j] = src_i[i]
        src_q, src_i, dst_q, dst_i = dst_q, dst_i, src_q, src_i
    for i in range(n):
        fk[i] = key[src_i[i]]
        idx[i] = src_i[i]
    for i in range(1, n):
        k, p = fk[i], idx[i]
        j = i - 1
        while j >= 0 and fk[j] > k:
            fk[j + 1] = fk[j]
            idx[j + 1] = idx[j]
            j -= 1
        fk[j + 1] = k
        idx[j + 1] = p
