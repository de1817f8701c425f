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
#: The toy's ``lam`` in issue 13 (its J_K table; about 0.26 ``lam_max`` at N = 120, seed 0).
TOY_LAM = 0.397
#: Issue 13's rows: (data, d, N, K, time limit in s). "gauss" is N(0, I) at ``--lam``;
#: "superposition_2d" is the toy at ``TOY_LAM``.
ISSUE13 = [
    ("gauss", 2, 30, 3, 120.0), ("gauss", 2, 60, 2, 120.0), ("gauss", 3, 16, 2, 120.0),
    ("superposition_2d", 2, 120, 2, 300.0), ("superposition_2d", 2, 120, 4, 300.0),
    ("superposition_2d", 2, 120, 6, 300.0),
]


def issue_data(data: str, d: int, n: int, lam: float, seed: int) -> tuple[np.ndarray, float]:
    """The data and ``lam`` of one row: Gaussian at ``lam``, or a toy at 0.3 ``lam_max``."""
    if data == "gauss":
        return np.random.default_rng(seed).normal(size=(n, d)), lam
    X = np.array(cd.datasets.load_toy(data, n=n, seed=seed).X)
    return X, TOY_LAM


def run_case(d: int, n: int, k: int, lam: float, tol: float, limit: float, seed: int,
             data: str = "gauss") -> dict:
    X, lam = issue_data(data, d, n, lam, seed)
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
        "splits": s.get("spatial_splits", 0), "open": s.get("open_nodes", 0),
        "search_s": s.get("time_search", total),
        "total_s": total, "certified": cert.certified, "rel_gap": cert.relative_gap,
        "lower": cert.lower_bound, "upper": cert.upper_bound, "data": data, "lam": lam,
        "budget": s.get("budget_exhausted", ""), "wide": wide.lower_bound,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--issue13", action="store_true",
                        help="issue 13's rows (own time limits; --time-limit caps them)")
    parser.add_argument("--only", type=int, nargs="*", help="run only these issue-13 rows")
    args = parser.parse_args()
    if args.issue13:
        issue13(args)
        return
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


def issue13(args: argparse.Namespace) -> None:
    """Issue 13's rows: the bracket ``[lower, upper]`` and its relative width."""
    table = Table(title=f"width-K verdicts (issue 13; tol {args.tol:g})")
    for col in ("data", "N", "d", "K", "K*", "lam", "P*", "lower", "upper", "rel. width",
                "certified", "budget", "nodes", "total s"):
        table.add_column(col, justify="right")
    rows = [row for i, row in enumerate(ISSUE13) if not args.only or i in args.only]
    with threadpool_limits(limits=1, user_api="blas"):
        for data, d, n, k, limit in rows:
            r = run_case(d, n, k, args.lam, args.tol, min(limit, args.time_limit), args.seed,
                         data)
            if r["skipped"]:
                table.add_row(data, str(n), str(d), str(k), str(r["K*"]), *["-"] * 9)
                continue
            table.add_row(
                data, str(n), str(d), str(k), str(r["K*"]), f"{r['lam']:.4g}",
                f"{r['wide']:.5g}", f"{r['lower']:.5g}", f"{r['upper']:.5g}",
                f"{r['rel_gap']:.2%}", "yes" if r["certified"] else "no", r["budget"] or "-",
                f"{r['nodes']:,}", f"{r['total_s']:.1f}",
            )
            print(r, flush=True)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
