"""Certified global optima of the canonical SAE objective (THEORY sections 3 and 4).

:func:`certify` solves the group lasso (P) over the realizable activation vertices
``E0`` (directly, or by column generation with exact pricing), maps the solution back to
an explicit SAE, and reports

* ``upper_bound``: ``sae_loss(sae, X, lam)`` recomputed in float64 from the SAE's weights;
* ``lower_bound``: the dual value of that SAE's residual, centred and scaled into the dual
  feasible set by *exact* pricing over all of ``E0``;
* ``certified``: ``gap <= tol * max(1, |upper_bound|)``.

The solver's status and objective are recorded for information only.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from solvers.column_generation import CGRound, column_generation
from solvers.cvxpy_group_lasso import (
    SOLVERS,
    GroupLassoProblem,
    GroupLassoSolution,
    SolverFailure,
)
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
from .bounds import dual_certificate, joint_bound
from .family import Crosscoder, Transcoder, crosscoder_loss, transcoder_loss
from .merge import merge_parallel_latents
from .sae import SAE, sae_loss
from .sparsify_support import sparse_support

MAX_SWEEP_EVENTS = 4_000_000_000
PRUNE_RTOL = 1e-8
_BRUTE_VERIFY_LIMIT = 2_000_000


@dataclass
class Certificate:
    """The result of :func:`certify`.

    Attributes
    ----------
    lower_bound : float
        Verified lower bound on the canonical loss of every SAE of any width.
    upper_bound : float
        Canonical loss of ``sae`` recomputed from its weights (``inf`` without an SAE).
    gap : float
        ``upper_bound - lower_bound``.
    certified : bool
        ``gap <= tol * max(1, |upper_bound|)``.
    sae : SAE, Transcoder, Crosscoder or None
        The explicit model attaining ``upper_bound`` (width ``width``), or None.
    width_needed : int
        ``K*``: number of latents of the optimal SAE found (nonzero groups of (P)).
    joint_bound : float
        The joint wide-limit lower bound (weaker, valid for any ``d``).
    n_atoms : int
        ``2 C(N, r)``: the number of (hyperplane, orientation) candidates spanning ``E0``
        (an upper bound on ``|E0|``).
    search : dict or None
        Statistics of the fixed-width branch and bound (``width < K*``), else None. With it,
        ``lower_bound`` bounds every SAE of width ``<= width`` (not every width).
    """

    lower_bound: float
    upper_bound: float
    gap: float
    certified: bool
    sae: SAE | None
    width_needed: int
    joint_bound: float
    n_atoms: int
    lam: float
    tol: float
    width: int | None
    method: str
    solver: str
    status: str
    message: str
    kind: str = "sae"
    optimum_sae: SAE | None = None
    n_samples: int = 0
    d: int = 0
    rank: int = 0
    n_active_atoms: int = 0
    active_hyperplanes: np.ndarray = field(default_factory=lambda: np.empty((0, 1)), repr=False)
    max_price_ratio: float = float("nan")
    pricing_method: str = ""
    solver_statuses: list[str] = field(default_factory=list)
    rounds: list[CGRound] = field(default_factory=list)
    time_total: float = 0.0
    time_master: float = 0.0
    time_pricing: float = 0.0
    time_verify: float = 0.0
    search: dict[str, Any] | None = None

    @property
    def relative_gap(self) -> float:
        """``gap / max(1, |upper_bound|)``."""
        return self.gap / max(1.0, abs(self.upper_bound))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (weights excluded)."""
        skip = ("sae", "optimum_sae", "rounds", "active_hyperplanes")
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        out["relative_gap"] = self.relative_gap
        out["rounds"] = [asdict(r) for r in self.rounds]
        for key, value in out.items():
            if isinstance(value, float) and not np.isfinite(value):
                out[key] = str(value)
        return out

    def summary(self) -> str:
        """A few human-readable lines."""
        verdict = "CERTIFIED" if self.certified else "NOT certified"
        return (
            f"{verdict}: lower {self.lower_bound:.10g} <= optimum <= upper {self.upper_bound:.10g} "
            f"(gap {self.gap:.3g}, tol {self.tol:g}); K* = {self.width_needed}; "
            f"{self.message}"
        )


def encoder_from_hyperplanes(
    X: np.ndarray, frame: AffineFrame, hyperplanes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Encoder ``(W_enc (d, K), b_enc (K,))`` whose latent ``k`` has activation ``e_k``.

    Lift each hyperplane ``u`` to the input space, ``s = sum(relu(Xt u))``,
    ``W_enc[:, k] = u[:d] / s``, ``b_enc[k] = u[d] / s`` (THEORY section 3, exactness).
    """
    d = X.shape[1]
    k = len(hyperplanes)
    if k == 0:
        return np.zeros((d, 0)), np.zeros(0)
    if frame.rank == 0:
        U = np.zeros((k, d + 1))
        U[:, -1] = 1.0
    else:
        U = frame.lift(hyperplanes)
    s = np.maximum(X @ U[:, :d].T + U[:, d], 0.0).sum(axis=0)
    return (U[:, :d] / s[:, None]).T, U[:, d] / s


def sae_from_solution(
    X: np.ndarray, frame: AffineFrame, hyperplanes: np.ndarray, G: np.ndarray, b: np.ndarray
) -> SAE:
    """Map a solution of (P) back to an explicit SAE: encoder from the atoms'
    hyperplanes (:func:`encoder_from_hyperplanes`), ``W_dec[k] = g_k``, ``b_dec = b``.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    frame : AffineFrame
    hyperplanes : ndarray of shape (K, r + 1)
    G : ndarray of shape (K, d)
    b : ndarray of shape (d,)
    """
    if len(G) == 0:
        return SAE.zeros(b)
    W_enc, b_enc = encoder_from_hyperplanes(X, frame, hyperplanes)
    return SAE(W_enc, b_enc, G, b)


def _pruned(G: np.ndarray, scale: float) -> np.ndarray:
    """Groups that are numerically nonzero: ``||g|| > PRUNE_RTOL * max(max ||g||, scale)``."""
    norms = np.linalg.norm(G, axis=1)
    if norms.size == 0:
        return np.zeros(0, dtype=bool)
    return norms > PRUNE_RTOL * max(norms.max(), scale)


def _progress_callback(enabled: bool, lam: float):
    if not enabled:
        return None, None
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=False
    )
    task = progress.add_task("column generation", total=None)
    progress.start()

    def callback(info: CGRound) -> None:
        progress.update(
            task,
            description=(
                f"round {info.round}: {info.n_active} active atoms, "
                f"max price / lam = {info.max_price / lam:.6f}"
            ),
        )

    return progress, callback


@dataclass(frozen=True)
class _Task:
    """What is being certified: the encoder input, the target and its column groups."""

    kind: str  # "sae", "transcoder" or "crosscoder"
    X: np.ndarray
    T: np.ndarray
    groups: list[slice] | None

    def model(self, W_enc, b_enc, G, b):
        if self.kind == "sae":
            return SAE(W_enc, b_enc, G, b) if len(G) else SAE.zeros(b)
        if self.kind == "transcoder":
            return Transcoder(W_enc, b_enc, G, b)
        return Crosscoder(
            W_enc, b_enc, tuple(G[:, g] for g in self.groups), tuple(b[g] for g in self.groups)
        )

    def decoder(self, model) -> tuple[np.ndarray, np.ndarray]:
        """The model's decoder as one ``(K, p)`` matrix and ``(p,)`` bias."""
        if self.kind == "crosscoder":
            return np.hstack(model.W_decs), np.concatenate(model.b_decs)
        return model.W_dec, model.b_dec

    def loss_and_residual(self, model) -> tuple[float, np.ndarray]:
        if self.kind == "sae":
            return sae_loss(model, self.X, self.lam), self.X - model.reconstruct(self.X)
        if self.kind == "transcoder":
            loss = transcoder_loss(model, self.X, self.T, self.lam)
            return loss, self.T - model.predict(self.X)
        layers = [self.T[:, g] for g in self.groups]
        loss = crosscoder_loss(model, self.X, layers, self.lam)
        return loss, self.T - np.hstack(model.predict(self.X))

    def joint_bound(self) -> float:
        if self.groups is None:
            return joint_bound(self.T, self.lam)
        return sum(joint_bound(self.T[:, g], self.lam) for g in self.groups)

    lam: float = 0.0


def certify(*args, **kwargs) -> Certificate:
    # Small dense linear algebra (QR of a few hundred atoms, pricing batches) runs far
    # faster single-threaded than with oversubscribed BLAS threads on busy machines.
    with threadpool_limits(limits=1, user_api="blas"):
        return _certify(*args, **kwargs)


def _task(X, lam, target, targets) -> _Task:
    if target is not None and targets is not None:
        raise ValueError(
            "The 'target' and 'targets' parameters are exclusive: pass target=Y for a "
            "transcoder or targets=[Y_1, ...] for a crosscoder. Got both."
        )
    if target is not None:
        T = check_matrix("target", target)
        if T.shape[0] != X.shape[0]:
            raise ValueError(
                f"The 'target' parameter must have {X.shape[0]} rows like X. Got shape {T.shape}."
            )
        return _Task("transcoder", X, T, None, lam)
    if targets is not None:
        if isinstance(targets, np.ndarray) or len(targets) == 0:
            raise ValueError(
                "The 'targets' parameter must be a non-empty list of (N, d_l) arrays. "
                f"Got {type(targets).__name__}."
            )
        layers = [check_matrix(f"targets[{i}]", Y) for i, Y in enumerate(targets)]
        for i, Y in enumerate(layers):
            if Y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"The 'targets[{i}]' parameter must have {X.shape[0]} rows. "
                    f"Got shape {Y.shape}."
                )
        bounds = np.cumsum([0] + [Y.shape[1] for Y in layers])
        groups = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return _Task("crosscoder", X, np.hstack(layers), groups, lam)
    return _Task("sae", X, X, None, lam)


def _certify(
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
        Data, one sample per row (the encoder's input).
    lam : float
        L1 penalty (> 0).
    width : int, optional
        Requested width ``K``. ``None`` returns the optimal SAE at width ``K*``; ``K >= K*``
        pads it with dead latents; ``K < K*`` runs the fixed-width branch and bound over
        activation patterns (:mod:`convexdict.fixed_width`; SAEs only): ``lower_bound`` then
        bounds every SAE of width ``<= K``, ``sae`` is the best width-``K`` SAE found and
        ``certified`` says whether they meet within ``tol``; ``search`` holds its statistics.
    solver : {"clarabel", "scs"}
        CVXPY solver for the group lasso (the other is the fallback on failure).
    tol : float
        Relative gap tolerance for ``certified``.
    method : {"auto", "colgen", "direct"}
        Column generation with exact pricing, or one solve over all of ``E0``.
    max_rounds, atoms_per_round : int
        Column-generation limits.
    progress : bool
        Show a progress display over column-generation rounds.
    target : ndarray of shape (N, d_out), optional
        Certify a **transcoder** (encode ``X``, reconstruct ``target``).
    targets : list of ndarray of shape (N, d_l), optional
        Certify a **crosscoder** (one decoder per target, penalty summed over layers).
    warm_start : Certificate, optional
        A certificate on the same ``X`` (e.g. at a nearby ``lam``): its active atoms seed
        column generation.
    backend : {"cvxpy", "torch"}
        ``"torch"`` runs column generation entirely on a torch device (FISTA master,
        torch pricing; :mod:`solvers.torch_colgen`). Either way the upper bound is the
        recomputed float64 loss of the explicit SAE and the lower bound is verified by
        exact numpy pricing.
    device : str, optional
        Torch device for ``backend="torch"`` (default: ``"cuda"`` when available).
    time_limit : float or None
        Seconds for the fixed-width branch and bound (``K < K*``); None for no limit.
    max_nodes : int
        Relaxations the fixed-width branch and bound may solve.
    starts : sequence of SAE, optional
        Width-``K`` SAEs (e.g. trained ones) offered to the fixed-width search as first
        upper bounds.
    sparsify : bool
        Look for a sparser optimal support (fewer latents, see
        :mod:`convexdict.sparsify_support`); kept only when its recomputed loss is within
        a tenth of the tolerance of the solver's solution.

    Returns
    -------
    Certificate
        ``sae`` is an :class:`SAE`, a :class:`~convexdict.family.Transcoder` or a
        :class:`~convexdict.family.Crosscoder`.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.2]])
    >>> cert = certify(X, 0.1)
    >>> cert.certified, cert.upper_bound - cert.lower_bound <= 1e-6
    (True, True)
    """
    start = time.perf_counter()
    X = check_matrix("X", X)
    lam = check_positive("lam", lam)
    tol = check_positive("tol", tol)
    solver = check_choice("solver", solver, tuple(SOLVERS))
    method = check_choice("method", method, ("auto", "colgen", "direct"))
    if width is not None:
        width = check_int("width", width, minimum=0)
    max_rounds = check_int("max_rounds", max_rounds, minimum=1)
    max_nodes = check_int("max_nodes", max_nodes, minimum=1)
    if time_limit is not None:
        time_limit = check_positive("time_limit", time_limit)
    atoms_per_round = check_int("atoms_per_round", atoms_per_round, minimum=1)
    task = _task(X, lam, target, targets)
    backend = check_choice("backend", backend, ("cvxpy", "torch"))

    n, d = X.shape
    frame = affine_frame(X)
    Y = frame.coords(X)
    r = frame.rank
    n_atoms = count_candidates(n, r)
    if method == "auto":
        method = "direct" if n_atoms <= 2_000 else "colgen"
    if method == "direct" and n_atoms > MAX_ENUMERATED_ATOMS:
        raise ValueError(
            f"The 'method' parameter 'direct' needs all {n_atoms:,} candidate atoms for N={n}, "
            f"affine dimension {r}; use method='colgen'."
        )
    if sweep_cost(n, r) > MAX_SWEEP_EVENTS:
        raise ValueError(
            f"The 'X' parameter is too large to price exactly: N={n} points of affine dimension "
            f"{r} need about {sweep_cost(n, r):.2e} sweep events (limit {MAX_SWEEP_EVENTS:.0e}). "
            "convexdict.joint_bound(X, lam) gives a valid lower bound at any size."
        )
    joint = task.joint_bound()

    def atoms_fn(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        atoms = atoms_from_hyperplanes(Y, U)
        return atoms.hyperplanes, atoms.E

    initial = None
    if warm_start is not None and len(warm_start.active_hyperplanes):
        if warm_start.n_samples != n or warm_start.rank != r:
            raise ValueError(
                "The 'warm_start' parameter must be a certificate on the same X. "
                f"Got one for N={warm_start.n_samples}, rank {warm_start.rank}."
            )
        # Seed with the previous optimum's atoms plus the atoms its residual already
        # violates at the new lam (one pricing; e.g. the atoms entering as lam falls).
        _, previous = task.loss_and_residual(warm_start.optimum_sae)
        previous = previous - previous.mean(axis=0)
        priced = price(Y, previous, groups=task.groups, top=atoms_per_round)
        entering = priced.hyperplanes[priced.values > lam]
        initial = atoms_fn(np.vstack([warm_start.active_hyperplanes, entering]))

    rounds: list[CGRound] = []
    statuses: list[str] = []
    t_master = t_pricing = 0.0
    try:
        if method == "direct" and backend == "cvxpy":
            atoms = enumerate_atoms(Y)
            sol = GroupLassoProblem(atoms.E, task.T, task.groups).solve(lam, solver)
            U_act, E_act = atoms.hyperplanes, atoms.E
            t_master, statuses, converged = sol.solve_time, [sol.status], True
        else:
            cg_options = dict(
                groups=task.groups,
                tol=tol / 10,
                max_rounds=max_rounds,
                per_round=atoms_per_round,
            )
            display, callback = _progress_callback(progress, lam)
            try:
                if backend == "torch":
                    from solvers.torch_colgen import column_generation_torch

                    if device is None:
                        import torch

                        device = "cuda" if torch.cuda.is_available() else "cpu"
                    method = "colgen-torch"
                    result = column_generation_torch(
                        task.T, lam, Y, device=device, callback=callback, **cg_options
                    )
                else:
                    result = column_generation(
                        task.T,
                        lam,
                        price_fn=lambda R, top, part: price(
                            Y, R, groups=task.groups, top=top, part=part
                        ),
                        atoms_fn=atoms_fn,
                        initial=initial,
                        solver=solver,
                        n_parts=int(np.clip(sweep_cost(n, r) // 2_000_000, 1, 16)) if r >= 2 else 1,
                        callback=callback,
                        **cg_options,
                    )
            finally:
                if display is not None:
                    display.stop()
            sol, U_act, E_act = result.solution, result.hyperplanes, result.E
            rounds, converged = result.rounds, result.converged
            statuses = [rd.master_status for rd in rounds]
            t_master = sum(rd.master_time for rd in rounds)
            t_pricing = sum(rd.pricing_time for rd in rounds)
    except SolverFailure as exc:
        sol, converged = None, False
        statuses.append(f"failed: {exc}")

    p = task.T.shape[1]
    if sol is None:
        sol = GroupLassoSolution(task.T.mean(axis=0), np.zeros((0, p)), "failed", solver, 0.0)
        U_act = np.empty((0, r + 1))
    keep = _pruned(sol.G, frame.scale)
    W_enc, b_enc = encoder_from_hyperplanes(X, frame, U_act[keep])
    optimum = task.model(W_enc, b_enc, sol.G[keep], sol.b)
    upper, residual = task.loss_and_residual(optimum)
    plain = (optimum, upper, residual, int(keep.sum()), W_enc, b_enc)  # before simplifying
    if sparsify and task.groups is None and sol.status != "failed" and keep.sum() > 1:
        # A sparser optimal support (fewer latents), kept only if its recomputed loss
        # stays within a tenth of the tolerance.
        found = sparse_support(E_act, task.T, sol, lam, solver)
        if found is not None:
            support, refit = found
            keep2 = np.zeros(len(E_act), dtype=bool)
            keep2[support[_pruned(refit.G, frame.scale)]] = True
            G2 = np.zeros_like(sol.G)
            G2[support] = refit.G
            W2, b2 = encoder_from_hyperplanes(X, frame, U_act[keep2])
            sparse_model = task.model(W2, b2, G2[keep2], refit.b)
            upper2, residual2 = task.loss_and_residual(sparse_model)
            if upper2 <= upper + 0.1 * tol * max(1.0, abs(upper)):
                keep, sol = keep2, GroupLassoSolution(refit.b, G2, sol.status, sol.solver, 0.0)
                W_enc, b_enc, optimum = W2, b2, sparse_model
                upper, residual = upper2, residual2
    if task.groups is None and keep.any():
        # Newton polish on the final support (accepted only if the loss does not rise).
        G3, b3 = newton_refine(E_act[keep], task.T, sol.G[keep], lam)
        polished = task.model(W_enc, b_enc, G3, b3)
        upper3, residual3 = task.loss_and_residual(polished)
        if upper3 <= upper:
            optimum, upper, residual = polished, upper3, residual3
    k_star = int(keep.sum())
    if task.groups is None and k_star > 1:
        # Latents spread over one pattern polytope with parallel decoders merge exactly.
        G_opt, b_opt = task.decoder(optimum)
        W4, b4, D4 = merge_parallel_latents(W_enc, b_enc, G_opt, X)
        if D4.shape[0] < k_star:
            merged = task.model(W4, b4, D4, b_opt)
            upper4, residual4 = task.loss_and_residual(merged)
            if upper4 <= upper + 1e-3 * tol * max(1.0, abs(upper)):
                W_enc, b_enc, optimum = W4, b4, merged
                upper, residual, k_star = upper4, residual4, D4.shape[0]

    t_verify0 = time.perf_counter()
    verify_method = "bruteforce" if n_atoms * n <= _BRUTE_VERIFY_LIMIT else "auto"
    dual = dual_certificate(
        X, lam, residual, target=task.T, groups=task.groups, method=verify_method, frame=frame
    )
    lower = dual.value
    gap = upper - lower
    ok = bool(gap <= tol * max(1.0, abs(upper)))
    if not ok and plain[0] is not optimum:
        # The simplified model did not certify: verify the solver's own solution too.
        dual2 = dual_certificate(
            X,
            lam,
            plain[2],
            target=task.T,
            groups=task.groups,
            method=verify_method,
            frame=frame,
        )
        # Both dual values are valid bounds on P*: keep the larger, and the SAE with the
        # smaller recomputed loss.
        if dual2.value > dual.value:
            dual, lower = dual2, dual2.value
        if plain[1] < upper:
            optimum, upper, residual, k_star, W_enc, b_enc = plain
        gap = upper - lower
        ok = bool(gap <= tol * max(1.0, abs(upper)))
    t_verify = time.perf_counter() - t_verify0

    message = "global optimum certified" if ok else "gap above tolerance: not certified"
    search: dict[str, Any] | None = None
    if not converged:
        message += "; column generation stopped before pricing converged"
    if sol.status == "failed":
        message = "every solver failed; only the lower bound is valid"
    model = optimum
    if width is not None and width >= k_star:
        if task.kind == "sae":
            model = optimum.padded(width)
        else:
            pad = width - k_star
            W_pad = np.hstack([W_enc, np.zeros((d, pad))])
            G_opt, b_opt = task.decoder(optimum)
            G_pad = np.vstack([G_opt, np.zeros((pad, p))])
            model = task.model(W_pad, np.concatenate([b_enc, -np.ones(pad)]), G_pad, b_opt)
    elif width is not None and task.kind == "sae":
        from .fixed_width import fixed_width_result

        fixed = fixed_width_result(
            X,
            lam,
            width,
            wide_lower=lower,
            wide_optimum=optimum,
            starts=starts,
            tol=tol,
            time_limit=time_limit,
            max_nodes=max_nodes,
            solver=solver,
            progress=progress,
            k_star=k_star,
        )
        model, lower, upper, gap, ok, message, search = fixed
    elif width is not None:
        model, upper, gap, ok = None, float("inf"), float("inf"), False
        message = (
            f"width {width} < K* = {k_star}: only the lower bound is known at this width "
            "(fixed-width branch and bound covers SAEs, not transcoders or crosscoders)"
        )
    return Certificate(
        lower_bound=lower,
        upper_bound=upper,
        gap=gap,
        certified=ok,
        sae=model,
        width_needed=k_star,
        joint_bound=joint,
        n_atoms=n_atoms,
        lam=lam,
        tol=tol,
        width=width,
        method=method,
        solver=sol.solver,
        status="certified" if ok else "not_certified",
        message=message,
        kind=task.kind,
        optimum_sae=optimum,
        n_samples=n,
        d=d,
        rank=r,
        n_active_atoms=len(E_act) if sol.status != "failed" else 0,
        active_hyperplanes=U_act[keep],
        max_price_ratio=dual.max_price * dual.scale / lam if dual.scale else 0.0,
        pricing_method=dual.method,
        solver_statuses=statuses,
        rounds=rounds,
        time_total=time.perf_counter() - start,
        time_master=t_master,
        time_pricing=t_pricing,
        time_verify=t_verify,
        search=search,
    )


certify.__doc__ = _certify.__doc__
certify.__signature__ = inspect.signature(_certify)
