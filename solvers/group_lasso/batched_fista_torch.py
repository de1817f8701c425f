"""The batched group lassos of :mod:`convexdict_solvers.group_lasso.batched_fista` on a torch
device (the fixed-width branch and bound's leaf relaxations on a GPU).

The FISTA iterations (the same updates, restarts and stopping rules as
:func:`~convexdict_solvers.group_lasso.batched_fista.solve_batch`) run in float64 on the
device; every check moves the iterates of the unfinished problems to the host, where the
primal values and the **verified lower bounds** are computed by the same numpy functions
as on the CPU path (:func:`~convexdict_solvers.group_lasso.batched_fista.dual_lower_bounds`),
so a bound never depends on the device's arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch
from convexdict_solvers.group_lasso.batched_fista import (
    BatchBounds,
    centred_atoms,
    dual_lower_bounds,
    objective_values,
)


def solve_batch_torch(
    E: np.ndarray,
    T: np.ndarray,
    lam: float,
    *,
    device: str | torch.device = "cpu",
    G0: np.ndarray | None = None,
    max_iter: int = 400,
    check_every: int = 50,
    stop_below: float | None = None,
    stop_above: float | None = None,
    rtol: float = 1e-9,
) -> BatchBounds:
    """:func:`~convexdict_solvers.group_lasso.batched_fista.solve_batch` on ``device``.

    Parameters
    ----------
    E : ndarray of shape (B, m, N)
        Atoms per problem (normalised activations; all-zero rows are padding).
    T : ndarray of shape (N, p)
    lam : float
    device : str or torch.device
        Where the iterations run (float64).
    G0, max_iter, check_every, stop_below, stop_above, rtol
        As in :func:`~convexdict_solvers.group_lasso.batched_fista.solve_batch`.

    Returns
    -------
    BatchBounds
        ``lower`` verified on the host in float64, whatever the device.
    """
    B, m, n = E.shape
    p = T.shape[1]
    Tc, Ec, L = centred_atoms(E, T)
    dev = torch.device(device)

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=dev)

    G = np.zeros((B, m, p)) if G0 is None else np.array(G0, dtype=np.float64)
    lower, primal = np.full(B, -np.inf), np.full(B, np.inf)
    active = np.arange(B)
    Tt = put(Tc)
    Ea, La = put(Ec), put(L)[:, None, None]
    Ga, Ya, ta = put(G), put(G), torch.ones(B, dtype=torch.float64, device=dev)
    for it in range(1, max_iter + 1):
        grad = -Ea.transpose(1, 2) @ (Tt[None] - Ea @ Ya)
        Z = Ya - grad / La
        norms = torch.linalg.vector_norm(Z, dim=2, keepdim=True)
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        shrink = torch.where(norms > 0, torch.clamp(1.0 - (lam / La) / safe, min=0.0), 0.0)
        G_new = shrink * Z
        restart = ((Ya - G_new) * (G_new - Ga)).sum(dim=(1, 2)) > 0
        t_a = torch.where(restart, torch.ones_like(ta), ta)
        t_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t_a * t_a))
        beta = torch.where(restart, torch.zeros_like(ta), (t_a - 1.0) / t_next)[:, None, None]
        Ya = G_new + beta * (G_new - Ga)
        Ga, ta = G_new, t_next
        if it % check_every and it != max_iter:
            continue
        G_host = Ga.cpu().numpy()
        G[active] = G_host
        primal[active] = objective_values(Ec[active], Tc, G_host, lam) / n
        lower[active] = np.maximum(lower[active], dual_lower_bounds(E[active], T, G_host, lam))
        gap = primal[active] - lower[active]
        done = gap <= rtol * np.maximum(1.0, np.abs(primal[active]))
        if stop_above is not None:
            done |= lower[active] >= stop_above
        if stop_below is not None:
            done |= primal[active] < stop_below
        if done.all():
            break
        if done.any():
            keep = torch.as_tensor(~done, device=dev)
            active = active[~done]
            Ea, La, Ga, Ya, ta = Ea[keep], La[keep], Ga[keep], Ya[keep], ta[keep]
    b = T.mean(axis=0)[None] - np.einsum("bmn,bmp->bp", E, G) / n
    return BatchBounds(lower, primal, G, b)
