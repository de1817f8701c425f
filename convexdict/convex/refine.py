"""Stages 4 and 5 of :func:`convexdict.certify`: refine the solver's model, then verify.

Each refinement (a sparser support, a Newton polish of the decoder, merged parallel
latents) proposes a :class:`Candidate`; :func:`accept` keeps it only if its recomputed loss
is not worse (relative slack, the same in every unit). :func:`verify_candidates` computes,
in the user's units, each candidate's loss from its weights and its dual bound by exact
pricing over all of ``E0``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from convexdict_solvers.group_lasso.cvxpy_solve import GroupLassoSolution
from convexdict_solvers.group_lasso.newton import newton_refine
from convexdict_solvers.pricing.exact import count_candidates

from convexdict.convex.atoms import AffineFrame
from convexdict.convex.bounds import dual_certificate
from convexdict.convex.encoders import encoder_from_hyperplanes
from convexdict.convex.master import MasterResult, Options
from convexdict.convex.merge import merge_parallel_latents
from convexdict.convex.sparsify_support import sparse_support
from convexdict.convex.task import Task
from convexdict.tolerance import within_tol
from convexdict.units import Units

PRUNE_RTOL = 1e-8
_BRUTE_VERIFY_LIMIT = 2_000_000


@dataclass
class Candidate:
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


def _pruned(G: np.ndarray, scale: float) -> np.ndarray:
    """Groups that are numerically nonzero: ``||g|| > PRUNE_RTOL * max(max ||g||, scale)``."""
    norms = np.linalg.norm(G, axis=1)
    if norms.size == 0:
        return np.zeros(0, dtype=bool)
    return norms > PRUNE_RTOL * max(norms.max(), scale)


def candidate_of(
    inner: Task, frame: AffineFrame, U: np.ndarray, sol: GroupLassoSolution
) -> Candidate:
    """The explicit model of a master solution (nonzero groups only), with its loss."""
    keep = _pruned(sol.G, frame.scale)
    W_enc, b_enc = encoder_from_hyperplanes(inner.X, frame, U[keep])
    model = inner.model(W_enc, b_enc, sol.G[keep], sol.b)
    loss, residual = inner.loss_and_residual(model)
    return Candidate(model, loss, residual, W_enc, b_enc, int(keep.sum()), U[keep], keep)


def accept(current: Candidate, candidate: Candidate | None, slack: float) -> Candidate:
    """Keep ``candidate`` when its loss is not worse than ``current``'s by more than
    ``slack * current.loss`` (relative, so the rule is the same in every unit)."""
    if candidate is None:
        return current
    return candidate if candidate.loss <= current.loss * (1.0 + slack) else current


def refine(inner: Task, frame: AffineFrame, master: MasterResult, plain: Candidate, opts: Options):
    """Stage 4: candidate refinements of the solver's model, each accepted if not worse.

    Returns ``[refined, plain]`` (the plain solver model is the fallback of
    :func:`verify_candidates`), or ``[plain]`` when nothing changed.
    """
    steps: list[tuple[Callable[[Candidate], Candidate | None], float]] = [
        (lambda m: _sparser(inner, frame, master, m, opts), 0.1 * opts.tol),
        (lambda m: _newton(inner, master, m), 0.0),
        (lambda m: _merged(inner, m), 1e-3 * opts.tol),
    ]
    current = plain
    if master.sol.status == "failed":
        return [plain]
    for step, slack in steps:
        current = accept(current, step(current), slack)
    return [current, plain] if current is not plain else [plain]


def _sparser(inner: Task, frame: AffineFrame, master: MasterResult, m: Candidate, opts: Options):
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
    return candidate_of(inner, frame, master.U, sol)


def _newton(inner: Task, master: MasterResult, m: Candidate):
    """Newton polish of the decoder on the model's support (SAEs and transcoders)."""
    if inner.groups is not None or m.k == 0:
        return None
    G0, _ = inner.decoder(m.model)
    G, b = newton_refine(master.E[m.keep], inner.T, G0, inner.lam)
    # Newton's active-set steps may zero a group: that latent leaves the model (K* counts
    # nonzero groups only).
    live = np.linalg.norm(G, axis=1) > 0
    keep = m.keep.copy()
    keep[np.flatnonzero(m.keep)[~live]] = False
    model = inner.model(m.W_enc[:, live], m.b_enc[live], G[live], b)
    loss, residual = inner.loss_and_residual(model)
    return replace(m, model=model, loss=loss, residual=residual, W_enc=m.W_enc[:, live],
                   b_enc=m.b_enc[live], k=int(live.sum()), hyperplanes=m.hyperplanes[live],
                   keep=keep)


def _merged(inner: Task, m: Candidate):
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


def verify_candidates(
    task: Task, units: Units, candidates: list[Candidate], tol: float, frame: AffineFrame
):
    """Stage 5, in the user's units: verify the refined model; if it does not certify,
    verify the solver's own model too and keep the smaller loss and the larger bound
    (both are valid). ``frame`` is ``affine_frame(task.X)``. Returns ``(model, dual, R)``
    with ``R`` the dual point used."""
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
