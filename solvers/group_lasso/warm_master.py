"""The restricted group lasso of column generation, solved warm from round to round.

Column generation (:mod:`convexdict_solvers.colgen.loop`) solves (P) over a slowly
changing active set ``E (m, N)``: each round keeps most atoms, drops the zero ones and
adds a few. This master works on the **reduced problem** only: with the bias eliminated
(centred atoms ``Ec``, centred target ``Tc``),

    f(G) = 1/2 ||Tc - Ec^T G||_F^2 + lam * sum_i sum_g ||G[i, g]||
         = 1/2 c0 - <C, G> + 1/2 <G, Q G> + lam * sum_i sum_g ||G[i, g]||,

    Q = Ec Ec^T (m, m),   C = Ec Tc (m, p),   c0 = ||Tc||_F^2,

so after the Gram matrices its cost does not depend on ``N`` (``N`` times (P); the bias
is ``mean(T) - mean(E, axis=1) @ G``). ``Q`` and ``C`` are updated incrementally
(:class:`ReducedGram`: only new atoms' rows are computed, ``O(k m N)`` for ``k`` new
atoms). :class:`WarmGroupLasso` then runs, on the reduced problem
(:mod:`convexdict_solvers.group_lasso.reduced_solve`),

1. restarted FISTA (O'Donoghue and Candes restarts) on the diagonally scaled problem
   (variables ``d_i G[i]``, ``d_i = ||Ec[i]||``, step ``1 / ||D^-1 Q D^-1||_2``),
   warm-started from the previous round's ``G`` (new atoms at zero, dropped ones gone);
2. gap-safe screening (:func:`~convexdict_solvers.group_lasso.reduced_solve.screen`) of
   atoms that cannot be nonzero at the restricted optimum, shrinking the problem while
   FISTA runs;
3. a Newton finish on the support once FISTA's support has settled
   (:func:`~convexdict_solvers.group_lasso.reduced_solve.newton_finish`);

until the restricted duality gap
(:func:`~convexdict_solvers.group_lasso.reduced_solve.restricted_gap`) is
``<= rtol * f(G)``. If that does not happen within ``max_iter`` FISTA iterations, the
round falls back to the cold CVXPY solve
(:class:`~convexdict_solvers.group_lasso.cvxpy_solve.GroupLassoProblem` with the
``solver`` given, Clarabel by default) and returns whichever answer has the smaller gap.
As everywhere in convexdict, nothing downstream trusts this master: certificates
recompute the loss and verify the dual bound by exact pricing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from convexdict_solvers.group_lasso.cvxpy_solve import (
    GroupLassoProblem,
    GroupLassoSolution,
    SolverFailure,
)
from convexdict_solvers.group_lasso.reduced_solve import (
    WarmSettings,
    restricted_gap,
    solve_reduced,
)

#: The solver name recorded in :class:`GroupLassoSolution` when no fallback was needed.
WARM_SOLVER_NAME = "fista-newton"


def splits_columns(groups: Sequence[slice] | None, p: int) -> bool:
    """Whether the column ``groups`` (None: one group) are disjoint and cover all ``p``
    columns, as the warm master needs (an unpenalised column has no scalable dual point)."""
    if groups is None:
        return True
    covered = np.zeros(p, dtype=int)
    for g in groups:
        covered[g] += 1
    return bool(np.all(covered == 1))


class ReducedGram:
    """``Q = Ec Ec^T``, ``C = Ec Tc`` of a changing atom set, updated incrementally.

    Rows of a new ``E`` equal to a row of the previous call's ``E`` (found through a
    random projection, then compared exactly) reuse their entries of ``Q`` and ``C``;
    only the new rows cost ``O(k m N)``.

    Parameters
    ----------
    T : ndarray of shape (N, p)
        Target.
    """

    def __init__(self, T: np.ndarray):
        T = np.asarray(T, dtype=np.float64)
        self.t_mean = T.mean(axis=0)
        self.Tc = T - self.t_mean
        self.c0 = float(np.vdot(self.Tc, self.Tc))
        self._probe = np.random.default_rng(0).standard_normal(T.shape[0])
        self._E = np.zeros((0, T.shape[0]))
        self._keys: dict[float, int] = {}
        self.Q = np.zeros((0, 0))
        self.C = np.zeros((0, T.shape[1]))

    def update(self, E: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gram matrices of the atoms ``E (m, N)``.

        Returns
        -------
        Q : ndarray of shape (m, m)
        C : ndarray of shape (m, p)
        old : ndarray of int, shape (m,)
            Each row's index in the previous call's ``E`` (``-1`` for new rows).
        """
        E = np.array(E, dtype=np.float64)  # a private copy: the next call compares with it
        keys = (E @ self._probe).tolist()
        old = np.array([self._keys.get(k, -1) for k in keys], dtype=np.int64)
        for i in np.flatnonzero(old >= 0):
            if not np.array_equal(E[i], self._E[old[i]]):
                old[i] = -1  # equal projections of different rows
        new = np.flatnonzero(old < 0)
        seen = np.flatnonzero(old >= 0)
        m = len(E)
        Q, C = np.empty((m, m)), np.empty((m, self.Tc.shape[1]))
        Q[np.ix_(seen, seen)] = self.Q[np.ix_(old[seen], old[seen])]
        C[seen] = self.C[old[seen]]
        if len(new):
            Ec_new = E[new] - E[new].mean(axis=1, keepdims=True)
            Ec = E - E.mean(axis=1, keepdims=True)
            block = Ec_new @ Ec.T
            Q[new, :] = block
            Q[:, new] = block.T
            C[new] = Ec_new @ self.Tc
        self._keys = {k: i for i, k in enumerate(keys)}
        self.Q, self.C, self._E = Q, C, E
        return Q, C, old


@dataclass(frozen=True)
class WarmInfo:
    """How the last warm solve went: restricted relative gap, FISTA iterations, Newton
    finishes tried, atoms screened, and whether the cold fallback ran."""

    rel_gap: float
    iterations: int
    newton_calls: int
    screened: int
    fallback: bool


class WarmGroupLasso:
    """The restricted group lasso of column generation, warm-started across rounds.

    Parameters
    ----------
    T : ndarray of shape (N, p)
        Target.
    groups : sequence of slice, optional
        Column groups with separate norms (crosscoders); they must cover all columns.
    solver : str
        CVXPY solver of the cold fallback (see
        :data:`convexdict_solvers.group_lasso.cvxpy_solve.SOLVERS`).
    settings : WarmSettings, optional

    Examples
    --------
    >>> E = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    >>> T = np.array([[0.0, 1.0], [0.0, 1.2], [3.0, 0.0]])
    >>> master = WarmGroupLasso(T)
    >>> sol = master.solve(E, 0.1)
    >>> sol.G.shape, master.info.rel_gap <= 1e-12
    ((2, 2), True)
    """

    def __init__(self, T: np.ndarray, groups: Sequence[slice] | None = None,
                 solver: str = "clarabel", settings: WarmSettings | None = None):
        self.T = np.asarray(T, dtype=np.float64)
        p = self.T.shape[1]
        self.groups = list(groups) if groups is not None else [slice(0, p)]
        if not splits_columns(self.groups, p):
            raise ValueError(
                "The 'groups' parameter must split the target's columns into disjoint slices "
                f"that cover all {p} columns. Got {groups!r}."
            )
        self.solver = solver
        self.settings = settings or WarmSettings()
        self.gram = ReducedGram(self.T)
        self._G = np.zeros((0, p))
        self.info = WarmInfo(0.0, 0, 0, 0, False)

    def solve(self, E: np.ndarray, lam: float) -> GroupLassoSolution:
        """Solve the group lasso over the atoms ``E (m, N)`` at ``lam``, warm from the last
        call (atoms matched exactly; new ones start at zero).

        Returns
        -------
        GroupLassoSolution
            ``solver`` is :data:`WARM_SOLVER_NAME` unless the cold fallback gave the
            smaller gap; ``status`` is ``"optimal"`` when the restricted relative gap is
            ``<= rtol``, else the fallback's status.
        """
        start = time.perf_counter()
        E = np.asarray(E, dtype=np.float64)
        Q, C, old = self.gram.update(E)
        G0 = np.zeros((len(E), self.T.shape[1]))
        G0[old >= 0] = self._G[old[old >= 0]]
        res = solve_reduced(Q, C, self.gram.c0, lam, G0, self.groups, self.settings)
        G, gap, name, status = res.G, res.gap, WARM_SOLVER_NAME, "optimal"
        if not res.converged:
            try:
                cold = GroupLassoProblem(E, self.T, self.groups).solve(lam, self.solver)
            except SolverFailure:
                cold = None  # keep the warm iterate, reported as inaccurate
            status = "inaccurate" if cold is None else cold.status
            if cold is not None:
                gap_cold = restricted_gap(Q, C, self.gram.c0, cold.G, lam, self.groups)
                if gap_cold.gap <= gap.gap:
                    G, gap, name = cold.G, gap_cold, cold.solver
        rel = float(gap.gap / max(gap.primal, 1e-300))
        self.info = WarmInfo(rel, res.iterations, res.newton_calls, res.screened,
                             not res.converged)
        self._G = G
        b = self.gram.t_mean - E.mean(axis=1) @ G if len(E) else self.gram.t_mean.copy()
        return GroupLassoSolution(b, G.copy(), status, name, time.perf_counter() - start)
