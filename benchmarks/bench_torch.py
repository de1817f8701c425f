"""Torch engines vs numpy/CVXPY, side by side in one run.

Table 1, pricing throughput: exact pricing of one residual over all of ``E0`` by the numpy
rotating sweep (numba kernel), numpy brute force, torch enumeration and the torch
rotating sweep, on the CPU and on CUDA when available. Throughput is reported as
atom-point evaluations per second, ``2 C(N, r) * N / seconds`` (the brute-force work;
the sweeps do less work for the same answer, which is their point). ``rel diff`` is the
largest relative deviation of any kernel's maximum from the numpy sweep.

Table 2, certification time vs N for d = 2, 3: ``convexdict.certify(method="colgen")``
(CVXPY/Clarabel master, numpy pricing, plus float64 verification) against
:func:`convexdict_solvers.colgen.torch_loop.column_generation_torch` (FISTA master and torch sweep
pricing, engine only: verification would be the same float64 pass as in certify). The
objective of the torch solution is recomputed in float64 numpy.

    python benchmarks/bench_torch.py            # larger sizes (use a GPU)
    python benchmarks/bench_torch.py --quick    # small sizes, minutes on a laptop CPU
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from math import comb

import numpy as np
import torch
from convexdict_solvers.colgen.torch_loop import column_generation_torch
from convexdict_solvers.pricing.exact import price_bruteforce, price_sweep
from convexdict_solvers.pricing.torch_sweep import price_enumerate_torch, price_sweep_torch

import convexdict as cd
from convexdict import affine_frame

BRUTE_LIMIT = 2e8  # atom-point evaluations above which brute-force kernels are skipped


def _data(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, d)) * 1.5
    return centres[rng.integers(0, 6, n)] + 0.4 * rng.normal(size=(n, d))


def _timed(fn, repeat: int = 1):
    fn()  # warm-up (numba compilation, CUDA context, allocator)
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def _kernels(Y: np.ndarray, R: np.ndarray, devices) -> dict:
    fns = {
        "np sweep": lambda: price_sweep(Y, R),
        "np brute": lambda: price_bruteforce(Y, R),
    }
    for dev in devices:
        fns[f"torch enum {dev}"] = lambda dev=dev: price_enumerate_torch(Y, R, device=dev)
        fns[f"torch sweep {dev}"] = lambda dev=dev: price_sweep_torch(Y, R, device=dev)
    return fns


def pricing_table(cases, devices) -> None:
    kernels = [("np sweep", "cpu"), ("np brute", "cpu")]
    kernels += [(f"torch enum {dev}", dev) for dev in devices]
    kernels += [(f"torch sweep {dev}", dev) for dev in devices]
    print("\nPricing throughput (atom-point evaluations / s, higher is better; time in s)")
    head = f"{'N':>5} {'r':>2} {'evals':>9} " + " ".join(f"{k:>22}" for k, _ in kernels)
    print(head + f" {'rel diff':>9}")
    print("-" * (len(head) + 10))
    for n, r in cases:
        X = _data(n, r)
        Y = affine_frame(X).coords(X)
        R = X - X.mean(axis=0)
        R = R - np.tanh(R)  # a residual-like dual candidate
        evals = 2 * comb(n, r) * n
        fns = _kernels(Y, R, devices)
        cells, values, ref_time = [], [], None
        for name, _ in kernels:
            brute = "brute" in name or "enum" in name
            if brute and evals > BRUTE_LIMIT:
                cells.append(f"{'(skipped)':>22}")
                continue
            seconds, res = _timed(fns[name], repeat=2 if evals < 1e7 else 1)
            ref_time = seconds if name == "np sweep" else ref_time
            values.append(res.max_value)
            ratio = ref_time / seconds
            cells.append(f"{evals / seconds:>9.2e} {seconds:>6.3f} x{ratio:<4.2g}")
        rel = max(abs(v - values[0]) for v in values) / values[0]
        print(f"{n:>5} {r:>2} {evals:>9.2e} " + " ".join(cells) + f" {rel:>9.1e}", flush=True)
    print("(xR = numpy sweep time / kernel time)")


def certify_table(cases, devices, lam_fraction: float) -> None:
    print("\nCertification time vs N (seconds; lam = "
          f"{lam_fraction} lam_max; torch = column_generation_torch, float64)")
    cols = "".join(f" {('torch ' + dev):>12} {'ratio':>6} {'rel diff':>9} {'rounds':>6}"
                   for dev in devices)
    head = f"{'N':>5} {'d':>2} {'certify':>8} {'engine':>8} {'rounds':>6}" + cols
    print(head)
    print("-" * len(head))
    for n, d in cases:
        X = _data(n, d)
        lam = lam_fraction * cd.lam_max(X)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cert = cd.certify(X, lam, method="colgen")
        t_cert = time.perf_counter() - start
        engine = cert.time_master + cert.time_pricing
        line = f"{n:>5} {d:>2} {t_cert:>8.2f} {engine:>8.2f} {len(cert.rounds):>6}"
        Y = affine_frame(X).coords(X)
        for dev in devices:
            start = time.perf_counter()
            res = column_generation_torch(X, lam, Y, device=dev, tol=cert.tol / 10)
            t_torch = time.perf_counter() - start
            sol = res.solution
            resid = X - sol.b - res.E.T @ sol.G
            value = (0.5 * np.sum(resid**2) + lam * np.linalg.norm(sol.G, axis=1).sum()) / n
            rel = (value - cert.upper_bound) / abs(cert.upper_bound)
            line += f" {t_torch:>12.2f} {t_cert / t_torch:>6.2f} {rel:>9.1e} {len(res.rounds):>6}"
        print(line, flush=True)
    print("(certify = full CVXPY path incl. verification; engine = its master + pricing time;"
          " ratio = certify / torch; rel diff = (torch objective - certified upper) / upper)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--lam-fraction", type=float, default=0.2, help="lam / lam_max")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: keep)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} CPU threads), "
          f"numpy {np.__version__}, GPU: {gpu}")
    if args.quick:
        pricing_table([(100, 2), (300, 2), (1000, 2), (40, 3), (100, 3)], devices)
        certify_table([(50, 2), (100, 2), (200, 2), (30, 3), (60, 3)], devices,
                      args.lam_fraction)
    else:
        pricing_table([(300, 2), (1000, 2), (3000, 2), (100, 3), (200, 3)], devices)
        certify_table([(100, 2), (300, 2), (1000, 2), (60, 3), (120, 3)], devices,
                      args.lam_fraction)


if __name__ == "__main__":
    main()
