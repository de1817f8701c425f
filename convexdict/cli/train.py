"""``convexdict train DATA --lam L --width K --out DIR``: train an SAE with Adam.

DATA is anything :func:`convexdict.data.datasets.load_data` reads (``.npy``, ``.npz``,
``.csv``, ``.safetensors``, ``toy:NAME``), with the same checks; a float ``.npy`` file is
memory-mapped (``load_data(..., mmap=True)``), never loaded whole.

Every argument and both output folders (``--out``, ``--checkpoint-dir``) are checked
before any work starts. DIR receives the SAE (``sae.save``: SAELens layout),
``history.npz``, ``threshold.npy`` for JumpReLU / BatchTopK, and ``summary.json`` with
the loss, L0, explained variance and dead fraction of the trained function, the steps
and the wall time; every file is written atomically (:mod:`solvers.atomic`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from convexdict_solvers.atomic import atomic_write, atomic_write_text

from convexdict.cli import CLIError
from convexdict.cli.paths import check_output_dir


def register(subparsers: Any) -> None:
    """Add the ``train`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "train",
        help="train an SAE by SGD (Adam, PyTorch)",
        description="Train a sparse autoencoder with Adam on the canonical objective "
        "(activation relu; topk/batchtopk/jumprelu are not certifiable).",
    )
    p.add_argument("data", metavar="DATA", help=".npy (memory-mapped), .npz, .csv, "
                   ".safetensors or toy:NAME")
    p.add_argument("--lam", type=float, required=True, help="penalty weight (> 0)")
    p.add_argument("--width", type=int, required=True, help="number of latents K")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", help="float32 or float64")
    p.add_argument("--activation", default="relu", help="relu, topk, batchtopk or jumprelu")
    p.add_argument("--k", type=int, default=None, help="k for topk / batchtopk")
    p.add_argument("--checkpoint-dir", default=None, help="write checkpoints here")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)


def load_data(spec: str) -> np.ndarray:
    """The data matrix named by ``spec``: :func:`convexdict.data.datasets.load_data` with
    ``mmap=True`` (a float ``.npy`` file comes back as a read-only memory map)."""
    from convexdict.data.datasets import load_data as load

    return load(spec, mmap=True)


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append '.npz' to a name
            np.savez(fh, **arrays)

    atomic_write(path, write)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array)

    atomic_write(path, write)


def run(args: argparse.Namespace) -> int:
    """Train, write DIR, print a one-line summary."""
    from convexdict._validation import check_positive
    from convexdict.convex.bounds import joint_bound
    from convexdict.training.train import _check_device, train_sae

    check_positive("lam", args.lam)  # lam <= 0: refused before anything is read or written
    if args.resume and args.checkpoint_dir is None:
        raise CLIError("--resume continues from --checkpoint-dir; pass --checkpoint-dir DIR.")
    out = check_output_dir(args.out, "--out")
    check_output_dir(args.checkpoint_dir, "--checkpoint-dir")
    device = _check_device(args.device)
    X = load_data(args.data)
    from convexdict.convex.bounds import centred_row_norm_bound

    row_bound = centred_row_norm_bound(X)
    if args.activation == "relu" and args.lam >= row_bound:
        raise CLIError(
            f"--lam {args.lam:g} is at least max_n ||x_n - mean|| >= lam_max: the optimum at "
            "every width is the mean alone (K* = 0; `convexdict certify` proves it), so there "
            "is nothing to train. Choose lam below lam_max."
        )
    start = time.perf_counter()
    result = train_sae(
        X, args.lam, args.width, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, device=device, dtype=args.dtype, activation=args.activation,
        k=args.k, checkpoint_dir=args.checkpoint_dir, resume=args.resume, quiet=args.quiet,
        return_history=True,
    )
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    result.sae.save(str(out))
    _save_npz(out / "history.npz", result.history)
    if result.threshold is not None:
        _save_npy(out / "threshold.npy", np.asarray(result.threshold))
    metrics = result.evaluate(X, args.lam)
    # A valid lower bound on every SAE's loss at every width (any d): the joint wide limit.
    metrics["joint_bound"] = joint_bound(X, args.lam, backend="torch", device=device)
    metrics["gap_to_joint_bound"] = metrics["loss"] - metrics["joint_bound"]
    summary = {
        **metrics,
        "objective": "canonical L1 (certifiable)" if result.certifiable else
        "not certifiable: loss is the canonical formula on the trained codes",
        "activation": result.activation, "k": result.k, "lam": args.lam,
        "width": args.width, "n_samples": int(X.shape[0]), "d_in": int(X.shape[1]),
        "steps": result.steps, "batch_size": args.batch_size, "lr": args.lr,
        "seed": args.seed, "device": device, "dtype": args.dtype, "time_s": seconds,
    }
    if not result.certifiable:
        summary["note"] = (
            f"the saved SAE files describe the ReLU SAE of these weights; the trained function "
            f"uses {result.activation} (see 'activation', 'k' and threshold.npy)"
        )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"trained {result.activation} SAE d={summary['d_in']} K={args.width}: "
        f"loss {metrics['loss']:.6g}  L0 {metrics['l0']:.3g}  "
        f"EV {metrics['explained_variance']:.4f}  dead {metrics['dead_fraction']:.3f}  "
        f"joint lower bound {metrics['joint_bound']:.6g}  "
        f"({result.steps} steps, {seconds:.1f} s) -> {out}"
    )
    print(f"lam_max <= {row_bound:.6g} (bound: max_n ||x_n - mean||; exact lam_max needs "
          f"pricing, `convexdict certify`), so lam / lam_max >= {args.lam / row_bound:.4g}")
    return 0
