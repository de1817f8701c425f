"""A width-aware lower bound in 2-D: paper A's joint problem at width ``K`` (J_K).

Every width-``K`` SAE's codes are feasible free codes, so (docs/theory.md section 12)

    loss(SAE) >= J_K = min_{b, unit v_1..v_K, C >= 0} (1/N) sum_n phi_n,
    phi_n = 1/2 ||x_n - b - sum_k c_nk v_k||^2 + lam sum_k c_nk.

For ``d = 2`` the variables that are not separable over samples are the bias ``b`` and ``K``
angles. :func:`joint_width_bound` runs a best-first branch and bound over boxes
``b in B``, ``theta_k in A_k`` (arcs of at most ``pi / 2``), with the latents ordered by
angle (they are interchangeable). A box's bound is weak duality with one dual point
``r_n`` per sample: for any ``r_n`` with ``max_{v in A_k} r_n . v <= lam`` for every ``k``,

    (1/N) sum_n phi_n >= (1/N) [ sum_n (<r_n, x_n - b_c> - ||r_n||^2 / 2)
                                 - sum_i |sum_n r_ni| h_i ]

for every ``b`` in the box (centre ``b_c``, half-widths ``h``) and every choice of
directions in the arcs (proof in docs/theory.md section 12). ``r_n`` is the residual of the
exact two-atom solve at the box's centre, scaled into the feasible set. Biases farther than
``rho`` from the mean are excluded by a Huber argument (also proved there).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
from convexdict_solvers.duality import best_on_ray, feasible_scale
from convexdict_solvers.progress import Display

_SAFETY = 1e-12  # relative inflation of the arc support values (rounding)


@dataclass
class JointWidthBound:
    """Result of :func:`joint_width_bound`.

    Attributes
    ----------
    lower : float
        Verified lower bound on the loss of every SAE of width ``<= K`` (and on J_K).
    boxes : int
        Boxes evaluated.
    open_boxes : int
        Boxes left when the search stopped.
    finished : bool
        The search closed every box (the bound then meets ``upper`` within ``tol``). It
        also stops early when the bound rose by less than ``max(tol, 1e-5) * upper`` over
        the second half of its run (stalled).
    seconds : float
    history : list of (seconds, lower)
    """

    lower: float
    boxes: int = 0
    open_boxes: int = 0
    finished: bool = False
    seconds: float = 0.0
    history: list[tuple[float, float]] = field(default_factory=list)


def _centre_solve(Z: np.ndarray, V: np.ndarray, lam: float) -> np.ndarray:
    """Residuals ``z - sum_k c_k v_k`` of the nonnegative lasso with unit atoms ``V``.

    ``Z (B, N, 2)``, ``V (B, K, 2)``; supports of size 0, 1 and 2 are enumerated in closed
    form and the best feasible one kept (in 2-D an optimal fit uses at most two atoms).
    Any residual is a valid dual candidate; optimality only makes the bound tight.
    """
    B, N, _ = Z.shape
    K = V.shape[1]
    best_r = Z.copy()
    best_f = 0.5 * np.einsum("bnd,bnd->bn", Z, Z)
    for k in range(K):
        v = V[:, k, None, :]
        c = np.maximum(np.einsum("bnd,bkd->bn", Z, v) - lam, 0.0)
        r = Z - c[..., None] * v
        f = 0.5 * np.einsum("bnd,bnd->bn", r, r) + lam * c
        better = f < best_f
        best_f = np.where(better, f, best_f)
        best_r = np.where(better[..., None], r, best_r)
    for j, k in itertools.combinations(range(K), 2):
        M = np.stack([V[:, j], V[:, k]], axis=2)  # (B, 2, 2): columns v_j, v_k
        det = M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
        ok = np.abs(det) > 1e-9
        Minv = np.zeros_like(M)
        Minv[ok] = np.linalg.inv(M[ok])
        # KKT with both active: M^T r = lam 1, r = z - M c  =>  c = M^{-1} z - lam (M^T M)^{-1} 1
        w = np.einsum("bij,bj->bi", Minv, np.einsum("bji,bj->bi", Minv, np.ones((B, 2))))
        c = np.einsum("bij,bnj->bni", Minv, Z) - lam * w[:, None, :]
        r = Z - np.einsum("bij,bnj->bni", M, c)
        f = 0.5 * np.einsum("bnd,bnd->bn", r, r) + lam * c.sum(axis=2)
        better = (f < best_f) & (c >= 0).all(axis=2) & ok[:, None]
        best_f = np.where(better, f, best_f)
        best_r = np.where(better[..., None], r, best_r)
    return best_r


def _box_bounds(X: np.ndarray, lam: float, bc: np.ndarray, h: np.ndarray,
                alpha: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Verified bounds of boxes ``bc, h (B, 2)``, arcs ``alpha, delta (B, K)``."""
    n = X.shape[0]
    Z = X[None] - bc[:, None, :]
    V = np.stack([np.cos(alpha), np.sin(alpha)], axis=2)
    R = _centre_solve(Z, V, lam)
    norm = np.linalg.norm(R, axis=2)
    theta = np.arctan2(R[..., 1], R[..., 0])
    diff = np.abs((theta[:, :, None] - alpha[:, None, :] + np.pi) % (2 * np.pi) - np.pi)
    sigma = norm[..., None] * np.cos(np.clip(diff - delta[:, None, :], 0.0, np.pi))
    sigma = sigma.max(axis=2) * (1 + _SAFETY) + _SAFETY * lam
    a = np.einsum("bnd,bnd->bn", R, Z)
    value, t = best_on_ray(a, norm**2, feasible_scale(lam, sigma))
    R = R * t[..., None]
    coupling = (np.abs(R.sum(axis=1)) * h).sum(axis=1)  # min over b in the box
    total = value.sum(axis=1) - coupling
    return (total - _SAFETY * np.abs(value).sum(axis=1)) / n


def _stalled(history: list[tuple[float, float]], now: float, step: float) -> bool:
    """The bound rose by less than ``step`` over the second half of the run (after 2 s):
    the rest is the amortisation gap ``L_K - J_K`` or needs far smaller boxes."""
    if now < 2.0:
        return False
    half = next(v for t, v in history if t >= now / 2)
    return history[-1][1] - half < step


def _hopeless(history: list[tuple[float, float]], now: float, limit: float,
              floor: float) -> bool:
    """Below ``floor`` after a quarter of the budget, and the rise over the second half of
    the run, extrapolated to the rest of the budget, does not reach it."""
    if now < max(2.0, 0.25 * limit) or history[-1][1] >= floor:
        return False
    half = next(v for t, v in history if t >= now / 2)
    if not math.isfinite(half):
        return False
    rate = (history[-1][1] - half) / (now / 2)
    return history[-1][1] + rate * (limit - now) < floor


def _ordered(lo: np.ndarray, hi: np.ndarray) -> bool:
    """Some nondecreasing angles ``theta_1 <= .. <= theta_K`` lie in the arcs."""
    return bool(np.all(np.maximum.accumulate(lo) <= hi + 1e-15))


def joint_width_bound(
    X: np.ndarray,
    lam: float,
    width: int,
    upper: float,
    *,
    tol: float = 1e-4,
    time_limit: float | None = 30.0,
    max_boxes: int = 2_000_000,
    batch: int = 512,
    floor: float = -math.inf,
    progress: bool = False,
) -> JointWidthBound:
    """Verified lower bound on every SAE of width ``<= K`` on 2-D data (module docstring).

    Parameters
    ----------
    X : ndarray of shape (N, 2)
    lam : float
    width : int
        ``K >= 1``.
    upper : float
        The loss of an explicit SAE of width ``<= K`` (prunes, and excludes far biases).
    tol : float
        Boxes whose bound is within ``tol * upper`` of ``upper`` close.
    time_limit : float or None
    max_boxes : int
    batch : int
        Boxes evaluated together.
    floor : float
        A bound already known (e.g. ``P*``): with a ``time_limit``, the search gives up when
        its rate of progress projects no rise above ``floor`` within the budget.
    progress : bool
        Show the bracket ``[lower, upper]`` tightening (rich).

    Returns
    -------
    JointWidthBound
        ``lower <= upper``; never above the loss of any SAE of width ``<= K``.
    """
    start = time.perf_counter()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"The 'X' parameter must have 2 columns. Got shape {X.shape}.")
    if width < 1 or not math.isfinite(upper):
        return JointWidthBound(lower=-math.inf)
    m = X.mean(axis=0)
    rho = (upper + 0.5 * lam * lam) / lam + np.linalg.norm(X - m, axis=1).mean()
    rho *= 1 + 1e-9
    threshold = upper - tol * upper
    # Initial boxes: a 2 x 2 grid on the bias square, arcs of width pi / 4 (ordered).
    arcs = [(np.pi / 8 + i * np.pi / 4, np.pi / 8) for i in range(8)]
    heap: list[tuple[float, int, tuple]] = []
    counter = itertools.count()
    for corner in itertools.product((-0.5, 0.5), repeat=2):
        bc = m + rho * np.array(corner)
        for combo in itertools.combinations_with_replacement(range(8), width):
            alpha = np.array([arcs[i][0] for i in combo])
            delta = np.array([arcs[i][1] for i in combo])
            box = (bc, np.full(2, rho / 2), alpha, delta)
            heapq.heappush(heap, (-math.inf, next(counter), box))
    out = JointWidthBound(lower=-math.inf)
    display = Display("J_K search", enabled=progress, transient=True) if progress else None
    try:
        _search(X, lam, upper, heap, counter, threshold, out, start, time_limit, max_boxes,
                batch, floor, tol, display)
    finally:
        if display is not None:
            display.stop()
    out.seconds = time.perf_counter() - start
    return out


def _search(X, lam, upper, heap, counter, threshold, out, start, time_limit, max_boxes, batch,
            floor, tol, display) -> None:
    """The best-first loop of :func:`joint_width_bound` (fills ``out``)."""
    pruned = math.inf
    n_eval = 0
    while heap:
        if time_limit is not None and time.perf_counter() - start > time_limit:
            break
        if n_eval >= max_boxes:
            break
        items = [heapq.heappop(heap) for _ in range(min(batch, len(heap)))]
        children, parents = [], []
        for parent, _, (bc, h, alpha, delta) in items:
            kids = _split(bc, h, alpha, delta, X)
            children += kids
            parents += [parent] * len(kids)
        if not children:
            continue
        arr = [np.array([c[i] for c in children]) for i in range(4)]
        # A child lies in its parent, so the parent's bound holds for it too.
        bounds = np.maximum(_box_bounds(X, lam, *arr), parents)
        n_eval += len(children)
        for box, value in zip(children, bounds, strict=True):
            if value >= threshold:
                pruned = min(pruned, float(value))
            else:
                heapq.heappush(heap, (float(value), next(counter), box))
        open_lower = heap[0][0] if heap else math.inf
        now = time.perf_counter() - start
        out.history.append((now, min(pruned, open_lower, upper)))
        lower_now = out.history[-1][1]
        if display is not None:
            display.update(
                f"joint bound J_K: bracket [{max(lower_now, floor):.10g}, {upper:.10g}]  "
                f"relative width {(upper - max(lower_now, floor)) / upper:.3%}  "
                f"boxes {n_eval:,}  open {len(heap):,}")
        if time_limit is not None and (
            _stalled(out.history, now, max(tol, 1e-5) * upper)
            or _hopeless(out.history, now, time_limit, floor)
        ):
            break
    open_lower = min((e[0] for e in heap), default=math.inf)
    out.lower = min(pruned, open_lower, upper)
    out.boxes, out.open_boxes, out.finished = n_eval, len(heap), not heap


def _split(bc: np.ndarray, h: np.ndarray, alpha: np.ndarray, delta: np.ndarray,
           X: np.ndarray) -> list[tuple]:
    """Halve the box along its widest dimension (bias half-widths against arc half-widths
    times the data's spread); children whose arcs admit no ordered angles are dropped."""
    spread = float(np.linalg.norm(X - X.mean(axis=0), axis=1).mean()) or 1.0
    scores = np.concatenate([h, delta * spread])
    i = int(np.argmax(scores))
    out = []
    for sign in (-1.0, 1.0):
        bc2, h2, a2, d2 = bc.copy(), h.copy(), alpha.copy(), delta.copy()
        if i < 2:
            h2[i] = h[i] / 2
            bc2[i] = bc[i] + sign * h2[i]
        else:
            k = i - 2
            d2[k] = delta[k] / 2
            a2[k] = alpha[k] + sign * d2[k]
        if _ordered(a2 - d2, a2 + d2):
            out.append((bc2, h2, a2, d2))
    return out
