"""Many random restarts of the canonical SAE loss at once (upper-bound heuristic).

All restarts form one batched float64 problem (batch dimension first) trained with Adam
and a cosine learning-rate decay; the best few end points are returned as weight arrays.
Nothing here is a bound: the fixed-width branch and bound uses these SAEs only as
incumbents, after recomputing their loss in float64.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from convexdict_solvers.group_lasso.torch_fista import cpu_threads
from convexdict_solvers.objective import per_sample_terms

Weights = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def batched_loss(
    X: torch.Tensor,
    lam: float,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    W_dec: torch.Tensor,
    b_dec: torch.Tensor,
) -> torch.Tensor:
    """Canonical loss of each restart, shape ``(B,)``.

    Shapes: ``X (N, d)``, ``W_enc (B, d, K)``, ``b_enc (B, K)``, ``W_dec (B, K, d)``,
    ``b_dec (B, d)``.
    """
    Z = torch.relu(torch.einsum("nd,bdk->bnk", X, W_enc) + b_enc[:, None, :])
    resid = X[None] - torch.einsum("bnk,bkd->bnd", Z, W_dec) - b_dec[:, None, :]
    recon, penalty = per_sample_terms(resid, Z, W_dec.norm(dim=2)[:, None, :], lam)
    return (recon + penalty).mean(dim=1)


def random_restarts(
    X: np.ndarray,
    lam: float,
    width: int,
    *,
    n_restarts: int = 256,
    steps: int = 300,
    lr: float = 0.05,
    keep: int = 3,
    seed: int = 0,
    init: Weights | None = None,
    threads: int = 1,
    deadline: float | None = None,
) -> list[Weights]:
    """Best ``keep`` of ``n_restarts`` Adam runs from random initialisations.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    lam : float
    width : int
        ``K``.
    n_restarts, steps : int
        Batch size and Adam steps.
    lr : float
        Initial learning rate (cosine decay to ``lr / 1000``).
    keep : int
        How many end points to return.
    seed : int
    init : tuple of ndarray, optional
        ``(W_enc (B0, d, K), b_enc (B0, K), W_dec (B0, K, d), b_dec (B0, d))``: the first
        ``B0 <= n_restarts`` restarts start here instead of at random.
    threads : int
        Torch CPU threads during the run (1 avoids oversubscription on busy machines).
    deadline : float, optional
        A ``time.perf_counter()`` value after which the runs stop early (the end points so
        far are returned).

    Returns
    -------
    list of (W_enc (d, K), b_enc (K,), W_dec (K, d), b_dec (d,))
        Best first (by the batched float64 loss).
    """
    gen = torch.Generator().manual_seed(seed)
    n, d = X.shape
    Xt = torch.tensor(np.array(X, dtype=np.float64))
    scale = torch.tensor([0.1, 0.3, 1.0, 3.0], dtype=torch.float64)[
        torch.arange(n_restarts) % 4
    ]
    W_enc = torch.randn(n_restarts, d, width, generator=gen, dtype=torch.float64)
    b_enc = torch.randn(n_restarts, width, generator=gen, dtype=torch.float64)
    W_dec = torch.randn(n_restarts, width, d, generator=gen, dtype=torch.float64)
    W_enc = W_enc * scale[:, None, None]
    b_enc = b_enc * scale[:, None]
    W_dec = W_dec / W_dec.norm(dim=2, keepdim=True)
    b_dec = Xt.mean(dim=0).repeat(n_restarts, 1)
    if init is not None:
        b0 = min(len(init[0]), n_restarts)
        for p, given in zip((W_enc, b_enc, W_dec, b_dec), init, strict=True):
            p[:b0] = torch.as_tensor(np.asarray(given[:b0], dtype=np.float64))
    with cpu_threads(threads, enabled=Xt.device.type == "cpu"):
        return _adam(Xt, lam, [W_enc, b_enc, W_dec, b_dec], steps, lr, keep, deadline)


def _adam(Xt: torch.Tensor, lam: float, weights: list[torch.Tensor], steps: int, lr: float,
          keep: int, deadline: float | None) -> list[Weights]:
    params = [p.requires_grad_() for p in weights]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 1e-3)
    for _ in range(steps):
        if deadline is not None and time.perf_counter() > deadline:
            break
        opt.zero_grad()
        # Restarts are independent, so the sum's gradient is each restart's own gradient.
        batched_loss(Xt, lam, *params).sum().backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        losses = batched_loss(Xt, lam, *params).numpy()
    best = np.argsort(losses, kind="stable")[:keep]
    arrays = [p.detach().numpy() for p in params]
    return [tuple(np.array(a[i]) for a in arrays) for i in best]
