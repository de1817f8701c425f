"""compare + one polish round at scale, on data streamed from a memory-mapped ``.npy``.

Data: Gaussian-sparse features (``n_features`` unit directions in ``R^d``, each active with
probability ``p`` with an ``1 + Exponential(1)`` code, plus 1 % noise), written to a
``.npy`` in chunks. SAE: :func:`convexdict.train_sae` for ``--train-steps`` Adam steps
(an unconverged SGD SAE, as researchers hold them). Measured, in a fresh subprocess so
that its peak memory is its own:

* ``compare``: :func:`convexdict.compare` (streamed: loss terms, stationarity, joint bound,
  decoder block by FISTA with its duality gap, encoder block by feasible descent);
* ``polish``: one round of :func:`convexdict.analysis.blocks.polish_at_scale`.

    python benchmarks/bench_compare_scale.py                     # CPU row
    python benchmarks/bench_compare_scale.py --preset gpu        # d=768, K=16384, N=1e6
    python benchmarks/bench_compare_scale.py --quick             # a 1-minute smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PRESETS = {
    "cpu": {"n": 100_000, "d": 256, "width": 4096, "features": 2048, "device": "cpu"},
    "gpu": {"n": 1_000_000, "d": 768, "width": 16384, "features": 8192, "device": "cuda"},
    "quick": {"n": 5_000, "d": 64, "width": 512, "features": 256, "device": "cpu"},
}


def make_data(path: Path, n: int, d: int, n_features: int, p: float = 0.01,
              seed: int = 0) -> None:
    """Write ``n`` float32 samples of Gaussian-sparse features to ``path`` in chunks."""
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(n_features, d))
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, 10_000):
        m = min(10_000, n - s)
        codes = (rng.random((m, n_features)) < p) * (1.0 + rng.exponential(size=(m, n_features)))
        out[s : s + m] = codes @ F + 0.01 * rng.normal(size=(m, d))
    out.flush()
    del out


def measure(args: argparse.Namespace) -> dict:
    """Run compare + one polish round; return timings and numbers (in this process)."""
    import torch

    import convexdict as cd
    from convexdict.analysis.blocks import polish_at_scale

    def cpu() -> float:
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime

    sae = cd.SAE.load(args.sae)
    c0 = cpu()
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    last = ["start", time.perf_counter()]

    def progress(stage: str, rows: int) -> None:
        if stage != last[0]:
            now = time.perf_counter()
            stages[last[0]] = stages.get(last[0], 0.0) + now - last[1]
            last[:] = [stage, now]

    cmp = cd.compare(sae, args.data, args.lam, streamed=True, device=args.device,
                     batch_size=args.batch_size, encoder_iters=args.encoder_iters,
                     progress=progress)
    t1, c1 = time.perf_counter(), cpu()
    stages[last[0]] = stages.get(last[0], 0.0) + t1 - last[1]
    pol = polish_at_scale(sae, args.data, args.lam, rounds=1, device=args.device,
                          batch_size=args.batch_size, encoder_iters=args.encoder_iters)
    t2, c2 = time.perf_counter(), cpu()
    peak_gpu = (torch.cuda.max_memory_allocated() / 2**30) if torch.cuda.is_available() else 0.0
    return {
        "compare_s": t1 - t0,
        "polish_s": t2 - t1,
        "compare_cpu_s": c1 - c0,
        "compare_stages_s": stages,
        "polish_cpu_s": c2 - c1,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_gib": peak_gpu,
        "loss": cmp.loss,
        "lower_bound": cmp.lower_bound,
        "relative_gap": cmp.relative_gap,
        "l0": cmp.l0,
        "explained_variance": cmp.explained_variance,
        "dead": len(cmp.dead_latents),
        "improve_decoder": cmp.improve_decoder,
        "improve_decoder_bound": cmp.improve_decoder_bound,
        "improve_encoder": cmp.improve_encoder,
        "improve_encoder_bound": cmp.improve_encoder_bound,
        "max_atom_residual": cmp.stationarity.max_atom_residual,
        "bias_residual": cmp.stationarity.bias_residual,
        "verdict": cmp.verdict,
        "polish_before": pol.loss_before,
        "polish_after": pol.loss_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    parser.add_argument("--quick", action="store_true", help="same as --preset quick")
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--encoder-iters", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="keep data and SAE here")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sae", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    cfg = PRESETS["quick" if args.quick else args.preset]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_compare_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    data, sae_dir = work / "acts.npy", work / "sae"
    t = time.perf_counter()
    if not data.exists():
        make_data(data, cfg["n"], cfg["d"], cfg["features"])
    t_data = time.perf_counter() - t
    t = time.perf_counter()
    if not (sae_dir / "cfg.json").exists():
        import convexdict as cd

        dev = cfg["device"]
        sae = cd.train_sae(str(data), args.lam, cfg["width"], steps=args.train_steps,
                           batch_size=1024, device=dev, seed=0)
        sae.save(sae_dir)
    t_train = time.perf_counter() - t
    cmd = [sys.executable, __file__, "--measure", "--sae", str(sae_dir), "--data", str(data),
           "--device", cfg["device"], "--lam", str(args.lam),
           "--encoder-iters", str(args.encoder_iters)]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    load0 = os.getloadavg()[0]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    load1 = os.getloadavg()[0]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {load0:.1f} -> {load1:.1f}; data {t_data:.0f} s, training {t_train:.0f} s")
    print("| device | N | d | K | compare s (CPU s) | polish s (CPU s) | total s | "
          "peak RSS GiB | L0 | "
          "dec found / bound | enc found / bound | polish loss | verdict |")
    print(f"| {cfg['device']} | {cfg['n']:,} | {cfg['d']} | {cfg['width']:,} | "
          f"{out['compare_s']:.0f} ({out['compare_cpu_s']:.0f}) | "
          f"{out['polish_s']:.0f} ({out['polish_cpu_s']:.0f}) | "
          f"{out['compare_s'] + out['polish_s']:.0f} | {out['peak_rss_gib']:.2f} | "
          f"{out['l0']:.1f} | {out['improve_decoder']:.3g} / {out['improve_decoder_bound']:.3g} | "
          f"{out['improve_encoder']:.3g} / {out['improve_encoder_bound']:.3g} | "
          f"{out['polish_before']:.5g} -> {out['polish_after']:.5g} | {out['verdict']} |")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
