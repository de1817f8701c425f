"""The reduced restricted group lasso: duality gap, gap-safe screening, FISTA, Newton.

With the bias eliminated (centred atoms ``Ec (m, N)``, centred target ``Tc (N, p)``), the
group lasso over ``m`` atoms is, up to the factor ``1/N`` of (P),

    f(G) = 1/2 ||Tc - Ec^T G||_F^2 + lam * sum_i sum_g ||G[i, g]||
         = 1/2 c0 - <C, G> + 1/2 <G, Q G> + lam * sum_i sum_g ||G[i, g]||,

    Q = Ec Ec^T (m, m),   C = Ec Tc (m, p),   c0 = ||Tc||_F^2,

so everything here costs a power of ``m``, never ``N``. :func:`solve_reduced` runs
restarted FISTA on the diagonally scaled problem, screens atoms with the gap-safe sphere
test (:func:`screen`), tries a Newton finish (:func:`newton_finish`) whenever FISTA's
support has settled, and stops when the restricted duality gap (:func:`restricted_gap`)
is below a relative target. Used by :mod:`convexdict_solvers.group_lasso.warm_master`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from convexdict_solvers.duality import best_on_ray, feasible_scale

#: Relative slack on ``lam`` in the screening test (float rounding of the sphere test).
SCREEN_MARGIN = 1e-9
#: Damped Newton steps per pass of :func:`newton_finish`.
NEWTON_STEPS = 10


@dataclass(frozen=True)
class WarmSettings:
    """Settings of the warm master.

    Attributes
    ----------
    rtol : float
        Relative target on the restricted duality gap, ``gap <= rtol * f(G)``. The cold
        Clarabel solve (tolerances ``1e-10``) typically ends at ``1e-11`` to ``1e-8`` by this
        measure; the Newton finish usually reaches ``1e-15``.
    max_iter : int
        FISTA iterations before the cold fallback.
    check_every : int
        Iterations between gap checks (each costs about one iteration).
    screen : bool
        Gap-safe screening at every check.
    newton : bool
        Try a Newton finish whenever FISTA's support has settled.
    """

    rtol: float = 1e-12
    max_iter: int = 5000
    check_every: int = 20
    screen: bool = True
    newton: bool = True


@dataclass(frozen=True)
class Gap:
    """Primal value, dual point and duality gap of the reduced problem at ``G``.

    Attributes
    ----------
    primal : float
        ``f(G)``.
    gap : float
        ``f(G) - D(t R)``, ``>= 0`` up to rounding.
    t : float
        Scale of the dual point ``t R``.
    S : ndarray of shape (m, p)
        ``Ec R = C - Q G``, the atoms' correlations with the residual.
    """

    primal: float
    gap: float
    t: float
    S: np.ndarray


@dataclass(frozen=True)
class ReducedResult:
    """What :func:`solve_reduced` found.

    Attributes
    ----------
    G : ndarray of shape (m, p)
    gap : Gap
        At ``G``, over all ``m`` atoms (screened ones included).
    converged : bool
        ``gap.gap <= rtol * gap.primal``.
    iterations, newton_calls, screened : int
        FISTA iterations, Newton finishes tried, atoms removed by screening.
    """

    G: np.ndarray
    gap: Gap
    converged: bool
    iterations: int
    newton_calls: int
    screened: int


def _group_norms(V: np.ndarray, groups: Sequence[slice]) -> np.ndarray:
    """``||V[i, g]||`` for every row and group, shape ``(m, n_groups)``."""
    return np.stack([np.sqrt(np.einsum("ij,ij->i", V[:, g], V[:, g])) for g in groups], axis=1)


def restricted_gap(
    Q: np.ndarray, C: np.ndarray, c0: float, G: np.ndarray, lam: float, groups: Sequence[slice]
) -> Gap:
    """Duality gap of the reduced group lasso at ``G``, from the residual's dual point.

    With ``R = Tc - Ec^T G`` (centred), ``S = Ec R = C - Q G``, ``q = ||R||^2 = c0 - <C, G>
    - w``, ``w = <G, S>`` and ``pen = sum_{i,g} ||G[i, g]||``, the restricted dual is
    ``max_theta <theta, Tc> - ||theta||^2 / 2`` subject to ``||(Ec theta)[i, g]|| <= lam``.
    The dual point is ``theta = t R`` with

        t = min(a / q, lam / max_{i,g} ||S[i, g]||),   a = <R, Tc> = q + w,

    (the best feasible point on the ray, :func:`convexdict_solvers.duality.best_on_ray`),
    and the gap ``f(G) - D(t R)`` is evaluated as

        gap = q (1 - t)^2 / 2 + lam * pen - t * w,

    which avoids the cancellation of ``f - D`` near the optimum (there ``t -> 1``,
    ``w -> lam * pen``). Shapes: ``Q (m, m)``, ``C, G (m, p)``.
    """
    S = C - Q @ G
    w = float(np.vdot(G, S))
    q = max(c0 - float(np.vdot(C, G)) - w, 0.0)
    pen = float(_group_norms(G, groups).sum()) if len(G) else 0.0
    price = float(_group_norms(S, groups).max()) if len(G) else 0.0
    t = float(best_on_ray(q + w, q, feasible_scale(lam, price))[1])
    gap = 0.5 * q * (1.0 - t) ** 2 + lam * pen - t * w
    return Gap(0.5 * q + lam * pen, max(gap, 0.0), t, S)


def screen(diag_Q: np.ndarray, gap: Gap, lam: float, groups: Sequence[slice]) -> np.ndarray:
    """Gap-safe sphere test (Fercoq, Gramfort and Salmon 2015, for the group lasso).

    The restricted dual objective ``D(theta) = <theta, Tc> - ||theta||^2 / 2`` is
    1-strongly concave, so its maximiser ``theta*`` (the optimal residual) lies within
    ``r = sqrt(2 gap)`` of any dual-feasible ``theta = t R``: ``||theta - theta*||^2 / 2
    <= D(theta*) - D(theta) <= f(G) - D(theta)``. Hence for atom ``i`` and group ``g``

        ||(Ec theta*)[i, g]|| <= t ||S[i, g]|| + ||Ec[i]|| r,

    and when the right side is below ``lam`` the optimality condition of a nonzero block
    (``||(Ec theta*)[i, g]|| = lam``) cannot hold: ``G*[i, g] = 0``. An atom is screened
    when all its groups are (``lam`` is shrunk by :data:`SCREEN_MARGIN` against rounding).
    Removing screened atoms leaves the restricted optimum unchanged, so screening may be
    repeated on the smaller problem.

    Parameters
    ----------
    diag_Q : ndarray of shape (m,)
        ``||Ec[i]||^2``.
    gap : Gap
        At the current iterate.
    lam : float
    groups : sequence of slice

    Returns
    -------
    ndarray of bool, shape (m,)
        True for atoms that are zero at the restricted optimum.
    """
    radius = np.sqrt(2.0 * gap.gap + 1e-15 * abs(gap.primal))
    bound = gap.t * _group_norms(gap.S, groups) + (np.sqrt(diag_Q) * radius)[:, None]
    return np.all(bound < lam * (1.0 - SCREEN_MARGIN), axis=1)


def _prox(Z: np.ndarray, thr: np.ndarray, groups: Sequence[slice], single: bool) -> np.ndarray:
    """Blockwise soft-thresholding of ``Z (m, p)`` with row thresholds ``thr (m,)``."""
    if single:
        norms = np.sqrt(np.einsum("ij,ij->i", Z, Z))
        return Z * np.maximum(1.0 - thr / np.maximum(norms, 1e-300), 0.0)[:, None]
    out = np.empty_like(Z)
    for g in groups:
        norms = np.sqrt(np.einsum("ij,ij->i", Z[:, g], Z[:, g]))
        out[:, g] = Z[:, g] * np.maximum(1.0 - thr / np.maximum(norms, 1e-300), 0.0)[:, None]
    return out


def _smooth(Z: np.ndarray, H: np.ndarray, C: np.ndarray, lam: float) -> float:
    """``1/2 <Z, H Z> - <C, Z> + lam sum_i ||Z[i]||`` for one column group."""
    return float(0.5 * np.vdot(Z, H @ Z) - np.vdot(C, Z)
                 + lam * np.sqrt(np.einsum("ij,ij->i", Z, Z)).sum())


def newton_group(X: np.ndarray, H: np.ndarray, C: np.ndarray, lam: float,
                 target: float) -> np.ndarray:
    """Damped Newton for one column group on the rows of ``X (k, s)`` (all nonzero).

    The one Newton implementation of convexdict_solvers (the torch path's
    :func:`convexdict_solvers.group_lasso.torch_fista.newton_polish` calls it on the host):
    on the support the objective is smooth with Hessian ``H kron I + blockdiag(lam / ||x_i||
    (I - u_i u_i^T))``; Armijo backtracking; when the step takes a block's radial
    component through zero, that block is zeroed and leaves the support if this lowers
    the objective. Stops when the gradient norm is ``<= target`` or after
    :data:`NEWTON_STEPS` steps. Shapes: ``H (k, k)``, ``C (k, s)``.
    """
    X = X.copy()
    s = X.shape[1]
    eye = np.eye(s)
    active = np.arange(X.shape[0])
    for _ in range(NEWTON_STEPS):
        if not len(active):
            break
        k, Z, Hk, Ck = len(active), X[active], H[np.ix_(active, active)], C[active]
        norms = np.maximum(np.sqrt(np.einsum("ij,ij->i", Z, Z)), 1e-300)[:, None]
        grad = Hk @ Z - Ck + lam * Z / norms
        if np.linalg.norm(grad) <= target:
            break
        u = Z / norms
        K = np.kron(Hk, eye).reshape(k, s, k, s)
        diag = np.arange(k)
        K[diag, :, diag, :] += (lam / norms)[..., None] * (eye - u[:, :, None] * u[:, None, :])
        K = K.reshape(k * s, k * s)
        K[np.diag_indices_from(K)] += 1e-14 * float(K.diagonal().max())
        try:
            direction = -np.linalg.solve(K, grad.ravel()).reshape(k, s)
        except np.linalg.LinAlgError:
            break
        slope = float(np.vdot(grad, direction))
        if not slope < 0:
            break
        f0 = _smooth(Z, Hk, Ck, lam)
        dots = np.einsum("ij,ij->i", direction, Z)
        with np.errstate(divide="ignore"):
            cross = np.where(dots < 0, -np.einsum("ij,ij->i", Z, Z) / dots, np.inf)
        j = int(np.argmin(cross))
        if cross[j] < 1.0:
            trial = Z + cross[j] * direction
            trial[j] = 0.0
            if _smooth(trial, Hk, Ck, lam) < f0:
                X[active] = trial
                active = np.delete(active, j)
                continue
        a = 1.0
        while a > 1e-10 and _smooth(Z + a * direction, Hk, Ck, lam) > f0 + 1e-4 * a * slope:
            a *= 0.5
        if a <= 1e-10:
            break
        X[active] = Z + a * direction
    return X


def newton_finish(Q: np.ndarray, C: np.ndarray, G: np.ndarray, lam: float,
                  groups: Sequence[slice], max_calls: int = 20) -> np.ndarray:
    """Newton on the support of ``G (m, p)`` (zero blocks held at zero), per column group.

    On a fixed support the reduced problem decouples over column groups. Each pass
    drops at most one block per damped step (:func:`newton_group`); passes repeat while
    the support keeps shrinking, so a support that FISTA over-estimated by many
    near-duplicate atoms is pruned in one finish. The caller checks the duality gap: a
    wrong support simply fails that check. Shapes: ``Q (m, m)``, ``C (m, p)``.
    """
    G = np.array(G, dtype=np.float64)
    target = 1e-13 * max(float(np.linalg.norm(C)), 1e-300)
    size = int(np.count_nonzero(G))
    for _ in range(max_calls):
        for g in groups:
            rows = np.flatnonzero(np.any(G[:, g] != 0, axis=1))
            if len(rows):
                G[rows, g] = newton_group(G[rows, g], Q[np.ix_(rows, rows)], C[rows, g], lam,
                                           target)
        shrunk, size = np.count_nonzero(G) < size, int(np.count_nonzero(G))
        if not shrunk:
            break
    return G


def solve_reduced(
    Q: np.ndarray,
    C: np.ndarray,
    c0: float,
    lam: float,
    G0: np.ndarray,
    groups: Sequence[slice],
    settings: WarmSettings | None = None,
) -> ReducedResult:
    """FISTA with screening and a Newton finish on the reduced group lasso.

    Parameters
    ----------
    Q : ndarray of shape (m, m)
        ``Ec Ec^T``.
    C : ndarray of shape (m, p)
        ``Ec Tc``.
    c0 : float
        ``||Tc||_F^2``.
    lam : float
    G0 : ndarray of shape (m, p)
        Warm start.
    groups : sequence of slice
        Column groups covering all ``p`` columns.
    settings : WarmSettings, optional

    Returns
    -------
    ReducedResult
        The best iterate found (smallest gap).
    """
    s = settings or WarmSettings()
    m, p = C.shape
    G = np.array(G0, dtype=np.float64)
    single = len(groups) == 1
    diag = np.diag(Q).copy()
    idx = np.flatnonzero(diag > 1e-300 * max(float(diag.max(initial=0.0)), 1.0))
    G[np.setdiff1d(np.arange(m), idx)] = 0.0  # a constant atom does not change the fit
    best = restricted_gap(Q, C, c0, G, lam, groups)
    best_G, target = G.copy(), lambda gp: gp.gap <= s.rtol * max(gp.primal, 1e-300)
    if target(best) or not len(idx):
        return ReducedResult(best_G, best, target(best), 0, 0, 0)
    d = np.sqrt(diag[idx])
    Qs = Q[np.ix_(idx, idx)] / d[:, None] / d[None, :]
    L = float(np.linalg.eigvalsh(Qs)[-1])
    CL, thr = C[idx] / d[:, None] / L, lam / d / L
    H = G[idx] * d[:, None]
    Y, t_mom, it, newton_calls, screened = H.copy(), 1.0, 0, 0, 0
    last_support = tried_support = None
    stable, patience = 0, 1  # checks the support has been unchanged; checks required
    while it < s.max_iter:
        it += 1
        Z = Y - (Qs @ Y) / L + CL
        H_new = _prox(Z, thr, groups, single)
        if np.vdot(Y - H_new, H_new - H) > 0:
            Y, t_mom = H_new, 1.0
        else:
            t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t_mom * t_mom))
            Y, t_mom = H_new + ((t_mom - 1.0) / t_next) * (H_new - H), t_next
        H = H_new
        if it % s.check_every:
            continue
        G = np.zeros((m, p))
        G[idx] = H / d[:, None]
        gp = restricted_gap(Q, C, c0, G, lam, groups)
        if gp.gap < best.gap:
            best, best_G = gp, G
        if target(gp):
            break
        support = H != 0
        same = last_support is not None and np.array_equal(support, last_support)
        stable = stable + 1 if same else 0
        if s.newton and stable >= patience and not np.array_equal(support, tried_support):
            # Newton on a settled support; each miss doubles the patience.
            tried_support, newton_calls, patience = support, newton_calls + 1, 2 * patience
            Qa, Ca = Q[np.ix_(idx, idx)], C[idx]
            Gn = np.zeros((m, p))
            Gn[idx] = newton_finish(Qa, Ca, G[idx], lam, groups)
            gn = restricted_gap(Q, C, c0, Gn, lam, groups)
            if gn.gap < best.gap:
                best, best_G = gn, Gn
            if target(gn):
                break
            if gn.primal < gp.primal:
                H, Y, t_mom, gp = Gn[idx] * d[:, None], Gn[idx] * d[:, None], 1.0, gn
        last_support = support
        if s.screen:
            drop = screen(diag[idx], _restrict(gp, idx), lam, groups)
            if drop.any():
                keep = ~drop
                idx, d, H, Y = idx[keep], d[keep], H[keep], Y[keep]
                Qs, CL, thr = Qs[np.ix_(keep, keep)], CL[keep], thr[keep]
                screened += int(drop.sum())
                last_support = None
    return ReducedResult(best_G, best, target(best), it, newton_calls, screened)


def _restrict(gap: Gap, idx: np.ndarray) -> Gap:
    return Gap(gap.primal, gap.gap, gap.t, gap.S[idx])
