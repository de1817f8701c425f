"""The group lasso (P) over a fixed atom set, as a CVXPY problem (THEORY section 3).

    min_{b, G}  (1/N) [ 1/2 ||T - 1 b^T - E^T G||_F^2 + lam * sum_i sum_g ||G[i, g]||_2 ]

The bias is eliminated in closed form and the fit term is written through a thin QR
factor of the centred atoms, so the conic problem's size grows with the number of atoms,
not with ``N``.

``E (m, N)`` holds one normalised activation per row, ``T (N, p)`` is the target (the
data for an SAE, another representation for a transcoder, concatenated layers for a
crosscoder, whose column groups ``g`` get separate norms). ``lam`` is a
``cp.Parameter``, so a sweep over ``lam`` reuses the compiled problem (DPP).

The solver's reported objective and status are *never* used as bounds: callers recompute
the loss of the explicit solution and verify a dual bound by exact pricing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

# Preference order and settings; each entry declares its own tolerances.
SOLVERS: dict[str, dict] = {
    "clarabel": {
        "solver": cp.CLARABEL,
        "options": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "max_iter": 500},
    },
    "scs": {
        "solver": cp.SCS,
        "options": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
    },
}
STATUS_MAP = {
    cp.OPTIMAL: "optimal",
    cp.OPTIMAL_INACCURATE: "inaccurate",
}


class SolverFailure(RuntimeError):
    """Every requested solver failed on the group lasso."""


@dataclass(frozen=True)
class GroupLassoSolution:
    """Primal point of (P) and how it was obtained.

    Attributes
    ----------
    b : ndarray of shape (p,)
    G : ndarray of shape (m, p)
    status : str
        ``"optimal"`` or ``"inaccurate"`` (the solver's word: informational only).
    solver : str
    solve_time : float
        Seconds, including compilation.
    """

    b: np.ndarray
    G: np.ndarray
    status: str
    solver: str
    solve_time: float


def available_solvers() -> list[str]:
    """Solver names of :data:`SOLVERS` installed in this environment, in preference order."""
    installed = set(cp.installed_solvers())
    return [name for name, spec in SOLVERS.items() if spec["solver"] in installed]


def solve_with_fallback(
    problem: cp.Problem,
    solver: str = "clarabel",
    *,
    fallback: bool = True,
    valid: Callable[[], bool] | None = None,
) -> tuple[str, str, float]:
    """Solve ``problem`` with ``solver``, then (``fallback``) the other installed solvers.

    The one solver-fallback loop of convexdict: a solver that raises, or returns a status
    outside :data:`STATUS_MAP` (or a solution ``valid()`` rejects), hands over to the next.
    "Inaccurate" statuses are accepted and recorded: every caller re-scores what it gets.

    Returns
    -------
    name : str
        The solver that succeeded.
    status : str
        ``"optimal"`` or ``"inaccurate"``.
    seconds : float
        Wall time of the successful solve.

    Raises
    ------
    SolverFailure
        If no solver returns a usable solution.
    """
    order = [solver] + ([s for s in available_solvers() if s != solver] if fallback else [])
    errors = []
    for name in order:
        spec = SOLVERS[name]
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "inaccurate": re-scored anyway
                problem.solve(solver=spec["solver"], **spec["options"])
        except (cp.error.SolverError, ValueError, ArithmeticError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        status = STATUS_MAP.get(problem.status)
        if status is None or (valid is not None and not valid()):
            errors.append(f"{name}: status {problem.status}")
            continue
        return name, status, time.perf_counter() - start
    raise SolverFailure("; ".join(errors) or "no solver available")


class GroupLassoProblem:
    """(P) over a fixed atom set with ``lam`` as a parameter.

    Parameters
    ----------
    E : ndarray of shape (m, N)
        Candidate atoms (normalised activations), one per row.
    T : ndarray of shape (N, p)
        Target.
    groups : sequence of slice, optional
        Column groups of the target with separate norms (crosscoders).
    """

    def __init__(self, E: np.ndarray, T: np.ndarray, groups: Sequence[slice] | None = None):
        n, p = T.shape
        m = E.shape[0]
        self.n_atoms, self.n_samples = m, n
        self._E = np.asarray(E, dtype=np.float64)
        self._T = np.asarray(T, dtype=np.float64)
        self.lam = cp.Parameter(nonneg=True, name="lam")
        self.G = cp.Variable((m, p), name="G")
        if m == 0:
            self.problem = cp.Problem(cp.Minimize(0 * self.lam))
            return
        # The bias is eliminated exactly (b = mean of T - E^T G), leaving centred atoms Ec
        # and target Tc. With F^T F = Ec Ec^T (thin QR of Ec^T when m < N), the fit term is
        # 1/2 ||Tc - Ec^T G||^2 = 1/2 ||Tc||^2 - <Ec Tc, G> + 1/2 ||F G||^2: a problem whose
        # size depends on m, not on N.
        Ec = self._E - self._E.mean(axis=1, keepdims=True)
        Tc = self._T - self._T.mean(axis=0)
        F = np.linalg.qr(Ec.T, mode="r") if m < n else Ec.T
        C = Ec @ Tc
        groups = list(groups) if groups is not None else [slice(0, p)]
        penalty = sum(cp.sum(cp.norm(self.G[:, g], 2, axis=1)) for g in groups)
        objective = (
            0.5 * cp.sum_squares(F @ self.G) - cp.sum(cp.multiply(C, self.G)) + self.lam * penalty
        ) / n
        self.problem = cp.Problem(cp.Minimize(objective))

    def solve(
        self, lam: float, solver: str = "clarabel", fallback: bool = True
    ) -> GroupLassoSolution:
        """Solve at ``lam``; on failure try the other solvers when ``fallback``.

        Raises
        ------
        SolverFailure
            If no solver returns an (optimal or inaccurate) solution.
        """
        self.lam.value = float(lam)
        name, status, seconds = solve_with_fallback(
            self.problem,
            solver,
            fallback=fallback,
            valid=lambda: not self.n_atoms or self.G.value is not None,
        )
        G = np.asarray(self.G.value, dtype=np.float64) if self.n_atoms else self.G_empty()
        b = (self._T - self._E.T @ G).mean(axis=0)
        return GroupLassoSolution(b, G.copy(), status, name, seconds)

    def G_empty(self) -> np.ndarray:
        return np.zeros((0, self._T.shape[1]))
