"""The joint wide-limit lower bound on a torch device, streaming the data in chunks.

THEORY section 3: with one free atom per data point, the joint problem's optimum is
``min_b (1/N) sum_n h_lam(||x_n - b||)`` with the Huber function ``h_lam``; its minimiser
``b`` (the Huber-smoothed geometric median) is found by iteratively reweighted means

    b <- sum_n w_n x_n / sum_n w_n,      w_n = min(1, lam / ||x_n - b||),

one pass over the data per step, ``O(N d)``. The lower bound is a dual value: with
``r_n = (x_n - b) min(1, lam / ||x_n - b||)`` centred over ``n`` (``R_c``) and the centred
data ``X_c``, every ``t`` in ``[0, lam / max_n ||R_c[n]||]`` is dual feasible for every
atom set (``||R^T e|| <= max_n ||r_n|| <= lam`` for normalised ``e >= 0``), so

    (1/N) max_t ( t <R_c, X_c> - t^2 ||R_c||^2 / 2 )

(closed form in ``t``) lower-bounds ``P*`` and every SAE's canonical loss at every
width, for any ``d``. Same algorithm and stopping rule as
``convexdict.convex.bounds.joint_wide_limit``; this module never imports :mod:`convexdict`.

``X`` may be a numpy array, a ``numpy.memmap`` larger than memory (rows are read one
chunk at a time and copied to the device) or a tensor. Each step is one pass; the final
bound takes two more (one for the mean residual, one for the centred sums).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from convexdict_solvers.duality import best_on_ray, feasible_scale

_CHUNK_FLOATS = 1 << 22


@dataclass(frozen=True)
class JointBoundResult:
    """The joint wide limit computed by :func:`joint_wide_limit_torch`.

    Attributes
    ----------
    b : ndarray of shape (d,)
        The Huber-smoothed geometric median (optimal bias), float64.
    primal_value : float
        ``(1/N) sum_n h_lam(||x_n - b||)``: an upper bound on the wide-limit optimum.
    lower_bound : float
        The dual value: a valid lower bound on the wide-limit optimum, on ``P*`` and on
        every SAE's canonical loss at every width.
    iterations : int
    converged : bool
        The last step was below ``tol (1 + ||b||)``.
    """

    b: np.ndarray
    primal_value: float
    lower_bound: float
    iterations: int
    converged: bool


def _chunks(X, rows: int, device, dtype) -> Iterator[torch.Tensor]:
    """Row blocks of ``X`` on ``device`` in ``dtype`` (memmaps are read block by block)."""
    n = X.shape[0]
    for s in range(0, n, rows):
        block = X[s : s + rows]
        if not torch.is_tensor(block):
            block = torch.from_numpy(np.array(block))  # a writable copy of the rows
        yield block.to(device=device, dtype=dtype, non_blocking=True)


def _weights(D: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Row norms of ``D`` and ``min(1, lam / ||d_n||)``."""
    norms = torch.linalg.vector_norm(D, dim=1)
    return norms, torch.clamp(lam / torch.clamp_min(norms, 1e-300), max=1.0)


def joint_wide_limit_torch(
    X,
    lam: float,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    chunk_rows: int | None = None,
    max_iter: int = 10_000,
    tol: float = 1e-13,
) -> JointBoundResult:
    """The joint wide limit and its lower bound, streaming ``X`` through a device.

    Parameters
    ----------
    X : ndarray, numpy.memmap or Tensor of shape (N, d)
        Data, one sample per row.
    lam : float
        Penalty weight, ``> 0``.
    device, dtype
        Where and in which precision each chunk is processed (sums are accumulated in
        float64).
    chunk_rows : int, optional
        Rows per chunk (default about four million floats per chunk).
    max_iter : int
        Reweighting steps at most.
    tol : float
        Stop when a step moves ``b`` by at most ``tol (1 + ||b||)`` (raised to
        ``10 eps`` of ``dtype``).

    Returns
    -------
    JointBoundResult

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.2]])
    >>> res = joint_wide_limit_torch(X, 0.1)
    >>> res.lower_bound <= res.primal_value
    True
    """
    if not (hasattr(X, "shape") and len(X.shape) == 2 and X.shape[0] >= 1):
        raise ValueError(
            "The 'X' parameter must be a 2-D array, memmap or tensor of shape (N, d) with "
            f"N >= 1. Got {type(X).__name__} of shape {getattr(X, 'shape', None)}."
        )
    if not (np.isscalar(lam) and np.isfinite(lam) and lam > 0):
        raise ValueError(f"The 'lam' parameter must be a finite float > 0. Got {lam!r}.")
    n, d = X.shape
    rows = chunk_rows or max(1, _CHUNK_FLOATS // max(d, 1))
    acc = torch.float64

    total = torch.zeros(d, dtype=acc, device=device)
    for block in _chunks(X, rows, device, dtype):
        if not bool(torch.isfinite(block).all()):
            raise ValueError("The 'X' parameter must contain only finite values. Got NaN or inf.")
        total += block.sum(dim=0, dtype=acc)
    x_mean = total / n
    b = x_mean.to(dtype)
    tol = max(tol, 10 * torch.finfo(dtype).eps)
    iterations, converged = 0, False
    for iterations in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
        num = torch.zeros(d, dtype=acc, device=device)
        den = torch.zeros((), dtype=acc, device=device)
        for block in _chunks(X, rows, device, dtype):
            _, w = _weights(block - b, lam)
            num += (w @ block).to(acc)
            den += w.sum(dtype=acc)
        b_new = num / den
        step = float(torch.linalg.vector_norm(b_new - b.to(acc)))
        b = b_new.to(dtype)
        if step <= tol * (1.0 + float(torch.linalg.vector_norm(b_new))):
            converged = True
            break

    # Pass 1: mean residual and the primal (Huber) value.
    r_sum = torch.zeros(d, dtype=acc, device=device)
    huber = torch.zeros((), dtype=acc, device=device)
    for block in _chunks(X, rows, device, dtype):
        D = block - b
        norms, w = _weights(D, lam)
        r_sum += (w[:, None] * D).sum(dim=0, dtype=acc)
        # lam * (norms - lam / 2) never squares lam: no overflow at a huge lam
        h = torch.where(norms <= lam, 0.5 * norms**2, lam * (norms - 0.5 * lam))
        huber += h.sum(dtype=acc)
    r_mean = (r_sum / n).to(dtype)
    x_mean_d = x_mean.to(dtype)
    # Pass 2: centred sums <Rc, Xc>, ||Rc||^2 and the largest centred residual.
    a = torch.zeros((), dtype=acc, device=device)
    q = torch.zeros((), dtype=acc, device=device)
    biggest = torch.zeros((), dtype=acc, device=device)
    for block in _chunks(X, rows, device, dtype):
        D = block - b
        _, w = _weights(D, lam)
        Rc = w[:, None] * D - r_mean
        a += (Rc * (block - x_mean_d)).sum(dtype=acc)
        q += (Rc * Rc).sum(dtype=acc)
        biggest = torch.maximum(biggest, torch.linalg.vector_norm(Rc, dim=1).max().to(acc))
    a, q, biggest = float(a), float(q), float(biggest)
    value, _ = best_on_ray(a, q, feasible_scale(lam, biggest))
    lower = float(value) / n
    return JointBoundResult(
        b.to("cpu", torch.float64).numpy().copy(), float(huber) / n, lower, iterations, converged
    )
