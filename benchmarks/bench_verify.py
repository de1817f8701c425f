"""Exact verification benchmark: certify, save, then check the file independently.

Prints, per instance, the finder's time, the exact verifier's time (total and the
enumeration of E0), the float verifier's time, the subsets enumerated, the float-filter
fallbacks (signs, norms) and the verdicts. Targets (issue "Certificates anyone can
check", 2 CPU cores): d = 2, N = 200 in <= 10 s; d = 3, N = 60 in <= 60 s.

    python benchmarks/bench_verify.py            # the README table
    python benchmarks/bench_verify.py --quick    # the two target instances only
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

import convexdict as cd

TARGETS = [(200, 2, "clusters"), (60, 3, "clusters")]
EXTRA = [(400, 2, "clusters"), (100, 3, "clusters"), (30, 4, "clusters"),
         (200, 2, "offset 1e8"), (200, 2, "near line")]


def _data(n: int, d: int, kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, d)) * 1.5
    X = centres[rng.integers(0, 6, n)] + 0.4 * rng.normal(size=(n, d))
    if kind == "offset 1e8":
        X = X + 1e8
    elif kind == "near line":
        t = np.linspace(-2, 2, n // 4)
        line = np.column_stack([t, t / 3] + [np.zeros_like(t)] * (d - 2))
        line[::3, 1] *= 1 + 1e-15  # points within 1e-15 relative of the line
        X[: n // 4] = line
    return X


def run(cases) -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}, python {platform.python_version()}, "
          f"numpy {np.__version__}")
    header = (f"{'N':>4} {'d':>2} {'data':>11} {'K*':>4} {'certify s':>9} {'exact s':>8} "
              f"{'(E0 s)':>7} {'float s':>8} {'subsets':>9} {'sign fb':>7} {'norm fb':>7} "
              f"{'exact':>9} {'float':>9}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cert.npz")
        for n, d, kind in cases:
            X = _data(n, d, kind)
            lam = 0.3 * cd.lam_max(X)
            t0 = time.perf_counter()
            cert = cd.certify(X, lam)
            t_cert = time.perf_counter() - t0
            cert.save(path)
            exact = cd.verify(path, X)
            loose = cd.verify(path, X, exact=False)
            det = exact.details
            print(f"{n:>4} {d:>2} {kind:>11} {cert.width_needed:>4} {t_cert:>9.2f} "
                  f"{exact.timings['total']:>8.2f} {exact.timings.get('enumerate', 0):>7.2f} "
                  f"{loose.timings['total']:>8.2f} {det.get('n_subsets', 0):>9,} "
                  f"{det.get('n_sign_fallbacks', 0):>7,} {det.get('n_norm_fallbacks', 0):>7,} "
                  f"{exact.status:>9} {loose.status:>9}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the two target instances only")
    args = parser.parse_args()
    run(TARGETS if args.quick else TARGETS + EXTRA)


if __name__ == "__main__":
    main()
