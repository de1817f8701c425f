"""Valid lower bounds: dual certificates from residuals, ``lam_max`` and the joint bound.

THEORY section 4: any ``R (N, p)`` with ``R^T 1 = 0`` and ``||R^T e|| <= lam`` for every
``e`` in ``E0`` gives ``P* >= (1/N)(<R, T> - ||R||^2 / 2)``, and ``P*`` lower-bounds the
canonical loss of every SAE at every width. Feasibility is checked by *exact* pricing over
all of ``E0``; a sampled maximum would give no valid bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from convexdict_solvers.duality import best_on_ray, feasible_scale
from convexdict_solvers.pricing.exact import PRICE_SAFETY, price, sweep_cost

from convexdict._validation import check_matrix, check_positive
from convexdict.convex.atoms import MAX_SWEEP_EVENTS, AffineFrame, affine_frame


@dataclass(frozen=True)
class DualBound:
    """A verified dual bound.

    Attributes
    ----------
    value : float
        The lower bound on ``P*`` (and on every SAE's canonical loss).
    max_price : float
        ``max_{e in E0} ||R^T e||`` of the centred residual, before scaling.
    scale : float
        The factor ``t`` applied to the centred residual (dual feasible: ``t * max_price <= lam``).
    method : str
        Pricing kernel used.
    """

    value: float
    max_price: float
    scale: float
    method: str


def _best_scaled_value(Rc: np.ndarray, Tc: np.ndarray, t_max: float) -> tuple[float, float]:
    """``max_{0 <= t <= t_max} (t <R,T> - t^2 ||R||^2 / 2) / N`` and its ``t``."""
    a = float(np.einsum("ij,ij->", Rc, Tc))
    q = float(np.einsum("ij,ij->", Rc, Rc))
    value, t = best_on_ray(a, q, t_max)
    return float(value) / Rc.shape[0], float(t)


def dual_certificate(
    X: np.ndarray,
    lam: float,
    residual: np.ndarray,
    *,
    target: np.ndarray | None = None,
    groups: Sequence[slice] | None = None,
    method: str = "auto",
    frame: AffineFrame | None = None,
) -> DualBound:
    """The valid lower bound from a residual, with its details (see :func:`dual_bound`)."""
    X = check_matrix("X", X)
    lam = check_positive("lam", lam)
    T = X if target is None else check_matrix("target", target)
    if T.shape[0] != X.shape[0]:
        raise ValueError(
            f"The 'target' parameter must have {X.shape[0]} rows like X. Got shape {T.shape}."
        )
    R = check_matrix("residual", residual, n_cols=T.shape[1])
    if R.shape[0] != X.shape[0]:
        raise ValueError(
            f"The 'residual' parameter must have shape {T.shape}. Got shape {R.shape}."
        )
    frame = frame or affine_frame(X)
    Rc = R - R.mean(axis=0)
    Tc = T - T.mean(axis=0)
    priced = price(frame.coords(X), Rc, groups=groups, method=method)
    max_price = priced.max_value * (1 + PRICE_SAFETY)
    t_max = float(feasible_scale(lam, max_price))
    value, t = _best_scaled_value(Rc, Tc, t_max)
    return DualBound(value, priced.max_value, t, priced.method)


def _check_priceable(n: int, r: int, name: str) -> None:
    """Refuse, before any pricing, what ``certify`` refuses: exact pricing of ``n`` points
    of affine dimension ``r`` above ``MAX_SWEEP_EVENTS`` sweep events (it would run for
    hours with no output)."""
    cost = sweep_cost(n, r)
    if cost > MAX_SWEEP_EVENTS:
        raise ValueError(
            f"The 'X' parameter is too large for {name}: exact pricing of N={n} points of "
            f"affine dimension {r} needs about {cost:.2e} sweep events (limit "
            f"{MAX_SWEEP_EVENTS:.0e}, the same as certify). convexdict.joint_bound(X, lam) "
            "gives a valid lower bound at any size"
            + ("; convexdict.lam_max_bound(X) an upper bound on lam_max." if name == "lam_max"
               else ".")
        )


def dual_bound(X: np.ndarray, lam: float, residual: np.ndarray, **kwargs) -> float:
    """A valid lower bound on every SAE's canonical loss from any residual.

    Centre the residual's columns, price it exactly over all of ``E0``, scale it into the
    dual feasible set (optimally along the ray), and evaluate the dual objective.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    lam : float
    residual : ndarray of shape (N, d)
        Typically ``X - sae.reconstruct(X)`` for some SAE, or a solver's residual.

    Returns
    -------
    float
        ``<= L(theta)`` for every SAE ``theta`` of any width.

    Raises
    ------
    ValueError
        Before any pricing, when exact pricing is beyond ``certify``'s size limit
        (:data:`convexdict.convex.atoms.MAX_SWEEP_EVENTS` sweep events); the message points
        to :func:`joint_bound`, valid at any size.
    """
    X = check_matrix("X", X)
    frame = kwargs.pop("frame", None) or affine_frame(X)
    _check_priceable(X.shape[0], frame.rank, "dual_bound")
    return dual_certificate(X, lam, residual, frame=frame, **kwargs).value


def lam_max(X: np.ndarray, *, target: np.ndarray | None = None) -> float:
    """The smallest ``lam`` at which the all-zero SAE with ``b_dec = mean(X)`` is optimal.

    Equals ``max_{e in E0} ||(X - mean X)^T e||`` (exact pricing).

    Raises
    ------
    ValueError
        Before any pricing, when exact pricing is beyond ``certify``'s size limit
        (:data:`convexdict.convex.atoms.MAX_SWEEP_EVENTS` sweep events). :func:`lam_max_bound`
        is an upper bound on ``lam_max`` at any size.
    """
    X = check_matrix("X", X)
    T = _target(X, target)
    frame = affine_frame(X)
    _check_priceable(X.shape[0], frame.rank, "lam_max")
    return price(frame.coords(X), T - T.mean(axis=0)).max_value


def _target(X: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    if target is None:
        return X
    T = check_matrix("target", target)
    if T.shape[0] != X.shape[0]:
        raise ValueError(
            f"The 'target' parameter must have {X.shape[0]} rows like X. Got shape {T.shape}."
        )
    return T


def lam_max_bound(X: np.ndarray, target: np.ndarray | None = None) -> float:
    """An upper bound on :func:`lam_max`, valid at any size: ``max_n ||t_n - mean(T)||``.

    Costs ``O(N d)`` (no pricing), so summaries can print it, labelled as a bound, where
    ``lam_max`` is too large to price. Every ``lam`` at or above it makes the mean-only
    SAE (``K* = 0``) optimal.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    target : ndarray of shape (N, p), optional
        Reconstruction target (default ``X``).

    Returns
    -------
    float
        ``>= lam_max(X, target=target)``.
    """
    X = check_matrix("X", X)
    return centred_row_norm_bound(_target(X, target))


def centred_row_norm_bound(
    T: np.ndarray, groups: Sequence[slice] | None = None, chunk: int = 65536
) -> float:
    """``sum_groups max_n ||t_n[g] - mean(T)[g]||``, streamed over row chunks.

    The bound of :func:`lam_max_bound` (summed over a crosscoder's layers), for arrays and
    memory maps alike: every ``e`` in ``E0`` is a probability vector, so ``||T_c^T e||`` is
    the norm of a convex combination of centred rows.

    Parameters
    ----------
    T : ndarray or numpy.memmap of shape (N, p)
    groups : sequence of slice, optional
        Column groups (default: one group).
    chunk : int
        Rows read at a time.
    """
    n = T.shape[0]
    mean = np.zeros(T.shape[1])
    for start in range(0, n, chunk):
        mean += np.asarray(T[start : start + chunk], dtype=np.float64).sum(axis=0)
    mean /= max(n, 1)
    groups = list(groups) if groups else [slice(None)]
    best = np.zeros(len(groups))
    for start in range(0, n, chunk):
        part = np.asarray(T[start : start + chunk], dtype=np.float64) - mean
        for i, g in enumerate(groups):
            best[i] = max(best[i], float(np.linalg.norm(part[:, g], axis=1).max(initial=0.0)))
    return float(best.sum())


@dataclass(frozen=True)
class JointWideLimit:
    """The joint problem's wide limit (one free atom per data point).

    Attributes
    ----------
    b : ndarray of shape (d,)
        Huber-smoothed geometric median (the optimal bias).
    codes : ndarray of shape (N, d)
        ``m_n = (1 - lam / ||x_n - b||)_+ (x_n - b)``.
    primal_value : float
        Objective at ``(b, m)``: an upper bound on the wide-limit optimum.
    lower_bound : float
        A dual-feasible value: a valid lower bound on the wide-limit optimum, hence on
        ``P*`` and on every SAE's canonical loss at every width.
    iterations : int
    """

    b: np.ndarray
    codes: np.ndarray
    primal_value: float
    lower_bound: float
    iterations: int


def _huber_objective(D: np.ndarray, lam: float) -> float:
    norms = np.linalg.norm(D, axis=1)
    big = norms > lam
    h = 0.5 * norms**2
    h[big] = lam * (norms[big] - 0.5 * lam)  # never squares lam: no overflow at huge lam
    return float(h.mean())


def joint_wide_limit(
    X: np.ndarray, lam: float, *, max_iter: int = 10_000, tol: float = 1e-13
) -> JointWideLimit:
    """Solve the joint wide limit by iteratively reweighted means (Weiszfeld steps).

    ``b <- sum_n w_n x_n / sum_n w_n`` with ``w_n = min(1, lam / ||x_n - b||)``, ``O(N d)``
    per step, any ``d``. The lower bound uses the projected residuals
    ``r_n = (x_n - b) min(1, lam / ||x_n - b||)``, centred and scaled so that
    ``||r_n|| <= lam`` (which implies ``||R^T e|| <= lam`` for every ``e``).
    """
    X = check_matrix("X", X)
    lam = check_positive("lam", lam)
    b = X.mean(axis=0)
    iterations = 0
    for step_index in range(1, max_iter + 1):
        iterations = step_index
        norms = np.linalg.norm(X - b, axis=1)
        w = np.minimum(1.0, lam / np.maximum(norms, 1e-300))
        b_new = (w @ X) / w.sum()
        step = float(np.linalg.norm(b_new - b))
        b = b_new
        if step <= tol * (1.0 + float(np.linalg.norm(b))):
            break
    D = X - b
    norms = np.linalg.norm(D, axis=1)
    shrink = np.maximum(0.0, 1.0 - lam / np.maximum(norms, 1e-300))
    codes = shrink[:, None] * D
    primal = _huber_objective(D, lam)
    R = D - codes
    Rc = R - R.mean(axis=0)
    biggest = float(np.linalg.norm(Rc, axis=1).max())
    t_max = float(feasible_scale(lam, biggest))
    lower, _ = _best_scaled_value(Rc, X - X.mean(axis=0), t_max)
    return JointWideLimit(b, codes, primal, lower, iterations)


def joint_bound(
    X: np.ndarray, lam: float, *, backend: str = "numpy", device: str | None = None
) -> float:
    """A valid lower bound on every SAE's canonical loss at every width, for any ``d``.

    The dual value of the joint problem's wide limit (THEORY section 3); see
    :func:`joint_wide_limit`. The gap between it and ``P*`` is the amortisation gap.

    Parameters
    ----------
    X : ndarray of shape (N, d)
        May be a memory-mapped array with ``backend="torch"`` (streamed in chunks).
    lam : float
    backend : {"numpy", "torch"}
        ``"torch"`` runs the same computation in float64 on ``device`` (for ``d`` in the
        hundreds and large ``N``; :mod:`convexdict_solvers.blocks.torch_joint`).
    device : str, optional
        Torch device (default: ``"cuda"`` when available).
    """
    if backend == "torch":
        import torch
        from convexdict_solvers.blocks.torch_joint import joint_wide_limit_torch

        lam = check_positive("lam", lam)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return float(joint_wide_limit_torch(X, lam, device=device, dtype=torch.float64).lower_bound)
    if backend != "numpy":
        raise ValueError(
            f"The 'backend' parameter must be 'numpy' or 'torch'. Got {backend!r} instead."
        )
    return joint_wide_limit(X, lam).lower_bound
