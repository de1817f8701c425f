"""Certification benchmark: direct solve over all of E0 vs. column generation.

Prints N, d, |E0| (candidates 2 C(N, d)), direct-solve time, column-generation time,
their ratio, the two optima's relative difference and the certified gap, all measured
side by side in one run.

    python benchmarks/bench_certify.py            # the README table
    python benchmarks/bench_certify.py --quick    # a smaller table in seconds
    python benchmarks/bench_certify.py --pricing  # one full exact pricing: new vs legacy kernel
    python benchmarks/bench_certify.py --issue15 [--baseline DIR] [--master both]  # issue 15

``--pricing`` times one full exact pricing with the sweep kernel of
:mod:`convexdict_solvers.pricing._numba_kernel` and the legacy kernel
(:mod:`convexdict_solvers.pricing._numba_sweep`),
alternating, and reports events per second. An **event** is one (pivot set, point,
orientation) candidate hyperplane priced by the sweep (see :mod:`convexdict_solvers.pricing.exact`);
the
count is the one the new kernel reports (both kernels price the same events). Wall
time and process CPU time are both shown: on a shared machine CPU time is the steadier.

``--issue15`` certifies the target rows of issue 15 at ``tol = 1e-6`` with the stage
split (master, pricing, verification, rest). ``--baseline DIR`` also runs the d = 3,
N = 360 row with the package tree in ``DIR`` (e.g. ``git archive <commit> solvers
convexdict | tar -x -C DIR``) in a subprocess, alternating with the current tree.
``--master`` picks column generation's master for the current tree's rows
(``convexdict_solvers.colgen.loop.DEFAULT_MASTER``): ``warm`` (the default: FISTA warm
starts, gap-safe screening, Newton finish), ``clarabel`` (a cold CVXPY solve every round)
or ``both`` (one row each, run alternately in the same process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from functools import partial

import numpy as np
from convexdict_solvers.pricing.exact import price_sweep, sweep_cost

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


PRICING_CASES = [(300, 3), (100, 4), (150, 4), (2000, 2), (1000, 3)]
LEGACY_MAX_EVENTS = 3e8  # skip the legacy kernel above this (minutes under load)
ISSUE15_CASES = [  # (N, d, data, compare with the baseline tree)
    (10_000, 2, "clusters", False),
    (360, 3, "clusters", True),
    (1000, 3, "clusters", False),
    (100, 4, "gauss", False),
    (150, 4, "gauss", False),
]


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def run_pricing(cases, repeats: int = 3) -> None:
    """One full exact pricing of ``X - mean(X)`` (the ``lam_max`` pricing), new vs legacy."""
    print(f"load average at start {_load()} ({os.cpu_count()} cores)")
    header = (
        f"{'N':>5} {'d':>2} {'events':>13} {'new wall s':>10} {'new cpu s':>9} "
        f"{'new M ev/s':>10} {'old wall s':>10} {'old cpu s':>9} {'old M ev/s':>10} "
        f"{'speedup':>7} {'rel diff':>8}"
    )
    print(header)
    print("-" * len(header))
    for n, d in cases:
        X = _data(n, d)
        frame = cd.affine_frame(X)
        Y, R = frame.coords(X), X - X.mean(axis=0)
        price_sweep(Y[:20], R[:20], kernel="fast")  # compile outside the timing
        legacy = sweep_cost(n, d) <= LEGACY_MAX_EVENTS
        new, old = [], []
        for _ in range(repeats):
            new.append(_timed(partial(price_sweep, Y, R, kernel="fast")))
            if legacy:
                old.append(_timed(partial(price_sweep, Y, R, kernel="legacy")))
        res = new[0][0]
        nw, nc = min(t[1] for t in new), min(t[2] for t in new)
        ev = res.n_events
        line = f"{n:>5} {d:>2} {ev:>13,} {nw:>10.3f} {nc:>9.3f} {ev / nw / 1e6:>10.1f}"
        if legacy:
            ow, oc = min(t[1] for t in old), min(t[2] for t in old)
            rel = abs(old[0][0].max_value - res.max_value) / res.max_value
            line += f" {ow:>10.3f} {oc:>9.3f} {ev / ow / 1e6:>10.1f} {ow / nw:>7.1f} {rel:>8.1e}"
        else:
            line += f" {'-':>10} {'-':>9} {'-':>10} {'-':>7} {'-':>8}"
        print(line + f"   (load {_load()})", flush=True)


def _issue15_data(n: int, d: int, kind: str) -> np.ndarray:
    return _data(n, d) if kind == "clusters" else np.random.default_rng(0).normal(size=(n, d))


_BASELINE_SCRIPT = """
import json, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
import convexdict as cd
X = np.load(sys.argv[1]); lam = float(sys.argv[2])
t0 = time.perf_counter()
c = cd.certify(X, lam, method="colgen")
print(json.dumps(dict(total=time.perf_counter() - t0, master=c.time_master,
    pricing=c.time_pricing, verify=c.time_verify, rounds=len(c.rounds), k=c.width_needed,
    certified=bool(c.certified), upper=c.upper_bound, lower=c.lower_bound,
    tree=cd.__file__)))
"""


def _certify_row(X: np.ndarray, lam: float, master: str = "warm") -> dict:
    from convexdict_solvers.colgen import loop

    previous, loop.DEFAULT_MASTER = loop.DEFAULT_MASTER, master
    try:
        t0 = time.perf_counter()
        c = cd.certify(X, lam, method="colgen", time_limit=None)
    finally:
        loop.DEFAULT_MASTER = previous
    return dict(
        total=time.perf_counter() - t0,
        master=c.time_master,
        pricing=c.time_pricing,
        verify=c.time_verify,
        rounds=len(c.rounds),
        k=c.width_needed,
        certified=bool(c.certified),
        upper=c.upper_bound,
        lower=c.lower_bound,
    )


def _baseline_row(X: np.ndarray, lam: float, tree: str) -> dict:
    path = f"/tmp/bench_certify_{os.getpid()}.npy"
    np.save(path, X)
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run(
        [sys.executable, "-c", _BASELINE_SCRIPT, path, repr(lam)],
        env=env,
        cwd=tree,  # "python -c" puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    os.remove(path)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if not row["tree"].startswith(os.path.abspath(tree)):
        raise RuntimeError(f"the baseline imported {row['tree']}, not the tree in {tree}")
    return row


def _row_line(label: str, n: int, d: int, row: dict) -> str:
    rest = row["total"] - row["master"] - row["pricing"] - row["verify"]
    rel = (row["upper"] - row["lower"]) / row["upper"]
    return (
        f"{label:>8} {n:>6} {d:>2} {row['total']:>8.1f} {row['master']:>8.1f} "
        f"{row['pricing']:>9.1f} {row['verify']:>8.1f} {rest:>6.1f} {row['rounds']:>6} "
        f"{row['k']:>4} {rel:>9.1e} {str(row['certified']):>9} {row['upper']:>16.12g}   "
        f"(load {_load()})"
    )


def run_issue15(cases, lam_fraction: float, baseline: str | None,
                masters: tuple[str, ...] = ("warm",)) -> None:
    """The issue-15 rows, certified at tol 1e-6, with the stage split (seconds); one row
    per column-generation master in ``masters`` (labelled by the master's name)."""
    print(f"load average at start {_load()} ({os.cpu_count()} cores)")
    header = (
        f"{'tree':>8} {'N':>6} {'d':>2} {'total s':>8} {'master':>8} {'pricing':>9} "
        f"{'verify':>8} {'rest':>6} {'rounds':>6} {'K*':>4} {'rel gap':>9} {'certified':>9} "
        f"{'upper bound':>16}"
    )
    print(header)
    print("-" * len(header))
    for master in masters:  # compile the kernels and load the modules before timing
        small = _issue15_data(30, 3, "clusters")
        _certify_row(small, lam_fraction * cd.lam_max(small), master)
    for n, d, kind, compare in cases:
        X = _issue15_data(n, d, kind)
        lam = lam_fraction * cd.lam_max(X)
        if compare and baseline:
            _baseline_row(X[:30], lam, baseline)  # compile the baseline's kernel first
            print(_row_line("baseline", n, d, _baseline_row(X, lam, baseline)), flush=True)
        for master in masters:
            print(_row_line(master, n, d, _certify_row(X, lam, master)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases only")
    parser.add_argument("--lam-fraction", type=float, default=0.2, help="lam / lam_max")
    parser.add_argument("--path", action="store_true", help="only the regularisation-path table")
    parser.add_argument("--pricing", action="store_true", help="one full pricing, new vs legacy")
    parser.add_argument("--issue15", action="store_true", help="the issue-15 target rows")
    parser.add_argument("--baseline", default=None, help="package tree for the baseline row")
    parser.add_argument("--cases", default=None, help="N,d;N,d;... subset of the rows")
    parser.add_argument("--master", choices=("warm", "clarabel", "both"), default="warm",
                        help="column-generation master of the --issue15 rows")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Solution may be inaccurate")
    wanted = None
    if args.cases:
        wanted = {tuple(int(v) for v in c.split(",")) for c in args.cases.split(";")}
    if args.pricing:
        run_pricing([c for c in PRICING_CASES if wanted is None or c in wanted])
        return
    if args.issue15:
        rows = [c for c in ISSUE15_CASES if wanted is None or c[:2] in wanted]
        masters = ("warm", "clarabel") if args.master == "both" else (args.master,)
        run_issue15(rows, args.lam_fraction, args.baseline, masters)
        return
    if args.path:
        run_path(200, 2, 16)
        return
    if args.quick:
        run([(30, 2), (60, 2), (20, 3)], [(300, 2)], args.lam_fraction)
    else:
        run(CASES_DIRECT, CASES_COLGEN_ONLY, args.lam_fraction)


if __name__ == "__main__":
    main()
