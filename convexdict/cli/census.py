"""``convexdict census DATA --lam L --width K``: where SGD lands, polished and classified.

DATA is anything :func:`convexdict.data.datasets.load_data` reads. Certifies ``(DATA, lam)``,
runs :func:`convexdict.census.census` (``--starts`` SGD runs of width ``K``, each polished
to a partial minimum and classified by :func:`convexdict.compare`), prints one table row
per distinct end point and the fixed-width bounds; ``--json PATH`` writes
``{"census": ..., "certificate": ...}`` atomically (temporary file, then ``os.replace``).
No weights are written.
"""

from __future__ import annotations

import argparse
from typing import Any

from convexdict.cli import CLIError, field_table
from convexdict.cli.certify import say, write_json_atomic
from convexdict.cli.paths import check_output_file
from convexdict.cli.tables import VERDICT_STYLE


def register(subparsers: Any) -> None:
    """Add the ``census`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "census",
        help="count where SGD lands: many starts, polished and classified",
        description="Train many SGD SAEs of one width, polish each to a partial minimum, "
        "classify it against the certified optimum and group equal end points.",
    )
    p.add_argument("data", metavar="DATA", help=".npy, .npz, .csv, .safetensors or toy:NAME")
    p.add_argument("--lam", type=float, required=True, help="L1 penalty weight (> 0)")
    p.add_argument("--width", type=int, required=True, help="number of latents K of every start")
    p.add_argument("--starts", type=int, default=20, help="number of SGD starts (default 20)")
    p.add_argument("--steps", type=int, default=2000, help="Adam steps per start")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="seed of the first start")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--tol", type=float, default=1e-6, help="relative tolerance of the verdicts")
    p.add_argument("--time-limit", type=float, default=60.0,
                   help="seconds for the fixed-width branch and bound when --width < K* "
                        "(default 60)")
    p.add_argument("--json", metavar="PATH", default=None, help="write the results here")
    p.set_defaults(func=run)


def census_table(result: Any, title: str = "census") -> Any:
    """A :class:`rich.table.Table` with one row per group of a :class:`convexdict.census.Census`.

    Columns: group index, loss, gap to the lower bound, count (fraction of the starts),
    verdict (the members' verdicts when they differ) and dead latents; the seeds of each
    group are in the JSON output.
    """
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for name, justify in (("#", "right"), ("loss", "right"), ("gap", "right"),
                          ("count", "right"), ("verdict", "left"), ("dead", "right")):
        table.add_column(name, justify=justify, no_wrap=name != "verdict")
    for i, g in enumerate(result.groups):
        style = VERDICT_STYLE.get(g.verdict, "white")
        verdict = g.verdict if len(g.verdict_counts) == 1 else (
            g.verdict + " (mixed: " + ", ".join(f"{v} {n}" for v, n in g.verdict_counts.items())
            + ")"
        )
        table.add_row(str(i), f"{g.loss:.10g}", f"{g.gap:.3g}", f"{g.count} ({g.fraction:.0%})",
                      f"[{style}]{verdict}[/{style}]", str(g.n_dead))
    return table


def bounds_table(result: Any) -> Any:
    """A :class:`rich.table.Table` with the fixed-width bounds of a census."""
    yes = "[green]yes[/green]" if result.width_certified else "[yellow]no[/yellow]"
    rows = [
        ("K (K*)", f"{result.width} ({result.width_needed})"),
        ("certified lower bound", f"{result.lower_bound:.12g}"),
        ("best polished loss (upper bound)", f"{result.best_loss:.12g}"),
        ("gap", f"{result.bound_gap:.3g}"),
        ("bracket relative width (gap / best)",
         f"{result.bound_gap / result.best_loss:.3%}" if result.best_loss > 0 else "0"),
        ("bound from", "fixed-width branch and bound" if result.fixed_width else "P* (all widths)"),
        ("certificate's own SAE (certified)",
         f"{result.certificate_upper_bound:.12g} "
         f"({'yes' if result.certificate_certified else 'no'})"),
        ("best start attains the bound", yes),
        ("time (train, polish, classify)",
         f"{result.time_total:.2f} s ({result.time_train:.2f}, {result.time_polish:.2f}, "
         f"{result.time_compare:.2f})"),
    ]
    return field_table(f"bounds at width {result.width}", rows)


def run(args: argparse.Namespace) -> int:
    """Certify, run the census, print the tables and the conclusion, write the JSON."""
    from rich.console import Console
    from rich.markup import escape

    from convexdict._validation import check_int, check_positive
    from convexdict.data.datasets import load_data

    lam = check_positive("lam", args.lam)
    tol = check_positive("tol", args.tol)
    lr = check_positive("lr", args.lr)
    width = check_int("width", args.width, minimum=1)
    starts = check_int("starts", args.starts, minimum=1)
    steps = check_int("steps", args.steps, minimum=1)
    check_int("seed", args.seed, minimum=0)
    check_int("batch_size", args.batch_size, minimum=1)
    if args.time_limit <= 0:
        raise CLIError(f"--time-limit must be a positive number of seconds. Got {args.time_limit}.")
    check_output_file(args.json, "--json")
    X = load_data(args.data)
    from convexdict.analysis._census import census  # heavy: after the checks
    from convexdict.convex._certify import certify
    cert = certify(X, lam, width=width, tol=tol, progress=True, time_limit=args.time_limit)
    result = census(X, lam, width, n_starts=starts, steps=steps, lr=lr, seed=args.seed,
                    certificate=cert, tol=tol, progress=True, batch_size=args.batch_size,
                    device=args.device)
    console = Console()
    console.print(census_table(result, title=f"convexdict census {escape(args.data)} "
                               f"(lam {lam:g}, width {width}, {starts} starts)"))
    console.print(bounds_table(result))
    say(console, cert.lam_line())
    say(console, result.message)
    if args.json is not None:
        out = write_json_atomic(args.json, {"census": result.to_dict(),
                                            "certificate": cert.to_dict()})
        say(console, f"results written to {out}")
    return 0
