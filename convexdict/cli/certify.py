"""``convexdict certify DATA --lam L``: the certified global optimum of the canonical objective.

DATA is anything :func:`convexdict.data.datasets.load_data` reads (``.npy``, ``.npz``, ``.csv``,
``.safetensors`` or ``toy:NAME``). Prints a summary table and, with ``--json PATH``,
writes :meth:`convexdict.Certificate.to_dict` there atomically (temporary file, then
``os.replace``). The SAE's weights are not written.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from convexdict.cli import CLIError, field_table
from convexdict.cli.paths import check_output_file


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as strict JSON to ``path`` (:func:`solvers.atomic.atomic_write`).

    Arrays, numpy scalars and non-finite floats are converted first
    (:func:`convexdict.compare.jsonable`). Parent directories are created.
    """
    from convexdict_solvers.atomic import atomic_write_text

    from convexdict.analysis.comparison import jsonable

    target = check_output_file(path, "--json")
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(payload), indent=2, allow_nan=False)
    return atomic_write_text(target, text + "\n")


def say(console: Any, text: str) -> None:
    """Print plain text without markup highlighting or hard wrapping (paths stay whole)."""
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def register(subparsers: Any) -> None:
    """Add the ``certify`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "certify",
        help="certify the global optimum of the canonical SAE objective",
        description="Solve the exact convex reformulation, map it back to an explicit SAE and "
        "verify a dual lower bound by exact pricing.",
    )
    p.add_argument("data", metavar="DATA",
                   help=".npy, .npz, .csv, .safetensors or toy:NAME (e.g. toy:superposition_2d)")
    p.add_argument("--lam", type=float, required=True, help="L1 penalty weight (> 0)")
    p.add_argument("--width", type=int, default=None,
                   help="requested width K (default: K*, the optimum's own width)")
    p.add_argument("--solver", choices=("clarabel", "scs"), default="clarabel",
                   help="CVXPY solver for the group lasso")
    p.add_argument("--method", choices=("auto", "colgen", "direct"), default="auto",
                   help="column generation with exact pricing, or one solve over all of E0")
    p.add_argument("--tol", type=float, default=1e-6,
                   help="relative gap tolerance: certified when upper - lower <= tol * upper")
    p.add_argument("--time-limit", type=float, default=60.0,
                   help="seconds for the whole certification (column generation and, when "
                        "--width < K*, the branch and bound); on expiry valid bounds are "
                        "returned, not certified")
    p.add_argument("--max-nodes", type=int, default=2_000_000,
                   help="relaxations the fixed-width branch and bound may solve")
    p.add_argument("--json", metavar="PATH", default=None, help="write the certificate here")
    p.add_argument("--save", metavar="CERT", default=None,
                   help="write the certificate file (.npz) that `convexdict verify` checks")
    p.set_defaults(func=run)


def certificate_table(cert: Any, title: str = "certificate") -> Any:
    """A :class:`rich.table.Table` summarising a :class:`convexdict.Certificate`."""
    verdict = "[green]yes[/green]" if cert.certified else "[red]no[/red]"
    rows = [
        ("N, d, rank", f"{cert.n_samples}, {cert.d}, {cert.rank}"),
        ("lam", f"{cert.lam:.6g}"),
        ("lam_max, lam / lam_max", cert.lam_line()),
        ("lower bound (verified dual)", f"{cert.lower_bound:.12g}"),
        ("upper bound (explicit model)", f"{cert.upper_bound:.12g}"),
        ("gap, absolute", f"{cert.gap:.3g}"),
        ("gap / upper bound (relative)", f"{cert.relative_gap:.3g}"),
        ("certified", f"{verdict} (relative tol {cert.tol:g})"),
        ("K* (latents of the optimum)", str(cert.width_needed)),
        ("joint bound (any d, weaker)", f"{cert.joint_bound:.12g}"),
        ("candidate atoms 2 C(N, r)", f"{cert.n_atoms:,}"),
        ("atoms in the final master", f"{cert.n_active_atoms:,}"),
        ("method / solver", f"{cert.method} / {cert.solver}"),
        ("time (master, pricing, verify)",
         f"{cert.time_total:.2f} s ({cert.time_master:.2f}, {cert.time_pricing:.2f}, "
         f"{cert.time_verify:.2f})"),
    ]
    if cert.fixed_width:
        s = cert.search
        rows.insert(9, ("width (fixed)", str(cert.width)))
        if not cert.certified:
            rows.insert(10, (f"bracket of the width-{cert.width} optimum",
                             f"[{cert.lower_bound:.10g}, {cert.upper_bound:.10g}] (relative "
                             f"width {cert.relative_gap:.3%})"))
        rows.append(("branch and bound",
                     f"{s.get('nodes_evaluated', 0):,} relaxations, "
                     f"{s.get('n_patterns', 0):,} patterns, {s.get('spatial_splits', 0):,} "
                     f"cone splits, {s.get('open_nodes', 0):,} open, "
                     f"{s.get('time_search', 0.0):.2f} s"
                     + (f" ({s['budget_exhausted']} budget ran out)"
                        if s.get("budget_exhausted") else "")))
    return field_table(title, rows)


def run(args: argparse.Namespace) -> int:
    """Certify, print the table and the verdict, write the JSON."""
    from rich.console import Console
    from rich.markup import escape

    from convexdict._validation import check_positive
    from convexdict.data.datasets import load_data

    lam = check_positive("lam", args.lam)
    tol = check_positive("tol", args.tol)
    if args.width is not None and args.width < 0:
        raise CLIError(f"--width must be a nonnegative integer. Got {args.width}.")
    if args.time_limit <= 0:
        raise CLIError(f"--time-limit must be a positive number of seconds. Got {args.time_limit}.")
    if args.max_nodes < 1:
        raise CLIError(f"--max-nodes must be a positive integer. Got {args.max_nodes}.")
    check_output_file(args.json, "--json")
    check_output_file(args.save, "--save")
    X = load_data(args.data)
    from convexdict.convex._certify import certify  # heavy (CVXPY, numba): after the checks

    cert = certify(X, lam, width=args.width, solver=args.solver, tol=tol, method=args.method,
                   progress=True, time_limit=args.time_limit, max_nodes=args.max_nodes)
    console = Console()
    console.print(certificate_table(cert, title=f"convexdict certify {escape(args.data)}"))
    say(console, cert.summary())
    if args.json is not None:
        out = write_json_atomic(args.json, cert.to_dict())
        say(console, f"certificate written to {out}")
    if args.save is not None:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        say(console, f"certificate file written to {cert.save(args.save)}; check it with "
                     f"`convexdict verify {args.save} {args.data}`")
    return 0
