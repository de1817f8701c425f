"""Paper B's two convex blocks at any size: improvement found and improvement bound.

:mod:`convexdict.analysis.pieces` solves each block exactly with CVXPY, which needs all ``N x K``
activations in one program. Here the same two blocks run on data streamed in chunks
(:mod:`convexdict.analysis.streaming`) on a torch device:

* :func:`decoder_block`: codes fixed, the group lasso in ``(W_dec, b_dec)`` built from the
  ``K x K`` Gram matrix ``Z^T Z`` and ``Z^T X`` and solved by FISTA
  (:func:`convexdict_solvers.blocks.torch_decoder.solve_decoder_block`). The candidate's loss is
  recomputed
  from the data, and the block's optimum is bounded below by the dual value of the
  residual (of the SAE and of the candidate, recomputed from the data): the block can
  improve the loss by at most ``loss - dual``.
* :func:`encoder_block`: decoder and pattern fixed, feasible descent on the piece
  (:func:`convexdict_solvers.blocks.torch_encoder.encoder_descent`). The bound on what this block
  could still gain comes from relaxing the encoder to free codes on the pattern; see
  docs/theory.md, "Bounds for the two convex blocks", and :class:`StreamedStats`.

Both return the input SAE when the recomputed loss did not go down, so a step never
raises the loss.

The last decoder block solved is remembered by the SHA-256 of the SAE's weights and of
the data (with ``lam``, the solver settings, device, dtype and chunk size), so
:func:`polish_at_scale` after :func:`convexdict.compare` on the same SAE and data takes
compare's decoder block as it is instead of solving it again (same numbers, bit for bit).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from convexdict_solvers.blocks.torch_decoder import FistaSettings, solve_decoder_block
from convexdict_solvers.blocks.torch_encoder import SAETensors, encoder_descent

from convexdict._validation import check_int, check_positive
from convexdict.analysis.streaming import (
    Moments,
    PassSums,
    chunk_rows,
    decoder_dual,
    encoder_start,
    moments,
    open_samples,
    resolve_device,
    sae_pass,
    sae_tensors,
    subsample,
)
from convexdict.models.sae import SAE
from convexdict.tolerance import improves

# Decoder block solver settings of compare and polish (relative duality gap 1e-6).
DECODER_SETTINGS = FistaSettings(max_iter=500, tol=1e-6)


@dataclass(frozen=True)
class BlockResult:
    """One convex block solved from ``sae``.

    Attributes
    ----------
    sae : SAE
        The SAE after the step (``sae`` itself when the recomputed loss did not decrease).
    loss_before, loss_after : float
        Canonical losses, both recomputed from the data.
    improvement : float
        ``loss_before - loss_after >= 0``: the improvement *found*.
    bound : float
        An upper bound on the improvement the block could make (``nan`` when none is
        derived); ``bound >= improvement`` up to rounding.
    iterations : int
    converged : bool
        The solver met its own stopping rule (duality gap, or no further descent).
    sums : PassSums, optional
        A pass of ``sae`` (the returned SAE) with its encoder gradient, when the block made
        one (the decoder block's verification pass with ``gradient=True``): the encoder
        block then starts from it.
    """

    sae: SAE
    loss_before: float
    loss_after: float
    improvement: float
    bound: float
    iterations: int
    converged: bool
    sums: PassSums | None = None


def _loss(sums: PassSums, n: int) -> float:
    return (sums.recon + sums.penalty) / n


def _to_sae(p: SAETensors) -> SAE:
    def a(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy()

    return SAE(a(p.W_enc), a(p.b_enc), a(p.W_dec), a(p.b_dec))


def _digest(X: Any, rows: int) -> str | None:
    """SHA-256 of the shape, dtype and bytes of a numpy ``X`` (read in chunks); ``None``
    for anything else (tensors are not remembered)."""
    if not isinstance(X, np.ndarray):
        return None
    h = hashlib.sha256(f"{X.shape}|{X.dtype.str}".encode())
    for start in range(0, X.shape[0], rows):
        h.update(np.ascontiguousarray(X[start : start + rows]))
    return h.hexdigest()


def _sae_digest(sae: SAE) -> str:
    h = hashlib.sha256()
    for a in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec):
        h.update(f"{a.shape}".encode())
        h.update(np.ascontiguousarray(a))
    return h.hexdigest()


# (key, BlockResult) of the last decoder block solved (module docstring).
_LAST_DECODER: list = []


def decoder_block(
    sae: SAE,
    X: Any,
    lam: float,
    *,
    mom: Moments,
    rows: int,
    device: Any,
    dtype: torch.dtype,
    sums: PassSums | None = None,
    settings: FistaSettings = DECODER_SETTINGS,
    gradient: bool = False,
) -> BlockResult:
    """Solve the decoder block of ``sae`` (codes fixed) and verify it on the data.

    Parameters
    ----------
    sae : SAE
    X : ndarray or memmap of shape (N, d)
    lam : float
    mom : Moments
    rows : int
        Rows per chunk.
    device, dtype
        Where the passes run; the Gram matrices and FISTA are float64.
    sums : PassSums, optional
        A pass of ``sae`` with ``gram=True`` (computed here when omitted).
    settings : FistaSettings
    gradient : bool
        Accumulate the encoder gradient of the candidate in the verification pass and
        return that pass as ``BlockResult.sums`` (for an encoder block that follows).

    Returns
    -------
    BlockResult
    """
    key = _digest(X, rows)
    if key is not None:
        key = (key, _sae_digest(sae), float(lam), settings, rows, str(device), str(dtype))
        if _LAST_DECODER and _LAST_DECODER[0] == key:
            return _LAST_DECODER[1]
    res = _solve_decoder(sae, X, lam, mom=mom, rows=rows, device=device, dtype=dtype,
                         sums=sums, settings=settings, gradient=gradient)
    _LAST_DECODER[:] = [] if key is None else [key, res]
    return res


def _solve_decoder(sae: SAE, X: Any, lam: float, *, mom: Moments, rows: int, device: Any,
                   dtype: torch.dtype, sums: PassSums | None, settings: FistaSettings,
                   gradient: bool) -> BlockResult:
    """:func:`decoder_block` without the memory of the last block."""
    p = sae_tensors(sae, device, dtype)
    if sums is None or sums.ZtZ is None:
        sums = sae_pass(X, p, lam, mom=mom, rows=rows, device=device, dtype=dtype,
                        stationarity=False, gram=True)
    n = mom.n
    loss0 = _loss(sums, n)
    if sae.width == 0:
        return BlockResult(sae, loss0, loss0, 0.0, loss0 - decoder_dual(sums, mom, lam), 0, True)
    W0 = torch.from_numpy(np.array(sae.W_dec, dtype=np.float64)).to(device)
    sol = solve_decoder_block(sums.ZtZ, sums.ZtX, sums.zsum, mom.xsum, mom.sst, n, lam,
                              W0=W0, settings=settings)
    W = torch.where((sums.zsum > 0)[:, None], sol.W, W0)  # latents that never fire keep theirs
    cand = SAE(sae.W_enc, sae.b_enc, W.cpu().numpy(), sol.b.cpu().numpy())
    check = sae_pass(X, sae_tensors(cand, device, dtype), lam, mom=mom, rows=rows,
                     device=device, dtype=dtype, stationarity=False, gradient=gradient)
    loss1 = _loss(check, n)
    lower = max(decoder_dual(sums, mom, lam), decoder_dual(check, mom, lam))
    bound = max(loss0 - lower, 0.0)
    if loss1 < loss0:
        return BlockResult(cand, loss0, loss1, loss0 - loss1, bound, sol.n_iter, sol.converged,
                           _descent_sums(check))
    return BlockResult(sae, loss0, loss0, 0.0, bound, sol.n_iter, sol.converged,
                       _descent_sums(sums))


def _descent_sums(sums: PassSums) -> PassSums | None:
    """What an encoder block needs of a pass (loss terms and gradient), when it has them."""
    if sums.gW is None:
        return None
    return PassSums(recon=sums.recon, penalty=sums.penalty, gW=sums.gW, gb=sums.gb)


def encoder_block(
    sae: SAE,
    X: Any,
    lam: float,
    *,
    rows: int,
    device: Any,
    dtype: torch.dtype,
    iters: int = 3,
    bound: float = float("nan"),
    sums: PassSums | None = None,
) -> BlockResult:
    """Descend on the encoder block of ``sae`` (decoder and pattern fixed).

    Parameters
    ----------
    sae : SAE
    X : ndarray or memmap of shape (N, d)
    lam : float
    rows : int
    device, dtype
    iters : int
        Descent iterations (two passes over the data each).
    bound : float
        The upper bound on the block's improvement, when the caller has one
        (:func:`encoder_gain_bound`); reported as it is.
    sums : PassSums, optional
        A pass of ``sae`` with its encoder gradient (``stationarity`` or ``gradient``):
        the descent starts from it instead of making its own first gradient pass.

    Returns
    -------
    BlockResult
    """
    p = sae_tensors(sae, device, dtype)
    start = None if sums is None or sums.gW is None else encoder_start(sums, X.shape[0], dtype)
    res = encoder_descent(X, p, lam, iters=iters, rows=rows, device=device, dtype=dtype,
                          start=start)
    loss0, loss1 = res.losses[0], res.losses[-1]
    steps = len(res.losses) - 1
    if loss1 < loss0:
        cand = _to_sae(SAETensors(res.params.W_enc, res.params.b_enc, p.W_dec, p.b_dec))
        cand = SAE(cand.W_enc, cand.b_enc, sae.W_dec, sae.b_dec)
        return BlockResult(cand, loss0, loss1, loss0 - loss1, bound, steps, steps < iters)
    return BlockResult(sae, loss0, loss0, 0.0, bound, steps, True)


def encoder_gain_bound(sums: PassSums, n: int) -> float:
    """Upper bound on the encoder block's improvement from a pass with ``stationarity``.

    ``loss - (1/N) sum_n v_n`` where ``v_n`` is the dual value of sample ``n``'s
    nonnegative lasso over the codes allowed by the pattern (docs/theory.md, "Bounds for
    the two convex blocks"); ``nan`` without the sums.
    """
    if sums.code_max is None:
        return float("nan")
    return max(_loss(sums, n) - sums.enc_lower / n, 0.0)


@dataclass(frozen=True)
class PolishStep:
    """One accepted or rejected block step of :func:`polish_streamed`."""

    round: int
    block: str
    loss: float
    improvement: float
    bound: float


def polish_streamed(
    sae: SAE,
    X: Any,
    lam: float,
    *,
    mom: Moments,
    rows: int,
    device: Any,
    dtype: torch.dtype,
    rounds: int = 1,
    tol: float = 1e-6,
    encoder_iters: int = 3,
    settings: FistaSettings = DECODER_SETTINGS,
    log: Any = None,
) -> tuple[SAE, list[PolishStep]]:
    """Alternate the decoder and encoder blocks on streamed data.

    Each round solves the decoder block, then descends on the encoder block; each step's
    loss is recomputed from the data and a step that does not lower it is not taken, so
    the loss never rises. Stops after ``rounds`` rounds or when a round lowers the loss by
    at most ``tol`` times the loss.

    Returns
    -------
    sae : SAE
    steps : list of PolishStep
        The starting loss first (``block="start"``).
    """
    current = sae
    steps: list[PolishStep] = []
    for r in range(1, rounds + 1):
        dec = decoder_block(current, X, lam, mom=mom, rows=rows, device=device, dtype=dtype,
                            settings=settings, gradient=encoder_iters > 0)
        if not steps:
            steps.append(PolishStep(0, "start", dec.loss_before, 0.0, float("nan")))
        steps.append(PolishStep(r, "decoder", dec.loss_after, dec.improvement, dec.bound))
        if log is not None:
            log(steps[-1])
        enc = encoder_block(dec.sae, X, lam, rows=rows, device=device, dtype=dtype,
                            iters=encoder_iters, sums=dec.sums)
        steps.append(PolishStep(r, "encoder", enc.loss_after, enc.improvement, math.nan))
        if log is not None:
            log(steps[-1])
        current = enc.sae
        if not improves(enc.loss_after, dec.loss_before, tol):
            break
    return current, steps


@dataclass(frozen=True)
class PolishResult:
    """The result of :func:`polish_at_scale`.

    Attributes
    ----------
    sae : SAE
        The polished SAE (same width; saves to SAELens format with :meth:`SAE.save`).
    loss_before, loss_after : float
        Canonical losses recomputed from the data (``loss_after <= loss_before``).
    steps : list of PolishStep
    """

    sae: SAE
    loss_before: float
    loss_after: float
    steps: list[PolishStep]


def polish_at_scale(
    sae: SAE,
    X: Any,
    lam: float,
    *,
    rounds: int = 5,
    tol: float = 1e-6,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    encoder_iters: int = 3,
    settings: FistaSettings = DECODER_SETTINGS,
    log: Any = None,
) -> PolishResult:
    """Polish ``sae`` by alternating the two convex blocks on data streamed in chunks.

    Right after :func:`convexdict.compare` of the same SAE on the same data (same
    ``lam``, device, dtype and chunk size), the first decoder block is compare's, not
    solved again (module docstring).

    Parameters
    ----------
    sae : SAE
    X : ndarray, numpy.memmap or path to ``.npy`` of shape (N, d)
    lam : float
    rounds : int
        Rounds at most (decoder block, then encoder block).
    tol : float
        Stop when a round lowers the loss by at most ``tol`` times the loss.
    device, dtype, batch_size, max_samples, seed
        As in :func:`convexdict.analysis.scale_compare.compare_streamed`.
    encoder_iters : int
        Descent iterations of the encoder block per round.
    settings : FistaSettings
        Decoder block solver settings.
    log : callable, optional
        Called with each :class:`PolishStep`.

    Returns
    -------
    PolishResult

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> sae = SAE(np.eye(3), np.zeros(3), np.eye(3), np.zeros(3))
    >>> res = polish_at_scale(sae, X, 0.1, rounds=2, device="cpu")
    >>> res.loss_after <= res.loss_before
    True
    """
    if not isinstance(sae, SAE):
        raise ValueError(f"The 'sae' parameter must be a convexdict.SAE. Got {type(sae).__name__}.")
    lam = check_positive("lam", lam)
    tol = check_positive("tol", tol)
    rounds = check_int("rounds", rounds, minimum=1)
    encoder_iters = check_int("encoder_iters", encoder_iters, minimum=0)
    X = subsample(open_samples(X, sae.d_in), max_samples, seed)
    dev, dt = resolve_device(device, dtype)
    rows = chunk_rows(batch_size, sae.width, sae.d_in)
    mom = moments(X, rows, dev, dt)
    out, steps = polish_streamed(sae, X, lam, mom=mom, rows=rows, device=dev, dtype=dt,
                                 rounds=rounds, tol=tol, encoder_iters=encoder_iters,
                                 settings=settings, log=log)
    return PolishResult(out, steps[0].loss, steps[-1].loss, steps)
