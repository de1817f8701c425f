"""Fixed-width branch and bound: nodes, splits and time against N, d and K (CPU).

Each case draws ``X ~ N(0, I)`` of shape ``(N, d)`` (seeded), runs
``convexdict.certify(X, lam, width=K, tol=..., time_limit=...)`` for ``K < K*`` and prints
one row per case: the number of realizable patterns, relaxations solved, cone splits, the
search time (the wide certificate excluded), whether the width-``K`` optimum was certified
within the time limit, and the relative gap. Run:

    python benchmarks/bench_fixed_width.py            # the table in benchmarks/README.md
    python benchmarks/bench_fixed_width.py --quick    # a few small cases
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

import convexdict as cd

FULL = [(2, n, k) for n in (6, 8, 10, 12) for k in (1, 2, 3)] + [
    (3, n, k) for n in (6, 8) for k in (1, 2)
]
QUICK = [(2, 6, 1), (2, 6, 2), (2, 8, 2), (3, 6, 1)]


def run_case(d: int, n: int, k: int, lam: float, tol: float, limit: float, seed: int) -> dict:
    X = np.random.default_rng(seed).normal(size=(n, d))
    wide = cd.certify(X, lam)
    if k >= wide.width_needed:
        return {"d": d, "N": n, "K": k, "K*": wide.width_needed, "skipped": True}
    t0 = time.perf_counter()
    cert = cd.certify(X, lam, width=k, tol=tol, time_limit=limit)
    total = time.perf_counter() - t0
    s = cert.search
    return {
        "d": d, "N": n, "K": k, "K*": wide.width_needed, "skipped": False,
        "patterns": s["n_patterns"], "nodes": s["nodes_evaluated"],
        "splits": s["spatial_splits"], "open": s["open_nodes"], "search_s": s["time_search"],
        "total_s": total, "certified": cert.certified, "rel_gap": cert.relative_gap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = Table(title=f"fixed-width branch and bound (lam {args.lam:g}, tol {args.tol:g}, "
                        f"limit {args.time_limit:g} s)")
    for col in ("d", "N", "K", "K*", "patterns", "relaxations", "splits", "open",
                "search s", "total s", "certified", "rel. gap"):
        table.add_column(col, justify="right")
    with threadpool_limits(limits=1, user_api="blas"):
        for d, n, k in QUICK if args.quick else FULL:
            row = run_case(d, n, k, args.lam, args.tol, args.time_limit, args.seed)
            if row["skipped"]:
                table.add_row(str(d), str(n), str(k), str(row["K*"]), *["-"] * 8)
                continue
            table.add_row(
                str(d), str(n), str(k), str(row["K*"]), str(row["patterns"]),
                f"{row['nodes']:,}", f"{row['splits']:,}", f"{row['open']:,}",
                f"{row['search_s']:.1f}", f"{row['total_s']:.1f}",
                "yes" if row["certified"] else "no", f"{row['rel_gap']:.1e}",
            )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
