"""``convexdict certify DATA --lam L``: the certified global optimum of the canonical objective.

DATA is anything :func:`convexdict.datasets.load_data` reads (``.npy``, ``.npz``, ``.csv``,
``.safetensors`` or ``toy:NAME``). Prints a summary table and, with ``--json PATH``,
writes :meth:`convexdict.Certificate.to_dict` there atomically (temporary file, then
``os.replace``). The SAE's weights are not written.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import CLIError, field_table


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as strict JSON to ``path`` through a temporary file and ``os.replace``.

    Arrays, numpy scalars and non-finite floats are converted first
    (:func:`convexdict.compare.jsonable`). Parent directories are created.
    """
    from ..compare import jsonable

    target = Path(path)
    if target.is_dir():
        raise CLIError(f"--json {str(path)!r} is a directory; expected a file path.")
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(payload), indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


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
    p.add_argument("--solver", choices=("clarabel", "scs"), default="clarabel")
    p.add_argument("--method", choices=("auto", "colgen", "direct"), default="auto")
    p.add_argument("--tol", type=float, default=1e-6, help="relative gap tolerance")
    p.add_argument("--time-limit", type=float, default=60.0,
                   help="seconds for the fixed-width branch and bound when --width < K* "
                        "(default 60)")
    p.add_argument("--max-nodes", type=int, default=2_000_000,
                   help="relaxations the fixed-width branch and bound may solve")
    p.add_argument("--json", metavar="PATH", default=None, help="write the certificate here")
    p.set_defaults(func=run)


def certificate_table(cert: Any, title: str = "certificate") -> Any:
    """A :class:`rich.table.Table` summarising a :class:`convexdict.Certificate`."""
    verdict = "[green]yes[/green]" if cert.certified else "[red]no[/red]"
    rows = [
        ("N, d, rank", f"{cert.n_samples}, {cert.d}, {cert.rank}"),
        ("lam", f"{cert.lam:.6g}"),
        ("lower bound", f"{cert.lower_bound:.12g}"),
        ("upper bound", f"{cert.upper_bound:.12g}"),
        ("gap (relative)", f"{cert.gap:.3g} ({cert.relative_gap:.3g})"),
        ("certified", f"{verdict} (tol {cert.tol:g})"),
        ("K* (width needed)", str(cert.width_needed)),
        ("joint bound", f"{cert.joint_bound:.12g}"),
        ("candidate atoms", f"{cert.n_atoms:,} ({cert.n_active_atoms:,} active)"),
        ("method / solver", f"{cert.method} / {cert.solver}"),
        ("time (master, pricing, verify)",
         f"{cert.time_total:.2f} s ({cert.time_master:.2f}, {cert.time_pricing:.2f}, "
         f"{cert.time_verify:.2f})"),
    ]
    if cert.search is not None:
        s = cert.search
        rows.insert(7, ("width (fixed)", str(cert.width)))
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

    from .._validation import check_positive
    from ..certify import certify
    from ..datasets import load_data

    lam = check_positive("lam", args.lam)
    tol = check_positive("tol", args.tol)
    if args.width is not None and args.width < 0:
        raise CLIError(f"--width must be a nonnegative integer. Got {args.width}.")
    if args.time_limit <= 0:
        raise CLIError(f"--time-limit must be a positive number of seconds. Got {args.time_limit}.")
    if args.max_nodes < 1:
        raise CLIError(f"--max-nodes must be a positive integer. Got {args.max_nodes}.")
    X = load_data(args.data)
    cert = certify(X, lam, width=args.width, solver=args.solver, tol=tol, method=args.method,
                   progress=True, time_limit=args.time_limit, max_nodes=args.max_nodes)
    console = Console()
    console.print(certificate_table(cert, title=f"convexdict certify {escape(args.data)}"))
    say(console, cert.summary())
    if args.json is not None:
        out = write_json_atomic(args.json, cert.to_dict())
        say(console, f"certificate written to {out}")
    return 0
