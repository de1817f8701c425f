"""``verify(path, X)``: check a certificate file exactly, independently of the finder.

The verdict (docs/theory.md, "Exact verification"):

* ``refuted`` when the data do not match ``data_sha256``, the file's model or dual point do
  not fit the data, a claimed bound lies outside its rigorous interval (up to a relative
  reporting slack of ``CLAIM_RTOL``), the dual point violates ``||R_g^T e|| <= lam`` on some
  atom ``e`` of ``E0`` (the atom is named), or the rigorous gap is not closed;
* ``out_of_reach`` when the exact enumeration or the exact loss would exceed the size caps,
  or a fixed-width lower bound rests on a branch-and-bound tree the file does not hold (the
  verified wide bound is reported);
* ``verified`` when all checks pass and the rigorous intervals close the gap:
  ``upper.hi - lower.lo <= tol * upper.hi`` (the rule of :func:`convexdict.tolerance.within_tol`,
  evaluated exactly).

Imports nothing from the finder: only the file format (:mod:`convexdict.convex.certificate_file`).
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any

import numpy as np

from convexdict.convex.certificate_file import CertificateFile, data_sha256, load_certificate
from convexdict.verification._bounds import (
    dual_value,
    exact_centred,
    float_loss,
    float_loss_error,
    loss_interval,
)
from convexdict.verification._enumerate import check_feasible, count_subsets, exact_columns
from convexdict.verification._exact import dyadic, float_interval
from convexdict.verification._result import NAN_PAIR, Verification

# Relative slack allowed between a claimed bound (a float64 evaluation) and its exact value
# (for the loss: or the a priori error bound of a float64 evaluation, if larger).
CLAIM_RTOL = 1e-9
# Caps: (subset, sample) sign evaluations of the enumeration, and terms of the exact loss.
MAX_PREDICATES = 400_000_000
MAX_LOSS_TERMS = 50_000_000


class _Refuted(Exception):
    pass


class _OutOfReach(Exception):
    pass


def _matrix(name: str, value: Any, n_rows: int | None = None) -> np.ndarray:
    try:
        A = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"The '{name}' parameter must be a numeric 2-D array. Got "
                         f"{type(value).__name__}.") from exc
    if A.ndim != 2 or not np.all(np.isfinite(A)):
        raise ValueError(f"The '{name}' parameter must be a finite 2-D array. Got shape "
                         f"{A.shape}" + ("." if A.ndim != 2 else " with NaN or inf entries."))
    if n_rows is not None and A.shape[0] != n_rows:
        raise ValueError(f"The '{name}' parameter must have {n_rows} rows like X. Got shape "
                         f"{A.shape}.")
    return A


def _targets(kind: str, X: np.ndarray, target, targets) -> list[np.ndarray]:
    """The arrays hashed after ``X`` (``[]`` for an SAE)."""
    if kind == "sae":
        if target is not None or targets is not None:
            raise ValueError("The 'target' and 'targets' parameters must be None for an SAE "
                             "certificate. Got a target.")
        return []
    if kind == "transcoder":
        if target is None or targets is not None:
            raise ValueError("The 'target' parameter must be the (N, d_out) target of this "
                             "transcoder certificate. Got none.")
        return [_matrix("target", target, X.shape[0])]
    if targets is None or target is not None or isinstance(targets, np.ndarray):
        raise ValueError("The 'targets' parameter must be the list of (N, d_l) layers of this "
                         "crosscoder certificate. Got none.")
    return [_matrix(f"targets[{i}]", Y, X.shape[0]) for i, Y in enumerate(targets)]


def _check_shapes(cert: CertificateFile, X: np.ndarray, layers: list[np.ndarray]) -> None:
    dims = [Y.shape[1] for Y in layers]
    stored = cert.meta["target_dims"]
    # Without a model a crosscoder file records only the total width of R.
    if stored != dims and (cert.meta["has_model"] or stored != [sum(dims)]):
        raise _Refuted(f"the file's target dimensions {cert.meta['target_dims']} do not match "
                       f"the data's {dims}")
    R = cert.arrays["R"]
    if R.shape != (X.shape[0], sum(dims)):
        raise _Refuted(f"the dual point R has shape {R.shape}; the data need "
                       f"{(X.shape[0], sum(dims))}")
    if not np.all(np.isfinite(R)):
        raise _Refuted("the dual point R has NaN or inf entries")
    if not cert.meta["has_model"]:
        return
    W_enc, b_enc = cert.arrays["W_enc"], cert.arrays["b_enc"]
    k = W_enc.shape[1] if W_enc.ndim == 2 else -1
    ok = W_enc.shape == (X.shape[1], k) and b_enc.shape == (k,)
    for (W, b), p in zip(cert.decoders(), dims, strict=True):
        ok = ok and W.shape == (k, p) and b.shape == (p,)
    if not ok:
        raise _Refuted("the model's array shapes do not fit the data")
    arrays = [W_enc, b_enc] + [a for pair in cert.decoders() for a in pair]
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise _Refuted("the model has NaN or inf weights")


def _inside(name: str, claim: float, lo: Fraction, hi: Fraction, slack: Fraction) -> None:
    """Refute unless ``lo - slack <= claim <= hi + slack``."""
    if math.isinf(claim) and lo == hi == math.inf:
        return
    if not math.isfinite(claim) or not lo - slack <= Fraction(claim) <= hi + slack:
        a, b = float_interval(lo, hi)
        raise _Refuted(f"the claimed {name} {claim!r} lies outside its rigorous interval "
                       f"[{a!r}, {b!r}] (slack {float(slack):.3g})")


def _gap_closed(upper_hi: Fraction | float, lower_lo: Fraction, tol: float) -> bool:
    """``upper - lower <= tol * upper`` in exact arithmetic (and by within_tol's float rule)."""
    from convexdict.tolerance import within_tol

    if upper_hi == math.inf:
        return False
    exact = upper_hi - lower_lo <= Fraction(tol) * upper_hi
    return bool(exact and within_tol(float(upper_hi), float(lower_lo), tol))


def verify(
    cert_path: Any,
    X: Any,
    *,
    target: Any = None,
    targets: Any = None,
    exact: bool = True,
    max_predicates: int = MAX_PREDICATES,
    max_loss_terms: int = MAX_LOSS_TERMS,
) -> Verification:
    """Check a certificate file against the data, exactly and independently of the finder.

    Parameters
    ----------
    cert_path : str or PathLike
        A file written by :meth:`convexdict.Certificate.save`.
    X : array-like of shape (N, d)
        The data (the encoder's input), float64 as given to ``certify``.
    target : array-like of shape (N, d_out), optional
        The target of a transcoder certificate.
    targets : list of array-like of shape (N, d_l), optional
        The layers of a crosscoder certificate.
    exact : bool
        True (default): exact predicates with float filters, exact loss and dual value.
        False: the same checks in plain float64 (the "float verdict", for cross-checks;
        not rigorous; the affine dimension is still decided exactly).
    max_predicates : int
        Cap on ``C(N, r) * N`` sign evaluations of the enumeration of ``E0``.
    max_loss_terms : int
        Cap on ``N * K * (d + p)`` terms of the exact loss.

    Returns
    -------
    Verification

    Raises
    ------
    FileNotFoundError, ValueError
        The file is missing or not a certificate file; ``X`` or the targets are not finite
        2-D arrays, or do not fit the certificate's kind.
    """
    t0 = time.perf_counter()
    cert = load_certificate(cert_path)
    X = _matrix("X", X)
    layers = _targets(cert.kind, X, target, targets)
    timings = {"load": time.perf_counter() - t0}
    out = Verification(False, "refuted", "", NAN_PAIR, NAN_PAIR,
                       claimed_upper=cert.number("upper_bound"),
                       claimed_lower=cert.number("lower_bound"), tol=cert.number("tol"),
                       exact=exact, timings=timings, details={"kind": cert.kind})
    try:
        _run(cert, X, layers, out, exact, max_predicates, max_loss_terms)
    except _Refuted as exc:
        out.status, out.reason = "refuted", str(exc)
    except _OutOfReach as exc:
        out.status, out.reason = "out_of_reach", str(exc)
    out.verified = out.status == "verified"
    timings["total"] = time.perf_counter() - t0
    return out


def _clock(timings: dict[str, float], name: str, start: float) -> float:
    now = time.perf_counter()
    timings[name] = now - start
    return now


def _run(cert, X, layers, out: Verification, exact, max_predicates, max_loss_terms) -> None:
    t = time.perf_counter()
    meta, timings, details = cert.meta, out.timings, out.details
    if data_sha256(X, layers) != meta["data_sha256"]:
        raise _Refuted("the data do not match the certificate's data_sha256")
    t = _clock(timings, "hash", t)
    T_layers = layers or [X]
    T = np.hstack(T_layers)
    _check_shapes(cert, X, T_layers)
    lam, tol = cert.number("lam"), cert.number("tol")
    if not (lam > 0 and math.isfinite(lam) and tol >= 0):
        raise _Refuted(f"lam must be positive and tol nonnegative; got lam={lam}, tol={tol}")
    n = X.shape[0]
    details["finder_rank"] = meta.get("rank")
    # Upper bound: the explicit model's loss.
    if meta["has_model"]:
        W_enc, b_enc = cert.arrays["W_enc"], cert.arrays["b_enc"]
        if n * W_enc.shape[1] * (X.shape[1] + T.shape[1]) > max_loss_terms:
            raise _OutOfReach(f"the exact loss needs N K (d + p) = "
                              f"{n * W_enc.shape[1] * (X.shape[1] + T.shape[1]):,} terms "
                              f"(cap {max_loss_terms:,})")
        if exact:
            up_lo, up_hi = loss_interval(X, T_layers, W_enc, b_enc, cert.decoders(), lam)
        else:
            up_lo = up_hi = Fraction(float_loss(X, T_layers, W_enc, b_enc, cert.decoders(), lam))
        out.upper_interval = float_interval(up_lo, up_hi)
        rounding = float_loss_error(X, T_layers, W_enc, b_enc, cert.decoders(), lam)
        slack = max(CLAIM_RTOL * up_hi, Fraction(rounding) if rounding < math.inf else up_hi)
        _inside("upper_bound", out.claimed_upper, up_lo, up_hi, slack)
    else:
        up_hi = math.inf
        out.upper_interval = (math.inf, math.inf)
        if out.claimed_upper != math.inf:
            raise _Refuted(f"the file claims upper_bound {out.claimed_upper!r} but holds no "
                           "model")
    t = _clock(timings, "upper", t)
    # Lower bound: the dual value of the exactly centred R.
    dual = exact_centred(cert.arrays["R"])
    value, magnitude = dual_value(dual, T)
    if not exact:
        value = Fraction(_float_dual_value(cert.arrays["R"], T))
    fixed = meta.get("fixed_width")
    lower_claim = out.claimed_lower
    if fixed is None:
        _inside("lower_bound", lower_claim, value, value, CLAIM_RTOL * magnitude)
    t = _clock(timings, "lower", t)
    _enumerate(X, T_layers, dual, lam, out, exact, max_predicates)
    _clock(timings, "enumerate", t)
    out.lower_interval = float_interval(value, value)
    details["lower_bound_valid_for"] = "every model of any width"
    _verdict(meta, fixed, lower_claim, value, magnitude, up_hi, tol, out)


def _float_dual_value(R: np.ndarray, T: np.ndarray) -> float:
    Rc = R - R.mean(axis=0)
    return float((np.sum(Rc * (T - T.mean(axis=0))) - 0.5 * np.sum(Rc * Rc)) / R.shape[0])


def _enumerate(X, T_layers, dual, lam, out: Verification, exact, max_predicates) -> None:
    """Feasibility of the dual point on all of ``E0``; refutes on the first violated atom."""
    n = X.shape[0]
    details = out.details
    if n * n > max_predicates and np.any(X != X[0]):
        raise _OutOfReach(f"N = {n} points need at least N^2 = {n * n:,} exact sign "
                          f"evaluations (cap {max_predicates:,}); the upper bound was verified")
    Xi, e_x = dyadic(X)
    r = len(exact_columns(Xi))
    work = count_subsets(n, r) * n
    details.update(rank=r, n_predicates=work)
    if work > max_predicates:
        raise _OutOfReach(f"enumerating E0 needs C(N, r) N = {work:,} exact sign evaluations "
                          f"for N = {n}, exact affine dimension r = {r} (cap {max_predicates:,}); "
                          "the upper bound was verified")
    bounds = np.cumsum([0] + [Y.shape[1] for Y in T_layers])
    groups = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    res = check_feasible(X, Xi, e_x, dual, lam, groups, exact=exact)
    details.update(n_subsets=res.n_subsets, n_degenerate_subsets=res.n_degenerate,
                   n_sign_fallbacks=res.n_sign_fallbacks, n_norm_fallbacks=res.n_norm_fallbacks,
                   max_price_ratio=res.max_ratio, float_feasible=res.float_feasible,
                   columns=res.columns)
    if not res.feasible:
        subset, sigma, group, ratio = res.violation
        details["violation_ratio"] = float(ratio)
        layer = f" (layer {group})" if len(groups) > 1 else ""
        raise _Refuted(f"the dual point is infeasible: on the atom of the hyperplane through "
                       f"samples {list(subset)}, orientation {'+' if sigma > 0 else '-'}, "
                       f"||R^T e|| / lam = {ratio:.17g} > 1{layer}")


def _verdict(meta, fixed, lower_claim, value, magnitude, up_hi, tol, out: Verification) -> None:
    """Compare the rigorous bounds with the claims and the tolerance."""
    if fixed is not None and Fraction(lower_claim) > value + CLAIM_RTOL * magnitude:
        out.details["lower_bound_valid_for"] = "every model of any width (the wide bound)"
        raise _OutOfReach(
            f"the fixed-width lower_bound {lower_claim!r} comes from a branch-and-bound tree "
            f"that the file does not hold; verified: upper {list(out.upper_interval)}, wide "
            f"lower bound {list(out.lower_interval)} (valid at every width)")
    closed = _gap_closed(up_hi, value, tol)
    if closed:
        out.status = "verified"
        how = "exactly" if out.exact else "in float64 (not rigorous)"
        out.reason = (f"upper and lower bounds verified {how}; gap within tol"
                      + ("" if meta.get("certified", True) else
                         " (the file itself did not claim certified)"))
        return
    a, b = out.upper_interval[1], out.lower_interval[0]
    if meta.get("certified", False):
        raise _Refuted(f"the file claims certified, but the rigorous gap {a!r} - {b!r} "
                       f"exceeds tol * upper (tol {tol:g})")
    raise _Refuted(f"both bounds hold, but the gap {a!r} - {b!r} exceeds tol * upper (tol "
                   f"{tol:g}); the file does not claim certified either")
