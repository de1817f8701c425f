"""Throughput of the SAE trainer against a minimal PyTorch loop (and SAELens if present).

Usage::

    python benchmarks/bench_trainer.py            # d_in=768, width=16384, batch=4096, float32
    python benchmarks/bench_trainer.py --small    # a quick CPU run with smaller shapes
    python benchmarks/bench_trainer.py --d-in 256 --width 4096 --batch 1024  # any shape

The SAELens column needs ``pip install -e ".[bench-saelens]"`` (a benchmark-only extra,
best in its own virtual environment; it is never a runtime dependency).

All rows train the same ReLU SAE on the same in-memory random data (resident on the
device) with Adam, and time optimiser steps after a warmup, synchronising the device
before reading the clock. "trainer" is :func:`convexdict_solvers.sgd.trainer.train` end to end minus
set-up (batch sampling, the step, dead-latent bookkeeping, LR schedule, one history
record); "minimal" is the bare forward/backward/Adam step on random
batches; "sae_lens" is SAELens's ``training_forward_pass`` + backward + Adam when
``sae_lens`` is importable (it is never installed by this script).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from convexdict_solvers.sgd.trainer import TrainConfig, resolve_device, train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_trainer(X: np.ndarray, width: int, batch: int, steps: int, warmup: int,
                  device: torch.device) -> float:
    """Samples per second of :func:`convexdict_solvers.sgd.trainer.train` between two history
    records
    (at steps ``steps`` and ``2 * steps``: the first ``steps`` steps warm up)."""
    stamps: list[tuple[int, float]] = []
    config = TrainConfig(lam=1e-3, width=width, steps=2 * steps, batch_size=batch,
                         lr=1e-4, log_every=steps, quiet=True, device=str(device))
    train(X, config, callback=lambda step, _: stamps.append((step, time.perf_counter())))
    (s0, t0), (s1, t1) = stamps[0], stamps[-1]
    return (s1 - s0) * batch / (t1 - t0)


def bench_minimal(X: np.ndarray, width: int, batch: int, steps: int, warmup: int,
                  device: torch.device) -> float:
    """Samples per second of a bare PyTorch loop on the same model and objective."""
    gen = torch.Generator(device=device).manual_seed(0)
    data = torch.from_numpy(X).to(device)
    d = data.shape[1]
    w_dec = torch.randn(width, d, device=device)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    params = [w_dec.T.clone().requires_grad_(), torch.zeros(width, device=device,
              requires_grad=True), w_dec.requires_grad_(),
              data.mean(0).requires_grad_()]
    opt = torch.optim.Adam(params, lr=1e-4)
    lam = 1e-3

    def step() -> None:
        w_enc, b_enc, w_dec, b_dec = params
        x = data[torch.randint(0, data.shape[0], (batch,), device=device, generator=gen)]
        z = torch.relu(x @ w_enc + b_enc)
        resid = x - (z @ w_dec + b_dec)
        loss = (0.5 * (resid * resid).sum(1) + lam * (z @ w_dec.norm(dim=1))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def bench_sae_lens(X: np.ndarray, width: int, batch: int, steps: int, warmup: int,
                   device: torch.device) -> float:
    """Samples per second of SAELens's standard training step (raises if unavailable)."""
    import sae_lens  # noqa: F401  (ImportError -> skipped)
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    cfg = StandardTrainingSAEConfig(d_in=X.shape[1], d_sae=width, dtype="float32",
                                    device=str(device), l1_coefficient=1e-3)
    sae = StandardTrainingSAE(cfg)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    data = torch.from_numpy(X).to(device)
    names = {f.name for f in dataclasses.fields(TrainStepInput)}
    # Every field any SAELens 6.x TrainStepInput has had; only those it declares are passed
    # (is_logging_step is required from 6.54 on).
    extra = {"coefficients": {"l1": 1e-3}, "dead_neuron_mask": None, "n_training_steps": 0,
             "current_l1_coefficient": 1e-3, "is_logging_step": False}

    def step() -> None:
        x = data[torch.randint(0, data.shape[0], (batch,), device=device)]
        fields = {"sae_in": x, **{k: v for k, v in extra.items() if k in names}}
        out = sae.training_forward_pass(step_input=TrainStepInput(**fields))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="d_in=64, width=1024, batch=256 (a quick CPU run)")
    parser.add_argument("--d-in", type=int, default=None, help="input dimension")
    parser.add_argument("--width", type=int, default=None, help="latents")
    parser.add_argument("--batch", type=int, default=None, help="batch size")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=None, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median shown)")
    args = parser.parse_args()
    d, width, batch = (64, 1024, 256) if args.small else (768, 16384, 4096)
    d, width, batch = args.d_in or d, args.width or width, args.batch or batch
    steps = args.steps or (60 if args.small else 40)
    device = resolve_device(args.device)
    X = np.random.default_rng(0).normal(size=(8 * batch, d)).astype(np.float32)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"d_in={d} width={width} batch={batch} float32; {steps} timed steps after "
          f"{args.warmup} (minimal, sae_lens) or {steps} (trainer) warmup steps")
    loops = {"minimal": bench_minimal, "trainer": bench_trainer, "sae_lens": bench_sae_lens}
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.repeats + 1):  # the first round only warms up (lazy imports, caches)
        for name, loop in list(loops.items()):
            try:
                rates[name].append(loop(X, width, batch, steps, args.warmup, device))
            except ImportError as exc:
                print(f"sae_lens: skipped ({exc})")
                del loops[name], rates[name]
            except Exception as exc:  # an SAELens API this script does not know
                if name != "sae_lens":
                    raise
                print(f"sae_lens: skipped (its training step failed: {type(exc).__name__}: "
                      f"{exc})")
                del loops[name], rates[name]
    rows = [(name, float(np.median(values[1:]))) for name, values in rates.items()]
    base = rows[0][1]
    print(f"{'loop':<10} {'samples/s':>12} {'vs minimal':>11}   (median of {args.repeats})")
    for name, rate in rows:
        print(f"{name:<10} {rate:>12,.0f} {rate / base:>10.2f}x")


if __name__ == "__main__":
    main()
