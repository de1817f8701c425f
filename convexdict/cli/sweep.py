"""``convexdict sweep CONFIG.toml --out DIR``: a grid of certify/train/compare cells on Dask.

Runs :func:`convexdict.sweeps.grid.run_sweep`: on a new local cluster of ``--workers`` processes
by default, or on a running Dask scheduler with ``--scheduler tcp://HOST:8786`` (the same
command on a laptop or a cluster). Each finished cell lands in ``DIR/cells/<id>.json`` at
once; ``DIR/results.csv`` holds one row per finished cell; the same command rerun skips
finished cells. See ``docs/sweeps.md`` for the TOML layout and SLURM.

Exit codes: 0 when every cell is ok, 1 when some cell failed (its error is in its
row), 2 for bad input found before the run (config, data specs, ``--out``, a missing
``[sweep]`` extra).
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from convexdict.cli import CLIError
from convexdict.cli.paths import check_output_dir

# What ``pip install "convexdict[sweep]"`` brings (import name: distribution).
SWEEP_MODULES = {"dask": "dask", "distributed": "distributed", "pandas": "pandas"}


def _check_extra() -> None:
    missing = [dist for module, dist in SWEEP_MODULES.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        raise CLIError(f"convexdict sweep needs {', '.join(missing)}, which are not installed: "
                       'pip install "convexdict[sweep]"')


def register(subparsers: Any) -> None:
    """Add the ``sweep`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of data x lam x width x seed x trainer cells on Dask",
        description="Certify each (data, lam) once, train one SAE per cell, compare it with the "
        "certified optimum; results survive interruption and reruns skip finished cells.",
    )
    p.add_argument("config", metavar="CONFIG.toml", help="sweep grid (see docs/sweeps.md)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (reused to resume)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="address of a running Dask scheduler, e.g. tcp://host:8786 "
                   "(default: start a local cluster)")
    p.add_argument("--workers", metavar="N", type=int, default=None,
                   help="worker processes of the local cluster (default: CPU count)")
    p.add_argument("--retry-failed", action="store_true",
                   help="also rerun cells that recorded an error")
    p.add_argument("--no-figures", action="store_true", help="skip the summary figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate the arguments, the config and the data, run the sweep, print a summary.

    Returns 0 when every cell is ok and 1 when some cell failed.
    """
    from rich.console import Console

    from convexdict.cli.certify import say
    from convexdict.sweeps.config import check_data, load_config
    from convexdict.sweeps.grid import run_sweep

    _check_extra()

    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be a positive integer. Got {args.workers}.")
    if args.workers is not None and args.scheduler is not None:
        raise CLIError("--workers sizes a local cluster; with --scheduler the workers are "
                       "those started for that scheduler (`dask worker ADDRESS`). Drop one.")
    try:
        config = load_config(args.config)
    except ModuleNotFoundError:  # no tomllib (Python 3.10) and no tomli
        raise CLIError('reading sweep configs on Python 3.10 needs tomli: '
                       'pip install "convexdict[sweep]"') from None
    check_data(config, files=args.scheduler is None)  # remote workers may see other files
    check_output_dir(args.out, "--out")
    where = args.scheduler or f"a local cluster of {args.workers or 'CPU-count'} workers"
    console = Console()
    say(console, f"sweep: {len(config.cells())} cells on {where}; writing to {args.out}")
    result = run_sweep(config, args.out, scheduler=args.scheduler, workers=args.workers,
                       retry_failed=args.retry_failed, figures=not args.no_figures)
    say(console, f"{result.n_cells} cells: {result.n_skipped} already done, {result.n_run} run, "
        f"{result.n_errors} failed, in {result.seconds:.1f} s")
    say(console, f"results: {result.out / 'results.csv'}")
    for path in result.figures:
        say(console, f"figure: {path}")
    failed = result.table[result.table["status"] == "error"]
    for _, row in failed.head(5).iterrows():
        say(console, f"failed {row['cell_id']} ({row['error_stage']}): {row['error_type']}: "
            f"{row['error_message']}")
    return 1 if result.n_errors else 0
