"""Paper B's Linear Representation Bench table at CPU scale, with and without anchoring.

Usage::

    python benchmarks/bench_lrb.py                 # the CPU setting below (about 10 minutes)
    python benchmarks/bench_lrb.py --seeds 1 --steps 300     # a smoke run
    python benchmarks/bench_lrb.py --paper --device cuda     # paper B's setting, for a GPU

For each seed a fresh bench is drawn (:func:`convexdict.linear_representation_bench`:
``X = codes @ features``, unit features of bounded interference, shifted-exponential
codes) and eight models are trained on it with :mod:`convexdict.training.train`:

* ReLU SAE (canonical L1 objective), TopK SAE, BatchTopK SAE (``k`` = the expected
  number of active features per sample), and a ReLU crosscoder;
* each without and with feature anchoring (paper B): the first ``n_anchor`` latents are
  anchored at the first ``n_anchor`` true features (:func:`anchors_from_features`,
  default half of them) with weight ``lam_anchor``.

The crosscoder sees two "layers": ``X`` and ``X @ R`` for a fixed random rotation ``R``
(drawn from the seed). Its encoder reads both layers concatenated and each layer has
its own decoder; the true feature of the pair is ``[f, f R]``, so the ground truth is
exactly known in both layers and has the same interference as in ``X``. Its recovery is
scored on the concatenated decoder rows against ``[f, f R]``.

Metrics (:mod:`convexdict.data.datasets`): GT recovery (fraction of true features whose best
decoder atom has cosine > 0.9), the same over the *unanchored* features only (anchored
latents are pulled onto their features by construction, so this column shows whether
anchoring helps the rest), and the mean max inner product (mean over features of the
best cosine). Mean and sample standard deviation over seeds. Anchoring changes the
training objective; the models are nevertheless scored only on the decoder geometry.

The table is printed and written, with paper B's numbers, the machine and the settings,
to ``benchmarks/README_lrb.md`` (``--out`` to change; ``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convexdict import gt_recovery, linear_representation_bench, mean_max_inner_product
from convexdict.training.train import (
    anchors_from_features,
    train_crosscoder,
    train_sae,
)

PAPER = {  # paper B, main setting (n=1000, n_p=768, n_q=16000, S=0.99): GT recovery, %
    ("BatchTopK SAE", False): "84.80", ("BatchTopK SAE", True): "89.38",
    ("Crosscoder", False): "56.42", ("Crosscoder", True): "57.71",
    ("ReLU SAE", False): "0", ("ReLU SAE", True): "n/r",
    ("TopK SAE", False): "n/r", ("TopK SAE", True): "n/r",
}
MODELS = ("ReLU SAE", "TopK SAE", "BatchTopK SAE", "Crosscoder")
CPU_SETTING = {"n_features": 128, "d": 32, "width": 512, "sparsity": 0.95, "n_samples": 8192,
               "steps": 1500, "batch_size": 256, "lr": 5e-3, "lam": 1.0, "lam_anchor": 0.1}
PAPER_SETTING = {"n_features": 1000, "d": 768, "width": 16000, "sparsity": 0.99,
                 "n_samples": 200_000, "steps": 20_000, "batch_size": 4096, "lr": 5e-4,
                 "lam": 1.0, "lam_anchor": 0.1}


@dataclass
class Run:
    """One trained model's scores."""

    model: str
    anchored: bool
    seed: int
    gt: float
    gt_free: float
    mmip: float
    l0: float
    ev: float
    seconds: float


def _train_one(model: str, X: np.ndarray, features: np.ndarray, rot: np.ndarray,
               anchored: bool, args: argparse.Namespace, seed: int) -> Run:
    k = args.k if args.k is not None else max(1, round(args.n_features * (1 - args.sparsity)))
    n_anchor = args.n_anchor if args.n_anchor is not None else args.n_features // 2
    common = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": seed,
              "device": args.device, "dtype": "float32", "return_history": True}
    start = time.perf_counter()
    if model == "Crosscoder":
        layers = [X, X @ rot]
        truth = np.hstack([features, features @ rot])
        if anchored:
            common.update(anchors=anchors_from_features(truth[:n_anchor]),
                          lam_anchor=args.lam_anchor)
        result = train_crosscoder(np.hstack(layers), layers, args.lam, args.width, **common)
        W_dec = np.hstack(result.sae.W_decs)
    else:
        truth = features
        activation = {"ReLU SAE": "relu", "TopK SAE": "topk", "BatchTopK SAE": "batchtopk"}[model]
        lam = args.lam if activation == "relu" else 0.0
        if anchored:
            common.update(anchors=anchors_from_features(truth[:n_anchor]),
                          lam_anchor=args.lam_anchor)
        result = train_sae(X, lam, args.width, activation=activation,
                           k=None if activation == "relu" else k, **common)
        W_dec = result.sae.W_dec
    seconds = time.perf_counter() - start
    return Run(model, anchored, seed, gt_recovery(truth, W_dec),
               gt_recovery(truth[n_anchor:], W_dec), mean_max_inner_product(truth, W_dec),
               float(result.history["l0"][-1]), float(result.history["explained_variance"][-1]),
               seconds)


def run_bench(args: argparse.Namespace) -> list[Run]:
    """Train every model with and without anchoring on ``args.seeds`` fresh benches."""
    runs = []
    for seed in range(args.seeds):
        bench = linear_representation_bench(
            n_features=args.n_features, d=args.d, sparsity=args.sparsity,
            n_samples=args.n_samples, seed=seed)
        rot = np.linalg.qr(np.random.default_rng(10_000 + seed).normal(size=(args.d, args.d)))[0]
        for model in MODELS:
            for anchored in (False, True):
                run = _train_one(model, bench.X, bench.features, rot, anchored, args, seed)
                runs.append(run)
                print(f"seed {seed}  {model:<14} anchored={anchored!s:<5}  GT {run.gt:6.1%}  "
                      f"GT(free) {run.gt_free:6.1%}  MMIP {run.mmip:.3f}  L0 {run.l0:5.2f}  "
                      f"EV {run.ev:.3f}  ({run.seconds:.1f} s)", flush=True)
    return runs


def _pm(values: list[float], percent: bool) -> str:
    arr = np.asarray(values) * (100.0 if percent else 1.0)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return f"{arr.mean():.2f} ± {std:.2f}" if percent else f"{arr.mean():.3f} ± {std:.3f}"


def table(runs: list[Run]) -> str:
    """Markdown table: one row per (model, anchoring), mean ± std over seeds."""
    lines = [
        "| model | anchoring | GT recovery % (all) | GT recovery % (unanchored) | "
        "mean max inner product | L0 | EV | paper B GT recovery % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        for anchored in (False, True):
            rows = [r for r in runs if r.model == model and r.anchored == anchored]
            if not rows:
                continue
            lines.append(
                f"| {model} | {'yes' if anchored else 'no'} | "
                f"{_pm([r.gt for r in rows], True)} | {_pm([r.gt_free for r in rows], True)} | "
                f"{_pm([r.mmip for r in rows], False)} | {np.mean([r.l0 for r in rows]):.2f} | "
                f"{np.mean([r.ev for r in rows]):.3f} | {PAPER[(model, anchored)]} |")
    return "\n".join(lines)


def _machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with "
            f"{torch.get_num_threads()} thread(s), Python {platform.python_version()}, "
            f"device {device}")
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f" ({torch.cuda.get_device_name()})"
    return text


def _differences(runs: list[Run]) -> str:
    """Sentences comparing our means with paper B's, generated from the numbers."""

    def mean(model: str, anchored: bool, field: str = "gt") -> float:
        return 100 * float(np.mean([getattr(r, field) for r in runs
                                    if r.model == model and r.anchored == anchored]))

    out = []
    for model in ("BatchTopK SAE", "Crosscoder"):
        if not any(r.model == model for r in runs):
            continue
        base, anch = mean(model, False), mean(model, True)
        free = mean(model, True, "gt_free")
        out.append(
            f"- {model}: {base:.2f}% -> {anch:.2f}% with anchoring here (unanchored features "
            f"only: {mean(model, False, 'gt_free'):.2f}% -> {free:.2f}%); paper B: "
            f"{PAPER[(model, False)]}% -> {PAPER[(model, True)]}%.")
    if any(r.model == "ReLU SAE" for r in runs):
        out.append(f"- ReLU SAE: {mean('ReLU SAE', False):.2f}% here; paper B: 0%.")
    return "\n".join(out)


def write_readme(path: Path, runs: list[Run], args: argparse.Namespace, seconds: float) -> None:
    """The table, paper B's numbers, machine, settings and notes, as markdown."""
    k = args.k if args.k is not None else max(1, round(args.n_features * (1 - args.sparsity)))
    n_anchor = args.n_anchor if args.n_anchor is not None else args.n_features // 2
    settings = (
        f"n_features={args.n_features}, d={args.d}, width={args.width}, "
        f"sparsity S={args.sparsity}, n_samples={args.n_samples}, seeds={args.seeds}, "
        f"steps={args.steps}, batch_size={args.batch_size}, lr={args.lr} (Adam, cosine decay), "
        f"ReLU/crosscoder lam={args.lam}, TopK/BatchTopK k={k}, anchored latents={n_anchor}, "
        f"lam_anchor={args.lam_anchor}")
    text = f"""# Linear Representation Bench (paper B) with convexdict's trainer

Generated by `python {' '.join(['benchmarks/bench_lrb.py', *args.command])}` in
{seconds / 60:.1f} minutes.

- Machine: {_machine(args.device)}.
- Setting: {settings}.
- Paper B's setting: n=1000, n_p=768, n_q=16000, S=0.99 (`--paper`, meant for a GPU).

## Results (mean ± sample std over seeds; GT recovery = cosine > 0.9)

{table(runs)}

"n/r": not reported in the paper summary we work from. "unanchored" scores only the
features that were *not* anchored (the last {args.n_features - n_anchor}), so it shows
whether anchoring helps beyond the latents it pins. Anchoring adds
`lam_anchor (||W_enc[:, :k] - A_enc||^2 + ||W_dec[:k] - A_dec||^2)` to the training loss:
the anchored models minimise a different objective, and are scored here on decoder
geometry only (their canonical loss is what `convexdict` reports and certifies).

## Ours against paper B

{_differences(runs)}

{NOTES}
"""
    path.write_text(text)


NOTES = """How the CPU setting was chosen (once, on seed 0; disclosed because it is a choice):

- `n_features=64, d=32, width=256` (the `cpu_small` preset) was too easy with this budget:
  TopK, BatchTopK and ReLU (`lam=1`) SAEs all recovered 100% of the features at 2000
  steps, so neither a failure nor an anchoring effect could show. The default is
  therefore 128 features in 32 dimensions (S=0.95 keeps about 6.4 active features per
  sample, as in `cpu_small`) with a 4x wide dictionary.
- ReLU `lam`: 1 is the default; `lam=3` and `lam=10` collapsed (explained variance below
  0.05) within the budget. The crosscoder uses the same `lam` (with layers `X` and
  `X R`, its canonical loss at the same `lam` is twice the SAE's for atoms `[w, w R]`).
- `lam_anchor`: 0.1 is the default; with `lam_anchor=1` BatchTopK went 58.6% -> 85.9%
  but the crosscoder went *down*, 78.9% -> 71.1% (unanchored features 75.0% -> 42.2%).
  A plausible reading, not tested: a strong pull of the anchored encoder columns onto
  the raw feature directions leaves them no room to cancel interference. The anchoring
  weight matters, and paper B's is not in the summary we have.

Why our numbers differ from paper B's (known differences; none is isolated here):

- Scale and difficulty. Paper B: 1000 features in 768 dimensions (1.3 per dimension),
  16x wide dictionary, S=0.99. Here: 4 features per dimension (more interference per
  feature), 4x wide, S=0.95. The difficulty differs in kind, not only in size.
- Training budget and hyperparameters: paper B's optimiser settings, sample count,
  steps, `k`, L1 weight, anchoring weight and number of anchored features are not in the
  summary we work from; ours are listed above. Our BatchTopK trails our TopK by about
  40 points at the same `k` and budget; we have not established why.
- The ReLU SAE trains on the canonical objective (1/2 squared error, decoder-norm-weighted
  L1). At `lam=1` it is far from sparse (L0 about 63 against 6.4 true active features)
  and recovers few features, in line with paper B's 0%; larger `lam` collapsed within
  the budget instead, so it fails either way at this budget.
- Code distribution: paper B's shifted-exponential parameters are not stated; ours are
  `1 + Exp(1)`. GT recovery uses cosine > 0.9 (`convexdict.gt_recovery`'s default); the
  paper's threshold is not in our summary.
- Crosscoder: paper B's layers come from its own construction; ours are `X` and a random
  rotation of `X`, nearly an isometric copy of the SAE problem with a per-layer penalty.
  It nevertheless trains differently from our ReLU SAE at the same `lam` (L0 about 27
  against 63, recovery 77% against 6%), an optimisation difference we have not isolated.
- `--paper` (paper B's sizes) was not run: no GPU was available to us."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paper", action="store_true",
                        help="paper B's setting (n=1000, d=768, width=16000, S=0.99); GPU")
    for name, kind in (("n_features", int), ("d", int), ("width", int), ("sparsity", float),
                       ("n_samples", int), ("steps", int), ("batch_size", int), ("lr", float),
                       ("lam", float), ("lam_anchor", float)):
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    parser.add_argument("--k", type=int, default=None,
                        help="TopK/BatchTopK k (default: expected active features per sample)")
    parser.add_argument("--n-anchor", type=int, default=None,
                        help="anchored features (default: half of n_features)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 avoids oversubscription on a shared CPU)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("README_lrb.md")))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--save-runs", default=None,
                        help="also write every run's scores to this JSON file")
    parser.add_argument("--load-runs", default=None,
                        help="re-render the table and README from a --save-runs file")
    args = parser.parse_args(argv)
    base = PAPER_SETTING if args.paper else CPU_SETTING
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _reproducible(argv: list[str]) -> list[str]:
    """The command-line options that shape the results (output locations dropped)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in ("--save-runs", "--load-runs", "--out"):
            skip = True
        elif item != "--no-write" and not item.startswith(("--save-runs=", "--load-runs=",
                                                            "--out=")):
            out.append(item)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.load_runs:
        saved = json.loads(Path(args.load_runs).read_text())
        runs, seconds = [Run(**r) for r in saved["runs"]], float(saved["seconds"])
        args.command = _reproducible(saved["argv"])
    else:
        args.command = _reproducible(sys.argv[1:] if argv is None else list(argv))
        runs = run_bench(args)
        seconds = time.perf_counter() - start
    if args.save_runs:
        Path(args.save_runs).write_text(json.dumps(
            {"seconds": seconds, "argv": sys.argv[1:],
             "runs": [dataclasses.asdict(r) for r in runs]}, indent=1))
    print()
    print(table(runs))
    print(f"\n{seconds / 60:.1f} minutes on {_machine(args.device)}")
    if not args.no_write:
        write_readme(Path(args.out), runs, args, seconds)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
