"""An SAE's numbers over data streamed in chunks (arrays or memory-mapped ``.npy`` files).

Everything :func:`convexdict.compare` reports that is a sum over samples is accumulated
here one row block at a time on a torch device, so ``X`` is never loaded whole:

* :func:`moments`: ``N``, ``sum_n x_n``, ``||X - 1 mean^T||^2`` and the data scale
  ``max_n ||x_n - mean||`` (two cheap ``O(N d)`` passes);
* :func:`sae_pass`: one pass that returns the canonical loss terms, firing counts, the
  quantities of the decoder block's dual (``Z^T R``, ``<R, X>``, ``||R||^2``), paper A's
  stationarity sums and the per-sample relaxation bound of the encoder block
  (docs/theory.md, "Bounds for the two convex blocks"), the encoder block's gradient (so
  its descent starts without a pass of its own), and optionally the Gram matrices
  ``Z^T Z`` and ``Z^T X`` of the decoder block (``Z^T Z`` by its upper blocks only).

The definitions are those of :mod:`convexdict.models.sae` and :mod:`convexdict.analysis.diagnostics`
(active = ``Z[n, k] ||W_dec[k]|| > ACTIVE_RTOL * scale``); in float64 the streamed
numbers equal the in-memory ones to rounding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from convexdict_solvers.blocks.torch_decoder import (
    add_gram,
    mirror_gram,
    row_blocks,
    row_slices,
    t_matmul,
)
from convexdict_solvers.blocks.torch_encoder import SAETensors, chunk_gradient, chunk_terms
from convexdict_solvers.duality import best_on_ray, feasible_scale

from convexdict._validation import check_int
from convexdict.analysis.diagnostics import ACTIVE_RTOL, CODE_RTOL
from convexdict.models.sae import SAE

_CHUNK_FLOATS = 1 << 23


def open_samples(X: Any, d: int | None = None) -> Any:
    """``X`` as a 2-D array-like without loading it: a path to ``.npy`` is memory-mapped.

    Parameters
    ----------
    X : ndarray, numpy.memmap, str or path-like of shape (N, d)
    d : int, optional
        Required number of columns.

    Returns
    -------
    ndarray or numpy.memmap
    """
    if isinstance(X, (str, os.PathLike)):
        path = Path(X)
        if path.suffix != ".npy" or not path.is_file():
            raise ValueError(f"The 'X' parameter must be an array or an existing .npy file. "
                             f"Got '{path}'.")
        X = np.load(path, mmap_mode="r")
    if not isinstance(X, np.ndarray):
        X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"The 'X' parameter must be a 2-D array of shape (N, d) with N, d >= 1. "
                         f"Got shape {X.shape}.")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"The 'X' parameter must hold real numbers. Got dtype {X.dtype}.")
    if d is not None and X.shape[1] != d:
        raise ValueError(f"The 'X' parameter must have d={d} columns like the SAE. "
                         f"Got shape {X.shape}.")
    return X


def subsample(X: Any, max_samples: int | None, seed: int = 0) -> Any:
    """A seeded random subset of ``max_samples`` rows (sorted), or ``X`` itself if smaller."""
    if max_samples is None or X.shape[0] <= max_samples:
        return X
    max_samples = check_int("max_samples", max_samples, minimum=1)
    rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_samples, replace=False))
    return np.asarray(X[rows], dtype=np.float64)


def resolve_device(device: str | None, dtype: str | None) -> tuple[str, torch.dtype]:
    """Default device (CUDA when available) and dtype (float64 on CPU, float32 on CUDA)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = "float64" if torch.device(device).type == "cpu" else "float32"
    if dtype not in ("float32", "float64"):
        raise ValueError(f"The 'dtype' parameter must be 'float32' or 'float64'. Got {dtype!r}.")
    return device, getattr(torch, dtype)


def chunk_rows(batch_size: int | None, width: int, d: int) -> int:
    """Rows per chunk: ``batch_size``, or about eight million floats per ``(rows, K)`` block."""
    if batch_size is not None:
        return check_int("batch_size", batch_size, minimum=1)
    return max(64, _CHUNK_FLOATS // max(width, d, 1))


def sae_tensors(sae: SAE, device, dtype) -> SAETensors:
    """The weights of ``sae`` as tensors on ``device``."""
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float64)).to(device=device, dtype=dtype)

    return SAETensors(t(sae.W_enc), t(sae.b_enc), t(sae.W_dec), t(sae.b_dec))


@dataclass(frozen=True)
class Moments:
    """Data sums from :func:`moments`.

    Attributes
    ----------
    n : int
    xsum : Tensor of shape (d,)
        float64.
    sst : float
        ``||X - 1 mean^T||_F^2``.
    scale : float
        ``max_n ||x_n - mean||`` (the data scale of :func:`convexdict.active_mask`).
    """

    n: int
    xsum: torch.Tensor
    sst: float
    scale: float

    @property
    def mean(self) -> torch.Tensor:
        return self.xsum / self.n


def moments(X: Any, rows: int, device, dtype) -> Moments:
    """Two ``O(N d)`` passes: the column sums, then the centred sums of squares and scale."""
    n, d = X.shape
    xsum = torch.zeros(d, dtype=torch.float64, device=device)
    for Xb in row_blocks(X, rows, device, dtype):
        if not bool(torch.isfinite(Xb).all()):
            raise ValueError("The 'X' parameter must contain only finite values. Got NaN or inf.")
        xsum += Xb.sum(0, dtype=torch.float64)
    mean = (xsum / n).to(dtype)
    sst = torch.zeros((), dtype=torch.float64, device=device)
    scale = torch.zeros((), dtype=torch.float64, device=device)
    for Xb in row_blocks(X, rows, device, dtype):
        D = Xb - mean
        sq = (D * D).sum(1, dtype=torch.float64)
        sst += sq.sum()
        scale = torch.maximum(scale, sq.max().sqrt())
    return Moments(n, xsum, float(sst), float(scale))


@dataclass
class PassSums:
    """Sums over the samples from :func:`sae_pass` (float64 tensors, not divided by ``N``).

    ``recon = 1/2 sum ||r_n||^2``, ``penalty = lam sum_nk ||W_dec[k]|| Z[n, k]``,
    ``l1 = sum_nk Z[n, k]``, ``zsum = Z^T 1``, ``rsum = R^T 1``, ``rx = <R, X>``,
    ``rr = ||R||^2``, ``ZtR = Z^T R``, ``fires[k]`` = samples where ``k`` is active,
    ``l0`` = active pairs; with ``stationarity``: ``code_max``, ``code_fail``,
    ``zunit = sum_n z_nk``, ``atom = z^T R`` (unit codes ``z``), ``enc_grad`` and
    ``enc_lower`` (the encoder relaxation's dual value); with ``stationarity`` or
    ``gradient``: ``gW = gZ^T X (K, d)`` and ``gb = gZ^T 1``, the encoder block's gradient
    times ``N`` (:func:`convexdict_solvers.blocks.torch_encoder.chunk_gradient`); with
    ``gram``: ``ZtZ``, ``ZtX``.
    """

    recon: float = 0.0
    penalty: float = 0.0
    l1: float = 0.0
    rx: float = 0.0
    rr: float = 0.0
    l0: float = 0.0
    enc_lower: float = 0.0
    zsum: Any = None
    rsum: Any = None
    ZtR: Any = None
    fires: Any = None
    code_max: Any = None
    code_fail: Any = None
    zunit: Any = None
    atom: Any = None
    enc_grad: Any = None
    ZtZ: Any = None
    ZtX: Any = None
    gW: Any = None
    gb: Any = None


def encoder_start(sums: PassSums, n: int, dtype) -> tuple[float, torch.Tensor, torch.Tensor]:
    """``(loss, gW, gb)`` of the pass's SAE as
    :func:`convexdict_solvers.blocks.torch_encoder.gradient_pass` returns them (the same
    chunk sums, so the same bits), for ``encoder_descent(start=...)``."""
    return ((sums.recon + sums.penalty) / n, (sums.gW.T / n).to(dtype),
            (sums.gb / n).to(dtype))


def _add(sums: PassSums, name: str, value: torch.Tensor) -> None:
    current = getattr(sums, name)
    setattr(sums, name, value.double() if current is None else current + value.double())


def _slice_sums(sums: PassSums, Xb, Z, R, RW, p: SAETensors, norms, lam: float,
                threshold: float, code_tol: float, low: list) -> int | None:
    """The elementwise sums of one chunk, over row slices (so they run in cache).

    Always ``fires``; with ``RW = R W_dec^T`` (stationarity): the code condition, ``zunit``,
    the encoder relaxation bound, and in ``low`` the sums over the pairs in the pattern
    whose code is below the activity threshold (``atom`` and ``enc_grad`` are then
    ``Z^T R`` and the gradient sums less these, see :func:`sae_pass`). Returns
    ``nnz(Z)`` on the CPU (for :func:`t_matmul`), else ``None``.
    """
    has_dir = norms > 0
    safe = torch.where(has_dir, norms, torch.ones_like(norms))
    nnz = 0 if Z.device.type == "cpu" else None
    mx = []
    for sl in row_slices(Z.shape[0], Z.shape[1], Z.device):
        zn = Z[sl] * norms
        active = zn > threshold
        _add(sums, "fires", active.sum(0))
        S = Z[sl] > 0
        if nnz is not None:
            nnz += int(S.sum())
        if RW is None:
            continue
        proj = RW[sl] / safe  # R dhat^T
        u = proj - lam
        per = torch.where(active, u.abs(), u.clamp_min_(0.0))
        m = per.max(0).values.double()
        sums.code_max = m if sums.code_max is None else torch.maximum(sums.code_max, m)
        _add(sums, "code_fail", (per > code_tol * lam).sum(0))
        _add(sums, "zunit", zn.masked_fill_(~active, 0.0).sum(0))
        S &= has_dir
        below = S & ~active
        if bool(below.any()):
            g = (lam - proj).masked_fill_(~below, 0.0)
            low[0] += t_matmul(Z[sl].masked_fill(~below, 0.0), R[sl]).double()
            low[1] += torch.cat([t_matmul(g, Xb[sl]), g.sum(0)[:, None]], dim=1).double()
        mx.append(proj.masked_fill_(~S, -float("inf")).max(1).values)
    if RW is not None:
        # Encoder block relaxation (codes free on the pattern S): per-sample dual values.
        a = (R * (Xb - p.b_dec)).sum(1, dtype=torch.float64)
        q = (R * R).sum(1, dtype=torch.float64)
        value, _ = best_on_ray(a.cpu().numpy(), q.cpu().numpy(),
                               feasible_scale(lam, torch.cat(mx).double().cpu().numpy()))
        sums.enc_lower += float(value.sum())
    return nnz


def sae_pass(
    X: Any,
    p: SAETensors,
    lam: float,
    *,
    mom: Moments,
    rows: int,
    device,
    dtype,
    stationarity: bool = True,
    gram: bool = False,
    gradient: bool = False,
    code_tol: float = CODE_RTOL,
    progress: Any = None,
) -> PassSums:
    """One pass over ``X`` accumulating :class:`PassSums` for the SAE ``p``.

    Parameters
    ----------
    X : ndarray or memmap of shape (N, d)
    p : SAETensors
    lam : float
    mom : Moments
        From :func:`moments` (the data scale defines "active").
    rows : int
    device, dtype
    stationarity, gram : bool
        Accumulate paper A's sums / the decoder block's Gram matrices.
    gradient : bool
        Accumulate the encoder block's gradient (always done with ``stationarity``).
    code_tol : float
        Relative threshold of the code-condition failure count.
    progress : callable, optional
        Called with the number of rows after each chunk.

    Returns
    -------
    PassSums
    """
    sums = PassSums()
    K, d = p.W_dec.shape
    norms = torch.linalg.vector_norm(p.W_dec, dim=1)
    threshold = ACTIVE_RTOL * (mom.scale if mom.scale > 0 else 1.0)
    if gram:
        sums.ZtZ = torch.zeros((K, K), dtype=torch.float64, device=device)
    # Sums over the pairs (n, k) with 0 < Z[n, k] ||W_dec[k]|| <= threshold (rare): the
    # atom sums z^T R and paper A's encoder gradient are Z^T R and gZ^T (X, 1) less these.
    low = [torch.zeros((K, n), dtype=torch.float64, device=device)
           for n in ((d, d + 1) if stationarity else ())]
    for Xb in row_blocks(X, rows, device, dtype):
        Z = torch.addmm(p.b_enc, Xb, p.W_enc).clamp_min_(0.0)  # S = (Z > 0)
        R = Xb - torch.addmm(p.b_dec, Z, p.W_dec)
        recon, penalty, zs = chunk_terms(R, Z, norms, lam)
        sums.recon += recon
        sums.penalty += penalty
        sums.l1 += float(zs.sum())
        sums.rx += float((R * Xb).sum(dtype=torch.float64))
        sums.rr += float((R * R).sum(dtype=torch.float64))
        _add(sums, "zsum", zs)
        _add(sums, "rsum", R.sum(0, dtype=torch.float64))
        RW = R @ p.W_dec.T if stationarity or gradient else None
        nnz = _slice_sums(sums, Xb, Z, R, RW if stationarity else None, p, norms, lam,
                          threshold, code_tol, low)
        _add(sums, "ZtR", t_matmul(Z, R, nnz=nnz))
        if RW is not None:
            _, gx, g1 = chunk_gradient(Xb, Z, RW, norms, lam)
            _add(sums, "gW", gx)
            _add(sums, "gb", g1)
        if gram:
            add_gram(sums.ZtZ, Z)
            _add(sums, "ZtX", t_matmul(Z, Xb, nnz=nnz))
        if progress is not None:
            progress(Xb.shape[0])
    sums.l0 = float(sums.fires.sum())
    if gram:
        mirror_gram(sums.ZtZ)
    if stationarity:
        has_dir = (norms > 0)[:, None]
        sums.atom = norms.double()[:, None] * (sums.ZtR - low[0])
        grad = torch.cat([sums.gW, sums.gb[:, None]], dim=1)
        sums.enc_grad = torch.where(has_dir, grad / torch.where(has_dir, norms[:, None], 1.0)
                                    .double() - low[1], 0.0)
    return sums


def decoder_dual(sums: PassSums, mom: Moments, lam: float) -> float:
    """The decoder block's dual value from the residual of the pass (module docstring).

    ``R`` centred (``R_c = R - 1 rbar^T``) and scaled by the largest ``t`` with
    ``t ||Z[:, k]^T R_c|| <= lam c_k``: a lower bound on the decoder block's optimum for
    the codes of the pass (docs/theory.md, "Bounds for the two convex blocks").
    """
    n = mom.n
    rmean = sums.rsum / n
    a = sums.rx - n * float(rmean @ mom.mean)
    q = sums.rr - n * float(rmean @ rmean)
    corr = torch.linalg.vector_norm(sums.ZtR - torch.outer(sums.zsum, rmean), dim=1)
    live = sums.zsum > 0
    ratio = torch.where(live & (corr > 0), lam * sums.zsum / torch.clamp_min(corr, 1e-300),
                        torch.full_like(corr, float("inf")))
    t_max = float(ratio.min()) if ratio.numel() else float("inf")
    value, _ = best_on_ray(a, q, t_max)
    return float(value) / n
