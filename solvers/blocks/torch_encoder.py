"""The encoder block of an SAE on its activation piece, by feasible descent on a torch device.

Paper B's second convex piece fixes the decoder ``(W_dec, b_dec)`` and the activation
pattern ``S = (X W_enc + 1 b_enc^T > 0)``. On the piece the codes ``Z = S * P`` are linear
in ``theta = (W_enc, b_enc)`` and the canonical loss is a convex quadratic under the
``N K`` linear constraints ``P >= 0`` on ``S``, ``P <= 0`` off ``S``. The constraints of
latent ``k`` involve only column ``k`` of ``theta``: the feasible set is a product of one
polyhedron per latent. One iteration of :func:`encoder_descent`:

1. **gradient pass**: loss and gradient ``g = dL/dtheta`` at ``theta`` (one pass over the
   data);
2. **direction pass**: along ``Delta = -g``, the largest feasible step of each latent,
   ``t_k = min_n`` of the ratios ``-P/dP`` over the constraints ``dP`` moves towards, and the
   Gram ``D^T D`` of ``D = S * dP``;
3. **per-latent steps**: on the piece ``L(theta + s * Delta) = L + sum_k s_k g_k.Delta_k +
   1/2 s^T Q s`` exactly, with ``Q = (D^T D) o (W_dec W_dec^T) / N``; the box QP over
   ``0 <= s <= t`` (K variables) is solved by projected FISTA (:func:`solve_box_qp`). At
   large ``N K^2`` the Gram pass is replaced by diagonal Newton steps capped by ``t`` and
   an exact line search along them (one ``O(N K d)`` pass for the curvature).

Every step stays on the (closed) piece, and the next gradient pass recomputes the loss;
a step whose recomputed loss is not lower is undone and the descent stops. This module
never imports :mod:`convexdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from convexdict_solvers.blocks.torch_decoder import (
    row_blocks,
    row_slices,
    solve_box_qp,
    t_matmul,
)

# Above this N * K^2 the per-latent steps come from the diagonal of Q (no K x K Gram pass).
EXACT_QP_WORK = 2e10


@dataclass(frozen=True)
class SAETensors:
    """SAE weights as tensors in the SAELens orientation.

    Attributes
    ----------
    W_enc : Tensor of shape (d, K)
    b_enc : Tensor of shape (K,)
    W_dec : Tensor of shape (K, d)
    b_dec : Tensor of shape (d,)
    """

    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor


@dataclass
class EncoderDescent:
    """The result of :func:`encoder_descent`.

    Attributes
    ----------
    params : SAETensors
        The best point found (the input when no step lowered the loss).
    losses : list of float
        Recomputed loss after each accepted step, the starting loss first.
    passes : int
        Passes over the data.
    """

    params: SAETensors
    losses: list[float] = field(default_factory=list)
    passes: int = 0


def chunk_terms(R: torch.Tensor, Z: torch.Tensor, norms: torch.Tensor,
                lam: float) -> tuple[float, float, torch.Tensor]:
    """The canonical loss terms of one chunk, summed in float64.

    Returns ``1/2 ||R||^2``, ``lam sum_k ||W_dec[k]|| sum_n Z[n, k]`` and ``Z^T 1`` (float64).
    Every streamed pass adds its chunks' terms in this order, so two passes over the same
    SAE give the same loss to the last bit.
    """
    zs = Z.sum(0, dtype=torch.float64)
    return 0.5 * float((R * R).sum(dtype=torch.float64)), lam * float(zs @ norms.double()), zs


def chunk_gradient(Xb: torch.Tensor, Z: torch.Tensor, RW: torch.Tensor, norms: torch.Tensor,
                   lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The encoder block's gradient terms of one chunk.

    ``gZ = S * (lam ||W_dec[k]|| - R W_dec^T)`` with ``S = (Z > 0)``, written over ``RW =
    R W_dec^T`` (overwritten); returns ``gZ``, ``gZ^T X_b (K, d)`` and ``gZ^T 1`` (both
    float64). Summed over the chunks and divided by ``N``: the gradient in
    ``(W_enc^T, b_enc)``.
    """
    lam_norms = lam * norms
    nnz = 0 if RW.device.type == "cpu" else None
    for sl in row_slices(RW.shape[0], RW.shape[1], RW.device):
        g = RW[sl].neg_().add_(lam_norms).masked_fill_(Z[sl] <= 0, 0.0)
        if nnz is not None:
            nnz += int(torch.count_nonzero(g))
    # sums over the whole chunk, not per slice: the same bits as before slicing
    return RW, t_matmul(RW, Xb, nnz=nnz).double(), RW.sum(0, dtype=torch.float64)


def gradient_pass(X, p: SAETensors, lam: float, rows: int, device, dtype):
    """Loss and gradient in ``(W_enc, b_enc)`` at ``p`` (pattern from ``p`` itself).

    Returns
    -------
    loss : float
        Canonical loss (float64 accumulation, :func:`chunk_terms`).
    gW : Tensor of shape (d, K)
    gb : Tensor of shape (K,)
    """
    n = X.shape[0]
    norms = torch.linalg.vector_norm(p.W_dec, dim=1)
    gW = torch.zeros_like(p.W_enc, dtype=torch.float64)
    gb = torch.zeros_like(p.b_enc, dtype=torch.float64)
    recon = penalty = 0.0
    for Xb in row_blocks(X, rows, device, dtype):
        Z = torch.addmm(p.b_enc, Xb, p.W_enc).clamp_min_(0.0)
        R = Xb - torch.addmm(p.b_dec, Z, p.W_dec)
        r, pen, _ = chunk_terms(R, Z, norms, lam)
        recon, penalty = recon + r, penalty + pen
        _, gx, g1 = chunk_gradient(Xb, Z, R @ p.W_dec.T, norms, lam)
        gW += gx.T
        gb += g1
    return (recon + penalty) / n, (gW / n).to(dtype), (gb / n).to(dtype)


def direction_pass(X, p: SAETensors, dW: torch.Tensor, db: torch.Tensor, rows: int, device,
                   dtype, gram: bool = True):
    """Largest feasible step per latent along ``(dW, db)`` and the Gram of ``S * dP``.

    Returns
    -------
    t_max : Tensor of shape (K,)
        ``inf`` where no constraint limits the step.
    DtD : Tensor of shape (K, K), or (K,) with ``gram=False``
        ``(S * dP)^T (S * dP)`` in float64 (only its diagonal without ``gram``).
    blocking : Tensor of shape (K, d + 1)
        The row ``(x_n, 1)`` of the sample that sets ``t_max`` (zeros where none does).
    """
    K = p.W_enc.shape[1]
    d = p.W_enc.shape[0]
    t_max = torch.full((K,), float("inf"), dtype=torch.float64, device=device)
    blocking = torch.zeros((K, d + 1), dtype=dtype, device=device)
    DtD = torch.zeros((K, K) if gram else (K,), dtype=torch.float64, device=device)
    both_W = torch.cat([p.W_enc, dW], dim=1)
    both_b = torch.cat([p.b_enc, db])
    ones = torch.ones((K, 1), dtype=dtype, device=device)
    for Xb in row_blocks(X, rows, device, dtype):
        PdP = torch.addmm(both_b, Xb, both_W)
        # Row slices in order, ties kept by the first sample: the same t_max and blocking
        # rows as one minimum over the chunk.
        for sl in row_slices(PdP.shape[0], K, device):
            P, dP = PdP[sl, :K], PdP[sl, K:]
            S = P > 0
            # leaving = S ? dP < 0 : dP > 0; its ratio -P / dP, inf elsewhere
            stay = (dP > 0).logical_xor_(S).logical_and_(dP != 0).logical_not_()
            low, arg = torch.div(P, dP).neg_().masked_fill_(stay, float("inf")).min(0)
            better = low.double() < t_max
            if bool(better.any()):
                hit = torch.cat([Xb[arg + sl.start], ones], dim=1)
                blocking = torch.where(better[:, None], hit, blocking)
                t_max = torch.where(better, low.double(), t_max)
            dP.masked_fill_(S.logical_not_(), 0.0)  # D = S * dP, in place
        D = PdP[:, K:]
        DtD += t_matmul(D, D).double() if gram else (D * D).sum(0, dtype=torch.float64)
    return t_max, DtD, blocking


def curvature_pass(X, p: SAETensors, dW: torch.Tensor, db: torch.Tensor, s: torch.Tensor,
                   rows: int, device, dtype) -> float:
    """``||(S * dP) diag(s) W_dec||^2`` (float64): the curvature along the steps ``s``."""
    both_W = torch.cat([p.W_enc, dW], dim=1)
    both_b = torch.cat([p.b_enc, db])
    K = p.W_enc.shape[1]
    total = torch.zeros((), dtype=torch.float64, device=device)
    for Xb in row_blocks(X, rows, device, dtype):
        PdP = torch.addmm(both_b, Xb, both_W)
        for sl in row_slices(PdP.shape[0], K, device):  # S * dP * s, in place
            PdP[sl, K:].mul_(s).masked_fill_(PdP[sl, :K] <= 0, 0.0)
        M = PdP[:, K:] @ p.W_dec
        total += (M * M).sum(dtype=torch.float64)
    return float(total)


def _diagonal_steps(X, p, dW, db, slope, dcol, t_max, WdG, n, rows, device, dtype):
    """Per-latent Newton steps on the diagonal of ``Q``, capped by ``t_max``, then one
    exact line search along them (one more pass). Returns ``(s, predicted)``."""
    qdiag = dcol * torch.diagonal(WdG) / n
    newton = torch.where(qdiag > 0, -slope / torch.where(qdiag > 0, qdiag,
                                                          torch.ones_like(qdiag)),
                         torch.zeros_like(qdiag))
    s = torch.clamp_min(torch.minimum(newton, t_max), 0.0)
    lin = float(slope @ s)
    if lin >= 0.0:
        return torch.zeros_like(s), 0.0
    curv = curvature_pass(X, p, dW, db, s.to(dtype), rows, device, dtype) / n
    beta = 1.0 if curv <= 0 else min(1.0, -lin / curv)
    return beta * s, beta * lin + 0.5 * beta * beta * curv


def _project(dW: torch.Tensor, db: torch.Tensor, pinned: torch.Tensor):
    """Remove from each latent's direction its components along its pinned rows.

    ``pinned (K, m, d + 1)`` holds rows ``(x_n, 1)`` of samples on latent ``k``'s hyperplane
    (zero rows are padding); the projected direction keeps them there (``dP = 0``).
    """
    delta = torch.cat([dW.T, db[:, None]], dim=1)  # (K, d + 1)
    # Latents with no pinned row keep their direction (pinv(0) = 0): only the others pay
    # for the batched pseudo-inverse.
    idx = torch.nonzero(pinned.abs().amax(dim=(1, 2)) > 0).flatten()
    if idx.numel():
        M = pinned[idx].transpose(1, 2)  # (k, d + 1, m)
        coef = torch.linalg.pinv(M) @ delta[idx, :, None]  # (k, m, 1)
        delta[idx] = delta[idx] - (M @ coef)[:, :, 0]
    return delta[:, :-1].T.contiguous(), delta[:, -1].contiguous()


def encoder_descent(
    X,
    p: SAETensors,
    lam: float,
    *,
    iters: int = 3,
    rows: int = 4096,
    device="cpu",
    dtype=torch.float64,
    qp_iters: int = 500,
    rel_stop: float = 1e-12,
    pin: int = 8,
    exact_qp: bool | None = None,
    start: tuple | None = None,
) -> EncoderDescent:
    """Feasible descent on the encoder block (see the module docstring).

    Parameters
    ----------
    X : ndarray, memmap or Tensor of shape (N, d)
    p : SAETensors
        Starting point (its pattern defines the piece), tensors on ``device`` in ``dtype``.
    lam : float
    iters : int
        Descent iterations at most (two passes each, plus one final pass).
    rows : int
        Rows per chunk.
    device, dtype
    qp_iters : int
        Iterations of the per-latent step-size QP.
    rel_stop : float
        Stop when a step's predicted decrease is below ``rel_stop`` times the loss.
    pin : int
        Samples remembered per latent on its hyperplane (where a step stopped at the ratio
        test); later directions are projected to keep them there, so a latent whose step
        is blocked by a sample on its boundary can still move along it.
    exact_qp : bool, optional
        Choose the per-latent steps by the exact box QP, which needs the ``K x K`` Gram of
        ``S * dP`` (``O(N K^2)`` per iteration); otherwise by diagonal Newton steps and one
        exact line search along them (``O(N K d)``, one extra pass). Default: exact when
        ``N K^2 <= EXACT_QP_WORK``.
    start : tuple, optional
        ``(loss, gW, gb)`` at ``p`` exactly as :func:`gradient_pass` returns them (a pass
        the caller already made, e.g. ``convexdict``'s statistics pass): saves the first
        gradient pass.

    Returns
    -------
    EncoderDescent
    """
    n = X.shape[0]
    if start is None:
        loss, gW, gb = gradient_pass(X, p, lam, rows, device, dtype)
    else:
        loss, gW, gb = start
    out = EncoderDescent(p, [loss], int(start is None))
    WdG = (p.W_dec @ p.W_dec.T).double()
    K, d = p.W_enc.shape[1], p.W_enc.shape[0]
    if exact_qp is None:
        exact_qp = n * K * K <= EXACT_QP_WORK
    pinned = torch.zeros((K, pin, d + 1), dtype=dtype, device=device)
    for it in range(iters):
        dW, db = _project(-gW, -gb, pinned) if it else (-gW, -gb)
        slope = (gW * dW).double().sum(0) + (gb * db).double()
        if float(slope.abs().sum()) == 0.0:
            break
        t_max, DtD, blocking = direction_pass(X, out.params, dW, db, rows, device, dtype,
                                              gram=exact_qp)
        out.passes += 1
        if exact_qp:
            s, predicted = solve_box_qp(slope, DtD * WdG / n, t_max, max_iter=qp_iters)
        else:
            s, predicted = _diagonal_steps(X, out.params, dW, db, slope, DtD, t_max, WdG, n,
                                           rows, device, dtype)
            out.passes += 1
        hit = torch.isfinite(t_max) & (s >= t_max * (1 - 1e-9)) & (t_max > 0) | (t_max == 0)
        pinned = torch.where(hit[:, None, None],
                             torch.cat([blocking[:, None, :], pinned[:, :-1]], dim=1), pinned)
        if -predicted <= rel_stop * abs(out.losses[-1]):
            break
        s = s.to(dtype)
        cand = SAETensors(out.params.W_enc + s * dW, out.params.b_enc + s * db,
                          p.W_dec, p.b_dec)
        new_loss, gW_new, gb_new = gradient_pass(X, cand, lam, rows, device, dtype)
        out.passes += 1
        if not new_loss < out.losses[-1]:
            break
        out.params, gW, gb = cand, gW_new, gb_new
        out.losses.append(new_loss)
    return out
