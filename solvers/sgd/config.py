"""Settings of the SGD trainer (:class:`TrainConfig`), validated when constructed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from convexdict_solvers.sgd.torch_sae import ACTIVATIONS

DECAYS = ("cosine", "linear", "constant")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Fields that change the trajectory: a checkpoint only resumes a run that agrees on them.
TRAJECTORY_FIELDS = (
    "lam", "width", "steps", "batch_size", "lr", "seed", "warmup_steps", "decay",
    "activation", "k", "l1_warmup_steps", "resample_dead_every", "dead_window",
    "resample_samples", "jumprelu_threshold", "jumprelu_bandwidth", "dtype",
)


def need_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"The '{name}' parameter must be an integer >= {minimum}. Got {value!r}.")


def need_float(name: str, value: Any, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        interval = "[0, inf)" if allow_zero else "(0, inf)"
        raise ValueError(f"The '{name}' parameter must be a float in {interval}. Got {value!r}.")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one SAE training run (the data and initial weights are passed apart).

    Parameters
    ----------
    lam : float
        Penalty weight: L1 (``relu``), L0 (``jumprelu``), unused by ``topk``/``batchtopk``.
    width : int
        Number of latents ``K``.
    steps : int
        Optimiser steps.
    batch_size : int
        Global batch size (all ranks together); capped at ``N``.
    lr : float
        Peak Adam learning rate.
    seed : int
        Seed of the generator for initialisation, batch order and resampling.
    warmup_steps : int
        Linear learning-rate warmup.
    decay : {"cosine", "linear", "constant"}
        Learning-rate shape after warmup (the first two reach 0 at ``steps``).
    activation : {"relu", "topk", "batchtopk", "jumprelu"}
    k : int, optional
        Required by ``topk`` and ``batchtopk``.
    l1_warmup_steps : int
        Linear ramp of ``lam`` (0 = off); not the canonical objective during the ramp.
    resample_dead_every : int
        Resample dead latents every this many steps (0 = off).
    dead_window : int
        A latent that fired in none of the last ``dead_window`` batches is dead.
    resample_samples : int
        Rows scored when choosing resampling inputs.
    jumprelu_threshold, jumprelu_bandwidth : float
        Initial JumpReLU threshold and straight-through-estimator width.
    lam_anchor : float
        Weight of the feature-anchoring term (0 = off); needs ``anchors`` in
        :func:`train`. Not the canonical objective when > 0.
    dtype : {"float32", "float64"}
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    checkpoint_dir : str, optional
        Where checkpoints go (none when ``None``).
    checkpoint_every : int
        Steps between checkpoints (one is also written at the end).
    keep_checkpoints : int
        How many of the newest checkpoints to keep.
    log_every : int
        Steps between history records (one is also taken at the end).
    quiet : bool
        No progress bar.
    """

    lam: float
    width: int
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    warmup_steps: int = 0
    decay: str = "cosine"
    activation: str = "relu"
    k: int | None = None
    l1_warmup_steps: int = 0
    resample_dead_every: int = 0
    dead_window: int = 1000
    resample_samples: int = 4096
    jumprelu_threshold: float = 1e-3
    jumprelu_bandwidth: float = 1e-3
    lam_anchor: float = 0.0
    dtype: str = "float32"
    device: str = "cpu"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    quiet: bool = False

    def __post_init__(self) -> None:
        # Plain Python numbers throughout, so checkpoints load with weights_only=True.
        for name in ("lam", "lr", "jumprelu_threshold", "jumprelu_bandwidth", "lam_anchor"):
            need_float(name, getattr(self, name), allow_zero=name in ("lam", "lam_anchor"))
            object.__setattr__(self, name, float(getattr(self, name)))
        for name, minimum in (
            ("width", 1), ("steps", 0), ("batch_size", 1), ("seed", 0), ("warmup_steps", 0),
            ("l1_warmup_steps", 0), ("resample_dead_every", 0), ("dead_window", 1),
            ("resample_samples", 1), ("checkpoint_every", 1), ("keep_checkpoints", 1),
            ("log_every", 1),
        ):
            need_int(name, getattr(self, name), minimum)
            object.__setattr__(self, name, int(getattr(self, name)))
        for name, choices in (("decay", DECAYS), ("activation", ACTIVATIONS),
                              ("dtype", tuple(DTYPES))):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"The '{name}' parameter must be one of {choices}. "
                    f"Got {getattr(self, name)!r}."
                )
        if self.activation in ("topk", "batchtopk"):
            need_int("k", self.k, 1)
            object.__setattr__(self, "k", int(self.k))
            if self.k > self.width:
                raise ValueError(f"The 'k' parameter must be <= width={self.width}. Got {self.k}.")
        elif self.k is not None:
            raise ValueError(
                f"The 'k' parameter is only used by 'topk' and 'batchtopk'; leave it None for "
                f"activation={self.activation!r}. Got {self.k!r}."
            )
