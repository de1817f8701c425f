"""Certified global optima of the canonical SAE objective (THEORY sections 3 and 4).

:func:`certify` is a short pipeline of named stages:

1. **check inputs** (:func:`_check_inputs`): validate once, at the public boundary;
2. **internal units** (:class:`~convexdict.units.Units`): scale the data and ``lam`` by
   powers of two to unit RMS (exact), so that no solver threshold depends on the user's
   units;
3. **solve the master** (:func:`_solve_master`): the group lasso (P) over ``E0``, directly
   or by column generation with exact pricing, within the time budget;
4. **refine** (:func:`_refine`): candidate simplifications of the solver's model (a sparser
   support, a Newton polish, merged parallel latents), each kept only if its recomputed
   loss is not worse (:func:`_accept`);
5. **verify** (:func:`_verify`): in the user's units, ``upper_bound`` is the loss of the
   explicit model recomputed from its weights and ``lower_bound`` the dual value of its
   residual, centred and scaled into the dual feasible set by *exact* pricing over all of
   ``E0``; ``certified`` is :func:`~convexdict.tolerance.within_tol` of the two;
6. **fit to width** (:func:`_fit_to_width`): pad to a wider ``width``, or run the
   fixed-width branch and bound below ``K*`` (:mod:`convexdict.fixed_width`).

The solver's status and objective are recorded for information only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from solvers.column_generation import CGRound, column_generation
from solvers.cvxpy_group_lasso import SOLVERS, GroupLassoProblem, GroupLassoSolution, SolverFailure
from solvers.newton_refine import newton_refine
from solvers.pricing import count_candidates, price, sweep_cost

from ._validation import check_choice, check_int, check_matrix, check_positive
from .atoms import (
    MAX_ENUMERATED_ATOMS,
    AffineFrame,
    affine_frame,
    atoms_from_hyperplanes,
    enumerate_atoms,
)
from .bounds import dual_certificate
from .certificate import Certificate
from .encoders import encoder_from_hyperplanes, sae_from_solution
from .merge import merge_parallel_latents
from .sae import SAE
from .sparsify_support import sparse_support
from .task import Task, make_task
from .tolerance import within_tol
from .units import Units

MAX_SWEEP_EVENTS = 4_000_000_000
PRUNE_RTOL = 1e-8
#: Sweep events per second of the numba pricing kernel on one busy core (benchmarks):
#: used only for the time estimate shown before a long certification.
PRICING_EVENTS_PER_SECOND = 4e6
_BRUTE_VERIFY_LIMIT = 2_000_000
_LAM_MAX_EVENTS = 50_000_000

__all__ = [
    "Certificate",
    "certify",
    "certify_width",
    "encoder_from_hyperplanes",
    "sae_from_solution",
    "estimate_pricing_seconds",
]


@dataclass(frozen=True)
class _Options:
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
class _Master:
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


@dataclass
class _Model:
    """A candidate explicit model with its recomputed loss and residual.

    ``hyperplanes (k', r + 1)`` and ``keep (m,)`` locate the master atoms it was built from
    (the atoms that seed a warm start; a merged model keeps its pre-merge atoms).
    """

    model: Any
    loss: float
    residual: np.ndarray
    W_enc: np.ndarray
    b_enc: np.ndarray
    k: int
    hyperplanes: np.ndarray
    keep: np.ndarray


def estimate_pricing_seconds(n: int, rank: int) -> float:
    """Rough seconds for one exact pricing of ``n`` points of affine dimension ``rank``.

    ``sweep_cost(n, rank) / PRICING_EVENTS_PER_SECOND``: an estimate for the progress
    display, never used for any decision about soundness.
    """
    return sweep_cost(n, rank) / PRICING_EVENTS_PER_SECOND


def _check_inputs(X, lam, kw: dict[str, Any]) -> tuple[Task, _Options, float]:
    X = check_matrix("X", X)
    lam = check_positive("lam", lam)
    width = kw["width"]
    if width is not None:
        width = check_int("width", width, minimum=0)
    time_limit = kw["time_limit"]
    if time_limit is not None:
        time_limit = check_positive("time_limit", time_limit)
    start = time.perf_counter()
    options = _Options(
        width=width,
        solver=check_choice("solver", kw["solver"], tuple(SOLVERS)),
        tol=check_positive("tol", kw["tol"]),
        method=check_choice("method", kw["method"], ("auto", "colgen", "direct")),
        max_rounds=check_int("max_rounds", kw["max_rounds"], minimum=1),
        atoms_per_round=check_int("atoms_per_round", kw["atoms_per_round"], minimum=1),
        progress=bool(kw["progress"]),
        sparsify=bool(kw["sparsify"]),
        backend=check_choice("backend", kw["backend"], ("cvxpy", "torch")),
        device=kw["device"],
        deadline=math.inf if time_limit is None else start + time_limit,
        time_limit=time_limit,
        max_nodes=check_int("max_nodes", kw["max_nodes"], minimum=1),
    )
    return make_task(X, lam, kw["target"], kw["targets"]), options, start


def certify(
    X: np.ndarray,
    lam: float,
    *,
    width: int | None = None,
    solver: str = "clarabel",
    tol: float = 1e-6,
    method: str = "auto",
    max_rounds: int = 200,
    atoms_per_round: int = 50,
    progress: bool = False,
    target: np.ndarray | None = None,
    targets: list[np.ndarray] | None = None,
    warm_start: Certificate | None = None,
    sparsify: bool = True,
    backend: str = "cvxpy",
    device: str | None = None,
    time_limit: float | None = 60.0,
    max_nodes: int = 2_000_000,
    starts: Sequence[SAE] | None = None,
) -> Certificate:
    """Certified global optimum of the canonical SAE objective.

    Parameters
    ----------
    X : ndarray of shape (N, d)
        Data, one sample per row (the encoder's input). Real-valued and finite.
    lam : float
        L1 penalty (> 0). Any ``lam >= lam_max`` is valid: the optimum is then the mean.
    width : int, optional
        Requested width ``K``. ``None`` returns the optimal SAE at width ``K*``; ``K >= K*``
        pads it with dead latents; ``K < K*`` runs the fixed-width branch and bound over
        activation patterns (:mod:`convexdict.fixed_width`; SAEs only): ``lower_bound`` then
        bounds every SAE of width ``<= K``, ``sae`` is the best width-``K`` SAE found and
        ``certified`` says whether they meet within ``tol``; ``search`` holds its statistics.
    solver : {"clarabel", "scs"}
        CVXPY solver for the group lasso (the other is the fallback on failure).
    tol : float
        Relative gap tolerance: ``certified`` is ``upper - lower <= tol * upper``
        (:func:`convexdict.within_tol`), the same verdict in every unit of the data.
    method : {"auto", "colgen", "direct"}
        Column generation with exact pricing, or one solve over all of ``E0``.
    max_rounds, atoms_per_round : int
        Column-generation limits.
    progress : bool
        Show a progress display (with a time estimate per pricing round).
    target : ndarray of shape (N, d_out), optional
        Certify a **transcoder** (encode ``X``, reconstruct ``target``).
    targets : list of ndarray of shape (N, d_l), optional
        Certify a **crosscoder** (one decoder per target, penalty summed over layers).
    warm_start : Certificate, optional
        A certificate on the same ``X`` (e.g. at a nearby ``lam``): its active atoms seed
        column generation.
    sparsify : bool
        Look for a sparser optimal support (fewer latents); kept only when its recomputed
        loss is not worse than the solver's solution by more than a tenth of ``tol``.
    backend : {"cvxpy", "torch"}
        ``"torch"`` runs column generation on a torch device (FISTA master, torch
        pricing). Either way the bounds are verified in float64 by exact numpy pricing.
    device : str, optional
        Torch device for ``backend="torch"`` (default: ``"cuda"`` when available).
    time_limit : float or None
        Seconds for the whole call (column generation, branch and bound, incumbents);
        None for no limit. On expiry the bounds returned are still valid,
        ``certified`` is decided by them, and ``search["budget_exhausted"] == "time"``.
    max_nodes : int
        Relaxations the fixed-width branch and bound may solve.
    starts : sequence of SAE, optional
        Width-``K`` SAEs (e.g. trained ones) offered to the fixed-width search as first
        upper bounds.

    Returns
    -------
    Certificate
        ``sae`` is an :class:`~convexdict.SAE`, a :class:`~convexdict.Transcoder` or a
        :class:`~convexdict.Crosscoder`, in the user's units.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.2]])
    >>> cert = certify(X, 0.1)
    >>> cert.certified, cert.relative_gap <= 1e-6
    (True, True)
    """
    from threadpoolctl import threadpool_limits

    kw = dict(locals())
    task, options, start = _check_inputs(X, lam, kw)
    # Small dense linear algebra (QR of a few hundred atoms, pricing batches) runs far
    # faster single-threaded than with oversubscribed BLAS threads on busy machines.
    with threadpool_limits(limits=1, user_api="blas"):
        return _pipeline(task, options, start, warm_start, starts)


def _pipeline(task: Task, opts: _Options, start: float, warm_start, starts) -> Certificate:
    units = Units.of(task.X, task.T)
    inner = task.scaled(units)
    frame = affine_frame(inner.X)
    n, r = inner.X.shape[0], frame.rank
    n_atoms = count_candidates(n, r)
    method = opts.method
    if method == "auto":
        method = "direct" if n_atoms <= 2_000 else "colgen"
    _check_size(n, r, n_atoms, method, opts)
    lam_max = _lam_max(inner, frame, r)
    if inner.lam >= (lam_max if lam_max == lam_max else inner.lam_max_bound()):
        master = _mean_only(inner, frame, opts)  # lam >= lam_max: verified below like any
    else:
        initial = _warm_atoms(inner, frame, warm_start, units, opts)
        master = _solve_master(inner, frame, method, opts, initial)
    plain = _model_of(inner, frame, master.U, master.sol)
    candidates = _refine(inner, frame, master, plain, opts)
    t0 = time.perf_counter()
    verified = _verify(task, units, candidates, opts.tol)
    t_verify = time.perf_counter() - t0
    best, dual, dual_point = verified
    lower = dual.value
    cert = Certificate(
        lower_bound=lower,
        upper_bound=best.loss,
        gap=best.loss - lower,
        certified=within_tol(best.loss, lower, opts.tol),
        sae=best.model,
        width_needed=best.k,
        joint_bound=inner.joint_bound() * units.loss,  # exact: a power of four
        n_atoms=n_atoms,
        lam=task.lam,
        tol=opts.tol,
        width=opts.width,
        method=master.method,
        solver=master.sol.solver,
        status="",
        message="",
        kind=task.kind,
        optimum_sae=best.model,
        n_samples=n,
        d=task.X.shape[1],
        rank=r,
        n_active_atoms=len(master.E) if master.sol.status != "failed" else 0,
        lam_max=lam_max * units.t,
        active_hyperplanes=best.hyperplanes,
        dual_point=dual_point,
        max_price_ratio=dual.max_price * dual.scale / task.lam if dual.scale else 0.0,
        pricing_method=dual.method,
        solver_statuses=master.statuses,
        rounds=master.rounds,
        time_master=master.t_master,
        time_pricing=master.t_pricing,
        time_verify=t_verify,
        search={"budget_exhausted": master.budget},
        data_sha256=_data_sha256(task),
        frame=affine_frame(task.X),
    )
    cert = _fit_to_width(cert, task, units, inner, opts, best, starts, master)
    cert.status = "certified" if cert.certified else "not_certified"
    cert.time_total = time.perf_counter() - start
    return cert


def _data_sha256(task: Task) -> str:
    """Hash of the user's data for the certificate file: ``X``, then each target layer."""
    from .certificate_file import data_sha256

    if task.kind == "sae":
        return data_sha256(task.X)
    groups = task.groups or [slice(None)]
    return data_sha256(task.X, [task.T[:, g] for g in groups])


def _check_size(n: int, r: int, n_atoms: int, method: str, opts: _Options) -> None:
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


def _is_gpu(device: str | None) -> bool:
    return device is not None and str(device).startswith("cuda")


def _warm_atoms(inner: Task, frame: AffineFrame, warm_start, units: Units, opts: _Options):
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


def _solve_master(inner: Task, frame: AffineFrame, method: str, opts: _Options, initial):
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
    return _Master(sol, U, E, method, converged, rounds, statuses, t_master, t_pricing, budget)


def _mean_only(inner: Task, frame: AffineFrame, opts: _Options) -> _Master:
    """The master at ``lam >= lam_max``: the mean alone (no solver; verified in stage 5)."""
    n, r, p = inner.X.shape[0], frame.rank, inner.T.shape[1]
    sol = GroupLassoSolution(inner.T.mean(axis=0), np.zeros((0, p)), "optimal", "none", 0.0)
    return _Master(sol, np.empty((0, r + 1)), np.empty((0, n)), "lam >= lam_max", True, [],
                   ["optimal"], 0.0, 0.0, "")


def _column_generation(inner: Task, Y: np.ndarray, opts: _Options, initial):
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
            from solvers.torch_colgen import column_generation_torch

            device = opts.device
            if device is None:
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            result = column_generation_torch(
                inner.T, inner.lam, Y, device=device, callback=callback, **cg_options
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
    from solvers.progress import Display

    per_round = f"about {estimate_pricing_seconds(n, r):.2g} s per exact pricing round, estimated"
    display = Display(f"column generation ({per_round})")

    def callback(info: CGRound) -> None:
        display.update(
            f"round {info.round}: {info.n_active} active atoms, "
            f"max price / lam = {info.max_price / lam:.6f} ({per_round})"
        )

    return display, callback


def _pruned(G: np.ndarray, scale: float) -> np.ndarray:
    """Groups that are numerically nonzero: ``||g|| > PRUNE_RTOL * max(max ||g||, scale)``."""
    norms = np.linalg.norm(G, axis=1)
    if norms.size == 0:
        return np.zeros(0, dtype=bool)
    return norms > PRUNE_RTOL * max(norms.max(), scale)


def _model_of(inner: Task, frame: AffineFrame, U: np.ndarray, sol: GroupLassoSolution) -> _Model:
    """The explicit model of a master solution (nonzero groups only), with its loss."""
    keep = _pruned(sol.G, frame.scale)
    W_enc, b_enc = encoder_from_hyperplanes(inner.X, frame, U[keep])
    model = inner.model(W_enc, b_enc, sol.G[keep], sol.b)
    loss, residual = inner.loss_and_residual(model)
    return _Model(model, loss, residual, W_enc, b_enc, int(keep.sum()), U[keep], keep)


def _accept(current: _Model, candidate: _Model | None, slack: float) -> _Model:
    """Keep ``candidate`` when its loss is not worse than ``current``'s by more than
    ``slack * current.loss`` (relative, so the rule is the same in every unit)."""
    if candidate is None:
        return current
    return candidate if candidate.loss <= current.loss * (1.0 + slack) else current


def _refine(inner: Task, frame: AffineFrame, master: _Master, plain: _Model, opts: _Options):
    """Stage 4: candidate refinements of the solver's model, each accepted if not worse.

    Returns ``[refined, plain]`` (the plain solver model is the fallback of
    :func:`_verify`), or ``[plain]`` when nothing changed.
    """
    steps: list[tuple[Callable[[_Model], _Model | None], float]] = [
        (lambda m: _sparser(inner, frame, master, m, opts), 0.1 * opts.tol),
        (lambda m: _newton(inner, master, m), 0.0),
        (lambda m: _merged(inner, m), 1e-3 * opts.tol),
    ]
    current = plain
    if master.sol.status == "failed":
        return [plain]
    for step, slack in steps:
        current = _accept(current, step(current), slack)
    return [current, plain] if current is not plain else [plain]


def _sparser(inner: Task, frame: AffineFrame, master: _Master, m: _Model, opts: _Options):
    """A sparser optimal support (fewer latents) of the same master."""
    if not opts.sparsify or inner.groups is not None or m.k <= 1:
        return None
    found = sparse_support(master.E, inner.T, master.sol, inner.lam, opts.solver)
    if found is None:
        return None
    support, refit = found
    G = np.zeros_like(master.sol.G)
    G[support] = refit.G
    sol = GroupLassoSolution(refit.b, G, master.sol.status, master.sol.solver, 0.0)
    return _model_of(inner, frame, master.U, sol)


def _newton(inner: Task, master: _Master, m: _Model):
    """Newton polish of the decoder on the model's support (SAEs and transcoders)."""
    if inner.groups is not None or m.k == 0:
        return None
    G0, _ = inner.decoder(m.model)
    G, b = newton_refine(master.E[m.keep], inner.T, G0, inner.lam)
    model = inner.model(m.W_enc, m.b_enc, G, b)
    loss, residual = inner.loss_and_residual(model)
    return replace(m, model=model, loss=loss, residual=residual)


def _merged(inner: Task, m: _Model):
    """Latents spread over one pattern polytope with parallel decoders merge exactly."""
    if inner.groups is not None or m.k <= 1:
        return None
    G, b = inner.decoder(m.model)
    W, b_enc, D = merge_parallel_latents(m.W_enc, m.b_enc, G, inner.X)
    if D.shape[0] >= m.k:
        return None
    model = inner.model(W, b_enc, D, b)
    loss, residual = inner.loss_and_residual(model)
    return replace(m, model=model, loss=loss, residual=residual, W_enc=W, b_enc=b_enc,
                   k=D.shape[0])


def _verify(task: Task, units: Units, candidates: list[_Model], tol: float):
    """Stage 5, in the user's units: verify the refined model; if it does not certify,
    verify the solver's own model too and keep the smaller loss and the larger bound
    (both are valid). Returns ``(model, dual, R)`` with ``R`` the dual point used."""
    frame = affine_frame(task.X)
    n = task.X.shape[0]
    n_atoms = count_candidates(n, frame.rank)
    method = "bruteforce" if n_atoms * n <= _BRUTE_VERIFY_LIMIT else "auto"
    best = best_dual = None
    for cand in candidates:
        model = units.model_to_user(cand.model)
        loss, residual = task.loss_and_residual(model)
        user = replace(cand, model=model, loss=loss, residual=residual)
        dual = dual_certificate(
            task.X, task.lam, residual, target=task.T, groups=task.groups, method=method,
            frame=frame,
        )
        if best is None or user.loss < best.loss:
            best = user
        if best_dual is None or dual.value > best_dual[0].value:
            best_dual = (dual, residual)
        if within_tol(best.loss, best_dual[0].value, tol):
            break
    dual, residual = best_dual
    return best, dual, dual.scale * (residual - residual.mean(axis=0))


def _lam_max(inner: Task, frame: AffineFrame, r: int) -> float:
    """``lam_max`` in internal units by one exact pricing of the centred target when it is
    cheap (``nan`` otherwise; summaries then print the bound ``max_n ||t_n - mean||``)."""
    Tc = inner.T - inner.T.mean(axis=0)
    if r == 0:
        return 0.0
    if sweep_cost(inner.X.shape[0], r) > _LAM_MAX_EVENTS:
        return float("nan")
    return price(frame.coords(inner.X), Tc, groups=inner.groups).max_value


def _fit_to_width(cert, task, units, inner, opts, best, starts, master) -> Certificate:
    """Stage 6: pad to ``width >= K*``, or the branch and bound below ``K*``."""
    width, k_star = opts.width, cert.width_needed
    message = "global optimum certified" if cert.certified else "gap above tolerance: not certified"
    if master.budget == "time":
        message += f"; the time budget ({opts.time_limit:g} s) ran out during column generation"
    elif not master.converged and master.sol.status != "failed":
        message += "; column generation stopped before pricing converged"
    if master.sol.status == "failed":
        message = "every solver failed; only the lower bound is valid"
    cert.message = message
    if width is None or width == k_star:
        return cert
    if width > k_star:
        cert.sae = task.padded(best.model, width, k_star)
        return cert
    if task.kind != "sae":
        cert.sae, cert.upper_bound, cert.gap, cert.certified = None, math.inf, math.inf, False
        cert.message = (
            f"width {width} < K* = {k_star}: only the lower bound is known at this width "
            "(fixed-width branch and bound covers SAEs, not transcoders or crosscoders)"
        )
        return cert
    from .fixed_width import fixed_width_result

    remaining = max(opts.deadline - time.perf_counter(), 1e-3) if opts.time_limit else None
    sae, lower, upper, _, _, message, search = fixed_width_result(
        inner.X,
        inner.lam,
        width,
        wide_lower=cert.lower_bound / units.loss,
        wide_optimum=units.model_to_internal(best.model),
        starts=[units.model_to_internal(s) if isinstance(s, SAE) else s for s in starts or []],
        tol=opts.tol,
        time_limit=remaining,
        max_nodes=opts.max_nodes,
        solver=opts.solver,
        progress=opts.progress,
        k_star=k_star,
    )
    cert.sae = units.model_to_user(sae)
    if cert.sae is not None:
        upper, _ = task.loss_and_residual(cert.sae)  # recomputed in the user's units
    cert.lower_bound = lower * units.loss  # exact: units.loss is a power of four
    cert.upper_bound = upper
    cert.gap = upper - cert.lower_bound
    cert.certified = cert.sae is not None and within_tol(upper, cert.lower_bound, opts.tol)
    cert.message = message
    search["fixed_width"] = True
    cert.search = search
    return cert


def certify_width(X: np.ndarray, lam: float, width: int, **kwargs: Any) -> Certificate:
    """``certify(X, lam, width=width, **kwargs)``: the certified optimum at a fixed width.

    Below ``K*`` this runs the branch and bound of :mod:`convexdict.fixed_width`; see
    :func:`certify` for the options (``tol``, ``time_limit``, ``max_nodes``, ``starts``,
    ``progress``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.2]])
    >>> cert = certify_width(X, 0.05, 1)
    >>> cert.sae.width, cert.lower_bound <= cert.upper_bound
    (1, True)
    """
    return certify(X, lam, width=width, **kwargs)
