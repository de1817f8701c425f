"""A sparse optimal support for (P): fewer latents for the same optimum.

Interior-point solvers return the group-lasso solution of largest support, so the number
of nonzero groups (the width ``K*`` of the SAE it maps to) can be far above the width an
optimal SAE needs. At an optimum the fit ``Tc - Rc`` is unique and every active atom's
group points along ``R^T e / lam`` (``||R^T e|| = lam``), so the optimal solutions are the
nonnegative combinations

    sum_e t_e  ec_e (R^T e / lam)^T = Tc - Rc,   t_e >= 0,

a linear feasibility problem. A basic (vertex) solution found by the dual simplex method
has few nonzero ``t_e``; the group lasso is then re-solved on that support. Nothing here is
trusted: :func:`convexdict.certify` keeps the sparser SAE only if its recomputed loss stays
within the certificate's tolerance.
"""

from __future__ import annotations

import numpy as np
from convexdict_solvers.group_lasso.cvxpy_solve import (
    GroupLassoProblem,
    GroupLassoSolution,
    SolverFailure,
)
from scipy.optimize import linprog
from scipy.sparse import csc_matrix, hstack, identity

ACTIVE_RTOL = 1e-5


def sparse_support(
    E: np.ndarray, T: np.ndarray, solution: GroupLassoSolution, lam: float, solver: str
) -> tuple[np.ndarray, GroupLassoSolution] | None:
    """Indices of a sparse optimal support among the atoms ``E (m, N)`` and the group-lasso
    solution on it, or None when the linear program fails.

    Parameters
    ----------
    E : ndarray of shape (m, N)
        Active-set atoms the solution was computed on.
    T : ndarray of shape (N, p)
        Target (single column group).
    solution : GroupLassoSolution
        A (near-)optimal solution on ``E``.
    lam : float
    solver : str
        CVXPY solver for the re-solve.
    """
    if len(E) == 0:
        return None
    R = T - solution.b - E.T @ solution.G
    Rc = R - R.mean(axis=0)
    V = E @ Rc  # (m, p)
    price = np.linalg.norm(V, axis=1)
    active = np.flatnonzero(price >= lam * (1 - ACTIVE_RTOL))
    if active.size <= 1:
        return None
    Ec = E[active] - E[active].mean(axis=1, keepdims=True)
    directions = V[active] / lam
    n, p = T.shape
    # Column e: vec(ec_e dir_e^T), row-major over (N, p).
    A = (Ec[:, :, None] * directions[:, None, :]).reshape(len(active), n * p).T
    fit = ((T - T.mean(axis=0)) - Rc).reshape(-1)
    m = len(active)
    A_eq = hstack([csc_matrix(A), identity(n * p, format="csc"), -identity(n * p, format="csc")])
    cost = np.concatenate([np.zeros(m), np.ones(2 * n * p)])
    result = linprog(cost, A_eq=A_eq, b_eq=fit, bounds=(0, None), method="highs-ds")
    if result.status != 0:
        return None
    t = result.x[:m]
    if t.max() <= 0:
        return None
    support = active[t > 1e-9 * t.max()]
    if support.size >= np.count_nonzero(np.linalg.norm(solution.G, axis=1) > 0):
        return None
    try:
        refit = GroupLassoProblem(E[support], T).solve(lam, solver)
    except SolverFailure:
        return None
    return support, refit
