"""Exact check of ``||R_g^T e|| <= lam`` for every vertex ``e`` of ``E0`` (THEORY section 2).

The vertices of the realizable set are the normalised activations ``relu(s) / sum(relu(s))``
of the affine functions ``s`` that vanish on ``r`` affinely independent data points, in both
orientations, where ``r`` is the exact affine dimension of the data (docs/theory.md,
"Exact verification"). Here:

* the affine hull is handled without any rounding: ``r`` coordinate columns ``J`` whose
  projection is injective on the hull are found by exact elimination, and the data are
  read in those columns (an affine isomorphism of the hull, so ``E0`` is unchanged);
* for an ``r``-subset ``p_0 .. p_{r-1}``, ``s(x) = det[p_1 - p_0; ...; x - p_0]`` has the
  integer cofactor normal ``n`` (exact); ``n == 0`` exactly when the subset is affinely
  dependent (skipped: every vertex is reached through an independent subset);
* the sign of ``s`` at every point is decided by a float filter with a rigorous a priori
  error bound, and recomputed exactly (integers) where the filter cannot decide; points
  on the hyperplane get activation exactly zero;
* the norm inequality ``||R_g^T a||^2 <= lam^2 (1^T a)^2`` (``a = relu(+-s)``, homogeneous
  so ``e`` need not be formed) is decided by a float enclosure of both sides, and exactly
  (integers and fractions) where the enclosures overlap.

Imports nothing from the finder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations, islice
from math import comb

import numpy as np

from convexdict.verification._exact import (
    TINY,
    UNIT_ROUNDOFF,
    gamma,
    int_det,
    pivot_columns,
    round_down,
    round_up,
)

_BATCH_ENTRIES = 200_000
_LAPLACE_MAX = 5


@dataclass
class ExactDual:
    """The dual point ``R`` centred exactly: ``Rc = Q * 2**e / N``.

    Attributes
    ----------
    Q : ndarray of object (Python int), shape (N, p)
    e : int
    n : int
        The denominator ``N``.
    floats : ndarray of shape (N, p)
        ``Rc`` correctly rounded to float64.
    """

    Q: np.ndarray
    e: int
    n: int
    floats: np.ndarray


@dataclass
class FeasibilityResult:
    """Outcome of :func:`check_feasible`.

    ``violation`` names the first atom found with ``||R_g^T e|| > lam``:
    ``(subset, orientation, group, ratio)`` with ``ratio = ||R_g^T e|| / lam`` (float).
    """

    feasible: bool
    rank: int
    columns: list[int]
    violation: tuple[tuple[int, ...], int, int, float] | None = None
    n_subsets: int = 0
    n_degenerate: int = 0
    n_sign_fallbacks: int = 0
    n_norm_fallbacks: int = 0
    max_ratio: float = 0.0
    float_feasible: bool = True
    notes: list[str] = field(default_factory=list)


def exact_columns(Xi: np.ndarray) -> list[int]:
    """Coordinate columns injective on the affine hull of integer points ``Xi (N, d)``;
    their number is the exact affine dimension."""
    if Xi.shape[0] < 2:
        return []
    return pivot_columns(Xi[1:] - Xi[0])


def _det_batch(M: np.ndarray) -> np.ndarray:
    """Determinants of integer matrices ``M (B, m, m)`` (object), by Laplace expansion."""
    m = M.shape[1]
    if m == 0:
        return np.ones(M.shape[0], dtype=object)
    if m == 1:
        return M[:, 0, 0]
    if m == 2:
        return M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
    total = np.zeros(M.shape[0], dtype=object)
    for j in range(m):
        minor = np.delete(M[:, 1:, :], j, axis=2)
        total = total + (-1) ** j * M[:, 0, j] * _det_batch(minor)
    return total


def cofactor_normals(Yi: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """Integer normals ``n (B, r)`` with ``s(x) = n . (x - p_0) = det[p_1 - p_0; ...; x - p_0]``.

    Parameters
    ----------
    Yi : ndarray of object (Python int), shape (N, r)
    subsets : ndarray of int, shape (B, r)
    """
    B, r = subsets.shape
    if r == 1:
        return np.ones((B, 1), dtype=object)
    D = Yi[subsets[:, 1:]] - Yi[subsets[:, :1]]  # (B, r - 1, r)
    normals = np.empty((B, r), dtype=object)
    for k in range(r):
        minor = np.delete(D, k, axis=2)
        sign = (-1) ** (r - 1 + k)
        if r - 1 <= _LAPLACE_MAX:
            normals[:, k] = sign * _det_batch(minor)
        else:
            normals[:, k] = [sign * int_det(m.tolist()) for m in minor]
    return normals


def _scaled_floats(normals: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Each row of integers divided by ``2**shift`` so its largest entry is in [1, 2),
    correctly rounded (a positive scaling: signs of ``s`` are unchanged).

    Returns the floats ``(B, r)`` and the shifts.
    """
    out = np.empty(normals.shape, dtype=np.float64)
    shifts = []
    for b, row in enumerate(normals):
        top = max(abs(int(v)) for v in row).bit_length() - 1
        den = 1 << top
        out[b] = [int(v) / den for v in row]  # int / int is correctly rounded in Python
        shifts.append(top)
    return out, shifts


def _signed_values(Y, Yi, e_y, subsets, normals):
    """Float ``s (B, N)`` and rigorous error bounds ``eb (B, N)``; exact where undecided.

    Returns ``s, eb, n_fallbacks``.
    """
    B, r = subsets.shape
    nf, shifts = _scaled_floats(normals)
    with np.errstate(all="ignore"):
        diff = Y[None, :, :] - Y[subsets[:, 0]][:, None, :]  # (B, N, r)
        s = np.einsum("bnk,bk->bn", diff, nf)
        absdiff = np.abs(diff)
        bound = np.einsum("bnk,bk->bn", absdiff, np.abs(nf))
        # gamma(r + 3) covers the differences, the rounded normal, r products and r - 1
        # sums; the factor 2 covers the rounding of the bound itself; the TINY term covers
        # underflow (each underflowing operation errs by at most TINY).
        eb = 2.0 * gamma(r + 3) * bound + 2.0 * TINY * (r + absdiff.sum(axis=2))
    rows = np.arange(B)[:, None]
    s[rows, subsets] = 0.0
    eb[rows, subsets] = 0.0
    undecided = ~(np.abs(s) > eb) & ~(eb == 0.0) | ~np.isfinite(s) | ~np.isfinite(eb)
    bs, ns = np.nonzero(undecided)
    for b, n in zip(bs.tolist(), ns.tolist(), strict=True):
        p0 = subsets[b, 0]
        exact = sum(int(c) * int(y - y0) for c, y, y0 in zip(normals[b], Yi[n], Yi[p0],
                                                               strict=True))
        try:
            value = float(Fraction(exact) * Fraction(2) ** (e_y - shifts[b]))
        except OverflowError:  # the norm check then falls back to integers
            value = math.copysign(math.inf, exact)
        s[b, n] = value
        eb[b, n] = 0.0 if exact == 0 else UNIT_ROUNDOFF * abs(value) + TINY
    return s, eb, len(bs)


def _exact_violation(Yi, subset, normal, sigma, dual: ExactDual, group, lam: Fraction):
    """Exact ``||R_g^T a||^2 - lam^2 (1^T a)^2 > 0`` for ``a = relu(sigma s)``;
    returns ``(violated, ratio)``."""
    s = (Yi - Yi[subset[0]]).dot(normal)
    a = np.array([max(sigma * int(v), 0) for v in s], dtype=object)
    w = int(a.sum())
    if w == 0:
        return False, 0.0
    v = dual.Q[:, group].T.dot(a)
    q = sum(int(x) * int(x) for x in v)
    lhs = Fraction(q) * Fraction(2) ** (2 * dual.e) / (dual.n * dual.n)
    rhs = lam * lam * w * w
    ratio = float((lhs / rhs) ** 0.5) if rhs else float("inf")
    return lhs > rhs, ratio


def _norm_filter(a, eba, dual: ExactDual, groups, lam2_lo, lam2_hi):
    """Float enclosures: ``(sure_ok, sure_bad, float_ok, ratio2)``, each of shape (G, B)."""
    n, p = dual.floats.shape
    absR = np.abs(dual.floats)
    with np.errstate(all="ignore"):
        V = a @ dual.floats
        ev = 2.0 * ((gamma(n) + UNIT_ROUNDOFF) * (a @ absR) + (1 + UNIT_ROUNDOFF) * (eba @ absR))
        w = a.sum(axis=1)
        # Underflow: each product or rounded entry of Rc errs by at most TINY (times a).
        ev += (2.0 * TINY * (n + w))[:, None]
        ew = 2.0 * (gamma(n) * w + eba.sum(axis=1)) + 2.0 * n * TINY
        p_lo = lam2_lo * np.maximum(w - ew, 0.0) ** 2 * (1 - 4 * gamma(4))
        p_hi = lam2_hi * (w + ew) ** 2 * (1 + 4 * gamma(4)) + TINY
        p_f = lam2_hi * w * w
        out = []
        for g in groups:
            width = g.stop - g.start
            Vg, eg = np.abs(V[:, g]), ev[:, g]
            q_hi = ((Vg + eg) ** 2).sum(axis=1) * (1 + 4 * gamma(width + 2)) + 2 * width * TINY
            q_lo = (np.maximum(Vg - eg, 0.0) ** 2).sum(axis=1) * (1 - 4 * gamma(width + 2))
            q_f = (V[:, g] ** 2).sum(axis=1)
            out.append((q_hi <= p_lo, q_lo > p_hi, q_f <= p_f, q_f / np.maximum(p_f, TINY)))
    return [np.array(x) for x in zip(*out, strict=True)]


def check_feasible(
    X: np.ndarray,
    Xi: np.ndarray,
    e_x: int,
    dual: ExactDual,
    lam: float,
    groups: list[slice],
    *,
    exact: bool = True,
) -> FeasibilityResult:
    """Decide ``||Rc_g^T e|| <= lam`` for every ``e`` in ``E0`` and every column group ``g``.

    Parameters
    ----------
    X : ndarray of shape (N, d)
        The encoder's input, float64 as given.
    Xi, e_x : ndarray of object (Python int) of shape (N, d), int
        ``X == Xi * 2**e_x`` (:func:`~convexdict.verification._exact.dyadic`).
    dual : ExactDual
        The exactly centred dual point.
    lam : float
    groups : list of slice
        Column groups of ``R`` (one for an SAE or transcoder, one per crosscoder layer).
    exact : bool
        False: decide everything in plain float64 (no error bounds, no fallback); the
        "float verdict" used to cross-check the exact one.
    """
    n = X.shape[0]
    columns = exact_columns(Xi)
    r = len(columns)
    result = FeasibilityResult(True, r, columns)
    if r == 0:
        # E0 = {1 / N}: R^T 1 / N = 0 exactly for an exactly centred R.
        result.n_subsets = 1
        return result
    Y = np.ascontiguousarray(X[:, columns])
    Yi = Xi[:, columns]
    lam_q = Fraction(lam)
    lam2_lo, lam2_hi = round_down(lam_q * lam_q), round_up(lam_q * lam_q)
    batch = max(1, _BATCH_ENTRIES // n)
    combos = combinations(range(n), r)
    while chunk := list(islice(combos, batch)):
        subsets = np.array(chunk, dtype=np.int64).reshape(len(chunk), r)
        result.n_subsets += len(chunk)
        normals = cofactor_normals(Yi, subsets)
        independent = (normals != 0).any(axis=1)
        result.n_degenerate += int((~independent).sum())
        subsets, normals = subsets[independent], normals[independent]
        if not len(subsets):
            continue
        if exact:
            s, eb, k = _signed_values(Y, Yi, e_x, subsets, normals)
            result.n_sign_fallbacks += k
        else:
            nf = _scaled_floats(normals)[0]
            s = np.einsum("bnk,bk->bn", Y[None] - Y[subsets[:, 0]][:, None], nf)
            s[np.arange(len(subsets))[:, None], subsets] = 0.0
            eb = np.zeros_like(s)
        for sigma in (1, -1):
            a = np.maximum(sigma * s, 0.0)
            eba = np.where(sigma * s > -eb, eb, 0.0)
            empty = ~(a > 0).any(axis=1) & ~(eba > 0).any(axis=1)
            sure_ok, sure_bad, float_ok, ratio2 = _norm_filter(a, eba, dual, groups,
                                                                lam2_lo, lam2_hi)
            live = np.broadcast_to(~empty[None, :], ratio2.shape)
            if live.any():
                result.max_ratio = max(result.max_ratio, float(np.sqrt(ratio2[live].max())))
            result.float_feasible &= bool((float_ok | ~live).all())
            if not exact:
                bad = ~float_ok & live
                if bad.any():
                    gi, b = (int(v[0]) for v in np.nonzero(bad))
                    result.feasible = False
                    result.violation = (tuple(chunk_index(subsets, b)), sigma, gi,
                                        float(np.sqrt(ratio2[gi, b])))
                    return result
                continue
            todo = ~sure_ok & live
            for gi, b in zip(*np.nonzero(todo), strict=True):
                if not sure_bad[gi, b]:
                    result.n_norm_fallbacks += 1
                bad, ratio = _exact_violation(Yi, subsets[b], normals[b], sigma, dual,
                                              groups[gi], lam_q)
                if bad:
                    result.feasible = False
                    result.violation = (tuple(chunk_index(subsets, b)), sigma, int(gi), ratio)
                    return result
    return result


def chunk_index(subsets: np.ndarray, b: int) -> list[int]:
    """The sample indices of subset ``b`` as plain ints."""
    return [int(i) for i in subsets[b]]


def count_subsets(n: int, r: int) -> int:
    """``C(n, r)``: the hyperplanes the enumeration visits (each in two orientations)."""
    return comb(n, r)
