"""Activation-pattern cones: realizable patterns, extreme rays, images and bisection.

A latent with pre-activation weights ``u in R^{r+1}`` (acting on ``yt = (y, 1)``) fires on
the samples with ``yt_n . u > 0``. The full-dimensional cells of the central hyperplane
arrangement ``{u : yt_n . u = 0}`` are the **realizable activation patterns** ``S``; on the
closed cone of a pattern,

    C_S = {u : yt_n . u >= 0 for n in S,  yt_n . u <= 0 for n not in S},

the activation ``relu(Yt u)`` equals the linear map ``mask_S * (Yt u)``, so the
normalised activations of any closed sub-cone ``Q`` of ``C_S`` are the convex hull of the
images of ``Q``'s extreme rays (THEORY section 2). This is what the fixed-width branch and
bound (:mod:`convexdict.fixed_width.search`) bounds over.

Conventions: ``Y`` is in the reduced, centred, unit-scaled coordinates of
:class:`convexdict.convex.atoms.AffineFrame` (full affine rank ``r``, so ``Yt`` has rank ``r + 1``
and every cone here is pointed). A ray is accepted when every constraint holds up to
``FEAS_TOL`` (unit-norm rows, unit-norm ray): accepting a ray slightly outside a cone only
enlarges a relaxation, which keeps every lower bound valid, whereas rejecting a true
extreme ray would not.
"""

from __future__ import annotations

from itertools import combinations, product

import numpy as np
from convexdict_solvers.pricing.exact import RANK_TOL, hyperplanes_through
from scipy.optimize import linprog

FEAS_TOL = 1e-8
ZERO_SIDE_TOL = 1e-10
DEDUP_TOL = 1e-9
MIN_IMAGE_SUM = 1e-12
ADJ_ACTIVE_TOL = 1e-7
ADJ_RANK_TOL = 1e-9


def lifted(Y: np.ndarray) -> np.ndarray:
    """``Yt = [Y, 1]`` of shape ``(N, r + 1)``."""
    return np.hstack([Y, np.ones((Y.shape[0], 1))])


def distinct_rows(A: np.ndarray, tol: float = DEDUP_TOL) -> np.ndarray:
    """Indices of the first occurrence of each row of ``A`` (max-abs difference ``> tol``)."""
    keep: list[int] = []
    for i in range(len(A)):
        if not keep or np.abs(A[keep] - A[i]).max(axis=1).min() > tol:
            keep.append(i)
    return np.array(keep, dtype=np.intp)


def cone_rays(A: np.ndarray) -> np.ndarray:
    """Extreme rays of the pointed cone ``{u : A u >= 0}``.

    Every extreme ray of a pointed cone in ``R^q`` has ``q - 1`` linearly independent
    active constraints, so all ``(q - 1)``-subsets of rows are tried (both orientations of
    each null vector).

    Parameters
    ----------
    A : ndarray of shape (m, q)
        Constraint rows (normalised to unit norm here).

    Returns
    -------
    ndarray of shape (k, q)
        Unit-norm extreme rays (``k = 0`` when the cone is ``{0}``).
    """
    m, q = A.shape
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    if q == 1:
        rays = [u for u in (np.ones(1), -np.ones(1)) if (An @ u >= -FEAS_TOL).all()]
        return np.array(rays).reshape(-1, 1)
    subsets = np.array(list(combinations(range(m), q - 1)), dtype=np.intp)
    if subsets.size == 0:
        return np.zeros((0, q))
    sub = An[subsets]  # (B, q-1, q)
    _, s, vh = np.linalg.svd(sub, full_matrices=True)
    independent = s[:, -1] > RANK_TOL
    null = vh[independent, -1, :]
    cand = np.vstack([null, -null])
    ok = (cand @ An.T >= -FEAS_TOL).all(axis=1)
    rays = cand[ok]
    if len(rays) == 0:
        return np.zeros((0, q))
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    return rays[distinct_rows(rays)]


def cut_cone_rays(A: np.ndarray, rays: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Extreme rays of ``{u : A u >= 0, w . u >= 0}`` from those of ``{u : A u >= 0}``.

    One step of the double-description method: keep the rays on the nonnegative side and
    add, for each pair ``(i, j)`` with ``w . rho_i > 0 > w . rho_j`` that is adjacent, the
    point where the edge between them meets the cut. Adjacency is the rank test (the
    constraints active at both rays have rank ``q - 2``); it counts constraints as active
    generously and ranks with a small threshold, so numerical doubt keeps a pair: an extra
    point inside the cone leaves the convex hull of the images unchanged, a missing
    vertex would not.

    Parameters
    ----------
    A : ndarray of shape (m, q)
        The parent cone's constraint rows.
    rays : ndarray of shape (k, q)
        All extreme rays of the parent cone (any positive scaling).
    w : ndarray of shape (q,)
        The cut.

    Returns
    -------
    ndarray of shape (k', q)
        Unit-norm extreme rays of the cut cone (possibly with a few extra points inside).
    """
    q = A.shape[1]
    R = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    side = R @ (w / np.linalg.norm(w))
    pos, neg = np.flatnonzero(side > FEAS_TOL), np.flatnonzero(side < -FEAS_TOL)
    keep = [R[side >= -FEAS_TOL]]
    active = np.abs(R @ An.T) <= ADJ_ACTIVE_TOL
    for i in pos:
        for j in neg:
            common = An[active[i] & active[j]]
            if q > 2 and (
                len(common) < q - 2
                or np.linalg.svd(common, compute_uv=False)[q - 3] <= ADJ_RANK_TOL
            ):
                continue
            u = side[i] * R[j] - side[j] * R[i]
            keep.append((u / np.linalg.norm(u))[None])
    out = np.vstack(keep)
    return out[distinct_rows(out)] if len(out) else np.zeros((0, q))


def pattern_rows(Yt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Constraint rows of the closed pattern cone ``C_S``: ``+yt_n`` on ``S``, ``-yt_n`` off it."""
    return np.where(mask[:, None], Yt, -Yt)


def cone_images(
    Yt: np.ndarray, mask: np.ndarray, rays: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised images of a pattern sub-cone's rays.

    Parameters
    ----------
    Yt : ndarray of shape (N, q)
    mask : ndarray of shape (N,), bool
        The pattern ``S``.
    rays : ndarray of shape (k, q)

    Returns
    -------
    rays : ndarray of shape (k', q)
        Rays with a nonzero image, rescaled so that their images sum to 1.
    E : ndarray of shape (k', N)
        ``mask * (Yt u)`` for each rescaled ray (rows sum to 1).
    """
    A = (rays @ Yt.T) * mask[None, :]
    s = A.sum(axis=1)
    keep = s > MIN_IMAGE_SUM
    return rays[keep] / s[keep, None], A[keep] / s[keep, None]


def _perturbation_feasible(rows: np.ndarray) -> bool:
    """Is there ``v`` with ``rows @ v > 0`` (strictly)? Solved as ``rows @ v >= 1``."""
    res = linprog(
        np.zeros(rows.shape[1]),
        A_ub=-rows,
        b_ub=-np.ones(len(rows)),
        bounds=[(None, None)] * rows.shape[1],
        method="highs",
    )
    return res.status == 0


def realizable_patterns(Y: np.ndarray) -> np.ndarray:
    """Every realizable nonempty activation pattern of ``Y``.

    The cells of the arrangement are pointed cones, so each has an extreme ray, which
    lies on a hyperplane through ``r`` affinely independent points (an ``E0`` hyperplane,
    either orientation). The cells around such a ray are its sign pattern with the points
    on the hyperplane perturbed to either side; with exactly ``r`` points on it every
    perturbation is realizable, otherwise each is checked by a linear program.

    Parameters
    ----------
    Y : ndarray of shape (N, r)
        Reduced coordinates of full affine rank ``r >= 1``.

    Returns
    -------
    ndarray of shape (P, N), bool
        Distinct patterns (the empty pattern excluded; the full pattern included).
    """
    n, r = Y.shape
    Yt = lifted(Y)
    subsets = np.array(list(combinations(range(n), r)), dtype=np.intp)
    U, independent = hyperplanes_through(Y, subsets)
    U = U[independent]
    seen: set[bytes] = set()
    patterns: list[np.ndarray] = []
    for u0 in np.vstack([U, -U]):
        side = Yt @ u0
        zero = np.abs(side) <= ZERO_SIDE_TOL
        base = side > ZERO_SIDE_TOL
        idx = np.flatnonzero(zero)
        for signs in product((False, True), repeat=len(idx)):
            mask = base.copy()
            mask[idx] = signs
            key = mask.tobytes()
            if key in seen or not mask.any():
                continue
            if len(idx) > r:
                sign = np.where(np.asarray(signs), 1.0, -1.0)
                if not _perturbation_feasible(sign[:, None] * Yt[idx]):
                    continue
            seen.add(key)
            patterns.append(mask)
    return np.array(patterns, dtype=bool).reshape(-1, n)


def bisecting_cut(
    E: np.ndarray, M: np.ndarray, *, pair: tuple[int, int] | None = None
) -> np.ndarray | None:
    """A homogeneous cut bisecting a pattern sub-cone's image along its longest chord.

    On a pattern cone the normalised activation is ``e(u) = M u / (1^T M u)`` with
    ``M = mask * Yt``. For the longest chord ``(E[i], E[j])`` of the image polytope, with
    ``n = E[i] - E[j]`` and midpoint ``c``, the row ``w = M^T (n - (n . c) 1)`` satisfies
    ``w . u = (1^T M u) * n . (e(u) - c)``: ``w . u >= 0`` is the half of the polytope on
    ``E[i]``'s side of the bisecting hyperplane and ``w . u <= 0`` the other half, so
    repeated cuts shrink the image's diameter.

    Parameters
    ----------
    E : ndarray of shape (k, N)
        The sub-cone's vertex images (rows sum to 1).
    M : ndarray of shape (N, q)
        ``mask[:, None] * Yt``.
    pair : (int, int), optional
        Bisect the chord between these two vertices instead of the longest one.

    Returns
    -------
    ndarray of shape (q,) or None
        The cut row (unit norm), or None for fewer than two vertices.
    """
    if len(E) < 2:
        return None
    if pair is None:
        D = np.linalg.norm(E[:, None, :] - E[None, :, :], axis=2)
        i, j = np.unravel_index(int(np.argmax(D)), D.shape)
    else:
        i, j = pair
    normal = E[i] - E[j]
    mid = 0.5 * (E[i] + E[j])
    w = M.T @ (normal - float(normal @ mid))
    return w / np.linalg.norm(w)
