"""``convexdict compare SAE_PATH DATA --lam L``: one SAE against the certified optimum.

SAE_PATH is anything :meth:`convexdict.SAE.load` reads (SAELens / sparsify directory,
dictionary_learning ``ae.pt``, ``.npz``); DATA anything
:func:`convexdict.data.datasets.load_data` reads. Certifies ``(DATA, lam)``, runs
:func:`convexdict.compare.compare`, prints a table and the verdict; ``--json PATH`` writes
``{"comparison": ..., "certificate": ...}`` atomically and ``--plots DIR`` draws the
per-latent stationarity bars and, for 2-D data, the atoms over the data.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from convexdict.cli import CLIError
from convexdict.cli.certify import say, write_json_atomic
from convexdict.cli.compare_scale import add_scale_flags
from convexdict.cli.paths import check_output_dir, check_output_file
from convexdict.cli.tables import comparison_table


def register(subparsers: Any) -> None:
    """Add the ``compare`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "compare",
        help="compare an SAE with the certified optimum",
        description="Certify the optimum on DATA, then report the SAE's gap, own dual bound, "
        "matching to the optimal atoms, stationarity residuals and paper B's per-piece verdict.",
    )
    p.add_argument("sae_path", metavar="SAE_PATH",
                   help="SAELens/sparsify directory, dictionary_learning ae.pt or .npz")
    p.add_argument("data", metavar="DATA", help=".npy, .npz, .csv, .safetensors or toy:NAME")
    p.add_argument("--lam", type=float, required=True, help="L1 penalty weight (> 0)")
    p.add_argument("--tol", type=float, default=1e-6, help="relative tolerance of the verdict")
    p.add_argument("--solver", choices=("clarabel", "scs"), default="clarabel")
    p.add_argument("--json", metavar="PATH", default=None, help="write the results here")
    p.add_argument("--plots", metavar="DIR", default=None, help="write PNG figures here")
    p.add_argument("--latents", metavar="PATH.csv", default=None,
                   help="per-latent results as CSV (and .parquet beside it with pyarrow)")
    p.add_argument("--streamed", action="store_true",
                   help="compare without a certificate on streamed data even when exact "
                   "pricing is in reach (automatic when it is not)")
    add_scale_flags(p)
    p.add_argument("--incumbents", action="store_true",
                   help="streamed path: also search explicit width-K SAEs that could beat "
                   "this one (the SAE polished, and seeded training runs at its width, each "
                   "polished; losses recomputed in float64 over all of DATA); one that beats "
                   "it by more than the tolerance is reported and makes the verdict "
                   "spurious_partial_minimum when no block improves. Off by default: it "
                   "trains SAEs. The certificate path always searches them below K*")
    p.add_argument("--incumbent-time", type=float, default=None, metavar="SECONDS",
                   help="time budget of that search (default: no limit, the fixed work of "
                   "--incumbent-restarts runs of --incumbent-steps steps); on the certificate "
                   "path, the budget of its width-K incumbents")
    p.add_argument("--incumbent-restarts", type=int, default=3,
                   help="seeded training runs of --incumbents (seeds --seed, --seed + 1, ...)")
    p.add_argument("--incumbent-steps", type=int, default=1000,
                   help="Adam steps per training run of --incumbents")
    p.set_defaults(func=run)


def _out_of_reach(spec: str) -> bool:
    """Exact pricing is out of reach for DATA (a ``.npy`` is only memory-mapped to check)."""
    from convexdict.analysis.scale_compare import priceable
    from convexdict.cli.compare_scale import open_data

    X = open_data(spec)
    if isinstance(X, np.memmap) and X.shape[0] * X.shape[1] <= 2_000_000:
        X = np.asarray(X, dtype=np.float64)
    return not priceable(X)


def run(args: argparse.Namespace) -> int:
    """Load, certify, compare, print, and write the JSON and figures."""
    from rich.console import Console
    from rich.markup import escape

    from convexdict._validation import check_int, check_positive
    from convexdict.data.datasets import load_data
    from convexdict.models.sae import SAE

    lam = check_positive("lam", args.lam)
    tol = check_positive("tol", args.tol)
    if args.incumbent_time is not None:
        check_positive("incumbent_time", args.incumbent_time)
    check_int("incumbent_restarts", args.incumbent_restarts, minimum=0)
    check_int("incumbent_steps", args.incumbent_steps, minimum=1)
    check_output_file(args.json, "--json")
    check_output_dir(args.plots, "--plots")
    if not Path(args.sae_path).exists():
        raise FileNotFoundError(f"SAE path '{args.sae_path}' does not exist.")
    check_output_file(args.latents, "--latents")
    sae = SAE.load(args.sae_path)
    if args.streamed or _out_of_reach(args.data):
        from convexdict.cli.compare_scale import run_streamed

        return run_streamed(args, sae, lam, tol)
    X = load_data(args.data)
    if X.shape[1] != sae.d_in:
        raise CLIError(
            f"DATA has d={X.shape[1]} columns but the SAE expects d_in={sae.d_in}."
        )
    from convexdict.analysis._compare import compare  # heavy: after the checks
    from convexdict.convex._certify import certify

    cert = certify(X, lam, solver=args.solver, progress=True)
    cmp = compare(sae, X, lam, cert, tol=tol, **({} if args.incumbent_time is None else
                                                 {"search_time": args.incumbent_time}))
    console = Console()
    console.print(comparison_table(cmp, title=f"convexdict compare {escape(args.sae_path)}"))
    say(console, cmp.message)
    if args.json is not None:
        out = write_json_atomic(args.json, {"comparison": cmp.to_dict(),
                                            "certificate": cert.to_dict()})
        say(console, f"results written to {out}")
    if args.latents is not None:
        from convexdict.analysis.scale_compare import latent_table
        from convexdict.cli.compare_scale import write_latents

        written = write_latents(latent_table(cmp), Path(args.latents))
        say(console, "per-latent results written to " + ", ".join(map(str, written)))
    if args.plots is not None:
        from convexdict.analysis import plots

        folder = Path(args.plots)
        written = [plots.plot_stationarity(cmp.stationarity, folder / "stationarity.png")]
        if X.shape[1] == 2:
            written.append(plots.plot_atoms_2d(
                X, {"SAE": sae}, folder / "atoms.png", reference=cert.optimum_sae))
        say(console, "figures written to " + ", ".join(map(str, written)))
    return 0
