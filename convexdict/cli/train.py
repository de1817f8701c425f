"""``convexdict train DATA --lam L --width K --out DIR``: train an SAE with Adam.

DATA is a ``.npy`` file (memory-mapped, never loaded whole), or anything
``convexdict.datasets.load_data`` understands when that module exists (``toy:NAME``,
...); without it, ``.npz`` (array ``X`` or the first array) and ``.csv`` are read.

DIR receives the SAE (``sae.save``: SAELens layout; ``sae.npz`` when
``convexdict.io`` is absent), ``history.npz``, ``threshold.npy`` for JumpReLU /
BatchTopK, and ``summary.json`` with the loss, L0, explained variance and dead fraction
of the trained function, the steps and the wall time.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import CLIError


def register(subparsers: Any) -> None:
    """Add the ``train`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "train",
        help="train an SAE by SGD (Adam, PyTorch)",
        description="Train a sparse autoencoder with Adam on the canonical objective "
        "(activation relu; topk/batchtopk/jumprelu are not certifiable).",
    )
    p.add_argument("data", metavar="DATA", help=".npy (memory-mapped), .npz, .csv or a "
                   "convexdict.datasets spec such as toy:NAME")
    p.add_argument("--lam", type=float, required=True, help="penalty weight (>= 0)")
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
    """The data matrix named by ``spec`` (see the module docstring)."""
    path = Path(spec)
    if path.suffix == ".npy" and path.is_file():
        return np.load(path, mmap_mode="r")
    if importlib.util.find_spec("convexdict.datasets") is not None:
        loader = getattr(importlib.import_module("convexdict.datasets"), "load_data", None)
        if loader is not None:
            return loader(spec)
    if not path.is_file():
        raise CLIError(f"DATA {spec!r} is not a file (expected .npy, .npz or .csv).")
    if path.suffix == ".npz":
        with np.load(path) as archive:
            if not archive.files:
                raise CLIError(f"DATA {spec!r} holds no arrays.")
            return archive["X" if "X" in archive.files else archive.files[0]]
    if path.suffix == ".csv":
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError:
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)  # a header line
    raise CLIError(f"DATA {spec!r}: unsupported format {path.suffix!r}; use .npy, .npz or .csv.")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    """Train, write DIR, print a one-line summary."""
    from ..bounds import joint_bound
    from ..train import _check_device, train_sae

    X = load_data(args.data)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {args.out!r} exists and is not a directory.")
    device = _check_device(args.device)
    start = time.perf_counter()
    result = train_sae(
        X, args.lam, args.width, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, device=device, dtype=args.dtype, activation=args.activation,
        k=args.k, checkpoint_dir=args.checkpoint_dir, resume=args.resume, quiet=args.quiet,
        return_history=True,
    )
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("convexdict.io") is not None:
        result.sae.save(str(out))
    else:
        sae = result.sae
        np.savez(out / "sae.npz", W_enc=sae.W_enc, b_enc=sae.b_enc, W_dec=sae.W_dec,
                 b_dec=sae.b_dec)
    np.savez(out / "history.npz", **result.history)
    if result.threshold is not None:
        np.save(out / "threshold.npy", result.threshold)
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
    _write_json(out / "summary.json", summary)
    print(
        f"trained {result.activation} SAE d={summary['d_in']} K={args.width}: "
        f"loss {metrics['loss']:.6g}  L0 {metrics['l0']:.3g}  "
        f"EV {metrics['explained_variance']:.4f}  dead {metrics['dead_fraction']:.3f}  "
        f"joint lower bound {metrics['joint_bound']:.6g}  "
        f"({result.steps} steps, {seconds:.1f} s) -> {out}"
    )
    return 0
