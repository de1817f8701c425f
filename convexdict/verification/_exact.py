"""Exact arithmetic on float64 data: dyadic integers, exact rank, rigorous rounding.

Every float64 number is a dyadic rational ``m * 2**e``. An array of them is stored here as
Python integers (a numpy ``object`` array) times one common power of two, so sums,
products and determinants are exact integer arithmetic. Square roots (decoder-row norms)
are enclosed between two dyadic rationals with :func:`sqrt_interval`, and exact rationals
are reported as float intervals that contain them (:func:`float_interval`).

This module is part of the independent verifier: it imports nothing from the finder.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

# Bits of precision of the square-root enclosures (relative width about 2**-SQRT_BITS).
SQRT_BITS = 96
UNIT_ROUNDOFF = 2.0**-53
# Smallest positive normal number: bounds the absolute error of one operation that
# underflows, under gradual underflow and under flush-to-zero / denormals-are-zero modes.
TINY = 2.0**-1022


def dyadic(A: np.ndarray) -> tuple[np.ndarray, int]:
    """Integers ``M`` and an exponent ``e`` with ``A == M * 2**e`` exactly.

    Parameters
    ----------
    A : ndarray of float64, any shape
        Finite values.

    Returns
    -------
    M : ndarray of object (Python int), same shape as ``A``
    e : int
    """
    A = np.asarray(A, dtype=np.float64)
    mant, expo = np.frexp(A)
    ints = (mant * 2.0**53).astype(np.int64)  # exact: |mant| < 1 has 53 bits
    expo = expo.astype(np.int64) - 53
    nonzero = ints != 0
    if not nonzero.any():
        return np.zeros(A.shape, dtype=object), 0
    e_min = int(expo[nonzero].min())
    shifts = np.where(nonzero, expo - e_min, 0).astype(object)
    return ints.astype(object) << shifts, e_min


def shift(M: np.ndarray | int, bits: int) -> np.ndarray | int:
    """``M * 2**bits`` for ``bits >= 0`` (integers stay integers)."""
    if bits < 0:
        raise ValueError(f"The 'bits' parameter must be >= 0. Got {bits}.")
    return M << bits if isinstance(M, int) else M * (1 << bits)


def align(*terms: tuple[np.ndarray, int]) -> tuple[list[np.ndarray], int]:
    """Bring dyadic arrays ``(M_i, e_i)`` to their smallest common exponent."""
    e_min = min(e for _, e in terms)
    return [shift(M, e - e_min) for M, e in terms], e_min


def to_fraction(M: int, e: int, den: int = 1) -> Fraction:
    """``M * 2**e / den`` as a :class:`fractions.Fraction`."""
    if e >= 0:
        return Fraction(M << e, den)
    return Fraction(M, den << -e)


def sqrt_interval(S: int) -> tuple[Fraction, Fraction]:
    """Dyadic rationals ``lo <= sqrt(S) <= hi`` for an integer ``S >= 0``.

    Exact (``lo == hi``) when ``S`` is a perfect square; otherwise ``hi - lo = 2**-SQRT_BITS``.
    """
    if S < 0:
        raise ValueError(f"The 'S' parameter must be a nonnegative integer. Got {S}.")
    root = math.isqrt(S)
    if root * root == S:
        return Fraction(root), Fraction(root)
    scaled = math.isqrt(S << (2 * SQRT_BITS))
    den = 1 << SQRT_BITS
    return Fraction(scaled, den), Fraction(scaled + 1, den)


def round_down(q: Fraction) -> float:
    """The largest float64 ``<= q``."""
    f = float(q)
    if Fraction(f) > q:
        f = math.nextafter(f, -math.inf)
    return f


def round_up(q: Fraction) -> float:
    """The smallest float64 ``>= q``."""
    f = float(q)
    if Fraction(f) < q:
        f = math.nextafter(f, math.inf)
    return f


def float_interval(lo: Fraction, hi: Fraction) -> tuple[float, float]:
    """Floats ``(a, b)`` with ``a <= lo`` and ``b >= hi`` (outward rounding)."""
    return round_down(lo), round_up(hi)


def nearest_floats(Q: np.ndarray, den: int, e: int) -> np.ndarray:
    """Correctly rounded float64 values of ``Q * 2**e / den`` (``Q`` integers).

    Parameters
    ----------
    Q : ndarray of object (Python int)
    den : int
        A positive integer denominator.
    e : int
    """
    out = np.empty(Q.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, q in enumerate(Q.reshape(-1)):
        try:
            flat[i] = float(to_fraction(int(q), e, den))
        except OverflowError:  # beyond float64: callers fall back to exact arithmetic
            flat[i] = math.copysign(math.inf, int(q))
    return out


def int_det(M: list[list[int]]) -> int:
    """Determinant of a square integer matrix by fraction-free (Bareiss) elimination."""
    A = [list(row) for row in M]
    n = len(A)
    sign, prev = 1, 1
    for k in range(n - 1):
        if A[k][k] == 0:
            swap = next((i for i in range(k + 1, n) if A[i][k] != 0), None)
            if swap is None:
                return 0
            A[k], A[swap] = A[swap], A[k]
            sign = -sign
        for i in range(k + 1, n):
            for j in range(k + 1, n):
                A[i][j] = (A[i][j] * A[k][k] - A[i][k] * A[k][j]) // prev
        prev = A[k][k]
    return sign * A[n - 1][n - 1] if n else 1


def pivot_columns(D: np.ndarray) -> list[int]:
    """Columns of an integer matrix ``D (m, d)`` that form a basis of its column space.

    Fraction-free Gaussian elimination with exact integers; ``len(result)`` is the exact
    rank of ``D``.
    """
    A = np.array(D, dtype=object)
    pivots: list[int] = []
    row = 0
    m, d = A.shape
    prev = 1
    for col in range(d):
        if row >= m:
            break
        nz = np.flatnonzero(A[row:, col] != 0)
        if nz.size == 0:
            continue
        p = row + int(nz[0])
        if p != row:
            A[[row, p]] = A[[p, row]]
        piv = A[row, col]
        below = A[row + 1 :]
        # Bareiss step: exact division by the previous pivot keeps the integers small.
        A[row + 1 :] = (below * piv - np.outer(below[:, col], A[row])) // prev
        prev = piv
        pivots.append(col)
        row += 1
    return pivots


def gamma(n: int) -> float:
    """``n u / (1 - n u)``: the classical bound on the relative error of ``n`` roundings."""
    nu = n * UNIT_ROUNDOFF
    return nu / (1.0 - nu)
