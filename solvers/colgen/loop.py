"""Column generation for the group lasso (P) with exact pricing (THEORY section 4).

Solve (P) on a small active set, price the whole vertex set ``E0`` exactly with the
master's residual, add the most violated atoms, repeat until
``max_e ||R^T e|| <= lam (1 + tol)``. The loop is generic: the caller supplies the
pricing kernel and the map from hyperplanes to atoms, so this module knows nothing about
SAEs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from convexdict_solvers.dedup import first_unique_rows
from convexdict_solvers.group_lasso.cvxpy_solve import GroupLassoProblem, GroupLassoSolution
from convexdict_solvers.group_lasso.warm_master import WarmGroupLasso, splits_columns
from convexdict_solvers.pricing.exact import EarlyStop, PricingResult

#: The master used when ``column_generation(master=None)``: ``"warm"`` (FISTA warm starts,
#: gap-safe screening and a Newton finish, :mod:`convexdict_solvers.group_lasso.warm_master`)
#: or ``"clarabel"`` (a cold CVXPY solve every round). Benchmarks switch it to compare.
DEFAULT_MASTER = "warm"
MASTERS = ("warm", "clarabel")
#: With ``n_parts > 1``, a round whose part holds no violator prices the next parts until one
#: does (all of them: a full pricing), instead of a full pricing at once.
SEQUENTIAL_PARTS = True


@dataclass(frozen=True)
class CGRound:
    """One round: active-set size, the priced maximum, and where the time went."""

    round: int
    n_active: int
    max_price: float
    master_time: float
    pricing_time: float
    master_status: str


@dataclass
class CGResult:
    """Final active set and master solution.

    Attributes
    ----------
    hyperplanes : ndarray of shape (m, r + 1)
    E : ndarray of shape (m, N)
    solution : GroupLassoSolution
    converged : bool
        True when the last pricing found no atom above ``lam (1 + tol)``.
    rounds : list of CGRound
    """

    hyperplanes: np.ndarray
    E: np.ndarray
    solution: GroupLassoSolution
    converged: bool
    rounds: list[CGRound] = field(default_factory=list)


def carrying_weight(G: Any, n_new: int) -> Any:
    """Atoms kept for the next master: those with a nonzero group (``||g|| > 1e-9`` of the
    largest) and the ``n_new`` added last round. The bookkeeping of both loops (numpy and
    torch: ``G`` may be an array or a tensor of shape ``(m, p)``); dropped atoms can be
    priced back in later."""
    norms = (G * G).sum(1) ** 0.5
    keep = norms > 1e-9 * max(float(norms.max()), 1e-300)
    keep[len(G) - n_new :] = True
    return keep


def _price_round(price_fn, R, threshold: float, top: int, k: int, n_parts: int,
                 part_index: int, early_stop: bool):
    """One round's pricing: ``(priced, full, next part_index)``; ``full`` says whether it
    covered all of ``E0`` (only a full pricing can declare convergence)."""
    if n_parts > 1 and early_stop:
        # Sweep 1/n_parts of the pivot sets, and on until a violator is found; a sweep
        # that completes is a full pricing (no partial pass is repeated).
        priced = price_fn(R, top, EarlyStop(threshold, 1, k, 1 / n_parts))
        return priced, priced.method != "partial-sweep", part_index
    if n_parts > 1 and SEQUENTIAL_PARTS:
        # Price the parts one after another (from a rotating start) until one holds a
        # violator. With one residual the parts together are all of E0, so a pass through
        # every part that finds none is a full exact pricing (its maximum is theirs).
        best = None
        for j in range(n_parts):
            priced = price_fn(R, top, ((part_index + j) % n_parts, n_parts))
            if best is None or priced.max_value > best.max_value:
                best = priced
            if priced.max_value > threshold:
                return priced, False, part_index + j + 1
        return best, True, part_index + n_parts
    if n_parts > 1:
        priced = price_fn(R, top, (part_index % n_parts, n_parts))
        if priced.max_value > threshold:
            return priced, False, part_index + 1
        part_index += 1  # nothing in this part: a full pricing decides
    return price_fn(R, top, None), True, part_index


def column_generation(
    T: np.ndarray,
    lam: float,
    *,
    price_fn: Callable[[np.ndarray, int, tuple[int, int] | None], PricingResult],
    atoms_fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    initial: tuple[np.ndarray, np.ndarray] | None = None,
    groups: Sequence[slice] | None = None,
    solver: str = "clarabel",
    tol: float = 1e-6,
    max_rounds: int = 100,
    per_round: int = 25,
    n_parts: int = 1,
    callback: Callable[[CGRound], None] | None = None,
    stop: Callable[[], bool] | None = None,
    early_stop: bool = False,
    master: str | None = None,
) -> CGResult:
    """Run column generation for (P).

    Parameters
    ----------
    T : ndarray of shape (N, p)
        Target.
    lam : float
    price_fn : callable ``(R (N, p), top, part) -> PricingResult``
        Exact pricing over all of ``E0`` when ``part`` is None, else over the part
        ``part = (i, n_parts)`` of it (cheap rounds; convergence is only declared after a
        full pricing).
    atoms_fn : callable ``U (m, r+1) -> (U_kept, E (m', N))``
        Normalised activations of hyperplanes (dropping empty and duplicate ones).
    initial : (U, E), optional
        Warm-start active set.
    groups, solver, tol, max_rounds, per_round, n_parts, callback
        Column groups of ``T``; CVXPY solver name; relative pricing tolerance; round
        limit; atoms added per round; number of parts for partial pricing (1: always
        full); called after each round.
    stop : callable ``() -> bool``, optional
        Checked after each round; True ends the loop (e.g. a time budget), unconverged.
    early_stop : bool
        With ``n_parts > 1``, price each round with an early exit
        (:class:`convexdict_solvers.pricing.exact.EarlyStop`: sweep ``1 / n_parts`` of the pivot
        sets,
        and on until a violator is found) instead of a fixed part followed, when it
        finds nothing, by a full pricing; a sweep that completes is a full pricing.
        Off by default: measured at d = 3, N = 360 it needed 84 rounds instead of 28
        (benchmarks/README.md). Convergence is declared only after a full exact pricing
        either way.
    master : {"warm", "clarabel"}, optional
        How each round's restricted group lasso is solved (default
        :data:`DEFAULT_MASTER`): ``"warm"`` works on the reduced Gram matrices, warm-started
        from the previous round, until its restricted duality gap is below ``1e-12``
        relative, and falls back to the cold ``solver`` solve when it does not get there
        (:class:`~convexdict_solvers.group_lasso.warm_master.WarmGroupLasso`); ``"clarabel"``
        builds and solves a fresh CVXPY problem with ``solver`` every round. Column
        groups that do not cover every column always take the cold path.

    Atoms whose group is zero in the master solution are dropped from the active set
    (they can be priced back in later), which keeps the master small.

    Returns
    -------
    CGResult
    """
    n, p = T.shape
    master = DEFAULT_MASTER if master is None else master
    if master not in MASTERS:
        raise ValueError(f"The 'master' parameter must be one of {MASTERS}. Got {master!r}.")
    warm = None
    if master == "warm" and splits_columns(groups, p):
        warm = WarmGroupLasso(T, groups, solver)
    r1 = None
    if initial is not None and len(initial[1]):
        U, E = initial
    else:
        U, E = None, np.empty((0, n))
    rounds: list[CGRound] = []
    converged = False
    solution = None
    n_new = 0
    part_index = 0
    solved_U, solved_E = U, E
    for k in range(max_rounds):
        t0 = time.perf_counter()
        if warm is not None:
            solution = warm.solve(E, lam)
        else:
            solution = GroupLassoProblem(E, T, groups).solve(lam, solver)
        solved_U, solved_E = U, E
        t1 = time.perf_counter()
        R = T - solution.b - E.T @ solution.G
        R -= R.mean(axis=0)
        priced, full, part_index = _price_round(
            price_fn, R, lam * (1 + tol), 4 * per_round, k, n_parts, part_index, early_stop
        )
        t2 = time.perf_counter()
        info = CGRound(k, len(E), priced.max_value, t1 - t0, t2 - t1, solution.status)
        rounds.append(info)
        if callback is not None:
            callback(info)
        if full and priced.max_value <= lam * (1 + tol):
            converged = True
            break
        if stop is not None and stop():
            break
        violated = priced.hyperplanes[priced.values > lam * (1 + tol)]
        U_new, E_new = atoms_fn(violated)
        fresh = first_unique_rows(np.vstack([E, E_new]), start=len(E)) - len(E)
        if not len(fresh) and not full:
            # An early-stopped sweep found only atoms already in the master: price fully.
            priced = price_fn(R, 4 * per_round, None)
            rounds[-1] = replace(
                info, max_price=priced.max_value, pricing_time=time.perf_counter() - t1
            )
            if priced.max_value <= lam * (1 + tol):
                converged = True
                break
            violated = priced.hyperplanes[priced.values > lam * (1 + tol)]
            U_new, E_new = atoms_fn(violated)
            fresh = first_unique_rows(np.vstack([E, E_new]), start=len(E)) - len(E)
        if not len(fresh):
            break  # the master cannot be improved by new atoms at this accuracy
        fresh = fresh[:per_round]
        if len(E):
            keep = carrying_weight(solution.G, n_new)
            U, E = U[keep], E[keep]
        n_new = len(fresh)
        r1 = U_new.shape[1]
        U = U_new[fresh] if U is None else np.vstack([U, U_new[fresh]])
        E = np.vstack([E, E_new[fresh]])
    # Return the atoms the last master was solved on (the loop may have moved on).
    if solved_U is None:
        solved_U = np.empty((0, r1 or (U.shape[1] if U is not None else 1)))
    return CGResult(solved_U, solved_E, solution, converged, rounds)
