"""Pricing on a torch device: exact enumeration, the exact rotating sweep, and sampling.

Same problem, conventions and tolerances as :mod:`convexdict_solvers.pricing.exact` (read its
docstring):
for reduced coordinates ``Y (N, r)`` and a residual ``R (N, p)`` compute
``max_{e in E0} max_g ||R[:, g]^T e||``. Points within ``ZERO_TOL`` of a hyperplane get
activation 0, subsets whose affine span has a singular value below ``RANK_TOL`` are
skipped, and low-activation sweep events are recomputed directly.

* :func:`price_enumerate_torch`: every ``r``-subset, both orientations, in chunks of
  bounded memory (``O(C(N, r) N p)`` work); the reference.
* :func:`price_sweep_torch` (``r >= 2``): the rotating sweep of
  :func:`convexdict_solvers.pricing.exact.price_sweep` batched over pivot sets: sort events by
  angle, take
  cumulative sums, recompute low-activation events (``O(C(N, r-1) N log N)``).
* :func:`price_sampled_torch`: random hyperplanes, for large ``r``. Its maximum is a
  *lower* estimate of the exact one and gives **no valid certificate**: a dual point
  scaled with it may be infeasible. Results carry ``certified=False``.

All functions take numpy arrays or tensors and return
:class:`convexdict_solvers.pricing.exact.PricingResult`
with float64 numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from convexdict_solvers.group_lasso.torch_fista import GroupStructure, group_structure
from convexdict_solvers.pricing.exact import (
    RANK_TOL,
    RECOMPUTE_BELOW,
    ZERO_TOL,
    PricingResult,
    count_candidates,
    sweep_cost,
)

_CHUNK = {"cpu": 1 << 21, "cuda": 1 << 26}  # floats per working array, by device type


def default_chunk(device: str | torch.device) -> int:
    """Floats per working array: small on CPU (cache, allocator), large on accelerators."""
    return _CHUNK.get(torch.device(device).type, 1 << 24)


@dataclass(frozen=True)
class SampledPricingResult(PricingResult):
    """A :class:`PricingResult` from random hyperplanes: ``certified`` is always False.

    ``max_value`` is the maximum over the sampled atoms only, a lower estimate of the
    exact maximum over ``E0``; scaling a dual point with it gives no valid bound.
    """

    certified: bool = False


class _Best:
    """Running maximum and the ``k`` largest positive (value, hyperplane) pairs, on device."""

    def __init__(self, k: int, dim: int, like: torch.Tensor) -> None:
        self.k = k
        self.values = like.new_empty(0)
        self.planes = like.new_empty((0, dim))
        self.best = like.new_zeros(())

    def push(self, values: torch.Tensor, planes_fn) -> None:
        if values.numel() == 0:
            return
        self.best = torch.maximum(self.best, values.max())
        if self.k <= 0:
            return
        top = torch.topk(values, min(self.k, values.numel()))
        idx = top.indices[top.values > 0]
        vals = torch.cat([self.values, values[idx]])
        planes = torch.cat([self.planes, planes_fn(idx)])
        keep = torch.topk(vals, min(self.k, vals.numel())).indices
        self.values, self.planes = vals[keep], planes[keep]

    def result(self, n_cand: int, method: str, cls=PricingResult, **extra) -> PricingResult:
        order = torch.argsort(-self.values, stable=True)
        return cls(float(self.best), _np(self.values[order]), _np(self.planes[order]),
                   int(n_cand), method, **extra)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _inputs(Y, R, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    Yt = torch.as_tensor(np.asarray(Y) if not torch.is_tensor(Y) else Y).to(device, dtype)
    Rt = torch.as_tensor(np.asarray(R) if not torch.is_tensor(R) else R).to(device, dtype)
    if Yt.ndim != 2 or Rt.ndim != 2 or Yt.shape[0] != Rt.shape[0]:
        raise ValueError(
            "The 'Y' and 'R' parameters must have shapes (N, r) and (N, p) with the same N. "
            f"Got {tuple(Yt.shape)} and {tuple(Rt.shape)}."
        )
    return Yt, Rt


def _values(A: torch.Tensor, R: torch.Tensor, gs: GroupStructure) -> torch.Tensor:
    """``max_g ||R[:, g]^T a / sum(a)||`` per row of activations ``A (B, N)`` (0 if empty)."""
    total = A.sum(dim=1)
    ok = total > 0
    V = (A @ R) / torch.where(ok, total, torch.ones_like(total))[:, None]
    vals = gs.max_norm(V)
    return torch.where(ok, vals, torch.zeros_like(vals))


def _constant(R: torch.Tensor, gs: GroupStructure, top: int, cls=PricingResult, **extra):
    # r == 0: every point is the same; the only realizable activation is uniform.
    value = float(gs.max_norm(R.mean(dim=0)))
    planes = np.ones((1, 1)) if top > 0 else np.empty((0, 1))
    values = np.array([value]) if top > 0 else np.empty(0)
    return cls(value, values, planes, 1, "constant", **extra)


def subset_chunks(n: int, size: int, batch: int, device) -> Iterator[torch.Tensor]:
    """All ``size``-subsets of ``range(n)`` in lexicographic order, ``(<= batch, size)`` each."""
    if size <= 1:
        for s in range(0, n if size else 0, batch):
            yield torch.arange(s, min(s + batch, n), device=device)[:, None]
        return
    pending: list[torch.Tensor] = []
    count = 0
    for i in range(n - size + 1):
        rest = torch.arange(i + 1, n, device=device)
        tail = torch.combinations(rest, size - 1)
        block = torch.cat([torch.full((len(tail), 1), i, device=device), tail], dim=1)
        for s in range(0, len(block), batch):
            piece = block[s : s + batch]
            pending.append(piece)
            count += len(piece)
            if count >= batch:
                yield torch.cat(pending)
                pending, count = [], 0
    if pending:
        yield torch.cat(pending)


def hyperplanes_through_torch(Y: torch.Tensor, subsets: torch.Tensor):
    """Unit-normal hyperplanes ``(B, r + 1)`` through subsets ``(B, r)`` and independence ``(B,)``.

    Closed forms for ``r <= 3`` (the smallest singular value of the two differences for
    ``r = 3`` is ``||d1 x d2|| / s_max``), an SVD otherwise, as in
    :func:`convexdict_solvers.pricing.exact.hyperplanes_through`.
    """
    P = Y[subsets]  # (B, r, r)
    B, r = subsets.shape
    if r == 1:
        return torch.cat([torch.ones_like(P[:, 0]), -P[:, 0]], dim=1), torch.ones(
            B, dtype=torch.bool, device=Y.device)
    D = P[:, 1:, :] - P[:, :1, :]
    if r == 2:
        s_min = torch.linalg.vector_norm(D[:, 0], dim=1)
        normal = torch.stack([-D[:, 0, 1], D[:, 0, 0]], dim=1)
        normal = normal / torch.clamp(s_min, min=torch.finfo(Y.dtype).tiny)[:, None]
    elif r == 3:
        cross = torch.linalg.cross(D[:, 0], D[:, 1], dim=1)
        area = torch.linalg.vector_norm(cross, dim=1)
        a, b = (D[:, 0] ** 2).sum(1), (D[:, 1] ** 2).sum(1)
        c = (D[:, 0] * D[:, 1]).sum(1)
        s_max = torch.sqrt(0.5 * (a + b) + torch.sqrt(0.25 * (a - b) ** 2 + c * c))
        tiny = torch.finfo(Y.dtype).tiny
        s_min = area / torch.clamp(s_max, min=tiny)
        normal = cross / torch.clamp(area, min=tiny)[:, None]
    else:
        _, s, vh = torch.linalg.svd(D, full_matrices=True)
        s_min, normal = s[:, -1], vh[:, -1, :]
    offset = -(normal * P[:, 0, :]).sum(dim=1)
    return torch.cat([normal, offset[:, None]], dim=1), s_min > RANK_TOL


def price_enumerate_torch(
    Y,
    R,
    *,
    groups: Sequence[slice] | None = None,
    top: int = 0,
    chunk: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
) -> PricingResult:
    """Exact pricing by enumerating every ``r``-subset (both orientations) on a device.

    Same semantics as :func:`convexdict_solvers.pricing.exact.price_bruteforce`.

    Parameters
    ----------
    Y : ndarray or Tensor of shape (N, r)
        Reduced coordinates of full affine rank (centred, unit max norm).
    R : ndarray or Tensor of shape (N, p)
        Residual (dual candidate).
    groups : sequence of slice, optional
        Disjoint column groups of ``R`` (crosscoders); default one group.
    top : int
        How many of the largest candidates to return with their hyperplanes.
    chunk : int, optional
        Floats per activation block (bounds memory: about ``4 * chunk`` floats); default
        :func:`default_chunk` of the device.
    device, dtype
        Where and in which precision to compute.

    Returns
    -------
    PricingResult
        ``method="bruteforce-torch"``.
    """
    Y, R = _inputs(Y, R, device, dtype)
    chunk = chunk or default_chunk(device)
    n, r = Y.shape
    gs = group_structure(groups, R.shape[1], Y.device, Y.dtype)
    if r == 0:
        return _constant(R, gs, top)
    best = _Best(top, r + 1, Y)
    n_cand = 0
    for subsets in subset_chunks(n, r, max(1, chunk // max(n, 1)), Y.device):
        U, independent = hyperplanes_through_torch(Y, subsets)
        U, subsets = U[independent], subsets[independent]
        Z = U[:, :r] @ Y.T + U[:, r:]
        for sign in (1.0, -1.0):
            A = Z if sign > 0 else -Z
            A = torch.where(A > ZERO_TOL, A, torch.zeros_like(A))
            A.scatter_(1, subsets, 0.0)  # exactly on the hyperplane
            n_cand += len(U)
            best.push(_values(A, R, gs), lambda idx, s=sign, U=U: s * U[idx])
    return best.result(n_cand, "bruteforce-torch")


def _pivot_frames(Y: torch.Tensor, pivots: torch.Tensor):
    """Origin (B, r), orthonormal 2-D complement basis (B, r, 2) and validity (B,)."""
    B, r = len(pivots), Y.shape[1]
    origin = Y[pivots[:, 0]]
    if r == 2:
        eye = torch.eye(2, dtype=Y.dtype, device=Y.device)
        return origin, eye.expand(B, 2, 2), torch.ones(B, dtype=torch.bool, device=Y.device)
    if r == 3:  # complement of one direction: two cross products
        D = Y[pivots[:, 1]] - origin
        length = torch.linalg.vector_norm(D, dim=1)
        a = D / torch.where(length > 0, length, torch.ones_like(length))[:, None]
        helper = torch.zeros_like(a)
        helper[torch.arange(B, device=Y.device), torch.argmin(a.abs(), dim=1)] = 1.0
        e1 = torch.linalg.cross(a, helper, dim=1)
        e1 = e1 / torch.linalg.vector_norm(e1, dim=1, keepdim=True)
        e2 = torch.linalg.cross(a, e1, dim=1)
        return origin, torch.stack([e1, e2], dim=2), length > RANK_TOL
    D = Y[pivots[:, 1:]] - origin[:, None, :]
    _, s, vh = torch.linalg.svd(D, full_matrices=True)
    return origin, vh[:, r - 2 :, :].transpose(1, 2), s[:, -1] > RANK_TOL


def _sweep_chunk(Y, R, gs, pivots):
    """Best event per pivot set: values (B,) and hyperplanes (B, r + 1)."""
    n, p = R.shape
    B = len(pivots)
    two_pi = 2 * math.pi
    origin, basis, pivot_ok = _pivot_frames(Y, pivots)
    W = (Y[None, :, :] - origin[:, None, :]) @ basis  # (B, N, 2)
    wnorm = torch.linalg.vector_norm(W, dim=2)
    valid = (wnorm > RANK_TOL) & pivot_ok[:, None]
    alpha = torch.atan2(W[..., 1], W[..., 0])
    ang = torch.remainder(torch.cat([alpha - math.pi / 2, alpha + math.pi / 2], dim=1), two_pi)
    sorted_ang, order = torch.sort(ang, dim=1)
    gaps = torch.diff(sorted_ang, dim=1, append=sorted_ang[:, :1] + two_pi)
    g = torch.argmax(gaps, dim=1)
    rows = torch.arange(B, device=Y.device)
    phi0 = sorted_ang[rows, g] + gaps[rows, g] / 2
    rot = (g[:, None] + 1 + torch.arange(2 * n, device=Y.device)[None, :]) % (2 * n)
    order = torch.gather(order, 1, rot)
    ev_j, enter = order % n, order < n
    ev_valid = torch.gather(valid, 1, ev_j)
    weight = torch.where(enter, 1.0, -1.0).to(Y.dtype) * ev_valid
    start = torch.remainder(phi0[:, None] - (alpha - math.pi / 2), two_pi) < math.pi
    active0 = (valid & start).to(Y.dtype)
    # State per event, laid out (2, p + 1): row c holds [sum_n r_n w_nc, sum_n w_nc].
    R1 = torch.cat([R, torch.ones_like(R[:, :1])], dim=1)  # (N, p + 1)
    state0 = (active0[..., None] * W).transpose(1, 2) @ R1  # (B, 2, p + 1)
    w_ev = torch.gather(W, 1, ev_j[..., None].expand(-1, -1, 2))  # (B, 2N, 2)
    state = (w_ev * weight[..., None])[..., None] * R1[ev_j][..., None, :]  # (B, 2N, 2, p+1)
    torch.cumsum(state, dim=1, out=state)
    state += state0[:, None]
    w_ev_norm = torch.where(ev_valid, torch.gather(wnorm, 1, ev_j), torch.ones_like(wnorm[:, :1]))
    # enter at alpha - pi/2: n = (w1, -w0)/|w|; leave at alpha + pi/2: n = (-w1, w0)/|w|
    sgn = torch.where(enter, 1.0, -1.0).to(Y.dtype) / w_ev_norm
    nrm = torch.stack([w_ev[..., 1] * sgn, -w_ev[..., 0] * sgn], dim=-1)  # (B, 2N, 2)
    proj = state[..., 0, :] * nrm[..., :1] + state[..., 1, :] * nrm[..., 1:]  # (B, 2N, p+1)
    del state
    Mn, cn = proj[..., :p], proj[..., p]
    scale = (wnorm * valid).sum(dim=1, keepdim=True)
    clean = ev_valid & (cn > RECOMPUTE_BELOW * scale)
    gn = gs.max_norm(Mn)
    values = torch.where(clean, gn / torch.where(clean, cn, torch.ones_like(cn)),
                         torch.zeros_like(cn))
    # Low-activation events: recompute from the activations themselves.
    fb, fe = torch.nonzero(ev_valid & ~clean, as_tuple=True)
    step = max(1, default_chunk(Y.device) // (4 * n))
    for s in range(0, len(fb), step):
        b, e = fb[s : s + step], fe[s : s + step]
        A = (W[b] @ nrm[b, e][..., None])[..., 0]
        A = torch.where(A > ZERO_TOL, A, torch.zeros_like(A))
        A[torch.arange(len(b), device=Y.device), ev_j[b, e]] = 0.0
        A = A * valid[b]
        values[b, e] = _values(A, R, gs)
    best_val, best_e = values.max(dim=1)
    normal = (basis @ nrm[rows, best_e][..., None])[..., 0]  # (B, r)
    offset = -(normal * origin).sum(dim=1)
    return best_val, torch.cat([normal, offset[:, None]], dim=1), values.numel()


def price_sweep_torch(
    Y,
    R,
    *,
    groups: Sequence[slice] | None = None,
    top: int = 0,
    chunk: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
) -> PricingResult:
    """Exact pricing by the batched rotating sweep (``r >= 2``; enumeration for ``r < 2``).

    Same contract as :func:`price_enumerate_torch` and
    :func:`convexdict_solvers.pricing.exact.price_sweep`;
    like the latter, ``top`` returns the best event of each pivot set (diverse atoms for
    column generation). ``chunk`` bounds the floats of the per-batch event state
    (``B * 2N * (2p + 2)``), about a third of peak memory. ``method="sweep-torch"``.
    """
    Y, R = _inputs(Y, R, device, dtype)
    chunk = chunk or default_chunk(device)
    n, r = Y.shape
    if r < 2:
        return price_enumerate_torch(Y, R, groups=groups, top=top, chunk=chunk,
                                     device=Y.device, dtype=Y.dtype)
    gs = group_structure(groups, R.shape[1], Y.device, Y.dtype)
    best = _Best(top, r + 1, Y)
    n_cand = 0
    batch = max(1, chunk // (2 * n * (2 * R.shape[1] + 2)))
    for pivots in subset_chunks(n, r - 1, batch, Y.device):
        values, planes, count = _sweep_chunk(Y, R, gs, pivots)
        n_cand += count
        best.push(values, lambda idx, planes=planes: planes[idx])
    return best.result(n_cand, "sweep-torch")


def price_torch(Y, R, *, method: str = "auto", **kwargs) -> PricingResult:
    """Exact pricing on a device with the kernel chosen by ``method``.

    ``"auto"`` takes the sweep for ``r >= 2`` unless enumeration is cheaper (the rule of
    :func:`convexdict_solvers.pricing.exact.price`); ``"sweep"`` and ``"enumerate"`` force a kernel.
    Keyword arguments (``groups, top, chunk, device, dtype``) as for
    :func:`price_sweep_torch`.
    """
    (n, r), p = Y.shape, R.shape[1]
    if method == "auto":
        brute = count_candidates(n, r) * n * (r + 2)
        method = "sweep" if r >= 2 and sweep_cost(n, r) * (4 * p + 8) < brute else "enumerate"
    kernels = {"sweep": price_sweep_torch, "enumerate": price_enumerate_torch}
    if method not in kernels:
        raise ValueError(
            f"The 'method' parameter must be one of 'auto', 'sweep', 'enumerate'. Got {method!r}."
        )
    return kernels[method](Y, R, **kwargs)


def price_sampled_torch(
    Y,
    R,
    n_samples: int,
    seed: int = 0,
    *,
    groups: Sequence[slice] | None = None,
    top: int = 0,
    chunk: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
) -> SampledPricingResult:
    """Heuristic pricing over ``n_samples`` random hyperplanes: NOT a certificate.

    Each sample draws a Gaussian normal and puts the hyperplane through a random data
    point; both orientations are evaluated. Every sampled activation is realizable, so
    the result never exceeds the exact maximum (up to rounding), but it can be far
    below it: a dual point scaled with it may be infeasible and gives **no valid
    lower bound** (THEORY section 4). Use it to find violated atoms for large ``r``
    (column generation heuristics), never to verify a bound.

    ``Y (N, r)`` may have any ``r`` (reduced coordinates preferred); ``n_samples`` random
    hyperplanes give ``2 n_samples`` candidates; other arguments as for
    :func:`price_enumerate_torch`. Returns a :class:`SampledPricingResult` with
    ``method="sampled"`` and ``certified=False``.
    """
    if not (isinstance(n_samples, int) and n_samples >= 1):
        raise ValueError(f"The 'n_samples' parameter must be an int >= 1. Got {n_samples!r}.")
    Y, R = _inputs(Y, R, device, dtype)
    chunk = chunk or default_chunk(device)
    n, r = Y.shape
    gs = group_structure(groups, R.shape[1], Y.device, Y.dtype)
    if r == 0 or n == 0:
        return _constant(R, gs, top, SampledPricingResult, certified=False)
    gen = torch.Generator(device=Y.device).manual_seed(int(seed))
    best = _Best(top, r + 1, Y)
    batch = max(1, chunk // max(n, 1))
    for s in range(0, n_samples, batch):
        k = min(batch, n_samples - s)
        normal = torch.randn((k, r), generator=gen, device=Y.device, dtype=Y.dtype)
        normal = normal / torch.linalg.vector_norm(normal, dim=1, keepdim=True)
        through = torch.randint(0, n, (k,), generator=gen, device=Y.device)
        U = torch.cat([normal, -(normal * Y[through]).sum(dim=1, keepdim=True)], dim=1)
        Z = U[:, :r] @ Y.T + U[:, r:]
        for sign in (1.0, -1.0):
            A = Z if sign > 0 else -Z
            A = torch.where(A > ZERO_TOL, A, torch.zeros_like(A))
            best.push(_values(A, R, gs), lambda idx, s=sign, U=U: s * U[idx])
    return best.result(2 * n_samples, "sampled", SampledPricingResult, certified=False)
