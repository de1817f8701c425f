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
:func:`solvers.batched_group_lasso.solve_batch`, whose bound is the dual value of a
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
meets the upper bound within ``tol * max(1, |upper|)``; otherwise both bounds and the gap are
returned with the reason (node or time budget).
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from math import comb
from typing import Any

import numpy as np

from solvers.batched_group_lasso import PRICE_SAFETY, dual_lower_bounds, solve_batch
from solvers.batched_restarts import random_restarts
from solvers.cvxpy_group_lasso import GroupLassoProblem, SolverFailure
from solvers.pattern_cones import (
    bisecting_cut,
    cone_images,
    cone_rays,
    cut_cone_rays,
    lifted,
    pattern_rows,
    realizable_patterns,
)

from ._validation import check_int, check_matrix, check_positive
from .atoms import AffineFrame, affine_frame
from .pieces import PieceSolveError, polish
from .sae import SAE, sae_loss

MAX_PATTERNS = 5_000
MAX_SUBSETS = 20_000
_SCREEN_GRID = np.linspace(0.0, 1.0, 11)
# A latent's relaxation is "rank one" (attained by one latent) when spreading it over
# non-parallel vertices gains at most this fraction of the tolerance.
_TIGHT_FRACTION = 1e-3
_DUP_TOL = 1e-12
_CLOSED = -2  # tail marker of a node that is finished with its bound


@dataclass(frozen=True, eq=False)
class _Cone:
    """One latent's region: a closed sub-cone of pattern ``pattern``'s cone."""

    pattern: int
    cuts: np.ndarray  # (c, q) rows w with w . u >= 0
    rays: np.ndarray  # (k, q) extreme rays scaled so that their images sum to 1
    E: np.ndarray  # (k, N) their images (the polytope's vertices)
    all_rays: np.ndarray  # (k0, q) every extreme ray, zero images included (unit norm)


@dataclass(eq=False)
class _Node:
    lower: float
    cones: tuple[_Cone, ...]
    tail: int  # first pattern the remaining latents may use; -1 once all are assigned
    splits: int = 0
    resid: np.ndarray | None = None  # a residual to screen this pattern node's children with


@dataclass
class SearchStats:
    """What the branch and bound did.

    Attributes
    ----------
    n_patterns : int
        Realizable nonempty activation patterns of the data.
    nodes_evaluated : int
        Relaxations solved (pattern nodes and spatial nodes).
    nodes_pruned : int
        Nodes closed by their bound or by an attained relaxation.
    spatial_splits : int
        Cone bisections.
    max_depth : int
        Largest number of cuts on one node.
    open_nodes : int
        Nodes left when the search stopped (0 when it finished).
    incumbents : int
        Times the upper bound improved.
    screened : int
        Leaves whose bound was raised by dual screening before any solve.
    budget_exhausted : str
        ``""`` when the search finished, else ``"time"`` or ``"nodes"``.
    time_search : float
        Seconds in the search (after the wide certificate).
    """

    n_patterns: int = 0
    nodes_evaluated: int = 0
    nodes_pruned: int = 0
    spatial_splits: int = 0
    max_depth: int = 0
    open_nodes: int = 0
    incumbents: int = 0
    screened: int = 0
    budget_exhausted: str = ""
    time_search: float = 0.0
    history: list[tuple[float, float, float, int]] = field(default_factory=list)


class _Problem:
    """Data, patterns and the atoms of every pattern and pattern tail."""

    def __init__(self, X: np.ndarray, lam: float, frame: AffineFrame) -> None:
        self.X, self.lam, self.frame = X, lam, frame
        self.n = X.shape[0]
        self.Yt = lifted(frame.coords(X))
        masks = realizable_patterns(frame.coords(X))
        if len(masks) > MAX_PATTERNS:
            raise ValueError(
                f"The 'X' parameter has {len(masks):,} realizable activation patterns (limit "
                f"{MAX_PATTERNS:,}); fixed-width branch and bound is for small data sets."
            )
        cones = [self._cone(mask, np.zeros((0, self.Yt.shape[1]))) for mask in masks]
        # Sort patterns by how much a single latent with that pattern can explain.
        alone = _pad([c.E for c in cones])
        single = solve_batch(alone, X, lam, max_iter=300, rtol=1e-6).primal
        order = np.argsort(single, kind="stable")
        self.masks = masks[order]
        self.cones = [
            _Cone(i, cones[j].cuts, cones[j].rays, cones[j].E, cones[j].all_rays)
            for i, j in enumerate(order)
        ]
        self.tails = self._tails()
        self.all_vertices = np.vstack([c.E for c in self.cones])
        self.vertex_offsets = np.cumsum([0] + [len(c.E) for c in self.cones])[:-1]

    def _cone(self, mask: np.ndarray, cuts: np.ndarray, pattern: int = -1) -> _Cone:
        rows = np.vstack([pattern_rows(self.Yt, mask), cuts])
        all_rays = cone_rays(rows)
        rays, E = cone_images(self.Yt, mask, all_rays)
        keep = _distinct(E)
        return _Cone(pattern, cuts, rays[keep], E[keep], all_rays)

    def sub_cone(self, cone: _Cone, cut: np.ndarray) -> _Cone:
        """``cone`` intersected with ``{u : cut . u >= 0}`` (one double-description step)."""
        mask = self.masks[cone.pattern]
        rows = np.vstack([pattern_rows(self.Yt, mask), cone.cuts])
        rays = cut_cone_rays(rows, cone.all_rays, cut)
        images_rays, E = cone_images(self.Yt, mask, rays)
        keep = _distinct(E)
        return _Cone(cone.pattern, np.vstack([cone.cuts, cut[None]]), images_rays[keep], E[keep],
                     rays)

    def _tails(self) -> list[np.ndarray]:
        tails: list[np.ndarray] = [np.zeros((0, self.n))] * (len(self.cones) + 1)
        acc = np.zeros((0, self.n))
        for i in range(len(self.cones) - 1, -1, -1):
            acc = np.vstack([acc, self.cones[i].E])
            acc = acc[_distinct(acc)]
            tails[i] = acc
        return tails

    def atoms(self, node: _Node) -> np.ndarray:
        parts = [c.E for c in node.cones]
        if node.tail >= 0:
            parts = parts[:-1] + [self.tails[node.tail]] if node.cones else [self.tails[0]]
        return np.vstack(parts)


def _distinct(E: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each row of ``E`` (up to ``_DUP_TOL``)."""
    keep: list[int] = []
    for i in range(len(E)):
        if not keep or np.abs(E[keep] - E[i]).max(axis=1).min() > _DUP_TOL:
            keep.append(i)
    return np.array(keep, dtype=np.intp)


def _pad(blocks: list[np.ndarray]) -> np.ndarray:
    m = max(len(b) for b in blocks)
    out = np.zeros((len(blocks), m, blocks[0].shape[1]))
    for i, b in enumerate(blocks):
        out[i, : len(b)] = b
    return out


def _merged_sae(prob: _Problem, node: _Node, G: np.ndarray) -> tuple[SAE, float]:
    """The width-``K`` SAE that merges each latent's vertices, and its spread excess.

    Latent ``k`` takes the convex combination ``u_k = sum_v theta_v rho_v`` of its cone's
    rays with ``theta_v`` proportional to ``||g_v||`` (so its activation is
    ``sum_v theta_v e_v``) and decoder ``sum_v g_v``. The *excess*
    ``max_k (sum_v ||g_v|| - ||sum_v g_v||)`` is zero exactly when the merge attains the
    relaxation's value.
    """
    d = prob.X.shape[1]
    W_enc, b_enc, W_dec = np.zeros((d, len(node.cones))), np.zeros(len(node.cones)), []
    excess, start = 0.0, 0
    for k, cone in enumerate(node.cones):
        g = G[start : start + len(cone.E)]
        start += len(cone.E)
        w = np.linalg.norm(g, axis=1)
        total = g.sum(axis=0)
        excess = max(excess, float(w.sum() - np.linalg.norm(total)))
        theta = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
        u = prob.frame.lift((theta @ cone.rays)[None])[0]
        W_enc[:, k], b_enc[k] = u[:d], u[d]
        W_dec.append(total if w.sum() > 0 else np.zeros(d))
    W_dec = np.array(W_dec)
    Z = np.maximum(prob.X @ W_enc + b_enc, 0.0)
    b_dec = (prob.X - Z @ W_dec).mean(axis=0)
    return SAE(W_enc, b_enc, W_dec, b_dec), excess


def _top_latents(sae: SAE, X: np.ndarray, width: int) -> SAE:
    """The ``width`` latents of ``sae`` with the largest ``||W_dec[k]|| * sum_n Z[n, k]``."""
    Z = sae.encode(X)
    mass = sae.decoder_norms() * Z.sum(axis=0)
    keep = np.sort(np.argsort(-mass, kind="stable")[:width])
    small = SAE(sae.W_enc[:, keep], sae.b_enc[keep], sae.W_dec[keep], sae.b_dec)
    return small.padded(width) if small.width < width else small


def _best_subsets(sae: SAE, X: np.ndarray, lam: float, width: int, keep: int = 3) -> list[SAE]:
    """The best few width-``K`` subsets of ``sae``'s latents, decoders refitted.

    Every ``K``-subset of the latents (when there are at most ``MAX_SUBSETS``) gets its
    decoder and bias from a batched group lasso over its activations.
    """
    Z = sae.encode(X)
    alive = np.flatnonzero(Z.sum(axis=0) > 0)
    if len(alive) <= width or comb(len(alive), width) > MAX_SUBSETS:
        return []
    E_all = (Z[:, alive] / Z[:, alive].sum(axis=0)).T
    subsets = np.array(list(itertools.combinations(range(len(alive)), width)))
    res = solve_batch(E_all[subsets], X, lam, max_iter=500, rtol=1e-8)
    out = []
    for b in np.argsort(res.primal, kind="stable")[:keep]:
        cols = alive[subsets[b]]
        s = Z[:, cols].sum(axis=0)
        out.append(SAE(sae.W_enc[:, cols] / s, sae.b_enc[cols] / s, res.G[b], res.b[b]))
    return out


class _Incumbent:
    def __init__(self, X: np.ndarray, lam: float, width: int, solver: str) -> None:
        self.X, self.lam, self.width, self.solver = X, lam, width, solver
        self.sae: SAE | None = None
        self.loss = float("inf")
        self.improvements = 0

    def offer(self, sae: SAE, *, polish_it: bool = True) -> None:
        loss = sae_loss(sae, self.X, self.lam)
        if polish_it and loss < self.loss:
            try:
                sae = polish(sae, self.X, self.lam, max_iter=20, solver=self.solver)
            except PieceSolveError:
                pass
            loss = sae_loss(sae, self.X, self.lam)
        if loss < self.loss:
            self.sae, self.loss = sae, loss
            self.improvements += 1


def _precise_lower(E: np.ndarray, X: np.ndarray, lam: float, solver: str) -> float:
    """A tighter verified bound for one node: CVXPY solve, then the same dual check."""
    try:
        sol = GroupLassoProblem(E, X).solve(lam, solver=solver)
    except SolverFailure:
        return -np.inf
    return float(dual_lower_bounds(E[None], X, sol.G[None], lam)[0])


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
) -> tuple[float, _Incumbent, SearchStats]:
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

    Returns
    -------
    lower : float
        Verified lower bound on every SAE of width ``<= K``.
    incumbent : _Incumbent
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
    prob = _Problem(X, lam, frame)
    stats = SearchStats(n_patterns=len(prob.cones))
    best = _Incumbent(X, lam, width, solver)
    for sae in starts:
        best.offer(sae)

    def threshold() -> float:
        return best.loss - tol * max(1.0, abs(best.loss))

    counter = itertools.count()
    heap: list[tuple[float, int, _Node]] = []
    root = _Node(lower_floor, (), 0, resid=wide_residual - wide_residual.mean(axis=0))
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
            batch: list[_Node] = []
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
                children += _expand(prob, same, stats, width)
            if leaves:
                children += _evaluate(prob, leaves, best, threshold, solver, stats)
            for node in children:
                if node.lower >= threshold() or node.tail == _CLOSED:
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


def _evaluate(
    prob: _Problem,
    batch: list[_Node],
    best: _Incumbent,
    threshold,
    solver: str,
    stats: SearchStats,
) -> list[_Node]:
    """Solve the leaves' relaxations; return children (and closed nodes with their bounds)."""
    atoms = [prob.atoms(node) for node in batch]
    lowers, Gs = _relaxations(atoms, prob, threshold())
    stats.nodes_evaluated += len(batch)
    out: list[_Node] = []
    for i, node in enumerate(batch):
        lower = max(node.lower, float(lowers[i]))
        if lower >= threshold():
            out.append(_Node(lower, node.cones, node.tail, node.splits))
            continue
        G = Gs[i]
        candidate, excess = _merged_sae(prob, node, G)
        best.offer(candidate, polish_it=sae_loss(candidate, prob.X, prob.lam) < best.loss)
        if lower >= threshold():
            out.append(_Node(lower, node.cones, node.tail, node.splits))
            continue
        scale = prob.n * _TIGHT_FRACTION * (best.loss - threshold()) / prob.lam
        if excess <= scale:
            # The relaxation is attained: only the solver's accuracy separates the bounds.
            lower = max(lower, _precise_lower(atoms[i], prob.X, prob.lam, solver))
            if lower >= threshold():
                out.append(_Node(lower, node.cones, node.tail, node.splits))
                continue
        out.extend(_split(prob, node, G, lower, stats))
    return out


def _expand(
    prob: _Problem, parents: list[_Node], stats: SearchStats, width: int
) -> list[_Node]:
    """Children of pattern nodes, each with a verified bound from dual screening.

    A parent with patterns ``A`` assigned and tail ``t`` has children ``A + (S_j,)`` for
    ``j >= t``: a leaf (atoms exactly ``V(A) u V(S_j)``) when that makes ``K`` latents,
    else a pattern node whose completions use atoms in ``V(A) u tail_j``. Two residuals,
    ``R_A`` from the relaxation over ``V(A)`` alone and the parent's stored residual ``R_T``,
    and their convex combinations on a grid, are priced once over the vertices of every
    pattern; scaled by the exact maximum over a child's atom set, each is a dual-feasible
    point of that child, so its dual value is a verified bound for all of the child's SAEs.
    No child is solved here; a pattern child keeps its best residual for its own children.
    """
    assigned = [np.vstack([c.E for c in node.cones]) if node.cones else np.zeros((0, prob.n))
                for node in parents]
    Tc = prob.X - prob.X.mean(axis=0)
    if max(len(a) for a in assigned) == 0:
        R_A = np.repeat(Tc[None], len(parents), axis=0)
    else:
        E = _pad([a if len(a) else np.zeros((1, prob.n)) for a in assigned])
        res = solve_batch(E, prob.X, prob.lam, max_iter=300, rtol=1e-8)
        stats.nodes_evaluated += len(parents)
        R_A = prob.X[None] - res.b[:, None, :] - np.einsum("bmn,bmp->bnp", E, res.G)
        R_A -= R_A.mean(axis=1, keepdims=True)
    R_T = np.stack([node.resid for node in parents])
    n_pat = len(prob.cones)
    own_idx = [[c.pattern for c in node.cones] for node in parents]
    depth = len(parents[0].cones)
    if any(len(node.cones) != depth for node in parents):
        raise ValueError("pattern nodes of one batch must have the same depth")
    leaf_level = depth + 1 == width
    best = np.full((len(parents), n_pat), -np.inf)
    best_theta = np.zeros((len(parents), n_pat), dtype=np.intp)
    V_A, V_T = prob.all_vertices @ R_A, prob.all_vertices @ R_T  # (B, V, p) each
    for g, theta in enumerate(_SCREEN_GRID):
        R = theta * R_A + (1.0 - theta) * R_T
        vertex_prices = np.linalg.norm(theta * V_A + (1.0 - theta) * V_T, axis=2)
        pattern_prices = np.maximum.reduceat(vertex_prices, prob.vertex_offsets, axis=1)
        own = np.array([pattern_prices[b, idx].max() if idx else 0.0
                        for b, idx in enumerate(own_idx)])
        if not leaf_level:
            # A pattern child's atoms include every pattern of index >= j: suffix maxima.
            pattern_prices = np.maximum.accumulate(pattern_prices[:, ::-1], axis=1)[:, ::-1]
        price = np.maximum(own[:, None], pattern_prices) * (1.0 + PRICE_SAFETY)
        a = np.einsum("bnp,np->b", R, Tc)
        qq = np.einsum("bnp,bnp->b", R, R)
        value = _scaled_dual_values(a, qq, prob.lam / price, prob.n)
        better = value > best
        best = np.where(better, value, best)
        best_theta = np.where(better, g, best_theta)
    out: list[_Node] = []
    for b, node in enumerate(parents):
        children = np.arange(node.tail, n_pat)
        stats.screened += int(np.sum(best[b, children] > node.lower))
        for j in children:
            lower = max(node.lower, float(best[b, j]))
            cones = node.cones + (prob.cones[j],)
            if leaf_level:
                out.append(_Node(lower, cones, -1, 0))
            else:
                theta = _SCREEN_GRID[best_theta[b, j]]
                resid = theta * R_A[b] + (1.0 - theta) * R_T[b]
                out.append(_Node(lower, cones, int(j), 0, resid))
    return out


def _scaled_dual_values(a: np.ndarray, q: np.ndarray, t_max: np.ndarray, n: int) -> np.ndarray:
    """``max_{0 <= t <= t_max} (t a - t^2 q / 2) / n`` per row (the dual value along a ray).

    Shapes: ``a, q (B,)``, ``t_max (B, P)``; rows with ``q <= 0`` or ``a <= 0`` give 0.
    """
    ok = (q > 0) & (a > 0)
    t = np.minimum(np.where(ok, a / np.where(ok, q, 1.0), 0.0)[:, None], t_max)
    return (t * a[:, None] - 0.5 * t * t * q[:, None]) / n


def _relaxations(
    atoms: list[np.ndarray], prob: _Problem, threshold: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Verified bounds and iterates of many relaxations, batched by atom count.

    A relaxation stops as soon as it is decided: its bound reaches the threshold (prune) or
    its value is below it (branch). Those whose value is above the threshold but whose
    bound is not yet get a longer warm-started second pass.
    """
    lowers = np.empty(len(atoms))
    Gs: list[np.ndarray] = [np.empty(0)] * len(atoms)
    order = np.argsort([len(a) for a in atoms], kind="stable")
    for chunk in np.array_split(order, max(1, int(np.ceil(len(order) / 256)))):
        E = _pad([atoms[i] for i in chunk])
        res = solve_batch(
            E, prob.X, prob.lam, max_iter=600, check_every=10, stop_above=threshold,
            stop_below=threshold,
        )
        lower, G = res.lower.copy(), res.G
        again = np.flatnonzero((res.primal >= threshold) & (lower < threshold))
        if again.size:
            more = solve_batch(
                E[again], prob.X, prob.lam, G0=G[again], max_iter=4000, stop_above=threshold,
                stop_below=threshold,
            )
            lower[again] = np.maximum(lower[again], more.lower)
            G = G.copy()
            G[again] = more.G
        for pos, i in enumerate(chunk):
            lowers[i] = lower[pos]
            Gs[i] = G[pos, : len(atoms[i])]
    return lowers, Gs


def _split(prob: _Problem, node: _Node, G: np.ndarray, lower: float, stats: SearchStats):
    """Bisect the cone of the latent whose relaxation is spread the most.

    The cut bisects the chord between the two vertices whose decoders disagree most
    (weighted by their norms), which separates what the relaxation combined; every third
    split of a node's line bisects the longest chord instead, so every cone keeps
    shrinking (the bounds converge as the cones do).
    """
    spreads, blocks, start = [], [], 0
    for cone in node.cones:
        g = G[start : start + len(cone.E)]
        start += len(cone.E)
        blocks.append(g)
        spreads.append(float(np.linalg.norm(g, axis=1).sum() - np.linalg.norm(g.sum(axis=0))))
    order = np.argsort(-np.asarray(spreads), kind="stable")
    for k in order:
        cone = node.cones[k]
        M = prob.Yt * prob.masks[cone.pattern][:, None]
        pair = None if node.splits % 3 == 2 else _divergent_pair(cone.E, blocks[k])
        cut = bisecting_cut(cone.E, M, pair=pair)
        if cut is None:
            continue
        stats.spatial_splits += 1
        children = []
        for w in (cut, -cut):
            sub = prob.sub_cone(cone, w)
            if len(sub.E) == 0:
                continue
            cones = node.cones[:k] + (sub,) + node.cones[k + 1 :]
            children.append(_Node(lower, cones, -1, node.splits + 1))
            stats.max_depth = max(stats.max_depth, node.splits + 1)
        return children
    # Every cone is a single vertex, so the relaxation is exact: nothing left to branch on.
    # The node is closed with its (valid) bound; a remaining gap is solver accuracy.
    return [_Node(lower, node.cones, _CLOSED, node.splits)]


def _divergent_pair(E: np.ndarray, g: np.ndarray) -> tuple[int, int] | None:
    """Vertices ``(i, j)`` maximising ``||g_i|| ||g_j|| ||gh_i - gh_j|| ||e_i - e_j||``."""
    w = np.linalg.norm(g, axis=1)
    used = np.flatnonzero(w > 1e-12 * max(1.0, w.max(initial=0.0)))
    if used.size < 2:
        return None
    gh = g[used] / w[used, None]
    score = (
        w[used, None]
        * w[None, used]
        * np.linalg.norm(gh[:, None] - gh[None], axis=2)
        * np.linalg.norm(E[used][:, None] - E[used][None], axis=2)
    )
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    return (int(used[i]), int(used[j])) if score[i, j] > 0 else None


class _Display:
    """A one-line live display of the bounds (rich), or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.live = None
        if enabled:
            from rich.live import Live

            self.live = Live("", refresh_per_second=4, transient=True)
            self.live.start()

    def update(self, lower: float, upper: float, stats: SearchStats, n_open: int) -> None:
        if self.live is not None:
            self.live.update(
                f"branch and bound: lower {lower:.10g}  upper {upper:.10g}  "
                f"gap {upper - lower:.3g}  nodes {stats.nodes_evaluated:,}  open {n_open:,}  "
                f"splits {stats.spatial_splits:,}"
            )

    def stop(self) -> None:
        if self.live is not None:
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
) -> tuple[SAE | None, float, float, float, bool, str, dict[str, Any]]:
    """Run the search for :func:`convexdict.certify` and phrase its outcome.

    Data with more than ``MAX_PATTERNS`` possible activation patterns (Cover's count
    ``2 sum_(i<=r) C(N-1, i)``) get the wide lower bound only, with ``sae=None``.

    Returns ``(sae, lower, upper, gap, certified, message, search)``.
    """
    if width == 0:
        # The only width-0 SAE is a bias; the mean is its exact optimum.
        sae = SAE.zeros(X.mean(axis=0))
        loss = sae_loss(sae, X, lam)
        info = {"n_patterns": 0, "nodes_evaluated": 0, "budget_exhausted": ""}
        return sae, loss, loss, 0.0, True, "width-0 optimum (the mean) is exact", info
    rank = affine_frame(X).rank
    n_cells = 2 * sum(comb(X.shape[0] - 1, i) for i in range(rank + 1))
    if n_cells > MAX_PATTERNS:
        message = (
            f"width {width} < K* = {k_star}: only the lower bound is known at this width "
            f"(up to {n_cells:,} activation patterns, above the fixed-width branch and "
            f"bound's limit of {MAX_PATTERNS:,}; it is meant for small data sets)"
        )
        info = {"n_patterns": n_cells, "nodes_evaluated": 0, "budget_exhausted": "patterns"}
        return None, wide_lower, float("inf"), float("inf"), False, message, info
    offered = [_top_latents(wide_optimum, X, width), *_best_subsets(wide_optimum, X, lam, width)]
    offered += [SAE(*weights) for weights in random_restarts(X, lam, width)]
    for i, sae in enumerate(starts or []):
        if not isinstance(sae, SAE) or sae.width != width or sae.d_in != X.shape[1]:
            raise ValueError(
                f"The 'starts' parameter must hold SAEs of width {width} on {X.shape[1]} "
                f"inputs. Got {type(sae).__name__} at position {i}"
                + (f" (width {sae.width}, d_in {sae.d_in})." if isinstance(sae, SAE) else ".")
            )
        offered.append(sae)
    lower, best, stats = branch_and_bound(
        X,
        lam,
        width,
        lower_floor=wide_lower,
        wide_residual=X - wide_optimum.reconstruct(X),
        starts=offered,
        tol=tol,
        time_limit=time_limit,
        max_nodes=max_nodes,
        solver=solver,
        progress=progress,
    )
    upper = best.loss
    gap = upper - lower
    ok = bool(gap <= tol * max(1.0, abs(upper)))
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
    return best.sae, lower, upper, gap, ok, message, search_summary(stats)


def certify_width(X: np.ndarray, lam: float, width: int, **kwargs: Any):
    """``certify(X, lam, width=width, **kwargs)``: the certified optimum at a fixed width.

    Below ``K*`` this runs the branch and bound of this module; see
    :func:`convexdict.certify` for the options (``tol``, ``time_limit``, ``max_nodes``,
    ``starts``, ``progress``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.2]])
    >>> cert = certify_width(X, 0.05, 1)
    >>> cert.sae.width, cert.lower_bound <= cert.upper_bound
    (1, True)
    """
    from .certify import certify

    return certify(X, lam, width=width, **kwargs)
