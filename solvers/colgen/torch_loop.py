"""Column generation for (P) entirely on a torch device (THEORY section 4).

The loop of :func:`convexdict_solvers.colgen.loop.column_generation` with device engines:
the master is :func:`convexdict_solvers.group_lasso.torch_fista.solve_group_lasso_torch`,
warm-started
across rounds; pricing is the exact :func:`convexdict_solvers.pricing.torch_sweep.price_torch`
(rotating
sweep for ``r >= 2`` unless enumeration is cheaper); atoms are normalised ReLU
activations of the priced hyperplanes with the on-hyperplane rule of
:func:`convexdict_solvers.pricing.exact.activations`, dropping empty and duplicate ones. The data,
atoms
and master stay on the device; only the few priced hyperplanes of each round (at most
``4 per_round`` rows) and the final arrays cross to the host.

The result is an *engine* output, never a certificate: the caller recomputes the SAE
loss in float64 and verifies the lower bound with exact float64 pricing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from convexdict_solvers.colgen.loop import CGResult, CGRound, carrying_weight
from convexdict_solvers.dedup import first_unique_rows
from convexdict_solvers.group_lasso.cvxpy_solve import GroupLassoSolution
from convexdict_solvers.group_lasso.torch_fista import ProximalSettings, solve_group_lasso_torch
from convexdict_solvers.pricing.exact import ZERO_TOL
from convexdict_solvers.pricing.torch_sweep import price_torch


def atoms_from_hyperplanes_torch(
    Y: torch.Tensor, U: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised activations of hyperplanes, without empty or duplicate atoms.

    Parameters
    ----------
    Y : Tensor of shape (N, r)
    U : Tensor of shape (m, r + 1)
        Hyperplanes with unit normals ``U[:, :r]``.

    Returns
    -------
    U_kept : Tensor of shape (m', r + 1)
    E : Tensor of shape (m', N)
        Rows sum to 1; points within ``ZERO_TOL`` of a hyperplane get activation 0.
    """
    r = Y.shape[1]
    A = U[:, :r] @ Y.T + U[:, r:]
    A = torch.where(A > ZERO_TOL, A, torch.zeros_like(A))
    total = A.sum(dim=1)
    keep = total > 0
    U, E = U[keep], A[keep] / total[keep, None]
    first = first_unique_rows(E)
    return U[first], E[first]


def column_generation_torch(
    T: np.ndarray,
    lam: float,
    Y: np.ndarray,
    *,
    groups: Sequence[slice] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    tol: float = 1e-6,
    max_rounds: int = 200,
    per_round: int = 50,
    callback: Callable[[CGRound], None] | None = None,
    settings: ProximalSettings | None = None,
    stop: Callable[[], bool] | None = None,
) -> CGResult:
    """Run column generation for (P) on a torch device.

    Parameters
    ----------
    T : ndarray of shape (N, p)
        Target (the data for an SAE).
    lam : float
        Penalty weight, ``> 0``.
    Y : ndarray of shape (N, r)
        Reduced coordinates of the data (``convexdict.affine_frame(X).coords(X)``).
    groups : sequence of slice, optional
        Disjoint column groups of ``T`` (crosscoders).
    device, dtype
        Where and in which precision to work. In float32 the pricing tolerance is raised
        to at least ``1e-4``.
    tol : float
        Converged when exact pricing finds no atom above ``lam (1 + tol)``.
    max_rounds, per_round : int
        Round limit; atoms added per round.
    callback : callable, optional
        Called with each :class:`CGRound`.
    settings : ProximalSettings, optional
        Master solver settings (default: ``tol = 1e-11`` in float64, ``1e-6`` in float32).
    stop : callable ``() -> bool``, optional
        Checked after each round; True ends the loop (e.g. a time budget), unconverged.

    Returns
    -------
    CGResult
        float64 numpy arrays: ``hyperplanes (m, r + 1)`` in ``Y``'s coordinates,
        ``E (m, N)``, and ``solution = GroupLassoSolution(b, G, status,
        "torch-fista", solve_time)`` with status ``"optimal"`` when the last master
        solve met its tolerance, else ``"inaccurate"``.
    """
    if not lam > 0:
        raise ValueError(f"The 'lam' parameter must be a float > 0. Got {lam!r}.")
    for name, value in (("max_rounds", max_rounds), ("per_round", per_round)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"The '{name}' parameter must be an int >= 1. Got {value!r}.")
    Tt = torch.as_tensor(np.asarray(T, dtype=np.float64)).to(device, dtype)
    Yt = torch.as_tensor(np.asarray(Y, dtype=np.float64)).to(device, dtype)
    if Tt.ndim != 2 or Yt.ndim != 2 or Tt.shape[0] != Yt.shape[0]:
        raise ValueError(
            "The 'T' and 'Y' parameters must have shapes (N, p) and (N, r) with the same N. "
            f"Got {tuple(Tt.shape)} and {tuple(Yt.shape)}."
        )
    n, r = Yt.shape
    eps = torch.finfo(dtype).eps
    tol = max(tol, 1e3 * eps)
    if settings is None:
        settings = ProximalSettings(tol=1e-11 if dtype == torch.float64 else 1e-6)
    U = Yt.new_empty((0, r + 1))
    E = Yt.new_empty((0, n))
    G = Tt.new_empty((0, Tt.shape[1]))
    if r == 0:  # one realizable atom: the uniform activation
        U, E = Yt.new_ones((1, 1)), Yt.new_full((1, n), 1.0 / n)
        G = Tt.new_zeros((1, Tt.shape[1]))
    rounds: list[CGRound] = []
    converged = False
    sol = None
    solve_time = 0.0
    n_new = 0
    for k in range(max_rounds):
        t0 = time.perf_counter()
        sol = solve_group_lasso_torch(E, Tt, lam, groups=groups, G0=G, settings=settings)
        G, U_sol, E_sol = sol.G, U, E
        solve_time += sol.solve_time
        t1 = time.perf_counter()
        R = Tt - sol.b - E.T @ G
        R = R - R.mean(dim=0)
        priced = price_torch(Yt, R, groups=groups, top=4 * per_round, device=device, dtype=dtype)
        t2 = time.perf_counter()
        status = "optimal" if sol.converged else "inaccurate"
        info = CGRound(k, len(E), priced.max_value, t1 - t0, t2 - t1, status)
        rounds.append(info)
        if callback is not None:
            callback(info)
        if priced.max_value <= lam * (1 + tol):
            converged = True
            break
        if stop is not None and stop():
            break
        if len(E):
            keep = carrying_weight(G, n_new)
            U, E, G = U[keep], E[keep], G[keep]
        violated = torch.as_tensor(priced.hyperplanes[priced.values > lam * (1 + tol)])
        U_new, E_new = atoms_from_hyperplanes_torch(Yt, violated.to(device, dtype))
        fresh = first_unique_rows(torch.cat([E, E_new]), len(E))[:per_round] - len(E)
        if len(fresh) == 0:
            break  # the master cannot be improved by new atoms at this accuracy
        n_new = len(fresh)
        U = torch.cat([U, U_new[fresh]])
        E = torch.cat([E, E_new[fresh]])
        G = torch.cat([G, G.new_zeros((n_new, G.shape[1]))])
    solution = GroupLassoSolution(
        _np(sol.b),
        _np(sol.G),
        "optimal" if sol.converged else "inaccurate",
        "torch-fista",
        solve_time,
    )
    return CGResult(_np(U_sol), _np(E_sol), solution, converged, rounds)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy().copy()
