"""Stage 3 of :func:`convexdict.certify`: the master program (P) over ``E0``.

Directly (every atom enumerated) or by column generation with exact pricing, within the
time budget, in internal units (:mod:`convexdict.units`). Also: the size refusal per
backend, warm-start atoms, ``lam_max`` and the ``lam >= lam_max`` shortcut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from convexdict_solvers.colgen.loop import CGRound, column_generation
from convexdict_solvers.group_lasso.cvxpy_solve import (
    GroupLassoProblem,
    GroupLassoSolution,
    SolverFailure,
)
from convexdict_solvers.pricing.exact import price, sweep_cost

from convexdict.convex.atoms import (
    MAX_ENUMERATED_ATOMS,
    MAX_SWEEP_EVENTS,
    AffineFrame,
    atoms_from_hyperplanes,
    enumerate_atoms,
)
from convexdict.convex.task import Task
from convexdict.units import Units

#: Sweep events per second of the numba pricing kernel on one busy core (issue-15 benchmarks):
#: used only for the time estimate shown before a long certification.
PRICING_EVENTS_PER_SECOND = 3e7
_LAM_MAX_EVENTS = 50_000_000


@dataclass(frozen=True)
class Options:
    """Validated options of one :func:`certify` call."""

    width: int | None
    solver: str
    tol: float
    method: str
    max_rounds: int
    atoms_per_round: int
    progress: bool
    sparsify: bool
    backend: str
    device: str | None
    deadline: float
    time_limit: float | None
    max_nodes: int


@dataclass
class MasterResult:
    """What the master stage produced (internal units)."""

    sol: GroupLassoSolution
    U: np.ndarray
    E: np.ndarray
    method: str
    converged: bool
    rounds: list[CGRound]
    statuses: list[str]
    t_master: float
    t_pricing: float
    budget: str


def estimate_pricing_seconds(n: int, rank: int) -> float:
    """Rough seconds for one exact pricing of ``n`` points of affine dimension ``rank``.

    ``sweep_cost(n, rank) / PRICING_EVENTS_PER_SECOND``: an estimate for the progress
    display, never used for any decision about soundness.
    """
    return sweep_cost(n, rank) / PRICING_EVENTS_PER_SECOND


def check_size(n: int, r: int, n_atoms: int, method: str, opts: Options) -> None:
    if method == "direct" and n_atoms > MAX_ENUMERATED_ATOMS:
        raise ValueError(
            f"The 'method' parameter 'direct' needs all {n_atoms:,} candidate atoms for N={n}, "
            f"affine dimension {r}; use method='colgen'."
        )
    cap = MAX_SWEEP_EVENTS * (16 if opts.backend == "torch" and _is_gpu(opts.device) else 1)
    if sweep_cost(n, r) > cap:
        raise ValueError(
            f"The 'X' parameter is too large to price exactly: N={n} points of affine dimension "
            f"{r} need about {sweep_cost(n, r):.2e} sweep events (limit {cap:.0e} for backend "
            f"{opts.backend!r}). convexdict.joint_bound(X, lam) gives a valid lower bound at "
            "any size."
        )


def torch_device(opts: Options) -> str | None:
    """The torch device of ``backend="torch"``: the one named, else ``"cuda"`` when one is
    present, else None (the caller's CPU default: ``"cpu"`` for column generation, numpy
    for the fixed-width leaves)."""
    if opts.device is not None:
        return str(opts.device)
    import torch

    return "cuda" if torch.cuda.is_available() else None


def _is_gpu(device: str | None) -> bool:
    return device is not None and str(device).startswith("cuda")


def warm_atoms(inner: Task, frame: AffineFrame, warm_start, units: Units, opts: Options):
    if warm_start is None or not len(warm_start.active_hyperplanes):
        return None
    n, r = inner.X.shape[0], frame.rank
    if warm_start.n_samples != n or warm_start.rank != r:
        raise ValueError(
            "The 'warm_start' parameter must be a certificate on the same X. "
            f"Got one for N={warm_start.n_samples}, rank {warm_start.rank}."
        )
    # Seed with the previous optimum's atoms plus the atoms its residual already violates
    # at the new lam (one pricing; e.g. the atoms entering as lam falls).
    _, previous = inner.loss_and_residual(units.model_to_internal(warm_start.optimum_sae))
    previous = previous - previous.mean(axis=0)
    Y = frame.coords(inner.X)
    priced = price(Y, previous, groups=inner.groups, top=opts.atoms_per_round)
    entering = priced.hyperplanes[priced.values > inner.lam]
    atoms = atoms_from_hyperplanes(Y, np.vstack([warm_start.active_hyperplanes, entering]))
    return atoms.hyperplanes, atoms.E


def solve_master(inner: Task, frame: AffineFrame, method: str, opts: Options, initial):
    """Stage 3: the group lasso (P), within the time budget (internal units)."""
    Y = frame.coords(inner.X)
    n, r = Y.shape
    rounds: list[CGRound] = []
    statuses: list[str] = []
    t_master = t_pricing = 0.0
    converged = False
    budget = ""
    p = inner.T.shape[1]
    sol, U, E = None, np.empty((0, r + 1)), np.empty((0, n))
    try:
        if method == "direct" and opts.backend == "cvxpy":
            atoms = enumerate_atoms(Y)
            sol = GroupLassoProblem(atoms.E, inner.T, inner.groups).solve(inner.lam, opts.solver)
            U, E = atoms.hyperplanes, atoms.E
            t_master, statuses, converged = sol.solve_time, [sol.status], True
        else:
            result, method = _column_generation(inner, Y, opts, initial)
            sol, U, E = result.solution, result.hyperplanes, result.E
            rounds, converged = result.rounds, result.converged
            statuses = [rd.master_status for rd in rounds]
            t_master = sum(rd.master_time for rd in rounds)
            t_pricing = sum(rd.pricing_time for rd in rounds)
            if not converged:
                budget = "time" if time.perf_counter() > opts.deadline else (
                    "rounds" if len(rounds) >= opts.max_rounds else "")
    except SolverFailure as exc:
        statuses.append(f"failed: {exc}")
    if sol is None:
        sol = GroupLassoSolution(inner.T.mean(axis=0), np.zeros((0, p)), "failed", opts.solver, 0.0)
        U, E = np.empty((0, r + 1)), np.empty((0, n))
    return MasterResult(sol, U, E, method, converged, rounds, statuses, t_master, t_pricing, budget)


def mean_only(inner: Task, frame: AffineFrame, opts: Options) -> MasterResult:
    """The master at ``lam >= lam_max``: the mean alone (no solver; verified in stage 5)."""
    n, r, p = inner.X.shape[0], frame.rank, inner.T.shape[1]
    sol = GroupLassoSolution(inner.T.mean(axis=0), np.zeros((0, p)), "optimal", "none", 0.0)
    return MasterResult(sol, np.empty((0, r + 1)), np.empty((0, n)), "lam >= lam_max", True, [],
                   ["optimal"], 0.0, 0.0, "")


def _column_generation(inner: Task, Y: np.ndarray, opts: Options, initial):
    n, r = Y.shape
    cg_options = dict(
        groups=inner.groups,
        tol=opts.tol / 10,
        max_rounds=opts.max_rounds,
        per_round=opts.atoms_per_round,
        stop=lambda: time.perf_counter() > opts.deadline,
    )
    display, callback = _progress_callback(opts.progress, inner.lam, n, r)
    try:
        if opts.backend == "torch":
            from convexdict_solvers.colgen.torch_loop import column_generation_torch

            result = column_generation_torch(
                inner.T, inner.lam, Y, device=torch_device(opts) or "cpu", callback=callback,
                **cg_options
            )
            return result, "colgen-torch"
        result = column_generation(
            inner.T,
            inner.lam,
            price_fn=lambda R, top, part: price(Y, R, groups=inner.groups, top=top, part=part),
            atoms_fn=lambda U: _atoms(Y, U),
            initial=initial,
            solver=opts.solver,
            n_parts=int(np.clip(sweep_cost(n, r) // 2_000_000, 1, 16)) if r >= 2 else 1,
            callback=callback,
            **cg_options,
        )
        return result, "colgen"
    finally:
        if display is not None:
            display.stop()


def _atoms(Y: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    atoms = atoms_from_hyperplanes(Y, U)
    return atoms.hyperplanes, atoms.E


def _progress_callback(enabled: bool, lam: float, n: int, r: int):
    if not enabled:
        return None, None
    from convexdict_solvers.progress import Display

    per_round = f"about {estimate_pricing_seconds(n, r):.2g} s per exact pricing round, estimated"
    display = Display(f"column generation ({per_round})")

    def callback(info: CGRound) -> None:
        display.update(
            f"round {info.round}: {info.n_active} active atoms, "
            f"max price / lam = {info.max_price / lam:.6f} ({per_round})"
        )

    return display, callback


def lam_max_internal(inner: Task, frame: AffineFrame, r: int) -> float:
    """``lam_max`` in internal units by one exact pricing of the centred target when it is
    cheap (``nan`` otherwise; summaries then print the bound ``max_n ||t_n - mean||``)."""
    Tc = inner.T - inner.T.mean(axis=0)
    if r == 0:
        return 0.0
    if sweep_cost(inner.X.shape[0], r) > _LAM_MAX_EVENTS:
        return float("nan")
    return price(frame.coords(inner.X), Tc, groups=inner.groups).max_value
