"""Compare an SAE at any size, without a certificate (THEORY sections 3, 5 and 6).

:func:`compare_streamed` is what :func:`convexdict.compare` runs when exact pricing is out
of reach (or when it is given a memory-mapped ``.npy``). It streams ``X`` in chunks
(:mod:`convexdict.analysis.streaming`) and reports:

* loss terms in canonical units and in SAELens / dictionary_learning / sparsify units
  (:func:`loss_units`), L0, explained variance, dead and dense latents;
* ``lower_bound``: the joint wide-limit bound (valid for every SAE at every width; the
  SAE's own dual bound needs exact pricing and is ``nan`` here);
* paper A's stationarity per latent (:class:`convexdict.Stationarity`);
* paper B's two blocks (:mod:`convexdict.analysis.blocks`): ``improve_decoder`` /
  ``improve_encoder`` found, and ``improve_decoder_bound`` / ``improve_encoder_bound``,
  upper bounds on what each block could still gain;
* a verdict that says what was proved: ``certified_global`` (loss within ``tol`` of the
  joint bound), ``not_converged`` (a block's recomputed step lowers the loss by more than
  ``tol``), ``partial_minimum`` (both block bounds within ``tol``: no block can improve),
  else ``undetermined``;
* with ``incumbents=True`` only (they cost training runs), explicit width-``K`` SAEs
  (:mod:`convexdict.analysis.scale_incumbents`: the SAE polished, seeded restarts of the
  trainer, each polished, every loss recomputed in float64 over all of ``X``). One that
  beats the polished SAE by more than ``tol`` is ``better_sae``, and when no block step
  lowers the loss by more than ``tol`` the verdict is ``spurious_partial_minimum``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from convexdict_solvers.blocks.torch_decoder import FistaSettings
from convexdict_solvers.blocks.torch_joint import joint_wide_limit_torch

from convexdict._validation import check_int, check_positive
from convexdict.analysis.blocks import (
    DECODER_SETTINGS,
    decoder_block,
    encoder_block,
    encoder_gain_bound,
)
from convexdict.analysis.diagnostics import Stationarity
from convexdict.analysis.scale_incumbents import (
    IncumbentSearch,
    IncumbentSettings,
    search_incumbents,
)
from convexdict.analysis.streaming import (
    Moments,
    PassSums,
    chunk_rows,
    moments,
    open_samples,
    resolve_device,
    sae_pass,
    sae_tensors,
    subsample,
)
from convexdict.models.sae import SAE
from convexdict.tolerance import improves, relative_gap, within_tol

# A latent is dense when it fires on at least this fraction of the samples.
DENSE_FRACTION = 0.5


def loss_units(recon: float, penalty: float, l1: float, sst: float, n: int,
               lam: float) -> dict[str, dict[str, float]]:
    """The canonical loss in each library's logged units (inverse of
    :mod:`convexdict.data.formats`).

    Parameters
    ----------
    recon, penalty : float
        Canonical terms (per sample).
    l1 : float
        ``mean_n sum_k Z[n, k]`` (unweighted L1 of the codes).
    sst : float
        ``||X - 1 mean^T||^2`` (sparsify's FVU denominator).
    n : int
    lam : float

    Returns
    -------
    dict
        ``saelens``: ``mse_loss = 2 recon``, ``l1_loss = 2 penalty`` at
        ``l1_coefficient = 2 lam``; ``dictionary_learning``: ``mse_loss = 2 recon``,
        ``sparsity_loss = l1`` at ``l1_penalty = 2 lam`` (equal to the canonical penalty
        only for unit decoder rows); ``sparsify``: ``fvu = 2 N recon / sst``.
    """
    fvu = 2.0 * n * recon / sst if sst > 0 else float("nan")
    return {
        "canonical": {"reconstruction": recon, "penalty": penalty, "loss": recon + penalty,
                      "lam": lam},
        "saelens": {"mse_loss": 2.0 * recon, "l1_loss": 2.0 * penalty,
                    "l1_coefficient": 2.0 * lam, "loss": 2.0 * (recon + penalty)},
        "dictionary_learning": {"mse_loss": 2.0 * recon, "sparsity_loss": l1,
                                "l1_penalty": 2.0 * lam},
        "sparsify": {"fvu": fvu, "total_variance": sst, "n_samples": n},
    }


def stationarity_from_sums(sums: PassSums, sae: SAE, n: int, lam: float) -> Stationarity:
    """Paper A's residuals (as :func:`convexdict.stationarity`) from a streamed pass."""
    has_dir = sae.decoder_norms() > 0
    zunit = sums.zunit.cpu().numpy()
    atom_vec = sums.atom.cpu().numpy()
    dhat = sae.W_dec / np.where(has_dir, sae.decoder_norms(), 1.0)[:, None]
    atom_vec = atom_vec - lam * zunit[:, None] * dhat
    atom = np.linalg.norm(atom_vec, axis=1) / np.where(zunit > 0, lam * zunit, 1.0)
    atom = np.where(zunit > 0, atom, 0.0)
    code = np.where(has_dir, sums.code_max.cpu().numpy(), np.nan)
    fails = np.where(has_dir, sums.code_fail.cpu().numpy() / n, np.nan)
    enc = np.linalg.norm(sums.enc_grad.cpu().numpy(), axis=1) / n
    bias = float(np.linalg.norm(sums.rsum.cpu().numpy())) / n
    return Stationarity(code, atom, enc, bias, fails)


def _verdict(loss: float, lower: float, dec: float, dec_bound: float, enc: float,
             enc_bound: float, tol: float,
             search: IncumbentSearch | None = None) -> tuple[str, str]:
    if within_tol(loss, lower, tol):
        return "certified_global", "loss within tolerance of the joint lower bound"
    found = [(name, a, b) for name, a, b in (("decoder", dec, dec_bound),
                                              ("encoder", enc, enc_bound))
             if improves(loss - a, loss, tol)]
    if found:
        name, a, b = max(found, key=lambda f: f[1])
        return ("not_converged", f"the {name} block lowers the loss by {a:.3g} (found; at "
                f"most {b:.3g})")
    if search is not None and improves(search.polished_loss, loss, tol):
        return ("not_converged", f"alternating the two blocks lowers the loss to "
                f"{search.polished_loss:.10g}")
    closed = [not math.isnan(b) and b <= tol * loss for b in (dec_bound, enc_bound)]
    if search is not None and search.beats(tol):
        how = ("both duality bounds prove that no block can improve" if all(closed) else
               "no block step lowers the loss by more than the tolerance")
        return ("spurious_partial_minimum", f"{how}, but {search.best_source} has a lower "
                f"loss ({search.best_loss:.10g}, recomputed in float64 from its weights)")
    if all(closed):
        return ("partial_minimum", "neither block can improve by more than the tolerance "
                "(proved by both duality bounds); no explicit better SAE is known")
    said = ", ".join(f"{name} gain <= {b:.3g}" for name, b in
                     (("decoder", dec_bound), ("encoder", enc_bound)))
    return ("undetermined", f"no block improvement above tolerance was found, and the "
            f"bounds do not close ({said}; tolerance {tol * loss:.3g})")


def compare_streamed(
    sae: SAE,
    X: Any,
    lam: float,
    *,
    tol: float = 1e-6,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    blocks: bool = True,
    encoder_iters: int = 3,
    decoder_settings: FistaSettings = DECODER_SETTINGS,
    progress: Any = None,
    incumbents: bool = False,
    incumbent_time: float | None = None,
    incumbent_restarts: int = 3,
    incumbent_steps: int = 1000,
) -> Any:
    """Compare ``sae`` with what can be bounded at any size (see the module docstring).

    Parameters
    ----------
    sae : SAE
    X : ndarray, numpy.memmap or path to ``.npy`` of shape (N, d)
        Streamed in chunks of ``batch_size`` rows; never loaded whole.
    lam : float
    tol : float
        Relative tolerance of the verdict (:func:`convexdict.within_tol`).
    device, dtype : str, optional
        Torch device (default CUDA when available) and working precision (default
        float64 on CPU, float32 on CUDA; sums are float64 either way).
    batch_size : int, optional
        Rows per chunk.
    max_samples : int, optional
        Use a seeded random subset of this many rows: every number and bound then
        describes the subsample (``Comparison.subsample`` says so).
    seed : int
    blocks : bool
        Solve the two convex blocks (else their fields are nan).
    encoder_iters : int
        Feasible-descent iterations of the encoder block.
    decoder_settings : FistaSettings
    progress : callable, optional
        ``progress(stage, rows)`` after each chunk of the main pass and once per stage.
    incumbents : bool
        Also search explicit width-``K`` SAEs that could beat ``sae``
        (:func:`convexdict.analysis.scale_incumbents.search_incumbents`: ``sae`` polished,
        and ``incumbent_restarts`` seeded training runs of ``incumbent_steps`` Adam steps,
        each polished; losses recomputed in float64 over all of ``X``). Off by default:
        it trains SAEs, which can take much longer than the rest of the comparison.
        Sets ``better_sae`` / ``better_loss`` when one beats the polished ``sae`` by more
        than ``tol``, ``optimum_loss`` (the best loss known at width ``K``, ``sae``
        included) and ``incumbents`` (a summary).
    incumbent_time : float, optional
        Seconds for that search (default: no limit, the fixed work above).
    incumbent_restarts, incumbent_steps : int
        Training runs, and Adam steps per run.

    Returns
    -------
    Comparison
    """
    from convexdict.analysis.comparison import Comparison

    lam = check_positive("lam", lam)
    tol = check_positive("tol", tol)
    encoder_iters = check_int("encoder_iters", encoder_iters, minimum=0)
    if not isinstance(incumbents, bool):
        raise ValueError(f"The 'incumbents' parameter must be True or False. Got {incumbents!r}.")
    settings = IncumbentSettings(
        time_limit=None if incumbent_time is None else check_positive("incumbent_time",
                                                                      incumbent_time),
        restarts=check_int("incumbent_restarts", incumbent_restarts, minimum=0),
        steps=check_int("incumbent_steps", incumbent_steps, minimum=1), seed=seed)
    X = open_samples(X, sae.d_in)
    n_total = X.shape[0]
    X = subsample(X, max_samples, seed)
    dev, dt = resolve_device(device, dtype)
    rows = chunk_rows(batch_size, sae.width, sae.d_in)
    report = progress or (lambda stage, k: None)
    mom: Moments = moments(X, rows, dev, dt)
    n, d = X.shape
    sums = sae_pass(X, sae_tensors(sae, dev, dt), lam, mom=mom, rows=rows, device=dev,
                    dtype=dt, stationarity=True, gram=blocks,
                    progress=lambda k: report("statistics", k))
    loss = (sums.recon + sums.penalty) / n
    fires = sums.fires.cpu().numpy()
    rate = fires / n
    dead = [int(k) for k in np.flatnonzero(fires == 0)]
    report("joint bound", 0)
    # Weiszfeld's stopping rule is step <= tol (1 + ||b||): make it relative to the data.
    size = math.sqrt(mom.sst / n) + float(torch.linalg.vector_norm(mom.mean))
    joint = joint_wide_limit_torch(X, lam, device=dev, dtype=torch.float64, chunk_rows=rows,
                                   tol=1e-11 * size / (1.0 + float(
                                       torch.linalg.vector_norm(mom.mean))))
    lower = joint.lower_bound
    dec = enc = dec_bound = float("nan")
    enc_bound = encoder_gain_bound(sums, n)
    shift = None
    if blocks:
        report("decoder block", 0)
        res = decoder_block(sae, X, lam, mom=mom, rows=rows, device=dev, dtype=dt, sums=sums,
                            settings=decoder_settings)
        dec, dec_bound = res.improvement, res.bound
        shift = np.linalg.norm(res.sae.W_dec - sae.W_dec, axis=1)
        report("encoder block", 0)
        enc = encoder_block(sae, X, lam, rows=rows, device=dev, dtype=dt,
                            iters=encoder_iters, sums=sums).improvement
    search = None
    if incumbents:
        search = search_incumbents(sae, X, lam, tol=tol, mom=mom, rows=rows, device=dev,
                                   dtype=dt, settings=settings, encoder_iters=encoder_iters,
                                   progress=report)
    verdict, message = _verdict(loss, lower, dec, dec_bound, enc, enc_bound, tol, search)
    sub = None
    if n < n_total:
        sub = {"n_total": int(n_total), "n_used": int(n), "seed": int(seed),
               "note": "every number and bound describes the random subsample"}
        message += f" [on a seeded subsample of {n} of {n_total} samples]"
    return Comparison(
        lam=lam, tol=tol, n_samples=n, d=d, width=sae.width, width_needed=-1,
        loss=loss, reconstruction=sums.recon / n, penalty=sums.penalty / n,
        l0=sums.l0 / n,
        explained_variance=1.0 - sums.rr / mom.sst if mom.sst > 0 else float("nan"),
        dead_latents=dead, dead_fraction=len(dead) / sae.width if sae.width else 0.0,
        lower_bound=lower, gap=loss - lower,
        optimum_loss=float("nan") if search is None else min(loss, search.polished_loss,
                                                               search.best_loss),
        relative_gap=relative_gap(loss, lower), sae_dual_bound=float("nan"),
        improve_decoder=dec, improve_encoder=enc, verdict=verdict, message=message,
        decoder_matching=None, activation_matching=None,
        stationarity=stationarity_from_sums(sums, sae, n, lam),
        improve_decoder_bound=dec_bound, improve_encoder_bound=enc_bound,
        loss_units=loss_units(sums.recon / n, sums.penalty / n, sums.l1 / n, mom.sst, n, lam),
        dense_latents=[int(k) for k in np.flatnonzero(rate >= DENSE_FRACTION)],
        firing_rate=rate, decoder_shift=shift, subsample=sub, method="streamed",
        better_sae=search.best if search is not None and search.beats(tol) else None,
        better_loss=search.best_loss if search is not None and search.beats(tol)
        else float("nan"),
        incumbents=None if search is None else search.to_dict(),
    )


def priceable(X: Any, max_entries: int = 2_000_000) -> bool:
    """Whether exact pricing (hence a certificate) is within reach for ``X``.

    False for paths and memory-mapped arrays, for more than ``max_entries`` entries, and
    when the sweep needs more events than certification allows
    (``convexdict_solvers.pricing.exact.sweep_cost`` of ``N`` and the affine rank).
    """
    import os

    from convexdict_solvers.pricing.exact import sweep_cost

    from convexdict.convex.atoms import MAX_SWEEP_EVENTS, affine_frame

    if isinstance(X, (str, os.PathLike, np.memmap)) or not hasattr(X, "shape"):
        return isinstance(X, (list, tuple))
    if len(X.shape) != 2 or X.shape[0] * X.shape[1] > max_entries:
        return False
    n, d = X.shape
    if sweep_cost(n, min(d, max(n - 1, 0))) <= MAX_SWEEP_EVENTS:
        return True
    try:
        rank = affine_frame(np.asarray(X, dtype=np.float64)).rank
    except ValueError:
        return True  # let the certificate path report the problem with X
    return sweep_cost(n, rank) <= MAX_SWEEP_EVENTS


def streamed_extras(sae: SAE, X: np.ndarray, lam: float) -> dict[str, Any]:
    """The fields the streamed path adds, for an in-memory ``X`` (certificate path).

    Runs one float64 pass on the CPU and the decoder block's FISTA for its bound.
    """
    dev, dt = "cpu", torch.float64
    rows = chunk_rows(None, sae.width, sae.d_in)
    mom = moments(X, rows, dev, dt)
    n = X.shape[0]
    sums = sae_pass(X, sae_tensors(sae, dev, dt), lam, mom=mom, rows=rows, device=dev,
                    dtype=dt, stationarity=True, gram=True)
    res = decoder_block(sae, X, lam, mom=mom, rows=rows, device=dev, dtype=dt, sums=sums)
    rate = sums.fires.cpu().numpy() / n
    return {
        "improve_decoder_bound": res.bound,
        "improve_encoder_bound": encoder_gain_bound(sums, n),
        "loss_units": loss_units(sums.recon / n, sums.penalty / n, sums.l1 / n, mom.sst, n,
                                 lam),
        "dense_latents": [int(k) for k in np.flatnonzero(rate >= DENSE_FRACTION)],
        "firing_rate": rate,
        "decoder_shift": np.linalg.norm(res.sae.W_dec - sae.W_dec, axis=1),
    }


def latent_table(cmp: Any) -> dict[str, np.ndarray]:
    """Per-latent columns of a :class:`~convexdict.Comparison` (for CSV / Parquet).

    Columns: ``latent``, ``firing_rate``, ``dead``, ``dense``, ``code_violation``,
    ``code_violation_fraction``, ``atom_residual``, ``encoder_gradient`` and
    ``decoder_shift`` (``||W_dec'[k] - W_dec[k]||`` of the decoder block's solution; nan
    when not solved).
    """
    st = cmp.stationarity
    K = cmp.width
    rate = cmp.firing_rate if cmp.firing_rate is not None else np.full(K, np.nan)
    dead = np.zeros(K, dtype=bool)
    dead[cmp.dead_latents] = True
    dense = np.zeros(K, dtype=bool)
    dense[cmp.dense_latents] = True
    frac = st.code_violation_fraction
    return {
        "latent": np.arange(K),
        "firing_rate": np.asarray(rate, dtype=np.float64),
        "dead": dead,
        "dense": dense,
        "code_violation": np.asarray(st.code_violation, dtype=np.float64),
        "code_violation_fraction": np.full(K, np.nan) if frac is None else np.asarray(frac),
        "atom_residual": np.asarray(st.atom_residual, dtype=np.float64),
        "encoder_gradient": np.asarray(st.encoder_gradient, dtype=np.float64),
        "decoder_shift": np.full(K, np.nan) if cmp.decoder_shift is None
        else np.asarray(cmp.decoder_shift, dtype=np.float64),
    }
