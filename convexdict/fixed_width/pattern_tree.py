"""The fixed-width search tree: nodes, their verified bounds, and branching.

See :mod:`convexdict.fixed_width.search` for the method. A :class:`Node` assigns activation
patterns to latents (nondecreasing pattern index); a pattern node (``tail >= 0``) still has
latents to assign, a leaf has all ``K`` with one closed sub-cone each. Pattern nodes are
expanded with bounds from dual screening (:func:`expand_patterns`); leaves are solved in
batches (:func:`evaluate_leaves`), offered as incumbents, closed, or split in one cone.
Every bound here is the dual value of a residual scaled against an explicit finite atom set
that contains every vertex of the node's latents' polytopes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from convexdict_solvers.group_lasso.batched_fista import (
    dual_lower_bounds,
    scaled_dual_values,
    solve_batch,
)
from convexdict_solvers.group_lasso.cvxpy_solve import GroupLassoProblem, SolverFailure
from convexdict_solvers.pattern_cones import (
    bisecting_cut,
    cone_images,
    cone_rays,
    cut_cone_rays,
    distinct_rows,
    lifted,
    pattern_rows,
    realizable_patterns,
)

from convexdict.convex.atoms import AffineFrame
from convexdict.fixed_width.incumbents import Incumbent
from convexdict.models.sae import SAE

MAX_PATTERNS = 5_000
_SCREEN_GRID = np.linspace(0.0, 1.0, 11)
# A latent's relaxation is "rank one" (attained by one latent) when spreading it over
# non-parallel vertices gains at most this fraction of the tolerance.
_TIGHT_FRACTION = 1e-3
_DUP_TOL = 1e-12
CLOSED = -2  # tail marker of a node that is finished with its bound
#: Cut every latent that shares the split latent's cone at once (see :func:`_split_cones`).
SHARED_SPLIT = True
#: Leaf relaxations per batch on a torch device.
DEVICE_BATCH = 4096


@dataclass(frozen=True, eq=False)
class Cone:
    """One latent's region: a closed sub-cone of pattern ``pattern``'s cone."""

    pattern: int
    cuts: np.ndarray  # (c, q) rows w with w . u >= 0
    rays: np.ndarray  # (k, q) extreme rays scaled so that their images sum to 1
    E: np.ndarray  # (k, N) their images (the polytope's vertices)
    all_rays: np.ndarray  # (k0, q) every extreme ray, zero images included (unit norm)


@dataclass(eq=False)
class Node:
    lower: float
    cones: tuple[Cone, ...]
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



class Problem:
    """Data, realizable patterns and each pattern's cone and vertex images."""

    def __init__(self, X: np.ndarray, lam: float, frame: AffineFrame,
                 device: str | None = None) -> None:
        self.X, self.lam, self.frame = X, lam, frame
        self.device = device  # leaf relaxations on this torch device (None: numpy)
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
        alone = pad([c.E for c in cones])
        single = solve_batch(alone, X, lam, max_iter=300, rtol=1e-6).primal
        order = np.argsort(single, kind="stable")
        self.masks = masks[order]
        self.cones = [
            Cone(i, cones[j].cuts, cones[j].rays, cones[j].E, cones[j].all_rays)
            for i, j in enumerate(order)
        ]
        self.all_vertices = np.vstack([c.E for c in self.cones])
        self.vertex_offsets = np.cumsum([0] + [len(c.E) for c in self.cones])[:-1]

    def _cone(self, mask: np.ndarray, cuts: np.ndarray, pattern: int = -1) -> Cone:
        rows = np.vstack([pattern_rows(self.Yt, mask), cuts])
        all_rays = cone_rays(rows)
        rays, E = cone_images(self.Yt, mask, all_rays)
        keep = distinct_rows(E, _DUP_TOL)
        return Cone(pattern, cuts, rays[keep], E[keep], all_rays)

    def sub_cone(self, cone: Cone, cut: np.ndarray) -> Cone:
        """``cone`` intersected with ``{u : cut . u >= 0}`` (one double-description step)."""
        mask = self.masks[cone.pattern]
        rows = np.vstack([pattern_rows(self.Yt, mask), cone.cuts])
        rays = cut_cone_rays(rows, cone.all_rays, cut)
        images_rays, E = cone_images(self.Yt, mask, rays)
        keep = distinct_rows(E, _DUP_TOL)
        return Cone(cone.pattern, np.vstack([cone.cuts, cut[None]]), images_rays[keep], E[keep],
                     rays)

    def atoms(self, node: Node) -> np.ndarray:
        """A leaf's atoms: the vertex images of its latents' cones, stacked."""
        return np.vstack([c.E for c in node.cones])


def pad(blocks: list[np.ndarray]) -> np.ndarray:
    m = max(len(b) for b in blocks)
    out = np.zeros((len(blocks), m, blocks[0].shape[1]))
    for i, b in enumerate(blocks):
        out[i, : len(b)] = b
    return out


def _latent_blocks(node: Node, G: np.ndarray) -> list[np.ndarray]:
    """``G``'s rows per latent (each cone's vertices are consecutive atoms of a leaf)."""
    return np.split(G, np.cumsum([len(c.E) for c in node.cones])[:-1])


def _merged_sae(prob: Problem, node: Node, G: np.ndarray) -> tuple[SAE, float]:
    """The width-``K`` SAE that merges each latent's vertices, and its spread excess.

    Latent ``k`` takes the convex combination ``u_k = sum_v theta_v rho_v`` of its cone's
    rays with ``theta_v`` proportional to ``||g_v||`` (so its activation is
    ``sum_v theta_v e_v``) and decoder ``sum_v g_v``. The *excess*
    ``max_k (sum_v ||g_v|| - ||sum_v g_v||)`` is zero exactly when the merge attains the
    relaxation's value.
    """
    d = prob.X.shape[1]
    W_enc, b_enc, W_dec = np.zeros((d, len(node.cones))), np.zeros(len(node.cones)), []
    excess = 0.0
    for k, (cone, g) in enumerate(zip(node.cones, _latent_blocks(node, G), strict=True)):
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



def _precise_lower(E: np.ndarray, X: np.ndarray, lam: float, solver: str) -> float:
    """A tighter verified bound for one node: CVXPY solve, then the same dual check."""
    try:
        sol = GroupLassoProblem(E, X).solve(lam, solver=solver)
    except SolverFailure:
        return -np.inf
    return float(dual_lower_bounds(E[None], X, sol.G[None], lam)[0])



def evaluate_leaves(
    prob: Problem,
    batch: list[Node],
    best: Incumbent,
    threshold,
    solver: str,
    stats: SearchStats,
) -> list[Node]:
    """Solve the leaves' relaxations; return children (and closed nodes with their bounds)."""
    atoms = [prob.atoms(node) for node in batch]
    lowers, Gs = _relaxations(atoms, prob, threshold())
    stats.nodes_evaluated += len(batch)
    out: list[Node] = []
    for i, node in enumerate(batch):
        lower = max(node.lower, float(lowers[i]))
        if lower >= threshold():
            out.append(Node(lower, node.cones, node.tail, node.splits))
            continue
        G = Gs[i]
        candidate, excess = _merged_sae(prob, node, G)
        best.offer(candidate)
        if lower >= threshold():
            out.append(Node(lower, node.cones, node.tail, node.splits))
            continue
        scale = prob.n * _TIGHT_FRACTION * (best.loss - threshold()) / prob.lam
        if excess <= scale:
            # The relaxation is attained: only the solver's accuracy separates the bounds.
            lower = max(lower, _precise_lower(atoms[i], prob.X, prob.lam, solver))
            if lower >= threshold():
                out.append(Node(lower, node.cones, node.tail, node.splits))
                continue
        out.extend(_split(prob, node, G, lower, stats))
    return out


def expand_patterns(
    prob: Problem, parents: list[Node], stats: SearchStats, width: int
) -> list[Node]:
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
        E = pad([a if len(a) else np.zeros((1, prob.n)) for a in assigned])
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
        price = np.maximum(own[:, None], pattern_prices)
        a = np.einsum("bnp,np->b", R, Tc)
        qq = np.einsum("bnp,bnp->b", R, R)
        value = scaled_dual_values(a, qq, price, prob.lam, prob.n)
        better = value > best
        best = np.where(better, value, best)
        best_theta = np.where(better, g, best_theta)
    out: list[Node] = []
    for b, node in enumerate(parents):
        children = np.arange(node.tail, n_pat)
        stats.screened += int(np.sum(best[b, children] > node.lower))
        for j in children:
            lower = max(node.lower, float(best[b, j]))
            cones = node.cones + (prob.cones[j],)
            if leaf_level:
                out.append(Node(lower, cones, -1, 0))
            else:
                theta = _SCREEN_GRID[best_theta[b, j]]
                resid = theta * R_A[b] + (1.0 - theta) * R_T[b]
                out.append(Node(lower, cones, int(j), 0, resid))
    return out


def _relaxations(
    atoms: list[np.ndarray], prob: Problem, threshold: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Verified bounds and iterates of many relaxations, batched by atom count.

    A relaxation stops as soon as it is decided: its bound reaches the threshold (prune) or
    its value is below it (branch). Those whose value is above the threshold but whose
    bound is not yet get a longer warm-started second pass.
    """
    lowers = np.empty(len(atoms))
    Gs: list[np.ndarray] = [np.empty(0)] * len(atoms)
    order = np.argsort([len(a) for a in atoms], kind="stable")
    # On a device, bigger batches (the bounds are still verified on the host).
    solve = partial(solve_batch, device=prob.device)
    chunk_size = 256 if prob.device is None else DEVICE_BATCH
    for chunk in np.array_split(order, max(1, int(np.ceil(len(order) / chunk_size)))):
        E = pad([atoms[i] for i in chunk])
        res = solve(
            E, prob.X, prob.lam, max_iter=600, check_every=10, stop_above=threshold,
            stop_below=threshold,
        )
        lower, G = res.lower.copy(), res.G
        again = np.flatnonzero((res.primal >= threshold) & (lower < threshold))
        if again.size:
            more = solve(
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


def _split(prob: Problem, node: Node, G: np.ndarray, lower: float, stats: SearchStats):
    """Bisect the cone of the latent whose relaxation is spread the most.

    The cut bisects the chord between the two vertices whose decoders disagree most
    (weighted by their norms), which separates what the relaxation combined; every third
    split of a node's line bisects the longest chord instead, so every cone keeps
    shrinking (the bounds converge as the cones do).
    """
    blocks = _latent_blocks(node, G)
    spreads = [float(np.linalg.norm(g, axis=1).sum() - np.linalg.norm(g.sum(axis=0)))
               for g in blocks]
    order = np.argsort(-np.asarray(spreads), kind="stable")
    for k in order:
        cone = node.cones[k]
        M = prob.Yt * prob.masks[cone.pattern][:, None]
        pair = None if node.splits % 3 == 2 else _divergent_pair(cone.E, blocks[k])
        cut = bisecting_cut(cone.E, M, pair=pair)
        if cut is None:
            continue
        stats.spatial_splits += 1
        children = [Node(lower, cones, -1, node.splits + 1)
                    for cones in _split_cones(prob, node.cones, k, cut)]
        stats.max_depth = max(stats.max_depth, node.splits + 1)
        return children
    # Every cone is a single vertex, so the relaxation is exact: nothing left to branch on.
    # The node is closed with its (valid) bound; a remaining gap is solver accuracy.
    return [Node(lower, node.cones, CLOSED, node.splits)]


def _split_cones(prob: Problem, cones: tuple[Cone, ...], k: int, cut: np.ndarray):
    """The children's cone tuples when latent ``k``'s cone is cut by ``cut . u >= 0``.

    Symmetry breaking between latents that share a cone: latents whose cone is the same
    object as latent ``k``'s (same pattern, never split apart) are interchangeable, so with
    ``m`` of them the children are "the first ``i`` of them in the ``+`` half, the other
    ``m - i`` in the ``-`` half" for ``i = 0..m`` (``m + 1`` children; splitting them one at
    a time would reach the same ``m + 1`` multisets along ``2^m`` branches). Every SAE of the
    node is, after permuting those latents (which leaves its loss unchanged), in one child.
    With :data:`SHARED_SPLIT` off, only latent ``k`` is cut (two children).
    """
    cone = cones[k]
    group = [j for j, c in enumerate(cones) if c is cone] if SHARED_SPLIT else [k]
    plus, minus = prob.sub_cone(cone, cut), prob.sub_cone(cone, -cut)
    out = []
    for i in range(len(group) + 1):
        if (i and not len(plus.E)) or (i < len(group) and not len(minus.E)):
            continue
        new = list(cones)
        for pos, j in enumerate(group):
            new[j] = plus if pos < i else minus
        out.append(tuple(new))
    if len(group) == 1:
        out.reverse()  # the + half first, as before
    return out


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
