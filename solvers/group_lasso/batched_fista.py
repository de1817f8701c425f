"""Many small group lassos at once, each with a verified dual lower bound.

For a batch of explicit atom sets ``E_b (m, N)`` (zero rows are padding) and one target
``T (N, p)``, approximately solve

    min_{G, c}  (1/N) [ 1/2 ||T - 1 c^T - E_b^T G||_F^2 + lam * sum_j ||g_j|| ]

by FISTA with adaptive restarts (the bias eliminated by centring), and return for every
problem both the primal value of the iterate (an upper bound on the optimum) and a
**verified lower bound**: the dual value of the centred residual scaled into
``{R : ||R^T e_j|| <= lam for every atom}`` (THEORY section 4, with the finite atom set in
place of ``E0``). The lower bound is valid however far FISTA is from convergence; the
solver only decides how tight it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from convexdict_solvers.duality import best_on_ray, feasible_scale
from convexdict_solvers.pricing.exact import PRICE_SAFETY


@dataclass(frozen=True)
class BatchBounds:
    """Bounds of a batch of group lassos.

    Attributes
    ----------
    lower : ndarray of shape (B,)
        Verified lower bounds on each problem's optimum.
    primal : ndarray of shape (B,)
        Objective values of the returned iterates (upper bounds on each optimum).
    G : ndarray of shape (B, m, p)
        The iterates (rows of padding atoms are zero).
    b : ndarray of shape (B, p)
        The biases ``mean(T - E^T G)``.
    """

    lower: np.ndarray
    primal: np.ndarray
    G: np.ndarray
    b: np.ndarray


def objective_values(Ec: np.ndarray, Tc: np.ndarray, G: np.ndarray, lam: float) -> np.ndarray:
    """``N`` times the objective of each problem at ``G``.

    Parameters
    ----------
    Ec : ndarray of shape (B, N, m)
        Centred atoms, transposed (:func:`centred_atoms`).
    Tc : ndarray of shape (N, p)
        Centred target.
    G : ndarray of shape (B, m, p)
    lam : float

    Returns
    -------
    ndarray of shape (B,)
        ``1/2 ||Tc - Ec G||^2 + lam sum_j ||g_j||``.
    """
    R = Tc[None] - Ec @ G
    return 0.5 * np.einsum("bnp,bnp->b", R, R) + lam * np.linalg.norm(G, axis=2).sum(axis=1)


def centred_atoms(E: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centred target ``Tc (N, p)``, the centred atoms transposed ``Ec (B, N, m)`` and
    each problem's Lipschitz constant ``L (B,)`` (``||Ec||_2^2``, at least ``1e-12``)."""
    Tc = T - T.mean(axis=0)
    Ec = np.transpose(E - E.mean(axis=2, keepdims=True), (0, 2, 1))
    L = np.maximum(np.linalg.norm(Ec, ord=2, axis=(1, 2)) ** 2, 1e-12)
    return Tc, Ec, L


def dual_lower_bounds(E: np.ndarray, T: np.ndarray, G: np.ndarray, lam: float) -> np.ndarray:
    """Verified lower bounds from the residuals of ``G``.

    Parameters
    ----------
    E : ndarray of shape (B, m, N)
    T : ndarray of shape (N, p)
    G : ndarray of shape (B, m, p)
    lam : float

    Returns
    -------
    ndarray of shape (B,)
        ``max_{0 <= t <= t_max} (t <R, T> - t^2 ||R||^2 / 2) / N`` with ``R`` the centred
        residual and ``t_max = lam / (max_j ||R^T e_j|| (1 + PRICE_SAFETY))``.
    """
    n = T.shape[0]
    R = T[None] - np.einsum("bmn,bmp->bnp", E, G)
    R = R - R.mean(axis=1, keepdims=True)
    Tc = T - T.mean(axis=0)
    prices = np.linalg.norm(np.einsum("bmn,bnp->bmp", E, R), axis=2).max(axis=1)
    a = np.einsum("bnp,np->b", R, Tc)
    q = np.einsum("bnp,bnp->b", R, R)
    return scaled_dual_values(a, q, prices, lam, n)


def scaled_dual_values(
    a: np.ndarray, q: np.ndarray, prices: np.ndarray, lam: float, n: int
) -> np.ndarray:
    """The dual value of the best feasible point on the ray of each residual.

    For a centred residual ``R`` with ``a = <R, T>``, ``q = ||R||^2`` and largest
    dual-constraint value ``price = max_j ||R^T e_j||`` over an atom set, ``t R`` is dual
    feasible for ``t <= t_max = lam / (price (1 + PRICE_SAFETY))``; this returns
    ``max_{0 <= t <= t_max} (t a - t^2 q / 2) / n``.

    Parameters
    ----------
    a, q : ndarray of shape (B,)
    prices : ndarray of shape (B,) or (B, P)
        One price per residual, or ``P`` prices (atom sets) per residual.
    lam : float
    n : int
        Number of samples.

    Returns
    -------
    ndarray of the shape of ``prices``
        0 where ``q <= 0`` or ``a <= 0`` (the zero residual).
    """
    prices = np.asarray(prices, dtype=np.float64) * (1.0 + PRICE_SAFETY)
    extra = (slice(None),) + (None,) * (prices.ndim - 1)
    a, q = np.asarray(a)[extra], np.asarray(q)[extra]
    value, _ = best_on_ray(a, q, feasible_scale(lam, prices))
    return value / n


def solve_batch(
    E: np.ndarray,
    T: np.ndarray,
    lam: float,
    *,
    G0: np.ndarray | None = None,
    max_iter: int = 400,
    check_every: int = 50,
    stop_below: float | None = None,
    stop_above: float | None = None,
    rtol: float = 1e-9,
    device: str | None = None,
) -> BatchBounds:
    """FISTA on a batch of group lassos, with verified lower bounds.

    Parameters
    ----------
    E : ndarray of shape (B, m, N)
        Atoms per problem (normalised activations; all-zero rows are padding).
    T : ndarray of shape (N, p)
        Target shared by the batch.
    lam : float
    G0 : ndarray of shape (B, m, p), optional
        Warm start.
    max_iter, check_every : int
        Iteration budget and how often bounds are checked.
    stop_below, stop_above : float, optional
        A problem stops early once its lower bound is ``>= stop_above`` (it can be pruned)
        or its primal value is ``< stop_below`` (it cannot).
    rtol : float
        A problem stops once ``primal - lower <= rtol * max(1, |primal|)``.
    device : str, optional
        A torch device for the iterations (float64 there; e.g. the fixed-width branch and
        bound's leaves on a GPU). Every check brings the iterates back to the host, where
        the primal values and the verified lower bounds are computed by the same numpy
        code, so a bound never depends on the device. None: numpy throughout.

    Returns
    -------
    BatchBounds
    """
    B, m, n = E.shape
    p = T.shape[1]
    Tc, Ec, L = centred_atoms(E, T)
    G = np.zeros((B, m, p)) if G0 is None else np.array(G0, dtype=np.float64)
    lower = np.full(B, -np.inf)
    primal = np.full(B, np.inf)
    put, host, where = _backend(device)
    # The unfinished problems' state, compacted (gathered again only when some finish);
    # on a device it lives there, and only checks come back to the host.
    active = np.arange(B)
    Tt, Ea, La = put(Tc), put(Ec), put(L)[:, None, None]
    Ga, Ya, ta = put(G), put(G), put(np.ones(B))
    for it in range(1, max_iter + 1):
        Ga, Ya, ta = _fista_step(Ea, Tt, Ga, Ya, ta, La, lam, where)
        if it % check_every and it != max_iter:
            continue
        G_host = host(Ga)
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
            active, keep = active[~done], put(~done)
            Ea, La, Ga, Ya, ta = Ea[keep], La[keep], Ga[keep], Ya[keep], ta[keep]
    b = T.mean(axis=0)[None] - np.einsum("bmn,bmp->bp", E, G) / n
    return BatchBounds(lower, primal, G, b)


def _fista_step(Ea, Tc, Ga, Ya, ta, La, lam: float, where):
    """One FISTA step with gradient-based adaptive restart (O'Donoghue and Candes) on a
    batch: numpy arrays or torch tensors (``where`` is ``np.where`` or ``torch.where``).

    ``Ea (B, N, m)`` centred atoms, ``Tc (N, p)``, iterates ``Ga, Ya (B, m, p)``, momenta
    ``ta (B,)``, steps ``1 / La (B, 1, 1)``; returns the next ``(G, Y, t)``.
    """
    Z = Ya + (Ea.swapaxes(1, 2) @ (Tc[None] - Ea @ Ya)) / La
    norms = (Z * Z).sum(axis=2, keepdims=True) ** 0.5
    shrink = (1.0 - (lam / La) / where(norms > 0, norms, 1.0)).clip(min=0.0)
    G_new = shrink * (norms > 0) * Z
    restart = ((Ya - G_new) * (G_new - Ga)).sum(axis=(1, 2)) > 0
    t_a = where(restart, 1.0, ta)
    t_next = 0.5 * (1.0 + (1.0 + 4.0 * t_a * t_a) ** 0.5)
    beta = where(restart, 0.0, (t_a - 1.0) / t_next)[:, None, None]
    return G_new, G_new + beta * (G_new - Ga), t_next


def _backend(device: str | None):
    """``(put, host, where)`` for numpy (``device=None``) or a torch device (float64)."""
    if device is None:
        return np.asarray, np.asarray, np.where
    import torch

    def put(a):
        a = np.asarray(a)
        dtype = torch.bool if a.dtype == bool else torch.float64
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    return put, lambda t: t.cpu().numpy(), torch.where
