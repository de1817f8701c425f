"""Certified optima at a fixed width: branch and bound over activation patterns (THEORY 6).

Below ``K*`` the group lasso (P) only bounds the width-``K`` optimum from below. An SAE of
width ``K`` gives each latent one realizable activation pattern (a cell of the hyperplane
arrangement of the data, :func:`solvers.pattern_cones.realizable_patterns`); a latent that
should be dead is represented by any pattern with a zero decoder row, so every width-``K``
SAE lies in some multiset of ``K`` nonempty patterns.

**Bound.** For latent cones ``Q_1 .. Q_K`` (each a closed sub-cone of one pattern cone),
every SAE whose encoder columns lie in them has normalised activations ``e_k`` in the
convex hull of the images of ``Q_k``'s extreme rays, and ``e_k g_k^T`` splits over those
vertices at no cost (THEORY section 3). So the group lasso over the union of the vertex
images is a lower bound for all of them; it is evaluated by
:func:`convexdict_solvers.group_lasso.batched_fista.solve_batch`, whose bound is the dual value of a
residual verified against every atom of the finite set (valid at any accuracy).

**Tree.** Nodes first assign patterns to latents in nondecreasing index order (latents are
interchangeable: this is the symmetry breaking); a node with ``j < K`` latents assigned
bounds all its completions by adding every vertex of every pattern still allowed (the
patterns are sorted so that the useful ones come first and the tails shrink fast). Once all
``K`` are assigned, a node whose relaxation spreads one latent over vertices with
non-parallel decoders is split by bisecting that latent's cone along its longest chord
(spatial branching); a relaxation that uses, per latent, vertices with parallel decoders is
attained by an explicit SAE (the same convex combination of the cone's rays).

**Upper bounds** are explicit width-``K`` SAEs: the top-``K`` latents of the wide optimum
and the SAE built from each leaf relaxation, each polished by paper B's alternating convex
steps (:func:`convexdict.polish`); the reported upper bound is always
:func:`convexdict.sae_loss` of the returned SAE, recomputed from its weights.

**Result.** ``certified`` only when the smallest lower bound over all pruned and open nodes
meets the upper bound within the relative tolerance (:func:`~convexdict.within_tol`);
otherwise both bounds and the gap are
returned with the reason (node or time budget).
"""


from __future__ import annotations

import heapq
import itertools
import time
from math import comb
from typing import Any

import numpy as np
from convexdict_solvers.progress import Display

from convexdict._validation import check_int, check_matrix, check_positive
from convexdict.convex.atoms import affine_frame
from convexdict.fixed_width.incumbents import Incumbent, best_subsets, top_latents
from convexdict.fixed_width.joint_width import joint_width_bound
from convexdict.fixed_width.pattern_tree import (
    CLOSED,
    MAX_PATTERNS,
    Node,
    Problem,
    SearchStats,
    evaluate_leaves,
    expand_patterns,
)
from convexdict.fixed_width.width_incumbents import width_incumbents
from convexdict.models.sae import SAE, sae_loss
from convexdict.tolerance import within_tol

#: Boxes of the 2-D joint bound when ``time_limit`` is None (a deterministic budget).
JOINT_BOXES = 20_000
#: Share of the time left after the explicit incumbents that the branch and bound gets in
#: 2-D (the joint bound J_K gets the rest, when the search has not certified).
BNB_SHARE = 0.6


def branch_and_bound(
    X: np.ndarray,
    lam: float,
    width: int,
    *,
    lower_floor: float,
    wide_residual: np.ndarray,
    starts: list[SAE],
    tol: float = 1e-6,
    time_limit: float | None = 60.0,
    max_nodes: int = 2_000_000,
    batch_size: int = 1024,
    solver: str = "clarabel",
    progress: bool = False,
    device: str | None = None,
) -> tuple[float, Incumbent, SearchStats]:
    """The search itself (see the module docstring); :func:`convexdict.certify` wraps it.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    lam : float
    width : int
        ``K >= 1``.
    lower_floor : float
        A lower bound valid for every SAE (``P*``'s verified bound); the returned bound is
        never below it.
    wide_residual : ndarray of shape (N, d)
        The residual of the wide optimum (a good dual point for the root).
    starts : list of SAE
        Width-``K`` SAEs offered as first incumbents (polished first).
    tol : float
        Relative gap tolerance.
    time_limit : float or None
        Seconds for the search.
    max_nodes : int
        Relaxations to evaluate at most.
    batch_size : int
        Nodes evaluated together.
    solver : {"clarabel", "scs"}
        For polishing incumbents and precise node solves.
    progress : bool
        Show a live display of the bounds.
    device : str, optional
        A torch device for the leaf relaxations (batched FISTA in float64 there, bounds
        verified on the host); None keeps them in numpy.

    Returns
    -------
    lower : float
        Verified lower bound on every SAE of width ``<= K``.
    incumbent : Incumbent
        Best SAE found and its recomputed loss.
    stats : SearchStats
    """
    start = time.perf_counter()
    X = check_matrix("X", X)
    lam = check_positive("lam", lam)
    width = check_int("width", width, minimum=1)
    frame = affine_frame(X)
    if frame.rank == 0:
        raise ValueError("The 'X' parameter has identical rows: every width has the same optimum.")
    prob = Problem(X, lam, frame, device)
    stats = SearchStats(n_patterns=len(prob.cones))
    best = Incumbent(X, lam, width, solver)
    for sae in starts:
        best.offer(sae)

    def threshold() -> float:
        # A node whose bound is within tol of the incumbent closes (within_tol's rule).
        return best.loss - tol * best.loss

    counter = itertools.count()
    heap: list[tuple[float, int, Node]] = []
    root = Node(lower_floor, (), 0, resid=wide_residual - wide_residual.mean(axis=0))
    heapq.heappush(heap, (lower_floor, next(counter), root))
    pruned_lower = np.inf
    display = _Display(progress)
    try:
        while heap:
            elapsed = time.perf_counter() - start
            if time_limit is not None and elapsed > time_limit:
                stats.budget_exhausted = "time"
                break
            if stats.nodes_evaluated >= max_nodes:
                stats.budget_exhausted = "nodes"
                break
            batch: list[Node] = []
            while heap and len(batch) < batch_size:
                lower, _, node = heapq.heappop(heap)
                if lower >= threshold():
                    pruned_lower = min(pruned_lower, lower)
                    stats.nodes_pruned += 1
                    continue
                batch.append(node)
            if not batch:
                continue
            patterns = [node for node in batch if node.tail >= 0]
            leaves = [node for node in batch if node.tail < 0]
            children = []
            for depth in sorted({len(node.cones) for node in patterns}):
                same = [node for node in patterns if len(node.cones) == depth]
                children += expand_patterns(prob, same, stats, width)
            if leaves:
                children += evaluate_leaves(prob, leaves, best, threshold, solver, stats)
            for node in children:
                if node.lower >= threshold() or node.tail == CLOSED:
                    pruned_lower = min(pruned_lower, node.lower)
                    stats.nodes_pruned += 1
                else:
                    heapq.heappush(heap, (node.lower, next(counter), node))
            open_lower = heap[0][0] if heap else np.inf
            lower_now = max(lower_floor, min(pruned_lower, open_lower, best.loss))
            stats.history.append((time.perf_counter() - start, lower_now, best.loss, len(heap)))
            display.update(lower_now, best.loss, stats, len(heap))
    finally:
        display.stop()
    open_lower = min((entry[0] for entry in heap), default=np.inf)
    stats.open_nodes = len(heap)
    stats.incumbents = best.improvements
    stats.time_search = time.perf_counter() - start
    lower = max(lower_floor, min(pruned_lower, open_lower, best.loss))
    return lower, best, stats


class _Display:
    """A one-line live display of the bounds (rich), or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.live = Display("branch and bound", enabled=enabled, transient=True)

    def update(self, lower: float, upper: float, stats: SearchStats, n_open: int) -> None:
        if self.live.enabled:
            self.live.update(
                f"branch and bound: bracket [{lower:.10g}, {upper:.10g}]  relative width "
                f"{(upper - lower) / upper if upper > 0 else 0.0:.3%}  "
                f"nodes {stats.nodes_evaluated:,}  open {n_open:,}  "
                f"splits {stats.spatial_splits:,}"
            )

    def stop(self) -> None:
        self.live.stop()


def search_summary(stats: SearchStats) -> dict[str, Any]:
    """JSON-ready statistics (history excluded)."""
    return {k: v for k, v in stats.__dict__.items() if k != "history"}


def fixed_width_result(
    X: np.ndarray,
    lam: float,
    width: int,
    *,
    wide_lower: float,
    wide_optimum: SAE,
    starts,
    tol: float,
    time_limit: float | None,
    max_nodes: int,
    solver: str,
    progress: bool,
    k_star: int,
    device: str | None = None,
) -> tuple[SAE | None, float, float, float, bool, str, dict[str, Any]]:
    """Run the search for :func:`convexdict.certify` and phrase its outcome.

    Data with more than ``MAX_PATTERNS`` possible activation patterns (Cover's count
    ``2 sum_(i<=r) C(N-1, i)``) get no branch and bound: the result is the best explicit
    width-``K`` SAE of :func:`convexdict.fixed_width.width_incumbents.width_incumbents` (``upper``
    its
    recomputed loss) with the wide lower bound, ``search["budget_exhausted"] == "patterns"``.
    Below the limit those incumbents take at most a quarter of ``time_limit`` and seed the
    branch and bound.

    Returns ``(sae, lower, upper, gap, certified, message, search)``.
    """
    if width == 0:
        # The only width-0 SAE is a bias; the mean is its exact optimum.
        sae = SAE.zeros(X.mean(axis=0))
        loss = sae_loss(sae, X, lam)
        info = {"n_patterns": 0, "nodes_evaluated": 0, "budget_exhausted": ""}
        return sae, loss, loss, 0.0, True, "width-0 optimum (the mean) is exact", info
    start = time.perf_counter()
    rank = affine_frame(X).rank
    n_cells = 2 * sum(comb(X.shape[0] - 1, i) for i in range(rank + 1))
    starts = _checked_starts(starts, X, width)
    too_many = n_cells > MAX_PATTERNS
    # Explicit incumbents always run; with a branch and bound to follow they get a share.
    share = None if time_limit is None else (time_limit if too_many else 0.25 * time_limit)
    found = width_incumbents(X, lam, width, wide=wide_optimum, starts=starts, time_limit=share,
                             solver=solver)
    if too_many:
        # In 2-D, paper A's joint problem at width K gives a width-aware bound (J_K >= P*
        # often); without a branch and bound it gets the whole remaining budget.
        joint = _joint_bound(X, lam, width, found.loss, found.sae is not None, tol, time_limit,
                             start, 1.0, wide_lower, progress)
        sae, lower, upper, gap, ok, message, info = _incumbents_only(
            X, lam, width, max(wide_lower, joint), found, n_cells, k_star, tol, start)
        info["joint_bound"] = joint
        return sae, lower, upper, gap, ok, message, info
    offered = [top_latents(wide_optimum, X, width), *best_subsets(wide_optimum, X, lam, width)]
    offered += [sae for sae in (found.sae, *starts) if sae is not None]
    # The branch and bound goes first: J_K can close nodes only when it certifies by itself
    # (a floor below the incumbent's threshold prunes nothing), so it gets the time the
    # search leaves (BNB_SHARE of the rest in 2-D) and only tightens the bracket.
    remaining = None if time_limit is None else max(time_limit - (time.perf_counter() - start),
                                                    1e-3)
    share = BNB_SHARE if X.shape[1] == 2 else 1.0
    lower, best, stats = branch_and_bound(
        X,
        lam,
        width,
        lower_floor=wide_lower,
        wide_residual=X - wide_optimum.reconstruct(X),
        starts=offered,
        tol=tol,
        time_limit=None if remaining is None else share * remaining,
        max_nodes=max_nodes,
        solver=solver,
        progress=progress,    device=device,
    )
    joint = -np.inf
    if not within_tol(best.loss, lower, tol):
        joint = _joint_bound(X, lam, width, best.loss, True, tol, time_limit, start, 1.0,
                             lower, progress)
        lower = max(lower, joint)
    upper = best.loss
    gap = upper - lower
    ok = within_tol(upper, lower, tol)
    done = (
        f"{stats.nodes_evaluated:,} relaxations over {stats.n_patterns} activation patterns, "
        f"{stats.spatial_splits:,} cone splits"
    )
    if ok:
        message = f"width-{width} optimum certified by branch and bound ({done}); K* = {k_star}"
    elif stats.budget_exhausted:
        message = (
            f"{stats.budget_exhausted} budget ran out at width {width} < K* = {k_star} "
            f"({done}, {stats.open_nodes:,} nodes open): best SAE and both bounds returned"
        )
    else:
        message = (
            f"search finished at width {width} < K* = {k_star} ({done}) with the gap above "
            "tolerance (relaxations solved only approximately)"
        )
    info = search_summary(stats)
    info["incumbent_source"] = found.source
    info["joint_bound"] = joint
    return best.sae, lower, upper, gap, ok, message, info


def _joint_bound(X, lam, width, upper, have_sae, tol, time_limit, start, share, floor,
                 progress) -> float:
    """The verified J_K bound of :mod:`convexdict.fixed_width.joint_width` (``-inf`` off 2-D),
    pruned with ``upper`` (the loss of an explicit width-``K`` SAE)."""
    if X.shape[1] != 2 or not have_sae:
        return -np.inf
    if time_limit is None:  # deterministic (scale-covariant) budget: a fixed box count
        return joint_width_bound(X, lam, width, upper, tol=tol, time_limit=None,
                                 max_boxes=JOINT_BOXES, progress=progress).lower
    left = time_limit - (time.perf_counter() - start)
    if left <= 0:
        return -np.inf
    return joint_width_bound(X, lam, width, upper, tol=tol, time_limit=share * left,
                             floor=floor, progress=progress).lower


def _checked_starts(starts, X: np.ndarray, width: int) -> list[SAE]:
    out = []
    for i, sae in enumerate(starts or []):
        if not isinstance(sae, SAE) or sae.width != width or sae.d_in != X.shape[1]:
            raise ValueError(
                f"The 'starts' parameter must hold SAEs of width {width} on {X.shape[1]} "
                f"inputs. Got {type(sae).__name__} at position {i}"
                + (f" (width {sae.width}, d_in {sae.d_in})." if isinstance(sae, SAE) else ".")
            )
        out.append(sae)
    return out


def _incumbents_only(X, lam, width, wide_lower, found, n_cells, k_star, tol, start):
    """Above ``MAX_PATTERNS``: the best explicit width-``K`` SAE and the wide bound."""
    sae = found.sae
    upper = sae_loss(sae, X, lam) if sae is not None else float("inf")
    ok = sae is not None and within_tol(upper, wide_lower, tol)
    rel = (upper - wide_lower) / upper if upper > 0 and np.isfinite(upper) else float("inf")
    head = (f"width-{width} optimum certified: an explicit SAE attains the wide lower bound"
            if ok else
            f"width {width} < K* = {k_star}: [lower_bound, upper_bound] brackets the "
            f"width-{width} optimum (relative width {rel:.3g})")
    message = (
        f"{head}; the upper end is the best of {sum(found.tried.values())} explicit width-"
        f"{width} SAEs (best from {found.source or 'none'}); up to {n_cells:,} activation "
        f"patterns, above the branch and bound's limit of {MAX_PATTERNS:,}, so the lower end "
        "is the wide bound P* or, in 2-D, the joint bound J_K at width K if larger"
    )
    info = {"n_patterns": n_cells, "nodes_evaluated": 0, "budget_exhausted": "patterns",
            "incumbent_source": found.source, "incumbents_tried": dict(found.tried),
            "time_search": time.perf_counter() - start}
    return sae, wide_lower, upper, upper - wide_lower, ok, message, info
