"""Certification benchmark: direct solve over all of E0 vs. column generation.

Prints N, d, |E0| (candidates 2 C(N, d)), direct-solve time, column-generation time,
their ratio, the two optima's relative difference and the certified gap, all measured
side by side in one run.

    python benchmarks/bench_certify.py            # the README table
    python benchmarks/bench_certify.py --quick    # a smaller table in seconds
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np

import convexdict as cd

CASES_DIRECT = [(50, 2), (100, 2), (200, 2), (40, 3)]
CASES_COLGEN_ONLY = [(2000, 2), (300, 3)]


def _data(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, d)) * 1.5
    return centres[rng.integers(0, 6, n)] + 0.4 * rng.normal(size=(n, d))


def run(cases_direct, cases_colgen, lam_fraction: float) -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, numpy {np.__version__}"
    )
    header = (
        f"{'N':>5} {'d':>2} {'|E0|':>10} {'direct s':>9} {'colgen s':>9} {'ratio':>7} "
        f"{'rel diff':>9} {'gap':>9} {'K*':>4} {'rounds':>6} {'certified':>9}"
    )
    print(header)
    print("-" * len(header))
    for n, d in list(cases_direct) + list(cases_colgen):
        X = _data(n, d)
        lam = lam_fraction * cd.lam_max(X)
        t0 = time.perf_counter()
        cg = cd.certify(X, lam, method="colgen")
        t_cg = time.perf_counter() - t0
        t_direct, rel = float("nan"), float("nan")
        if (n, d) in cases_direct:
            t0 = time.perf_counter()
            direct = cd.certify(X, lam, method="direct")
            t_direct = time.perf_counter() - t0
            rel = abs(direct.upper_bound - cg.upper_bound) / abs(direct.upper_bound)
        print(
            f"{n:>5} {d:>2} {cg.n_atoms:>10,} {t_direct:>9.2f} {t_cg:>9.2f} "
            f"{t_direct / t_cg:>7.1f} {rel:>9.1e} {cg.gap:>9.1e} {cg.width_needed:>4} "
            f"{len(cg.rounds):>6} {str(cg.certified):>9}",
            flush=True,
        )


def run_path(n: int, d: int, n_lams: int, repeats: int = 3) -> None:
    """certify_path (warm-started) vs. independent certifications on the same grid.

    The two are run alternately ``repeats`` times (the machine's speed drifts); the
    median times and their ratio are reported.
    """
    X = _data(n, d)
    lams = cd.lam_max(X) * np.geomspace(0.8, 0.05, n_lams)
    t_path, t_alone = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        path = cd.certify_path(X, lams)
        t_path.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        alone = [cd.certify(X, lam, method="colgen") for lam in lams]
        t_alone.append(time.perf_counter() - t0)
    worst = max(
        abs(a.upper_bound - b.upper_bound) / b.upper_bound for a, b in zip(path, alone, strict=True)
    )
    med_path, med_alone = float(np.median(t_path)), float(np.median(t_alone))
    print(
        f"\npath N={n} d={d}, {n_lams} lams, {repeats} alternating runs: certify_path "
        f"{', '.join(f'{t:.2f}' for t in t_path)} s, independent "
        f"{', '.join(f'{t:.2f}' for t in t_alone)} s; median ratio {med_alone / med_path:.1f}x, "
        f"all certified {all(c.certified for c in path)}, max rel diff {worst:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases only")
    parser.add_argument("--lam-fraction", type=float, default=0.2, help="lam / lam_max")
    parser.add_argument("--path", action="store_true", help="only the regularisation-path table")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Solution may be inaccurate")
    if args.path:
        run_path(200, 2, 16)
        return
    if args.quick:
        run([(30, 2), (60, 2), (20, 3)], [(300, 2)], args.lam_fraction)
    else:
        run(CASES_DIRECT, CASES_COLGEN_ONLY, args.lam_fraction)


if __name__ == "__main__":
    main()
