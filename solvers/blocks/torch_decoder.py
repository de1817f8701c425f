"""Streaming helpers and the decoder block of an SAE, solved by FISTA on a torch device.

The decoder block (paper B's first convex piece) fixes the codes ``Z (N, K)`` and
minimises over ``(W, b)``

    F(W, b) = (1/N) [ 1/2 ||X - Z W - 1 b^T||_F^2 + lam sum_k c_k ||W[k]|| ],

``c_k = sum_n Z[n, k]``. The bias is eliminated in closed form
(``b = (sum_n x_n - W^T sum_n z_n) / N``), which leaves the centred Gram matrices
``A = Z^T Z - c c^T / N (K, K)``, ``B = Z^T X - c xbar_sum^T / N (K, d)`` and
``xx = ||X - 1 mean(X)^T||^2``. In Jacobi-scaled variables ``V = s W`` (``s_k =
sqrt(A_kk)``), with ``H = A / (s s^T)`` and ``C = B / s``, ``N F = 1/2 xx - <V, C> +
1/2 <V, H V> + sum_k w_k ||V[k]||`` with ``w_k = lam c_k / s_k``: a group lasso solved by
restarted FISTA, each iteration ``O(K^2 d)`` and independent of ``N``.

**Duality gap.** The centred residual ``R_c = X_c - Z_c W`` scaled by any ``t >= 0`` with
``t ||Z[:, k]^T R_c|| <= lam c_k`` for every ``k`` is dual feasible (the group-lasso dual
of THEORY section 4 over the ``K`` atoms ``Z[:, k] / c_k``), so

    F* >= (1/N) max_{0 <= t <= t_max} ( t <R_c, X_c> - t^2 ||R_c||^2 / 2 ).

Here ``Z^T R_c = s (C - H V)`` is the gradient already at hand, so the gap costs nothing.
The solver stops when ``primal - dual <= tol * primal``. Callers recompute both the loss
and the dual value from the data (:mod:`convexdict.analysis.blocks`); nothing here is trusted.

This module never imports :mod:`convexdict`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from convexdict_solvers.duality import best_on_ray
from convexdict_solvers.group_lasso.torch_fista import fista

# Codes sparser than this are multiplied as scipy CSR matrices on the CPU (M^T Y costs
# O(nnz p) instead of O(n K p)); measured on 2 cores, dense BLAS wins above about 1 %, and
# always for the Gram M^T M (its result is dense).
SPARSE_DENSITY = 0.01
_POWER_ITERS = 60
# Column block of the streamed Gram M^T M: only the blocks on and above the diagonal are
# multiplied (about 56 % of the flops at K = 4096), the rest is mirrored once at the end.
GRAM_BLOCK = 512
# Elementwise work on a (rows, K) chunk runs over row slices of about this many floats on
# the CPU (2 MB in float64), so that a chain of elementwise operations stays in cache
# instead of streaming the whole chunk through memory once per operation.
_SLICE_FLOATS = 1 << 18


def row_blocks(X, rows: int, device, dtype) -> Iterator[torch.Tensor]:
    """Consecutive row blocks of ``X (N, d)`` on ``device`` in ``dtype``.

    ``X`` may be a numpy array, a memory-mapped ``.npy`` (read block by block, never
    loaded whole) or a tensor.
    """
    n = X.shape[0]
    for start in range(0, n, rows):
        block = X[start : start + rows]
        if not torch.is_tensor(block):
            block = torch.from_numpy(np.array(block))
        yield block.to(device=device, dtype=dtype)


def row_slices(n: int, width: int, device) -> Iterator[slice]:
    """Consecutive row slices of an ``(n, width)`` chunk for elementwise work: about
    ``_SLICE_FLOATS`` entries each on the CPU, the whole chunk on other devices."""
    step = n if torch.device(device).type != "cpu" else max(1, _SLICE_FLOATS // max(width, 1))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def t_matmul(M: torch.Tensor, Y: torch.Tensor, nnz: int | None = None) -> torch.Tensor:
    """``M^T Y`` for ``M (n, K)`` and ``Y (n, p)``, as a dense ``(K, p)`` tensor.

    On the CPU a mostly-zero ``M`` (codes, masked gradients) goes through scipy's CSR
    product, which costs ``O(nnz(M) p)`` instead of ``O(n K p)``. ``nnz``: the number of
    nonzeros of ``M`` when the caller has counted them already.
    """
    if M.device.type == "cpu" and M.numel() and Y.numel():
        nnz = int(torch.count_nonzero(M)) if nnz is None else nnz
        if Y is not M and nnz <= SPARSE_DENSITY * M.numel():
            out = np.asarray(sp.csr_matrix(M.numpy()).T @ Y.numpy())
            return torch.from_numpy(np.ascontiguousarray(out)).to(M.dtype)
    return M.T @ Y


def add_gram(acc: torch.Tensor, M: torch.Tensor) -> None:
    """``acc += M^T M`` in place, on and above the diagonal blocks only.

    ``acc (K, K)`` is a float64 accumulator; row block ``[i, i + GRAM_BLOCK)`` receives
    ``M[:, block]^T M[:, i:]`` (a float64 ``M`` is multiplied straight into ``acc``).
    The blocks below the diagonal are left untouched: call :func:`mirror_gram` once after
    the last chunk.
    """
    K = M.shape[1]
    for i in range(0, K, GRAM_BLOCK):
        j = min(i + GRAM_BLOCK, K)
        if M.dtype == acc.dtype:
            acc[i:j, i:].addmm_(M[:, i:j].T, M[:, i:])
        else:
            acc[i:j, i:] += (M[:, i:j].T @ M[:, i:]).to(acc.dtype)


def mirror_gram(acc: torch.Tensor) -> torch.Tensor:
    """Complete a Gram accumulated by :func:`add_gram`: copy the upper blocks below the
    diagonal (in place; returns ``acc``)."""
    K = acc.shape[0]
    for i in range(0, K, GRAM_BLOCK):
        j = min(i + GRAM_BLOCK, K)
        acc[j:, i:j] = acc[i:j, j:].T
    return acc


def lipschitz(H: torch.Tensor) -> float:
    """An estimate of ``lambda_max`` of the symmetric PSD ``H (m, m)`` from above.

    Power iteration (which approaches from below) inflated by 5 %; callers also guard
    against a too-small value by monotonicity checks.
    """
    m = H.shape[0]
    if m == 0:
        return 0.0
    gen = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(m, dtype=H.dtype, generator=gen).to(H.device)
    val = 0.0
    for _ in range(_POWER_ITERS):
        w = H @ v
        nrm = float(torch.linalg.vector_norm(w))
        if nrm == 0.0:
            return 0.0
        val = float(v @ w)
        v = w / nrm
    return max(val, float(v @ (H @ v))) * 1.05


@dataclass(frozen=True)
class FistaSettings:
    """Settings of the block solvers.

    Attributes
    ----------
    max_iter : int
        FISTA iterations at most.
    tol : float
        Stop when the relative duality gap ``(primal - dual) / primal`` is at most ``tol``.
    check_every : int
        Iterations between gap checks.
    """

    max_iter: int = 2000
    tol: float = 1e-7
    check_every: int = 10


_DEFAULT = FistaSettings()


@dataclass(frozen=True)
class DecoderSolution:
    """A point of the decoder block from :func:`solve_decoder_block`.

    Attributes
    ----------
    W : Tensor of shape (K, d)
        New decoder rows (rows of latents that never fire are zero; callers keep theirs).
    b : Tensor of shape (d,)
    primal, dual : float
        ``F(W, b)`` and the dual value (both per sample), from the Gram matrices.
    n_iter : int
    converged : bool
        ``primal - dual <= tol * primal``.
    """

    W: torch.Tensor
    b: torch.Tensor
    primal: float
    dual: float
    n_iter: int
    converged: bool


def _gap_terms(V, HV, C, w, xx: float, n: int) -> tuple[float, float]:
    """Primal and dual values (per sample) at the scaled point ``V``."""
    vc = float((V * C).sum())
    vhv = float((V * HV).sum())
    q = max(xx - 2.0 * vc + vhv, 0.0)  # ||R_c||^2
    a = xx - vc  # <R_c, X_c>
    primal = (0.5 * q + float(w @ torch.linalg.vector_norm(V, dim=1))) / n
    corr = torch.linalg.vector_norm(C - HV, dim=1)
    ratio = torch.where(corr > 0, w / torch.clamp_min(corr, 1e-300), torch.full_like(w, np.inf))
    t_max = float(ratio.min()) if ratio.numel() else np.inf
    value, _ = best_on_ray(a, q, t_max)
    return primal, float(value) / n


def solve_decoder_block(
    ZtZ: torch.Tensor,
    ZtX: torch.Tensor,
    zsum: torch.Tensor,
    xsum: torch.Tensor,
    xx: float,
    n: int,
    lam: float,
    *,
    W0: torch.Tensor | None = None,
    settings: FistaSettings = _DEFAULT,
) -> DecoderSolution:
    """Solve the decoder block from its Gram matrices (see the module docstring).

    Parameters
    ----------
    ZtZ : Tensor of shape (K, K)
        ``Z^T Z`` (uncentred), float64.
    ZtX : Tensor of shape (K, d)
        ``Z^T X``.
    zsum : Tensor of shape (K,)
        ``c = Z^T 1``.
    xsum : Tensor of shape (d,)
        ``X^T 1``.
    xx : float
        ``||X - 1 mean(X)^T||_F^2``.
    n : int
        Number of samples.
    lam : float
    W0 : Tensor of shape (K, d), optional
        Warm start (the SAE's own decoder).
    settings : FistaSettings

    Returns
    -------
    DecoderSolution
    """
    K, d = ZtX.shape
    dt, dev = ZtZ.dtype, ZtZ.device
    live = zsum > 0
    idx = torch.nonzero(live).flatten()
    c = zsum[idx]
    A = ZtZ[idx][:, idx] - torch.outer(c, c) / n
    B = ZtX[idx] - torch.outer(c, xsum) / n
    s = torch.sqrt(torch.clamp_min(torch.diagonal(A), 0.0))
    s = torch.where(s > 0, s, torch.ones_like(s))
    H = A / torch.outer(s, s)
    C = B / s[:, None]
    w = lam * c / s
    L = lipschitz(H) if idx.numel() else 0.0
    V = torch.zeros_like(C) if W0 is None else W0[idx].to(dt, copy=True) * s[:, None]
    primal, dual, it, done = 0.0, 0.0, 0, True
    if idx.numel() and L > 0:
        best = [float("inf"), V]

        def shrink(U: torch.Tensor, step: float) -> torch.Tensor:  # prox of sum_k w_k ||u_k||
            nrm = torch.linalg.vector_norm(U, dim=1, keepdim=True)
            return U * torch.clamp_min(1.0 - step * w[:, None] / torch.clamp_min(nrm, 1e-300),
                                       0.0)

        def closed(U: torch.Tensor, _: float) -> bool:  # the duality gap, best point kept
            primal, dual = _gap_terms(U, H @ U, C, w, xx, n)
            if primal < best[0]:
                best[:] = [primal, U]
            return primal - dual <= settings.tol * primal

        _, it = fista((V, V.clone(), 1.0), H, C, L, shrink, settings.max_iter,
                      check_every=settings.check_every, stop=closed)
        V = best[1]
    if idx.numel():
        primal, dual = _gap_terms(V, H @ V, C, w, xx, n)
    else:
        primal = dual = 0.5 * xx / n
    done = primal - dual <= settings.tol * primal
    W = torch.zeros((K, d), dtype=dt, device=dev)
    W[idx] = V / s[:, None]
    b = (xsum - W.T @ zsum) / n
    return DecoderSolution(W, b, primal, dual, it, bool(done))


def solve_box_qp(
    g: torch.Tensor, Q: torch.Tensor, upper: torch.Tensor, *, max_iter: int = 500
) -> tuple[torch.Tensor, float]:
    """``min_s g.s + 1/2 s^T Q s`` over ``0 <= s <= upper`` by projected FISTA.

    Parameters
    ----------
    g : Tensor of shape (m,)
    Q : Tensor of shape (m, m)
        Symmetric PSD.
    upper : Tensor of shape (m,)
        Upper bounds (``inf`` allowed where ``Q_kk > 0`` or ``g_k >= 0``).
    max_iter : int

    Returns
    -------
    s : Tensor of shape (m,)
        The best iterate found (``s = 0`` when nothing is better).
    value : float
        The model value at ``s`` (``<= 0``).
    """
    m = g.shape[0]
    s = torch.zeros(m, dtype=g.dtype, device=g.device)
    if m == 0:
        return s, 0.0
    q = torch.sqrt(torch.clamp_min(torch.diagonal(Q), 0.0))
    q = torch.where(q > 0, q, torch.ones_like(q))
    Qs = Q / torch.outer(q, q)
    gs = g / q
    up = upper * q
    # Coordinates with no curvature and a descent direction would be unbounded: cap them.
    up = torch.where(torch.diagonal(Q) > 0, up, torch.zeros_like(up))
    L = lipschitz(Qs)
    if L <= 0:
        return s, 0.0
    u, y, u_prev, tk = s.clone(), s.clone(), s.clone(), 1.0
    best_val, best = 0.0, s
    for it in range(1, max_iter + 1):
        u = torch.minimum(torch.clamp_min(y - (Qs @ y + gs) / L, 0.0), up)
        t_next = 0.5 * (1.0 + (1.0 + 4.0 * tk * tk) ** 0.5)
        y = u + ((tk - 1.0) / t_next) * (u - u_prev)
        y = torch.minimum(torch.clamp_min(y, 0.0), up)
        u_prev, tk = u, t_next
        if it % 20 == 0 or it == max_iter:
            val = float(gs @ u + 0.5 * u @ (Qs @ u))
            if val < best_val:
                best_val, best = val, u.clone()
    return best / q, best_val
