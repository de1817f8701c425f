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

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from solvers.column_generation import CGRound, column_generation
from solvers.cvxpy_group_lasso import (
    SOLVERS,
    GroupLassoProblem,
    GroupLassoSolution,
    SolverFailure,
)
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
from .sae import SAE, sae_loss

MAX_SWEEP_EVENTS = 4_000_000_000
PRUNE_RTOL = 1e-8
_BRUTE_VERIFY_LIMIT = 200_000_000


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
    sae : SAE or None
        The explicit SAE attaining ``upper_bound`` (width ``width``), or None.
    width_needed : int
        ``K*``: number of latents of the optimal SAE found (nonzero groups of (P)).
    joint_bound : float
        The joint wide-limit lower bound (weaker, valid for any ``d``).
    n_atoms : int
        ``2 C(N, r)``: the number of (hyperplane, orientation) candidates spanning ``E0``
        (an upper bound on ``|E0|``).
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
    optimum_sae: SAE | None = None
    n_samples: int = 0
    d: int = 0
    rank: int = 0
    n_active_atoms: int = 0
    max_price_ratio: float = float("nan")
    pricing_method: str = ""
    solver_statuses: list[str] = field(default_factory=list)
    rounds: list[CGRound] = field(default_factory=list)
    time_total: float = 0.0
    time_master: float = 0.0
    time_pricing: float = 0.0
    time_verify: float = 0.0

    @property
    def relative_gap(self) -> float:
        """``gap / max(1, |upper_bound|)``."""
        return self.gap / max(1.0, abs(self.upper_bound))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (weights excluded)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("sae", "optimum_sae", "rounds")}
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


def sae_from_solution(
    X: np.ndarray, frame: AffineFrame, hyperplanes: np.ndarray, G: np.ndarray, b: np.ndarray
) -> SAE:
    """Map a solution of (P) back to an explicit SAE (THEORY section 3, exactness).

    For atom ``u`` (reduced coordinates) with decoder group ``g``: lift ``u`` to the input
    space, ``s = sum(relu(Xt u))``, ``W_enc[:, k] = u[:d] / s``, ``b_enc[k] = u[d] / s``,
    ``W_dec[k] = g``, ``b_dec = b``.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    frame : AffineFrame
    hyperplanes : ndarray of shape (K, r + 1)
    G : ndarray of shape (K, d)
    b : ndarray of shape (d,)
    """
    d = X.shape[1]
    if len(G) == 0:
        return SAE.zeros(b)
    if frame.rank == 0:
        U = np.zeros((len(G), d + 1))
        U[:, -1] = 1.0
    else:
        U = frame.lift(hyperplanes)
    s = np.maximum(X @ U[:, :d].T + U[:, d], 0.0).sum(axis=0)
    return SAE((U[:, :d] / s[:, None]).T, U[:, d] / s, G, b)


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
) -> Certificate:
    """Certified global optimum of the canonical SAE objective.

    Parameters
    ----------
    X : ndarray of shape (N, d)
        Data, one sample per row.
    lam : float
        L1 penalty (> 0).
    width : int, optional
        Requested width ``K``. ``None`` returns the optimal SAE at width ``K*``; ``K >= K*``
        pads it with dead latents; ``K < K*`` gives only a lower bound (``certified=False``).
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

    Returns
    -------
    Certificate

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
    atoms_per_round = check_int("atoms_per_round", atoms_per_round, minimum=1)

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
    joint = joint_bound(X, lam)

    def atoms_fn(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        atoms = atoms_from_hyperplanes(Y, U)
        return atoms.hyperplanes, atoms.E

    rounds: list[CGRound] = []
    statuses: list[str] = []
    t_master = t_pricing = 0.0
    try:
        if method == "direct":
            atoms = enumerate_atoms(Y)
            sol = GroupLassoProblem(atoms.E, X).solve(lam, solver)
            U_act, E_act = atoms.hyperplanes, atoms.E
            t_master, statuses, converged = sol.solve_time, [sol.status], True
        else:
            display, callback = _progress_callback(progress, lam)
            try:
                result = column_generation(
                    X,
                    lam,
                    price_fn=lambda R, top, part: price(Y, R, top=top, part=part),
                    atoms_fn=atoms_fn,
                    solver=solver,
                    tol=tol / 10,
                    max_rounds=max_rounds,
                    per_round=atoms_per_round,
                    n_parts=int(np.clip(sweep_cost(n, r) // 2_000_000, 1, 16)) if r >= 2 else 1,
                    callback=callback,
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

    if sol is None:
        sol = GroupLassoSolution(X.mean(axis=0), np.zeros((0, d)), "failed", solver, 0.0)
        U_act = np.empty((0, r + 1))
    keep = _pruned(sol.G, frame.scale)
    optimum = sae_from_solution(X, frame, U_act[keep], sol.G[keep], sol.b)
    k_star = optimum.width

    t_verify0 = time.perf_counter()
    upper = sae_loss(optimum, X, lam)
    verify_method = "bruteforce" if n_atoms * n <= _BRUTE_VERIFY_LIMIT else "auto"
    dual = dual_certificate(
        X, lam, X - optimum.reconstruct(X), method=verify_method, frame=frame
    )
    t_verify = time.perf_counter() - t_verify0
    lower = dual.value
    gap = upper - lower
    ok = bool(gap <= tol * max(1.0, abs(upper)))

    message = "global optimum certified" if ok else "gap above tolerance: not certified"
    if not converged:
        message += "; column generation stopped before pricing converged"
    if sol.status == "failed":
        message = "every solver failed; only the lower bound is valid"
    sae: SAE | None = optimum
    if width is not None and ok:
        if width >= k_star:
            sae = optimum.padded(width)
        else:
            sae, upper, gap, ok = None, float("inf"), float("inf"), False
            message = (
                f"width {width} < K* = {k_star}: only the lower bound is known at this width "
                "(the certified optimum needs more latents)"
            )
    elif width is not None and width < k_star:
        sae, upper, gap = None, float("inf"), float("inf")
        message += f"; width {width} < K* = {k_star}: only the lower bound is known"
    return Certificate(
        lower_bound=lower,
        upper_bound=upper,
        gap=gap,
        certified=ok,
        sae=sae,
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
        optimum_sae=optimum,
        n_samples=n,
        d=d,
        rank=r,
        n_active_atoms=len(E_act) if sol.status != "failed" else 0,
        max_price_ratio=dual.max_price * dual.scale / lam if dual.scale else 0.0,
        pricing_method=dual.method,
        solver_statuses=statuses,
        rounds=rounds,
        time_total=time.perf_counter() - start,
        time_master=t_master,
        time_pricing=t_pricing,
        time_verify=t_verify,
    )
