"""Rigorous values of the two bounds: the model's loss and the dual objective.

* Upper bound: the canonical loss (THEORY section 1) of the explicit model, from its
  float64 weights and the float64 data, in exact integer arithmetic; the only irrational
  quantities, the decoder-row norms, are enclosed by :func:`~._exact.sqrt_interval`. The
  result is an interval of rationals of relative width about ``2**-96``.
* Lower bound: the dual point ``R`` is centred exactly (``Rc = R - mean R`` as rationals, so
  ``Rc^T 1 = 0`` holds exactly) and ``(1/N) (<Rc, T> - ||Rc||^2 / 2)`` is an exact rational.

Imports nothing from the finder.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from convexdict.verification._enumerate import ExactDual
from convexdict.verification._exact import (
    UNIT_ROUNDOFF,
    align,
    dyadic,
    gamma,
    nearest_floats,
    sqrt_interval,
    to_fraction,
)


def exact_centred(R: np.ndarray) -> ExactDual:
    """``Rc = R - mean(R, axis=0)`` exactly, as ``Q * 2**e / N``.

    Parameters
    ----------
    R : ndarray of shape (N, p)
    """
    n = R.shape[0]
    Ri, e = dyadic(R)
    Q = n * Ri - Ri.sum(axis=0)[None, :] if R.size else Ri
    return ExactDual(Q, e, n, nearest_floats(Q, n, e))


def dual_value(dual: ExactDual, T: np.ndarray) -> tuple[Fraction, Fraction]:
    """``(1/N) (<Rc, T> - ||Rc||^2 / 2)`` exactly, and the size of its two terms.

    Parameters
    ----------
    dual : ExactDual
    T : ndarray of shape (N, p)
        The target (``X`` for an SAE).

    Returns
    -------
    value : Fraction
    magnitude : Fraction
        About ``(1/N) (sum |Rc| |T - mean T| + ||Rc||^2 / 2)``, the scale against which a
        float evaluation of ``value`` is accurate (used only for the claim's slack).
    """
    n = dual.n
    if dual.Q.size == 0:
        return Fraction(0), Fraction(0)
    Ti, et = dyadic(T)
    inner = to_fraction(int((dual.Q * Ti).sum()), dual.e + et, n)
    square = to_fraction(int((dual.Q * dual.Q).sum()), 2 * dual.e, n * n)
    spread = np.abs(dual.floats) * np.abs(T - T.mean(axis=0))  # for the slack only
    magnitude = Fraction(float(spread.sum())) + square / 2
    return (inner - square / 2) / n, magnitude / n


def _norm_interval(W: np.ndarray) -> tuple[list[Fraction], list[Fraction]]:
    """Enclosures ``lo_k <= ||W[k]|| <= hi_k`` of the row norms of ``W (K, p)``."""
    Wi, e = dyadic(W)
    scale = Fraction(2) ** e
    lo, hi = [], []
    for row in Wi:
        a, b = sqrt_interval(int(sum(int(v) * int(v) for v in row)))
        lo.append(a * scale)
        hi.append(b * scale)
    return lo, hi


def loss_interval(
    X: np.ndarray,
    targets: list[np.ndarray],
    W_enc: np.ndarray,
    b_enc: np.ndarray,
    decoders: list[tuple[np.ndarray, np.ndarray]],
    lam: float,
) -> tuple[Fraction, Fraction]:
    """Rational enclosure of the canonical loss of an SAE, transcoder or crosscoder.

    ``L = (1/N) sum_n [1/2 sum_l ||t_ln - z_n W_l - b_l||^2 + lam sum_k z_nk sum_l ||W_l[k]||]``
    with ``z_n = relu(x_n W_enc + b_enc)``.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    targets : list of ndarray of shape (N, p_l)
        ``[X]`` for an SAE, ``[Y]`` for a transcoder, the layers for a crosscoder.
    W_enc : ndarray of shape (d, K)
    b_enc : ndarray of shape (K,)
    decoders : list of (ndarray of shape (K, p_l), ndarray of shape (p_l,))
    lam : float

    Returns
    -------
    lo, hi : Fraction
    """
    n, k = X.shape[0], W_enc.shape[1]
    Xi, ex = dyadic(X)
    Wi, ew = dyadic(W_enc)
    bi, eb = dyadic(b_enc)
    if k:
        (P, B), e1 = align((Xi.dot(Wi), ex + ew), (bi[None, :], eb))
        Z = P + B
        Z = np.where(Z > 0, Z, 0).astype(object)
    else:
        Z, e1 = np.zeros((n, 0), dtype=object), 0
    counts = [int(c) for c in Z.sum(axis=0)] if k else []
    sse = Fraction(0)
    pen_lo, pen_hi = Fraction(0), Fraction(0)
    for T, (W, b) in zip(targets, decoders, strict=True):
        Ti, et = dyadic(T)
        Wd, ed = dyadic(W)
        bd, ebd = dyadic(b)
        parts = [(Ti, et), (bd[None, :], ebd)]
        if k:
            parts.append((Z.dot(Wd), e1 + ed))
        aligned, e2 = align(*parts)
        res = aligned[0] - aligned[1]
        if k:
            res = res - aligned[2]
        sse += to_fraction(int((res * res).sum()), 2 * e2)
        lo, hi = _norm_interval(W) if k else ([], [])
        unit = to_fraction(1, e1)
        pen_lo += unit * sum((c * a for c, a in zip(counts, lo, strict=True)), Fraction(0))
        pen_hi += unit * sum((c * a for c, a in zip(counts, hi, strict=True)), Fraction(0))
    lam_q = Fraction(lam)
    return (sse / 2 + lam_q * pen_lo) / n, (sse / 2 + lam_q * pen_hi) / n


def float_loss_error(
    X: np.ndarray,
    targets: list[np.ndarray],
    W_enc: np.ndarray,
    b_enc: np.ndarray,
    decoders: list[tuple[np.ndarray, np.ndarray]],
    lam: float,
) -> float:
    """An a priori bound on the error of any float64 evaluation of the loss.

    Standard forward error bounds (``gamma_m`` per dot product of length ``m``, any
    summation order), propagated through the codes, the residual, its square and the
    penalty, then doubled. It measures how far an honest float64 claim can be from the
    exact loss: large for data with huge offsets, where ``x W_enc + b_enc`` cancels.
    Arguments as in :func:`loss_interval`.
    """
    n, d = X.shape
    k = W_enc.shape[1]
    with np.errstate(all="ignore"):
        P = X @ W_enc + b_enc
        Z = np.maximum(P, 0.0)
        err_z = gamma(d + 2) * (np.abs(X) @ np.abs(W_enc) + np.abs(b_enc))
        sse_err = pen_err = 0.0
        for T, (W, b) in zip(targets, decoders, strict=True):
            res = T - Z @ W - b
            err_res = (gamma(k + 3) * (np.abs(T) + Z @ np.abs(W) + np.abs(b))
                       + err_z @ np.abs(W) + UNIT_ROUNDOFF * np.abs(res))
            sq = float((res * res).sum())
            sse_err += gamma(res.size) * sq + float((2 * np.abs(res) * err_res + err_res**2).sum())
            norms = np.linalg.norm(W, axis=1)
            pen = float(Z.sum(axis=0) @ norms)
            pen_err += lam * (gamma(n + W.shape[1] + 4) * pen + float(err_z.sum(axis=0) @ norms))
        bound = 2.0 * (0.5 * sse_err + pen_err) / n
    return bound if np.isfinite(bound) else np.inf


def float_loss(
    X: np.ndarray,
    targets: list[np.ndarray],
    W_enc: np.ndarray,
    b_enc: np.ndarray,
    decoders: list[tuple[np.ndarray, np.ndarray]],
    lam: float,
) -> float:
    """The same loss in plain float64 (for the float verdict only)."""
    Z = np.maximum(X @ W_enc + b_enc, 0.0)
    total = 0.0
    for T, (W, b) in zip(targets, decoders, strict=True):
        res = T - Z @ W - b
        total += 0.5 * float((res * res).sum()) + lam * float(Z.sum(axis=0) @ np.linalg.norm(
            W, axis=1))
    return total / X.shape[0]
