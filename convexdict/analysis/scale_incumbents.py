"""Explicit width-``K`` SAEs at any size: the incumbents of ``compare(..., incumbents=True)``.

A lower bound alone never calls a partial minimum spurious; one explicit SAE of width
``<= K`` with a lower loss does. :func:`convexdict.fixed_width.width_incumbents.width_incumbents`
builds such SAEs when the data fit in memory (``d`` small, a certificate in reach). At any
size, :func:`search_incumbents` looks for them with what scales:

1. **the compared SAE, polished**: alternating the two convex blocks
   (:func:`convexdict.analysis.blocks.polish_streamed`) on all of ``X``; its loss is the
   reference a better SAE must beat by more than the tolerance;
2. **seeded restarts** of the package's own trainer
   (:func:`convexdict_solvers.sgd.trainer.train`) at width ``K``, each on a seeded random
   subsample of at most ``train_samples`` rows (in exact internal units,
   :mod:`convexdict.units`, so the step sizes see unit-RMS data), then polished on all of
   ``X`` in the same way.

Every candidate's loss is recomputed in float64 from its weights over all of ``X``,
streamed in chunks (:func:`convexdict.analysis.streaming.sae_pass`). The search is
heuristic: nothing here is a bound. With ``time_limit`` every stage (each restart's
training, each polish round) checks the deadline; without one, the work is fixed
(``restarts`` runs of ``steps`` steps and ``rounds`` polish rounds each).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from convexdict.analysis.blocks import DECODER_SETTINGS, polish_streamed
from convexdict.analysis.streaming import Moments, sae_pass, sae_tensors, subsample
from convexdict.models.sae import SAE
from convexdict.tolerance import improves
from convexdict.units import Units

# A run whose batch x d x K product is at most this trains on one CPU thread: on small
# matrices a contended thread pool only adds waiting (as in the group-lasso solver).
_SINGLE_THREAD_WORK = 1 << 22


@dataclass(frozen=True)
class IncumbentSettings:
    """The work of :func:`search_incumbents`.

    Attributes
    ----------
    time_limit : float or None
        Seconds for the whole search (``None``: no limit, the fixed work below).
    restarts : int
        Seeded training runs at width ``K`` (seeds ``seed, seed + 1, ...``).
    steps, batch_size : int
        Adam steps and samples per step of each run.
    lr : float
        Peak learning rate (in internal units: unit-RMS data).
    train_samples : int
        Rows of the seeded subsample each run trains on (all of ``X`` when smaller).
    rounds : int
        Polish rounds (decoder block, then encoder block) of every candidate at most.
    seed : int
    """

    time_limit: float | None = None
    restarts: int = 3
    steps: int = 1000
    batch_size: int = 1024
    lr: float = 1e-3
    train_samples: int = 65536
    rounds: int = 3
    seed: int = 0


@dataclass(frozen=True)
class IncumbentSearch:
    """What :func:`search_incumbents` found.

    Attributes
    ----------
    polished_loss : float
        Float64 loss of the compared SAE after polishing (``<=`` its own loss).
    best : SAE or None
        The best restart (width ``K``, polished); None when none ran.
    best_loss : float
        Its float64 loss over all of ``X`` (``inf`` when None).
    best_source : str
        Which run it is, for messages.
    losses : list of float
        Float64 loss of every completed restart, in seed order.
    seconds : float
    out_of_time : bool
        The deadline stopped the search (or a run) early.
    """

    polished_loss: float
    best: SAE | None
    best_loss: float
    best_source: str
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    out_of_time: bool = False

    def beats(self, tol: float) -> bool:
        """The best restart beats the polished compared SAE by more than ``tol``."""
        return self.best is not None and improves(self.best_loss, self.polished_loss, tol)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (without the weights)."""
        return {"polished_loss": self.polished_loss, "best_loss": self.best_loss,
                "best_source": self.best_source, "restart_losses": list(self.losses),
                "seconds": self.seconds, "out_of_time": self.out_of_time}


def float64_loss(sae: SAE, X: Any, lam: float, *, mom: Moments, rows: int,
                 device: Any) -> float:
    """``sae_loss(sae, X, lam)`` in float64, over all rows of ``X`` streamed in chunks."""
    sums = sae_pass(X, sae_tensors(sae, device, torch.float64), lam, mom=mom, rows=rows,
                    device=device, dtype=torch.float64, stationarity=False)
    return (sums.recon + sums.penalty) / X.shape[0]


class _Clock:
    """Seconds left before the deadline (``None``: no limit)."""

    def __init__(self, limit: float | None) -> None:
        self.t0 = time.perf_counter()
        self.end = None if limit is None else self.t0 + limit
        self.ran_out = False

    def left(self) -> float | None:
        return None if self.end is None else self.end - time.perf_counter()

    def expired(self) -> bool:
        left = self.left()
        if left is not None and left <= 0:
            self.ran_out = True
        return self.ran_out


def _polish(sae: SAE, X: Any, lam: float, clock: _Clock, *, rounds: int, tol: float,
            mom: Moments, rows: int, device: Any, dtype: torch.dtype,
            encoder_iters: int) -> SAE:
    """Up to ``rounds`` polish rounds, the deadline checked before each."""
    for _ in range(rounds):
        if clock.expired():
            break
        sae, steps = polish_streamed(sae, X, lam, mom=mom, rows=rows, device=device,
                                     dtype=dtype, rounds=1, tol=tol,
                                     encoder_iters=encoder_iters, settings=DECODER_SETTINGS)
        if not improves(steps[-1].loss, steps[0].loss, tol):
            break
    return sae


def _train(X: Any, lam: float, width: int, seed: int, settings: IncumbentSettings,
           clock: _Clock, device: Any) -> SAE:
    """One seeded run of the trainer on a subsample, in internal units; user units back."""
    from convexdict_solvers.group_lasso.torch_fista import cpu_threads
    from convexdict_solvers.sgd.trainer import TrainConfig, train

    part = np.asarray(subsample(X, settings.train_samples, seed), dtype=np.float64)
    units = Units.of(part)
    config = TrainConfig(lam=lam / units.t, width=width, steps=settings.steps,
                         batch_size=settings.batch_size, lr=settings.lr, seed=seed,
                         device=str(device), quiet=True, log_every=settings.steps)
    left = clock.left()
    work = min(settings.batch_size, part.shape[0]) * part.shape[1] * width
    with cpu_threads(1, enabled=torch.device(device).type == "cpu"
                     and work <= _SINGLE_THREAD_WORK):
        out = train(part / units.x, config,
                    time_limit=None if left is None else max(left, 0.0))
    if out["step"] < settings.steps:
        clock.ran_out = True
    trained = SAE(out["W_enc"], out["b_enc"], out["W_dec"], out["b_dec"])
    return units.model_to_user(trained)


def search_incumbents(
    sae: SAE,
    X: Any,
    lam: float,
    *,
    tol: float,
    mom: Moments,
    rows: int,
    device: Any,
    dtype: torch.dtype,
    settings: IncumbentSettings = IncumbentSettings(),
    encoder_iters: int = 3,
    progress: Any = None,
) -> IncumbentSearch:
    """Polish ``sae`` and train seeded width-``K`` restarts (see the module docstring).

    Parameters
    ----------
    sae : SAE
        The compared SAE (width ``K``).
    X : ndarray or memmap of shape (N, d)
        All the samples (never loaded whole; only each run's subsample is).
    lam, tol : float
    mom : Moments
        Of ``X`` (:func:`convexdict.analysis.streaming.moments`).
    rows : int
        Rows per chunk.
    device, dtype
        Torch device and working precision of the polish (losses are float64 anyway).
    settings : IncumbentSettings
    encoder_iters : int
    progress : callable, optional
        ``progress(stage, 0)`` at the start of each stage.

    Returns
    -------
    IncumbentSearch
    """
    report = progress or (lambda stage, k: None)
    clock = _Clock(settings.time_limit)
    common = {"tol": tol, "mom": mom, "rows": rows, "device": device, "dtype": dtype,
              "encoder_iters": encoder_iters}
    report("incumbents: polishing the SAE", 0)
    own = _polish(sae, X, lam, clock, rounds=settings.rounds, **common)
    polished = min(float64_loss(own, X, lam, mom=mom, rows=rows, device=device),
                   float64_loss(sae, X, lam, mom=mom, rows=rows, device=device))
    best, best_loss, source, losses = None, math.inf, "", []
    for i in range(settings.restarts):
        if clock.expired():
            break
        seed = settings.seed + i
        report(f"incumbents: restart {i + 1}/{settings.restarts} (training)", 0)
        cand = _train(X, lam, sae.width, seed, settings, clock, device)
        report(f"incumbents: restart {i + 1}/{settings.restarts} (polishing)", 0)
        cand = _polish(cand, X, lam, clock, rounds=settings.rounds, **common)
        loss = float64_loss(cand, X, lam, mom=mom, rows=rows, device=device)
        losses.append(loss)
        if loss < best_loss:
            best, best_loss = cand, loss
            source = f"a trained and polished width-{sae.width} SAE (restart seed {seed})"
    return IncumbentSearch(polished, best, best_loss, source, losses,
                           time.perf_counter() - clock.t0, clock.ran_out)
