"""Adam/SGD training of sparse autoencoders on arrays, memory maps or tensors.

The engine behind ``convexdict.train_sae``, ``train_transcoder`` and
``train_crosscoder``. It works on plain arrays and never imports ``convexdict``.

Transcoders and crosscoders: pass ``targets=[Y_1, ..., Y_L]`` (row-aligned with ``X``)
and the model encodes ``X`` and decodes the layers side by side (``W_dec (K, sum d_l)``,
see :mod:`convexdict_solvers.sgd.torch_sae`); one target is a transcoder. ``targets=None`` is the
SAE,
the same computation as before targets existed.

What it does, in order, for ``step = 0 .. steps-1``:

1. draw a batch of ``batch_size`` row indices (shuffled epochs without replacement; the
   whole data set, in order, when ``batch_size >= N``), sorted so memory-mapped reads
   are sequential;
2. take one Adam step on the activation's training objective (see
   :mod:`convexdict_solvers.sgd.torch_sae`), with the learning rate warmed up linearly over
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

    torchrun --nproc-per-node=2 my_script.py   # my_script calls
    convexdict_solvers.sgd.trainer.train
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from convexdict_solvers.anchoring import Anchors, check_anchors
from convexdict_solvers.progress import Display
from convexdict_solvers.sgd.checkpoints import resume_state, save_checkpoint
from convexdict_solvers.sgd.config import DECAYS, DTYPES, TRAJECTORY_FIELDS, TrainConfig, need_int
from convexdict_solvers.sgd.data import Data, LRSchedule, Sampler, Targets
from convexdict_solvers.sgd.objective import Objective
from convexdict_solvers.sgd.torch_sae import TorchSAE
from torch.nn.parallel import DistributedDataParallel


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


# ---------------------------------------------------------------------------- resampling
@torch.no_grad()
def _resample(model: TorchSAE, opt: torch.optim.Optimizer, data: Data,
              gen: torch.Generator, idle: torch.Tensor, config: TrainConfig,
              world: int, targets: Targets | None = None,
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
    time_limit: float | None = None,
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
    time_limit : float, optional
        Seconds from the call (set-up included): stop after the step that ends past it,
        with the learning-rate schedule of ``config.steps`` (no checkpoint is written
        there; ``step`` in the result says how many steps ran). Single process only:
        under ``torchrun`` the ranks could stop at different steps.

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
    deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
    if stop_after is not None:
        need_int("stop_after", stop_after, 0)
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
                  targets, anchors, deadline)


def _train(X: Any, config: TrainConfig, init: dict[str, np.ndarray] | None,
           device: torch.device, progress: bool | None, resume: bool,
           stop_after: int | None, callback: Callable[..., None] | None,
           targets: Any = None, anchors: Any = None,
           deadline: float | None = None) -> dict[str, Any]:
    """The training pipeline: set up -> restore (resume) -> steps -> result."""
    run = _Run(X, config, init, device, targets, anchors)
    if resume and run.ckdir is not None:
        run.restore()
    stop = config.steps if stop_after is None else min(config.steps, stop_after)
    show = (not config.quiet if progress is None else progress) and run.rank == 0
    run.loop(stop, show and run.step < stop, callback, deadline)
    return run.result()


class _Run:
    """One training run's state; each stage of the loop is a method (see the module
    docstring for what happens in which order)."""

    def __init__(self, X: Any, config: TrainConfig, init: dict[str, np.ndarray] | None,
                 device: torch.device, targets: Any, anchors: Any) -> None:
        self.rank, self.world = _dist_world()
        self.config = config
        dtype = DTYPES[config.dtype]
        self.data = data = Data(X, dtype, device)
        self.tgt = tgt = None if targets is None else Targets(targets, data.n, dtype, device)
        out_dims = None if tgt is None else tgt.dims
        d_out = data.d if tgt is None else sum(tgt.dims)
        anchor_set = None if anchors is None else check_anchors(anchors, data.d, d_out,
                                                                config.width)
        if config.lam_anchor > 0 and anchor_set is None:
            raise ValueError(
                f"The 'lam_anchor' parameter is {config.lam_anchor} but no 'anchors' were "
                "given. Pass anchors=(A_enc, A_dec) (e.g. anchors_from_features) or "
                "lam_anchor=0."
            )
        batch = min(config.batch_size, data.n)
        if batch < self.world:
            raise ValueError(
                f"The 'batch_size' parameter must be >= the number of processes "
                f"({self.world}). Got {batch}."
            )
        self.gen = torch.Generator().manual_seed(config.seed)
        mean = data.mean()
        target_mean = mean if tgt is None else tgt.mean()
        self.model = _model(data.d, config, init, out_dims, dtype, device, target_mean,
                            None if tgt is None else mean, self.gen)
        anchored = anchor_set is not None and config.lam_anchor > 0
        a_enc = a_dec = None
        if anchored:
            a_enc, a_dec = (None if a is None else torch.as_tensor(a, dtype=dtype, device=device)
                            for a in anchor_set)
        objective = Objective(self.model, a_enc, a_dec, config.lam_anchor)
        self.identity = _identity(config, tgt, anchor_set if anchored else None)
        self.net = objective
        if self.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(objective, device_ids=ids)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, LRSchedule(config.warmup_steps, config.steps, config.decay))
        self.sampler = Sampler(data.n, batch, self.gen)
        self.idle = torch.zeros(config.width, dtype=torch.long, device=device)
        self.history: list[dict[str, float]] = []
        self.step, self.elapsed, self.t0 = 0, 0.0, time.perf_counter()
        self.ckdir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
        self.mean_t = torch.as_tensor(mean, dtype=dtype, device=device)
        self.target_mean_t = torch.as_tensor(target_mean, dtype=dtype, device=device)

    def restore(self) -> None:
        """Continue from the newest readable checkpoint (same trajectory settings only)."""
        state = resume_state(self.ckdir, self.rank)
        if state is None:
            return
        mine, source = self.identity, state["_path"]
        if state["config"] != mine or tuple(state["data_shape"]) != (self.data.n, self.data.d):
            diff = sorted(f for f in set(mine) | set(state["config"])
                          if state["config"].get(f) != mine.get(f))
            raise ValueError(
                f"The checkpoint {source} comes from a different run (differing "
                f"settings: {diff or 'data shape'}). Use another 'checkpoint_dir' or "
                "resume=False."
            )
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        self.sampler.load_state_dict(state["sampler"])
        self.idle = state["idle"].to(self.idle.device)
        self.history = state["history"]
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])

    def checkpoint(self) -> None:
        """Write the whole state (rank 0), atomically; old checkpoints are pruned."""
        if self.ckdir is None or self.rank != 0:
            return
        state = {
            "config": self.identity,
            "data_shape": (self.data.n, self.data.d), "step": self.step,
            "elapsed": self.elapsed + time.perf_counter() - self.t0,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "generator": self.gen.get_state(), "sampler": self.sampler.state_dict(),
            "idle": self.idle.cpu(), "history": self.history,
        }
        save_checkpoint(self.ckdir, self.step, state, self.config.keep_checkpoints)

    def adam_step(self) -> tuple[Any, torch.Tensor, int, float]:
        """Draw a batch and take one Adam step; returns ``(out, batch targets, global
        batch size, lam used)``."""
        config, world = self.config, self.world
        idx = self.sampler.next()
        shard = np.array_split(idx, world)[self.rank] if world > 1 else idx
        x = self.data.rows(shard)
        y = None if self.tgt is None else self.tgt.rows(shard)
        lam_t = config.lam
        if config.l1_warmup_steps:
            lam_t = config.lam * min(1.0, (self.step + 1) / config.l1_warmup_steps)
        out = self.net(x, lam_t, y)
        loss = out.loss
        if world > 1 and len(shard) * world != len(idx):
            loss = loss * (len(shard) * world / len(idx))
        if out.anchor is not None:  # a function of the weights only: not reweighted
            loss = loss + out.anchor
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.step += 1
        with torch.no_grad():
            fired = out.codes.detach().amax(dim=0) > 0  # codes are >= 0
            self.idle = torch.where(fired, torch.zeros_like(self.idle), self.idle + 1)
        return out, x if y is None else y, len(idx), lam_t

    def record(self, out: Any, y: torch.Tensor, global_batch: int, lam_t: float) -> dict:
        """Append one history record (batch statistics summed over ranks)."""
        record = _record(out, y, self.target_mean_t, self.idle, self.step, self.world,
                         global_batch, self.config)
        record.update(lr=self.sched.get_last_lr()[0], lam=lam_t,
                      time=self.elapsed + time.perf_counter() - self.t0,
                      anchor_penalty=0.0 if out.anchor is None else float(out.anchor.detach()))
        self.history.append(record)
        return record

    def loop(self, stop: int, show: bool, callback: Callable[..., None] | None,
             deadline: float | None = None) -> None:
        """Steps until ``stop`` (or ``deadline``, a ``perf_counter`` time): Adam step,
        resampling, records, checkpoints."""
        config = self.config
        self.model.train()
        self.t0 = time.perf_counter()
        with Display("SAE", config.steps, enabled=show, completed=self.step,
                     fields={"stats": ""}) as display:
            while self.step < stop:
                out, y, global_batch, lam_t = self.adam_step()
                if config.resample_dead_every and self.step % config.resample_dead_every == 0 \
                        and self.step < config.steps:
                    _resample(self.model, self.opt, self.data, self.gen, self.idle, config,
                              self.world, self.tgt, self.mean_t)
                if self.step % config.log_every == 0 or self.step == config.steps:
                    record = self.record(out, y, global_batch, lam_t)
                    display.update(stats=(
                        f"loss {record['loss']:.4g}  L0 {record['l0']:.3g}  "
                        f"EV {record['explained_variance']:.3f}  "
                        f"dead {record['dead_fraction']:.3f}"))
                    if callback is not None:
                        callback(self.step, record)
                if self.step % config.checkpoint_every == 0 or self.step == stop:
                    self.checkpoint()
                display.update(advance=1)
                if deadline is not None and time.perf_counter() >= deadline:
                    break
        self.model.eval()

    def result(self) -> dict[str, Any]:
        """Float64 weights, the history as arrays, and the steps done."""
        result: dict[str, Any] = self.model.to_arrays()
        keys = ("step", "loss", "anchor_penalty", "l0", "explained_variance", "dead_fraction",
                "lr", "lam", "time")
        # .get: records from checkpoints written before anchoring existed lack that key
        result["history"] = {key: np.array([rec.get(key, 0.0) for rec in self.history])
                             for key in keys}
        result["step"] = self.step
        return result


def _model(d: int, config: TrainConfig, init: dict[str, np.ndarray] | None, out_dims,
           dtype: torch.dtype, device: torch.device, target_mean: np.ndarray,
           input_mean: np.ndarray | None, gen: torch.Generator) -> TorchSAE:
    """The model, initialised by default (module docstring) or from ``init``."""
    model = TorchSAE(d, config.width, config.activation, config.k, out_dims=out_dims,
                     threshold=config.jumprelu_threshold,
                     bandwidth=config.jumprelu_bandwidth, dtype=dtype, device=device)
    if init is None:
        model.initialize(target_mean, gen, input_mean=input_mean)
        return model
    try:
        start = TorchSAE.from_arrays(
            init["W_enc"], init["b_enc"], init["W_dec"], init["b_dec"], dtype, device,
            activation=config.activation, k=config.k,
            threshold=init.get("threshold", config.jumprelu_threshold
                               if config.activation == "jumprelu" else None),
            bandwidth=config.jumprelu_bandwidth, out_dims=out_dims)
    except ValueError as exc:
        raise ValueError(f"The 'init' parameter is invalid: {exc}") from exc
    if (start.d_in, start.width) != (d, config.width):
        raise ValueError(
            f"The 'init' parameter must hold weights of shape d={d}, "
            f"K={config.width}. Got d={start.d_in}, K={start.width}."
        )
    model.load_state_dict(start.state_dict())
    return model


def _identity(config: TrainConfig, targets: Targets | None,
              anchors: Anchors | None) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed (plain Python values only).

    The SAE entries are exactly the pre-targets ones, so older checkpoints still resume.
    """
    ident: dict[str, Any] = {f: getattr(config, f) for f in TRAJECTORY_FIELDS}
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
