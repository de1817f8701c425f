"""Adam/SGD training of sparse autoencoders on arrays, memory maps or tensors.

The engine behind ``convexdict.train_sae``, ``train_transcoder`` and
``train_crosscoder``. It works on plain arrays and never imports ``convexdict``.

Transcoders and crosscoders: pass ``targets=[Y_1, ..., Y_L]`` (row-aligned with ``X``)
and the model encodes ``X`` and decodes the layers side by side (``W_dec (K, sum d_l)``,
see :mod:`solvers.torch_sae`); one target is a transcoder. ``targets=None`` is the SAE,
the same computation as before targets existed.

What it does, in order, for ``step = 0 .. steps-1``:

1. draw a batch of ``batch_size`` row indices (shuffled epochs without replacement; the
   whole data set, in order, when ``batch_size >= N``), sorted so memory-mapped reads
   are sequential;
2. take one Adam step on the activation's training objective (see
   :mod:`solvers.torch_sae`), with the learning rate warmed up linearly over
   ``warmup_steps`` and then decayed to 0 (``"cosine"`` or ``"linear"``) or held
   (``"constant"``);
3. every ``resample_dead_every`` steps, resample dead latents (below);
4. every ``log_every`` steps, record loss, L0, explained variance and dead fraction;
   every ``checkpoint_every`` steps, write a checkpoint.

Initialisation: decoder rows unit-norm Gaussian, ``W_enc = W_dec.T``, ``b_dec`` = the data
mean (exact, one chunked pass over the data), ``b_enc = -b_dec @ W_enc``. With targets:
``b_dec`` = the targets' mean, ``b_enc = -mean(X) @ W_enc``, and ``W_enc`` is tied to
``W_dec.T`` only when ``X`` and the concatenated targets have the same width (else an
independent unit-column draw); so a transcoder with ``Y = X`` starts, and trains,
exactly like the SAE with the same seed.

L1 warmup: with ``l1_warmup_steps > 0`` the penalty weight is ramped linearly from
``lam / l1_warmup_steps`` to ``lam``. During the ramp the objective being minimised is
NOT the canonical objective at ``lam``; only the steps after the ramp are.

Dead-latent resampling (Anthropic, "Towards Monosemanticity", 2023): a latent is dead if
it fired on none of the batches of the last ``dead_window`` steps. Each dead latent gets
its decoder row set to a unit vector ``(x - b_dec)/||x - b_dec||`` for an input ``x``
drawn from ``resample_samples`` random rows with probability proportional to the square
of its reconstruction loss ``1/2 ||x - xhat||^2``; its encoder column is the same vector
scaled to 0.2 times the mean encoder-column norm of the alive latents, its bias is
``-b_dec @ W_enc[:, k]`` and its Adam moments are reset. With targets the decoder row is
``(y - b_dec)/||y - b_dec||`` and the encoder column ``(x - m)/||x - m||`` (same scale),
``m = mean(X)`` standing in for ``b_dec`` on the input side. Resampling changes the
trajectory, not the objective.

Feature anchoring (paper B, :mod:`solvers.anchoring`): with ``anchors=(A_enc, A_dec)``
and ``config.lam_anchor > 0`` the step minimises the activation's objective plus
``lam_anchor * (||W_enc[:, :k] - A_enc||^2 + ||W_dec[:k] - A_dec||^2)``. That is a
different objective from the canonical one; the history's ``loss`` stays the
activation's objective and ``anchor_penalty`` records the added term.
``lam_anchor = 0`` is exactly the unanchored run.

Determinism: initialisation, batch order and resampling draw from one CPU
``torch.Generator`` seeded with ``seed``, so a CPU run is bit-reproducible, and a run
resumed from a checkpoint ends bit-identical to an uninterrupted one (checkpoints hold
model, optimiser, scheduler, generator and sampler state, the dead-latent counters and
the history).

Distributed data parallel: launched under ``torchrun`` (``WORLD_SIZE > 1``), the process
group is initialised if needed (gloo on CPU, nccl on CUDA) and kept for later calls; end
the script with ``torch.distributed.barrier()`` and
``torch.distributed.destroy_process_group()`` for a clean exit. Every rank draws the
same global batch and takes its contiguous shard of it, the loss of each shard is
weighted so that the averaged gradient is the gradient of the global-batch mean, and
BatchTopK picks its threshold over the global batch. The result equals the
single-process run with the same ``batch_size`` up to floating-point roundoff. Rank 0
writes checkpoints; every rank returns the same result.

Example (two CPU processes)::

    torchrun --nproc-per-node=2 my_script.py   # my_script calls solvers.sgd.train
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .anchoring import Anchors, check_anchors
from .atomic import atomic_write
from .torch_sae import ACTIVATIONS, TorchSAE, _Objective

DECAYS = ("cosine", "linear", "constant")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
_CHUNK_ROWS = 65536
_DEVICE_DATA_LIMIT = 4 * 2**30  # in-memory data up to this size is copied to the device
_CKPT = re.compile(r"^ckpt_(\d{8,})\.pt$")
# Fields that change the trajectory: a checkpoint only resumes a run that agrees on them.
_TRAJECTORY_FIELDS = (
    "lam", "width", "steps", "batch_size", "lr", "seed", "warmup_steps", "decay",
    "activation", "k", "l1_warmup_steps", "resample_dead_every", "dead_window",
    "resample_samples", "jumprelu_threshold", "jumprelu_bandwidth", "dtype",
)


def _need_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"The '{name}' parameter must be an integer >= {minimum}. Got {value!r}.")


def _need_float(name: str, value: Any, allow_zero: bool) -> None:
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
            _need_float(name, getattr(self, name), allow_zero=name in ("lam", "lam_anchor"))
            object.__setattr__(self, name, float(getattr(self, name)))
        for name, minimum in (
            ("width", 1), ("steps", 0), ("batch_size", 1), ("seed", 0), ("warmup_steps", 0),
            ("l1_warmup_steps", 0), ("resample_dead_every", 0), ("dead_window", 1),
            ("resample_samples", 1), ("checkpoint_every", 1), ("keep_checkpoints", 1),
            ("log_every", 1),
        ):
            _need_int(name, getattr(self, name), minimum)
            object.__setattr__(self, name, int(getattr(self, name)))
        for name, choices in (("decay", DECAYS), ("activation", ACTIVATIONS),
                              ("dtype", tuple(DTYPES))):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"The '{name}' parameter must be one of {choices}. "
                    f"Got {getattr(self, name)!r}."
                )
        if self.activation in ("topk", "batchtopk"):
            _need_int("k", self.k, 1)
            object.__setattr__(self, "k", int(self.k))
            if self.k > self.width:
                raise ValueError(f"The 'k' parameter must be <= width={self.width}. Got {self.k}.")
        elif self.k is not None:
            raise ValueError(
                f"The 'k' parameter is only used by 'topk' and 'batchtopk'; leave it None for "
                f"activation={self.activation!r}. Got {self.k!r}."
            )


# ---------------------------------------------------------------------------- data
class _Data:
    """Row access to an array, a ``.npy`` memory map or a tensor, without loading a map."""

    def __init__(self, X: Any, dtype: torch.dtype, device: torch.device,
                 name: str = "X") -> None:
        self.name = name
        if isinstance(X, (str, os.PathLike)):
            X = np.load(X, mmap_mode="r")
        if isinstance(X, torch.Tensor):
            X = X.detach()
        elif not isinstance(X, np.ndarray):
            X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(
                f"The '{name}' parameter must be a non-empty 2-D array (N, d). "
                f"Got shape {tuple(X.shape)}."
            )
        self.source = X
        self.n, self.d = int(X.shape[0]), int(X.shape[1])
        self.dtype, self.device = dtype, device
        self.resident: torch.Tensor | None = None
        size = self.n * self.d * torch.empty((), dtype=dtype).element_size()
        if not isinstance(X, np.memmap) and (device.type == "cpu" or size <= _DEVICE_DATA_LIMIT):
            if isinstance(X, np.ndarray):
                # torch needs writeable memory and non-negative strides (e.g. X[:, ::-1])
                X = torch.from_numpy(np.ascontiguousarray(X) if X.flags.writeable else X.copy())
            self.resident = X.to(device=device, dtype=dtype)

    def _host_chunk(self, start: int, stop: int) -> np.ndarray:
        chunk = self.source[start:stop]
        if isinstance(chunk, torch.Tensor):
            return chunk.to("cpu", torch.float64).numpy()
        return np.asarray(chunk, dtype=np.float64)

    def mean(self) -> np.ndarray:
        """Exact float64 column means ``(d,)``, in chunks; checks finiteness on the way."""
        total = np.zeros(self.d)
        for start in range(0, self.n, _CHUNK_ROWS):
            chunk = self._host_chunk(start, min(start + _CHUNK_ROWS, self.n))
            if not np.all(np.isfinite(chunk)):
                raise ValueError(
                    f"The '{self.name}' parameter must contain only finite values. Got NaN or "
                    f"infinite entries in rows [{start}, {start + chunk.shape[0]})."
                )
            total += chunk.sum(axis=0)
        return total / self.n

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":  # pinned + non_blocking: no stream sync per step
            return host.pin_memory().to(self.device, non_blocking=True)
        return host

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` as a ``(len(idx), d)`` tensor of the training dtype and device."""
        if self.resident is not None:
            return self.resident.index_select(0, self._to_device(torch.from_numpy(idx)))
        host = torch.from_numpy(np.asarray(self.source[idx]))
        return self._to_device(host).to(self.dtype)


class _Targets:
    """The target layers of a transcoder or crosscoder, read row-aligned with ``X``."""

    def __init__(self, targets: Any, n: int, dtype: torch.dtype, device: torch.device) -> None:
        if isinstance(targets, (np.ndarray, torch.Tensor, str, os.PathLike)) \
                or not isinstance(targets, Sequence) or len(targets) == 0:
            raise ValueError(
                "The 'targets' parameter must be a non-empty list of (N, d_l) arrays, tensors "
                f"or .npy paths (one per layer). Got {type(targets).__name__}."
            )
        self.layers = [_Data(T, dtype, device, name=f"targets[{i}]")
                       for i, T in enumerate(targets)]
        for layer in self.layers:
            if layer.n != n:
                raise ValueError(
                    f"The '{layer.name}' parameter must have N={n} rows like X (row i is the "
                    f"target of X[i]). Got {layer.n} rows."
                )
        self.dims = tuple(layer.d for layer in self.layers)

    def mean(self) -> np.ndarray:
        """Exact float64 column means of the concatenated layers, shape ``(D,)``."""
        return np.concatenate([layer.mean() for layer in self.layers])

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` of the concatenated layers, shape ``(len(idx), D)``."""
        parts = [layer.rows(idx) for layer in self.layers]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class _Sampler:
    """Shuffled epochs without replacement; every epoch's permutation comes from a seed
    drawn from the shared generator, so the state is two integers."""

    def __init__(self, n: int, batch: int, generator: torch.Generator) -> None:
        self.n, self.batch, self.generator = n, batch, generator
        self.epoch_seed: int | None = None
        self.pos = 0
        self._perm: torch.Tensor | None = None

    def _permute(self) -> None:
        gen = torch.Generator().manual_seed(self.epoch_seed)
        self._perm = torch.randperm(self.n, generator=gen)

    def next(self) -> np.ndarray:
        """Sorted int64 indices of the next global batch."""
        if self.batch >= self.n:
            return np.arange(self.n)
        if self.epoch_seed is None or self.pos + self.batch > self.n:
            self.epoch_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            self.pos = 0
            self._permute()
        idx = self._perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return np.sort(idx.numpy())

    def state_dict(self) -> dict[str, int | None]:
        return {"epoch_seed": self.epoch_seed, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        self.epoch_seed, self.pos = state["epoch_seed"], int(state["pos"])
        if self.epoch_seed is not None:
            self._permute()


@dataclass
class _LRSchedule:
    """Learning-rate multiplier for optimiser step ``i`` (0-based)."""

    warmup: int
    total: int
    decay: str

    def __call__(self, i: int) -> float:
        if i < self.warmup:
            return (i + 1) / self.warmup
        if self.decay == "constant":
            return 1.0
        frac = min(1.0, (i - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * frac)) if self.decay == "cosine" else 1.0 - frac


# ---------------------------------------------------------------------------- helpers
def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> ``cuda`` when available else ``cpu``; under ``torchrun`` with CUDA,
    the device of ``LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _dist_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_sum(values: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(values)
    return values


def _global_idle(idle: torch.Tensor, world: int) -> torch.Tensor:
    """Steps since each latent last fired on any rank."""
    idle = idle.clone()
    if world > 1:
        dist.all_reduce(idle, op=dist.ReduceOp.MIN)
    return idle


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _CKPT.match(p.name))]
    return sorted(found)


def _save_checkpoint(directory: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Atomic write (:func:`solvers.atomic.atomic_write`, fsynced), then prune old ones."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt_{step:08d}.pt"

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)
    for _, old in _checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


_STATE_KEYS = frozenset({"config", "data_shape", "step", "elapsed", "model", "optimizer",
                         "scheduler", "generator", "sampler", "idle", "history"})


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state; ``ValueError`` naming the file when it is unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated: RuntimeError/EOFError/OSError; pickle errors, ...
        lines = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__
        raise ValueError(f"checkpoint {path} is unreadable ({why})") from exc
    if not isinstance(state, dict) or not _STATE_KEYS <= set(state):
        raise ValueError(f"checkpoint {path} is not a solvers.sgd checkpoint")
    return state


def _say(message: str, rank: int) -> None:
    if rank == 0:
        print(message, file=sys.stderr, flush=True)


def _resume_state(directory: Path, rank: int) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``directory`` (``None`` if there is none).

    Unreadable checkpoints (a kill during a copy, a full disk) are skipped, newest first,
    and renamed to ``<name>.unreadable`` so that pruning never keeps them instead of
    good ones. Prints one line saying which step resumed (or that none exists); raises
    ``ValueError`` when checkpoints exist but none is readable.
    """
    found = _checkpoints(directory)
    if not found:
        _say(f"resume: no checkpoint in {directory}; starting from step 0", rank)
        return None
    skipped: list[tuple[Path, str]] = []
    for _, path in reversed(found):
        try:
            state = _read_checkpoint(path)
        except ValueError as exc:
            skipped.append((path, str(exc)))
            continue
        note = ""
        if skipped:
            note = (f"; skipped {len(skipped)} unreadable newer checkpoint(s), renamed to "
                    f"*.unreadable: {'; '.join(why for _, why in skipped)}")
            if rank == 0:
                for bad, _ in skipped:
                    bad.replace(bad.with_name(bad.name + ".unreadable"))
        _say(f"resume: resumed from step {int(state['step'])} ({path}){note}", rank)
        state["_path"] = path
        return state
    raise ValueError(
        f"The 'checkpoint_dir' {str(directory)!r} holds {len(found)} checkpoint(s) but none is "
        f"readable ({'; '.join(why for _, why in skipped)}). Delete them or use another "
        "'checkpoint_dir'."
    )


def _progress(enabled: bool, total: int) -> AbstractContextManager[Any]:
    if not enabled:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("SAE"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
    )


# ---------------------------------------------------------------------------- resampling
@torch.no_grad()
def _resample(model: TorchSAE, opt: torch.optim.Optimizer, data: _Data,
              gen: torch.Generator, idle: torch.Tensor, config: TrainConfig,
              world: int, targets: _Targets | None = None,
              input_mean: torch.Tensor | None = None) -> int:
    """Resample dead latents in place (module docstring); returns how many."""
    dead = _global_idle(idle, world) >= config.dead_window
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    pool = np.sort(torch.randint(0, data.n, (config.resample_samples,), generator=gen).numpy())
    x = data.rows(pool)
    y = x if targets is None else targets.rows(pool)
    was_training = model.training
    model.eval()
    errors = []
    for start in range(0, x.shape[0], 4096):
        part = x[start : start + 4096]
        errors.append(0.5 * ((y[start : start + 4096] - model(part)[0]) ** 2).sum(dim=1))
    model.train(was_training)
    weights = torch.cat(errors).to("cpu", torch.float64) ** 2
    if not float(weights.sum()) > 0:
        weights = torch.ones_like(weights)
    pick = torch.multinomial(weights, n_dead, replacement=True, generator=gen)
    pick = pick.to(x.device)
    vecs = y[pick] - model.b_dec
    vecs = vecs / vecs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    centre, enc = model.b_dec, vecs
    if targets is not None:
        centre = input_mean
        enc = x[pick] - centre
        enc = enc / enc.norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive = ~dead
    scale = model.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else 1.0
    model.W_dec[dead] = vecs
    model.W_enc[:, dead] = enc.T * (0.2 * scale)
    model.b_enc[dead] = -(centre @ model.W_enc[:, dead])
    for param, where in ((model.W_enc, (slice(None), dead)), (model.b_enc, dead),
                         (model.W_dec, dead)):
        for key in ("exp_avg", "exp_avg_sq"):
            if key in opt.state.get(param, {}):
                opt.state[param][key][where] = 0
    idle[dead] = 0
    return n_dead


# ---------------------------------------------------------------------------- training
def train(
    X: np.ndarray | torch.Tensor | str | os.PathLike,
    config: TrainConfig,
    init: dict[str, np.ndarray] | None = None,
    *,
    targets: Sequence[np.ndarray | torch.Tensor | str | os.PathLike] | None = None,
    anchors: tuple[np.ndarray | None, np.ndarray | None] | None = None,
    progress: bool | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train a sparse autoencoder, transcoder or crosscoder with Adam.

    Parameters
    ----------
    X : ndarray of shape (N, d), Tensor, or path to a ``.npy`` file
        Training data, one sample per row. A path (or an ``np.memmap``) is read batch
        by batch and never loaded whole; an in-memory array is copied to the device
        in ``config.dtype`` when it is on CPU or at most 4 GiB.
    config : TrainConfig
    init : dict, optional
        Initial ``W_enc (d, K)``, ``b_enc (K,)``, ``W_dec (K, D)``, ``b_dec (D,)``
        (and ``threshold`` for jumprelu/batchtopk) instead of the default init.
    targets : list of ndarray of shape (N, d_l), Tensor or ``.npy`` path, optional
        Target layers: one for a transcoder, several for a crosscoder (decoded side by
        side, ``D = sum d_l``). Default: reconstruct ``X`` (an SAE, ``D = d``).
    anchors : tuple (A_enc (d, k) or None, A_dec (k, D) or None), optional
        Feature anchors for the first ``k`` latents (:mod:`solvers.anchoring`), used
        with ``config.lam_anchor > 0`` (required then).
    progress : bool, optional
        Show a rich progress bar (default: ``not config.quiet``; rank 0 only).
    resume : bool
        Continue from the newest readable checkpoint in ``config.checkpoint_dir`` (it
        must come from a run with the same trajectory settings and data shape) and print
        one line to stderr naming the step resumed; unreadable newer checkpoints (e.g.
        truncated by a kill) are skipped and renamed ``*.unreadable``. Without any
        checkpoint, print one line and start from step 0; with checkpoints of which none
        is readable, raise ``ValueError``.
    stop_after : int, optional
        Stop once this many steps are done (writing a checkpoint there), as if
        interrupted; a later ``resume=True`` call finishes the run.
    callback : callable, optional
        ``callback(step, record)`` at every history record.

    Returns
    -------
    dict
        ``W_enc``, ``b_enc``, ``W_dec (K, D)``, ``b_dec (D,)`` (float64 arrays, plus
        ``threshold`` for jumprelu/batchtopk); ``history``: dict of arrays ``step``,
        ``loss`` (the activation's training objective on the batch, without anchoring),
        ``anchor_penalty`` (the anchoring term, 0 when off), ``l0``,
        ``explained_variance`` (of the targets), ``dead_fraction``, ``lr``, ``lam``,
        ``time``; ``step``: steps completed.
    """
    if stop_after is not None:
        _need_int("stop_after", stop_after, 0)
    if init is not None and not {"W_enc", "b_enc", "W_dec", "b_dec"} <= set(init):
        raise ValueError(
            "The 'init' parameter must be a dict with keys 'W_enc', 'b_enc', 'W_dec' and "
            f"'b_dec'. Got keys {sorted(init)}."
        )
    device = resolve_device(config.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        # Initialised once and left up for later calls (tearing it down and re-creating it
        # on the launcher's store races between ranks); the launching script may call
        # torch.distributed.destroy_process_group() when it is done.
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _train(X, config, init, device, progress, resume, stop_after, callback,
                  targets, anchors)


def _train(X: Any, config: TrainConfig, init: dict[str, np.ndarray] | None,
           device: torch.device, progress: bool | None, resume: bool,
           stop_after: int | None, callback: Callable[..., None] | None,
           targets: Any = None, anchors: Any = None) -> dict[str, Any]:
    rank, world = _dist_world()
    dtype = DTYPES[config.dtype]
    data = _Data(X, dtype, device)
    tgt = None if targets is None else _Targets(targets, data.n, dtype, device)
    out_dims = None if tgt is None else tgt.dims
    d_out = data.d if tgt is None else sum(tgt.dims)
    anchor_set = None if anchors is None else check_anchors(anchors, data.d, d_out,
                                                            config.width)
    if config.lam_anchor > 0 and anchor_set is None:
        raise ValueError(
            f"The 'lam_anchor' parameter is {config.lam_anchor} but no 'anchors' were given. "
            "Pass anchors=(A_enc, A_dec) (e.g. anchors_from_features) or lam_anchor=0."
        )
    batch = min(config.batch_size, data.n)
    if batch < world:
        raise ValueError(
            f"The 'batch_size' parameter must be >= the number of processes ({world}). "
            f"Got {batch}."
        )
    gen = torch.Generator().manual_seed(config.seed)
    mean = data.mean()
    target_mean = mean if tgt is None else tgt.mean()
    model = TorchSAE(data.d, config.width, config.activation, config.k, out_dims=out_dims,
                     threshold=config.jumprelu_threshold,
                     bandwidth=config.jumprelu_bandwidth, dtype=dtype, device=device)
    if init is None:
        model.initialize(target_mean, gen, input_mean=None if tgt is None else mean)
    else:
        try:
            start = TorchSAE.from_arrays(
                init["W_enc"], init["b_enc"], init["W_dec"], init["b_dec"], dtype, device,
                activation=config.activation, k=config.k,
                threshold=init.get("threshold", config.jumprelu_threshold
                                   if config.activation == "jumprelu" else None),
                bandwidth=config.jumprelu_bandwidth, out_dims=out_dims)
        except ValueError as exc:
            raise ValueError(f"The 'init' parameter is invalid: {exc}") from exc
        if (start.d_in, start.width) != (data.d, config.width):
            raise ValueError(
                f"The 'init' parameter must hold weights of shape d={data.d}, "
                f"K={config.width}. Got d={start.d_in}, K={start.width}."
            )
        model.load_state_dict(start.state_dict())
    anchored = anchor_set is not None and config.lam_anchor > 0
    a_enc = a_dec = None
    if anchored:
        a_enc, a_dec = (None if a is None else torch.as_tensor(a, dtype=dtype, device=device)
                        for a in anchor_set)
    objective = _Objective(model, a_enc, a_dec, config.lam_anchor)
    identity = _identity(config, tgt, anchor_set if anchored else None)
    net = objective
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(objective, device_ids=ids)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _LRSchedule(config.warmup_steps, config.steps, config.decay))
    sampler = _Sampler(data.n, batch, gen)
    idle = torch.zeros(config.width, dtype=torch.long, device=device)
    history: list[dict[str, float]] = []
    step, elapsed = 0, 0.0
    ckdir = Path(config.checkpoint_dir) if config.checkpoint_dir else None

    state = _resume_state(ckdir, rank) if resume and ckdir is not None else None
    if state is not None:
        mine, source = identity, state["_path"]
        if state["config"] != mine or tuple(state["data_shape"]) != (data.n, data.d):
            diff = sorted(f for f in set(mine) | set(state["config"])
                          if state["config"].get(f) != mine.get(f))
            raise ValueError(
                f"The checkpoint {source} comes from a different run (differing "
                f"settings: {diff or 'data shape'}). Use another 'checkpoint_dir' or "
                "resume=False."
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        sampler.load_state_dict(state["sampler"])
        idle = state["idle"].to(device)
        history, step, elapsed = state["history"], int(state["step"]), float(state["elapsed"])

    def checkpoint() -> None:
        if ckdir is None or rank != 0:
            return
        state = {
            "config": identity,
            "data_shape": (data.n, data.d), "step": step,
            "elapsed": elapsed + time.perf_counter() - t0, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "generator": gen.get_state(), "sampler": sampler.state_dict(),
            "idle": idle.cpu(), "history": history,
        }
        _save_checkpoint(ckdir, step, state, config.keep_checkpoints)

    stop = config.steps if stop_after is None else min(config.steps, stop_after)
    show = (not config.quiet if progress is None else progress) and rank == 0
    mean_t = torch.as_tensor(mean, dtype=dtype, device=device)
    target_mean_t = torch.as_tensor(target_mean, dtype=dtype, device=device)
    model.train()
    t0 = time.perf_counter()
    with _progress(show and step < stop, config.steps) as bar:
        task = bar.add_task("train", total=config.steps, completed=step, stats="") if bar else None
        while step < stop:
            idx = sampler.next()
            shard = np.array_split(idx, world)[rank] if world > 1 else idx
            x = data.rows(shard)
            y = None if tgt is None else tgt.rows(shard)
            lam_t = config.lam
            if config.l1_warmup_steps:
                lam_t = config.lam * min(1.0, (step + 1) / config.l1_warmup_steps)
            out = net(x, lam_t, y)
            loss = out.loss
            if world > 1 and len(shard) * world != len(idx):
                loss = loss * (len(shard) * world / len(idx))
            if out.anchor is not None:  # a function of the weights only: not reweighted
                loss = loss + out.anchor
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            with torch.no_grad():
                fired = out.codes.detach().amax(dim=0) > 0  # codes are >= 0
                idle = torch.where(fired, torch.zeros_like(idle), idle + 1)
            if config.resample_dead_every and step % config.resample_dead_every == 0 \
                    and step < config.steps:
                _resample(model, opt, data, gen, idle, config, world, tgt, mean_t)
            if step % config.log_every == 0 or step == config.steps:
                record = _record(out, x if y is None else y, target_mean_t, idle, step, world,
                                 len(idx), config)
                record.update(lr=sched.get_last_lr()[0], lam=lam_t,
                              time=elapsed + time.perf_counter() - t0,
                              anchor_penalty=0.0 if out.anchor is None
                              else float(out.anchor.detach()))
                history.append(record)
                if bar is not None:
                    bar.update(task, stats=(
                        f"loss {record['loss']:.4g}  L0 {record['l0']:.3g}  "
                        f"EV {record['explained_variance']:.3f}  "
                        f"dead {record['dead_fraction']:.3f}"))
                if callback is not None:
                    callback(step, record)
            if step % config.checkpoint_every == 0 or step == stop:
                checkpoint()
            if bar is not None:
                bar.update(task, advance=1)
    model.eval()
    result: dict[str, Any] = model.to_arrays()
    keys = ("step", "loss", "anchor_penalty", "l0", "explained_variance", "dead_fraction",
            "lr", "lam", "time")
    # .get: records from checkpoints written before anchoring existed lack that key
    result["history"] = {key: np.array([rec.get(key, 0.0) for rec in history])
                         for key in keys}
    result["step"] = step
    return result


def _identity(config: TrainConfig, targets: _Targets | None,
              anchors: Anchors | None) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed (plain Python values only).

    The SAE entries are exactly the pre-targets ones, so older checkpoints still resume.
    """
    ident: dict[str, Any] = {f: getattr(config, f) for f in _TRAJECTORY_FIELDS}
    if targets is not None:
        ident["target_dims"] = list(targets.dims)
    if anchors is not None:
        ident["lam_anchor"] = config.lam_anchor
        ident["anchors"] = anchors.fingerprint()
    return ident


@torch.no_grad()
def _record(out: Any, x: torch.Tensor, mean: torch.Tensor, idle: torch.Tensor, step: int,
            world: int, global_batch: int, config: TrainConfig) -> dict[str, float]:
    """Batch statistics summed over ranks: loss, L0, explained variance, dead fraction.

    ``x`` is the batch of targets (the inputs for an SAE) and ``mean`` their data mean.
    """
    rows = x.shape[0]
    sums = torch.stack([
        out.loss.detach().to(torch.float64) * rows,
        (out.codes > 0).sum().to(torch.float64),
        ((x - out.recon) ** 2).sum().to(torch.float64),
        ((x - mean) ** 2).sum().to(torch.float64),
    ])
    sums = _all_sum(sums, world).tolist()
    dead = _global_idle(idle, world) >= min(config.dead_window, step)
    return {
        "step": step,
        "loss": sums[0] / global_batch,
        "l0": sums[1] / global_batch,
        "explained_variance": 1.0 - sums[2] / sums[3] if sums[3] > 0 else float("nan"),
        "dead_fraction": float(dead.to(torch.float64).mean()),
    }


__all__ = ["TrainConfig", "train", "resolve_device", "DECAYS", "DTYPES"]
