"""The group lasso (P) over a fixed atom set, solved by FISTA on a torch device.

    min_{b, G}  (1/N) [ 1/2 ||T - 1 b^T - E^T G||_F^2 + lam * sum_i sum_g ||G[i, g]||_2 ]

``E (m, N)`` holds one normalised activation per row, ``T (N, p)`` the target and ``g``
runs over column groups (one for an SAE, one per layer for a crosscoder). The bias is
eliminated in closed form, ``b = mean_n (T - E^T G)[n]``, which leaves the centred atoms
``Ec`` and target ``Tc``. Multiplying by ``N``, the smooth part is
``1/2 ||Tc - Ec^T G||^2`` with gradient ``H G - C`` (``H = Ec Ec^T (m, m)``,
``C = Ec Tc (m, p)``), so after one pass over the samples every iteration costs
``O(m^2 p)``, independent of ``N``.

Algorithm: accelerated proximal gradient (FISTA, Beck and Teboulle 2009) with step
``1 / L``, ``L = lambda_max(H)``, the group soft-thresholding prox, and the gradient
restart of O'Donoghue and Candes (2015): momentum is reset whenever
``<y_k - x_{k+1}, x_{k+1} - x_k> > 0``. With ``polish=True``, every 100 iterations in
which the support (the nonzero groups) changed, it is polished by Newton's method on the
smooth restricted problem (:func:`newton_polish`). The polished point is returned only if
its full optimality residual is below ``tol``; otherwise FISTA continues (from it when
its objective is lower), so polishing changes the speed, never the stopping rule.

The optimality residual is the norm of the prox-gradient mapping
``L (G - prox(G - grad / L))`` relative to ``||C||`` (its size at ``G = 0``); it is zero
exactly at a solution. As for every engine in :mod:`solvers`, the result is not trusted:
callers recompute the loss of the explicit solution in float64 and verify a dual bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

_EIGH_MAX_ATOMS = 2048
_POWER_ITERS = 100
_POLISH_MAX_VARS = 3000
_POLISH_EVERY = 100
_SINGLE_THREAD_WORK = 1 << 22


@dataclass(frozen=True)
class ProximalSettings:
    """Settings of the FISTA solver (jaxopt style: data, not a solver object).

    Attributes
    ----------
    max_iter : int
        Iteration limit (FISTA steps).
    tol : float
        Stop when the relative optimality residual is at most ``tol``. Values below
        ``100 * eps`` of the working dtype are raised to it.
    restart : bool
        Use the O'Donoghue-Candes gradient restart.
    polish : bool
        Every 100 iterations, if the support changed, try a Newton polish of it (when it
        has at most 3000 variables; float64 only: in float32 FISTA alone reaches the
        attainable accuracy).
    check_every : int
        Iterations between residual checks.
    """

    max_iter: int = 20_000
    tol: float = 1e-10
    restart: bool = True
    polish: bool = True
    check_every: int = 10


@dataclass(frozen=True)
class ProximalSolution:
    """A primal point of (P) from :func:`solve_group_lasso_torch`.

    Attributes
    ----------
    b : Tensor of shape (p,)
    G : Tensor of shape (m, p)
    n_iter : int
        FISTA iterations (Newton steps not counted).
    residual : float
        Relative optimality residual at ``G`` (see the module docstring).
    converged : bool
        ``residual <= tol``.
    solve_time : float
        Seconds.
    """

    b: torch.Tensor
    G: torch.Tensor
    n_iter: int
    residual: float
    converged: bool
    solve_time: float


@contextmanager
def cpu_threads(n: int, enabled: bool = True) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)``, restoring the previous count."""
    previous = torch.get_num_threads()
    if enabled and previous != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


@dataclass(frozen=True)
class GroupStructure:
    """Disjoint column groups as tensors.

    Attributes
    ----------
    member : Tensor of shape (p, n_groups)
        ``member[c, k] = 1`` when column ``c`` is in group ``k``.
    free : Tensor of shape (p,)
        1 for columns outside every group (not penalised), else 0.
    cols : tuple of Tensor
        Column indices of each group.
    single : bool
        One group holding every column (the fast path).
    """

    member: torch.Tensor
    free: torch.Tensor
    cols: tuple[torch.Tensor, ...]
    single: bool

    @property
    def covers_all(self) -> bool:
        return not bool(self.free.any())

    def norms(self, V: torch.Tensor) -> torch.Tensor:
        """``||V[..., g]||`` for every group, shape ``(..., n_groups)``."""
        if self.single:
            return torch.linalg.vector_norm(V, dim=-1, keepdim=True)
        return torch.sqrt((V * V) @ self.member)

    def max_norm(self, V: torch.Tensor) -> torch.Tensor:
        """``max_g ||V[..., g]||``, shape ``V.shape[:-1]``."""
        return self.norms(V).amax(dim=-1)

    def soft_threshold(self, V: torch.Tensor, threshold: float) -> torch.Tensor:
        """Prox of ``threshold * sum_i sum_g ||V[i, g]||`` at ``V (m, p)``."""
        tiny = torch.finfo(V.dtype).tiny
        factor = torch.clamp_min(1.0 - threshold / torch.clamp_min(self.norms(V), tiny), 0.0)
        if self.single:
            return V * factor
        return V * (factor @ self.member.T + self.free)


def group_structure(
    groups: Sequence[slice] | None, p: int, device=None, dtype=torch.float64
) -> GroupStructure:
    """The :class:`GroupStructure` of column slices over ``p`` columns (None: one group).

    Raises
    ------
    ValueError
        If two groups share a column (the prox would not be separable).
    """
    if groups is None:
        groups = [slice(0, p)]
    groups = list(groups)
    member = torch.zeros((p, len(groups)), dtype=dtype)
    for k, g in enumerate(groups):
        cols = torch.arange(p)[g]
        if torch.any(member[cols].sum(dim=1) > 0):
            raise ValueError(
                f"The 'groups' parameter must hold disjoint column slices. Got {groups!r}, "
                f"where group {k} overlaps an earlier one."
            )
        member[cols, k] = 1.0
    free = (member.sum(dim=1) == 0).to(dtype)
    cols = tuple(torch.nonzero(member[:, k]).flatten().to(device) for k in range(len(groups)))
    single = len(groups) == 1 and not bool(free.any())
    return GroupStructure(member.to(device), free.to(device), cols, single)


def smooth_objective(G, H, C, lam: float, groups: GroupStructure | None) -> float:
    """``1/2 <G, H G> - <C, G> + lam sum ||G[i, g]||`` (``N`` times (P) minus a constant).

    ``groups=None`` takes each row of ``G`` as one group.
    """
    norms = torch.linalg.vector_norm(G, dim=1) if groups is None else groups.norms(G)
    return float(0.5 * torch.sum(G * (H @ G)) - torch.sum(C * G) + lam * norms.sum())


def newton_polish(G, H, C, lam: float, groups: GroupStructure, target: float) -> torch.Tensor:
    """Newton's method on the support of ``G`` with the zero blocks held at zero.

    On a fixed support the problem is smooth and decouples over column groups; each
    group's rows are polished by the one Newton implementation,
    :func:`convexdict_solvers.group_lasso.reduced_solve.newton_group` (damped steps with
    Armijo backtracking and active-set drops, until the restricted gradient norm is
    ``<= target``), on the host in float64: the support's matrices are small. The caller
    checks the full optimality residual: a wrong support simply fails that check. Shapes:
    ``G, C (m, p)``, ``H (m, m)``; returns the polished ``G (m, p)`` on ``G``'s device.
    """
    from convexdict_solvers.group_lasso.reduced_solve import newton_group

    G = G.clone()
    Gh, Hh, Ch = (t.detach().cpu().double().numpy() for t in (G, H, C))
    for cols in groups.cols:
        c = cols.cpu().numpy()
        rows = np.flatnonzero(np.linalg.norm(Gh[:, c], axis=1) > 0)
        if len(rows):
            X = newton_group(Gh[np.ix_(rows, c)], Hh[np.ix_(rows, rows)], Ch[np.ix_(rows, c)],
                             lam, target)
            G[torch.as_tensor(rows, device=G.device)[:, None], cols[None, :].to(G.device)] = (
                torch.as_tensor(X, dtype=G.dtype, device=G.device))
    return G


def lipschitz_constant(H: torch.Tensor) -> float:
    """Largest eigenvalue of the symmetric PSD ``H (m, m)`` (``eigvalsh`` or power iteration)."""
    m = H.shape[0]
    if m == 0:
        return 0.0
    if m <= _EIGH_MAX_ATOMS:
        return float(torch.linalg.eigvalsh(H)[-1])
    gen = torch.Generator(device=H.device).manual_seed(0)
    v = torch.randn(m, dtype=H.dtype, device=H.device, generator=gen)
    for _ in range(_POWER_ITERS):
        v = H @ v
        v = v / torch.linalg.vector_norm(v)
    # Power iteration approaches from below: a small inflation keeps the step safe.
    return float(v @ (H @ v)) * 1.01


def fista(state, H, C, L: float, prox: Callable, max_iter: int, *, restart: bool = True,
          check_every: int = 10, stop: Callable | None = None):
    """The one accelerated proximal loop on torch: restarted FISTA for
    ``min_G 1/2 <G, H G> - <C, G> + h(G)`` from ``state = (G, Y, t)``.

    ``prox(V, step)`` is the proximal map of ``step * h``; every ``check_every``
    iterations ``stop(G, mapping_norm)`` may end the loop (``mapping_norm = ||Y - G_new||``,
    ``L`` times it is the prox-gradient mapping at the extrapolated point). The restart
    rule (O'Donoghue and Candes) resets the momentum when ``<Y - G_new, G_new - G> > 0``.
    Shapes: ``G, Y, C (m, p)``, ``H (m, m)``. Returns the new state and the iterations used.
    """
    G, Y, t = state
    step = 1.0 / L
    for it in range(1, max_iter + 1):
        G_new = prox(torch.add(Y, torch.addmm(C, H, Y, beta=-1.0), alpha=-step), step)
        diff = G_new - G
        mapping = Y - G_new
        t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        if restart and float(torch.vdot(mapping.flatten(), diff.flatten())) > 0:
            Y, t = G_new, 1.0
        else:
            Y, t = torch.add(G_new, diff, alpha=(t - 1.0) / t_new), t_new
        G = G_new
        if stop is not None and (it % check_every == 0 or it == max_iter) and stop(
            G, float(torch.linalg.vector_norm(mapping))
        ):
            return (G, Y, t), it
    return (G, Y, t), max_iter


def _fista(state, H, C, L, lam, groups: GroupStructure, target: float, max_iter: int, settings):
    """FISTA for (P) until the absolute residual is ``<= target``; returns the new state,
    the iterations used and the absolute residual at ``G``."""
    found: list[float] = []

    def stop(G, mapping_norm: float) -> bool:
        if mapping_norm * L > target:
            return False
        found[:] = [_residual(G, H, C, L, lam, groups)]
        return found[0] <= target

    state, it = fista(state, H, C, L, lambda V, step: groups.soft_threshold(V, step * lam),
                      max_iter, restart=settings.restart, check_every=settings.check_every,
                      stop=stop)
    if found and found[0] <= target:
        return state, it, found[0]
    return state, it, _residual(state[0], H, C, L, lam, groups)


def _residual(G, H, C, L, lam, groups: GroupStructure) -> float:
    """``L ||G - prox(G - grad(G) / L)||``: zero exactly at a minimiser."""
    G_plus = groups.soft_threshold(G - torch.addmm(C, H, G, beta=-1.0) / L, lam / L)
    return float(torch.linalg.vector_norm(G - G_plus)) * L


def solve_group_lasso_torch(
    E: torch.Tensor,
    T: torch.Tensor,
    lam: float,
    *,
    groups: Sequence[slice] | None = None,
    G0: torch.Tensor | None = None,
    settings: ProximalSettings | None = None,
) -> ProximalSolution:
    """Solve (P) over the atoms ``E`` by restarted FISTA on ``E``'s device and dtype.

    Parameters
    ----------
    E : Tensor of shape (m, N)
        Atoms (normalised activations), one per row.
    T : Tensor of shape (N, p)
        Target, same device and dtype as ``E``.
    lam : float
        Penalty weight, ``>= 0``.
    groups : sequence of slice, optional
        Disjoint column groups with separate norms (crosscoders); default one group.
        Columns outside every group are not penalised.
    G0 : Tensor of shape (m, p), optional
        Warm start (default zeros).
    settings : ProximalSettings, optional

    Returns
    -------
    ProximalSolution

    Examples
    --------
    >>> E = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    >>> T = torch.tensor([[0.0, 1.0], [0.0, 1.2], [3.0, 0.0]], dtype=torch.float64)
    >>> sol = solve_group_lasso_torch(E, T, 0.1)
    >>> sol.converged, tuple(sol.G.shape)
    (True, (2, 2))
    """
    start = time.perf_counter()
    settings = settings or ProximalSettings()
    if E.ndim != 2 or T.ndim != 2 or E.shape[1] != T.shape[0]:
        raise ValueError(
            "The 'E' and 'T' parameters must have shapes (m, N) and (N, p). "
            f"Got {tuple(E.shape)} and {tuple(T.shape)}."
        )
    if not lam >= 0:
        raise ValueError(f"The 'lam' parameter must be a float >= 0. Got {lam!r}.")
    m, p = E.shape[0], T.shape[1]
    structure = group_structure(groups, p, E.device, E.dtype)
    G = torch.zeros((m, p), dtype=E.dtype, device=E.device) if G0 is None else G0.clone()
    if G.shape != (m, p):
        raise ValueError(f"The 'G0' parameter must have shape {(m, p)}. Got {tuple(G.shape)}.")
    t_mean = T.mean(dim=0)
    Ec = E - E.mean(dim=1, keepdim=True)
    H = Ec @ Ec.T
    C = Ec @ (T - t_mean)
    # Iterations on small matrices run faster on one CPU thread than on a contended pool.
    small = E.device.type == "cpu" and m * m * p <= _SINGLE_THREAD_WORK
    with cpu_threads(1, enabled=small):
        L = lipschitz_constant(H)
        if m == 0 or L <= 0.0:  # no atoms, or only uniform ones: G does not change the fit
            G = torch.zeros_like(G)
            return ProximalSolution(t_mean, G, 0, 0.0, True, time.perf_counter() - start)
        tol = max(settings.tol, 100 * torch.finfo(E.dtype).eps)
        scale = max(float(torch.linalg.vector_norm(C)), torch.finfo(E.dtype).tiny)
        polish = (settings.polish and m * p <= _POLISH_MAX_VARS and structure.covers_all
                  and E.dtype == torch.float64)
        G, used, res = _solve(G, H, C, L, lam, structure, tol, scale, polish, settings)
        b = t_mean - E.mean(dim=1) @ G
    residual = res / scale
    return ProximalSolution(b, G, used, residual, residual <= tol, time.perf_counter() - start)


def _solve(G, H, C, L, lam, structure, tol, scale, polish, settings):
    """FISTA in blocks, with a Newton polish whenever the support changed; returns ``G``,
    FISTA iterations and the absolute residual."""
    target = tol * scale
    state, used, last_support = (G, G, 1.0), 0, None
    block = _POLISH_EVERY if polish else settings.max_iter
    while True:
        state, it, res = _fista(state, H, C, L, lam, structure, target,
                                min(block, settings.max_iter - used), settings)
        used += it
        G = state[0]
        if res <= target or used >= settings.max_iter:
            return G, used, res
        support = structure.norms(G) > 0
        if last_support is not None and torch.equal(support, last_support):
            continue
        last_support = support
        G_pol = newton_polish(G, H, C, lam, structure, 0.01 * target)
        res_pol = _residual(G_pol, H, C, L, lam, structure)
        if res_pol <= target:
            return G_pol, used, res_pol
        if smooth_objective(G_pol, H, C, lam, structure) < smooth_objective(
            G, H, C, lam, structure
        ):
            state = (G_pol, G_pol, 1.0)
