"""``convexdict compare SAE_PATH DATA --lam L``: one SAE against the certified optimum.

SAE_PATH is anything :meth:`convexdict.SAE.load` reads (SAELens / sparsify directory,
dictionary_learning ``ae.pt``, ``.npz``); DATA anything
:func:`convexdict.datasets.load_data` reads. Certifies ``(DATA, lam)``, runs
:func:`convexdict.compare.compare`, prints a table and the verdict; ``--json PATH`` writes
``{"comparison": ..., "certificate": ...}`` atomically and ``--plots DIR`` draws the
per-latent stationarity bars and, for 2-D data, the atoms over the data.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from . import CLIError, field_table
from .certify import say, write_json_atomic
from .compare_scale import add_scale_flags
from .paths import check_output_dir, check_output_file

VERDICT_STYLE = {
    "certified_global": "green",
    "spurious_partial_minimum": "red",
    "partial_minimum": "yellow",
    "not_converged": "yellow",
    "undetermined": "magenta",
}


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
    p.set_defaults(func=run)


def comparison_table(cmp: Any, title: str = "comparison") -> Any:
    """A :class:`rich.table.Table` summarising a :class:`convexdict.compare.Comparison`."""
    style = VERDICT_STYLE.get(cmp.verdict, "white")
    st = cmp.stationarity
    rows = [
        ("SAE width", str(cmp.width)),
        ("K* (width of the optimum)",
         str(cmp.width_needed) if cmp.width_needed >= 0 else "unknown"),
        ("loss = recon + penalty",
         f"{cmp.loss:.10g} = {cmp.reconstruction:.6g} + {cmp.penalty:.6g}"),
        ("L0, explained variance", f"{cmp.l0:.3g}, {cmp.explained_variance:.4f}"),
        ("dead latents", f"{len(cmp.dead_latents)} ({cmp.dead_fraction:.1%})"),
        ("lower bound (verified)", f"{cmp.lower_bound:.10g}"),
        ("gap, absolute", f"{cmp.gap:.3g}"),
        ("gap / loss (relative)", f"{cmp.relative_gap:.3g}"),
        ("own dual bound (the SAE's residual, priced)", f"{cmp.sae_dual_bound:.10g}"),
        ("loss a convex block step removes (dec, enc)",
         f"{cmp.improve_decoder:.3g}, {cmp.improve_encoder:.3g}"),
        ("at most (dec, enc: duality bounds)",
         f"{cmp.improve_decoder_bound:.3g}, {cmp.improve_encoder_bound:.3g}"),
        ("max code violation / atom residual",
         f"{st.max_code_violation:.3g} / {st.max_atom_residual:.3g}"),
        ("code condition fails on (max over latents)",
         f"{np.nanmax(st.code_violation_fraction, initial=0.0):.1%} of samples"
         if st.code_violation_fraction is not None else "n/a"),
    ]
    for match in (cmp.decoder_matching, cmp.activation_matching):
        if match is not None:
            rows.append((f"matching ({match.criterion})", f"mean quality {match.mean_quality:.4f}"))
    if 0 <= cmp.width < cmp.width_needed:
        from ..width_incumbents import bracket_width

        rows.append((f"bracket of the width-{cmp.width} optimum",
                     f"[{cmp.lower_bound:.10g}, {cmp.optimum_loss:.10g}] (relative width "
                     f"{bracket_width(cmp.lower_bound, cmp.optimum_loss):.3%})"))
    if getattr(cmp, "better_sae", None) is not None:
        rows.append(("better explicit SAE (proof of spurious)",
                     f"width {cmp.better_sae.width}, loss {cmp.better_loss:.10g}"))
    if cmp.subsample is not None:
        rows.append(("samples", f"seeded subsample of {cmp.subsample['n_used']:,} of "
                     f"{cmp.subsample['n_total']:,}: every bound describes the subsample"))
    rows.append(("verdict", f"[{style}]{cmp.verdict}[/{style}]"))
    return field_table(title, rows)


def _out_of_reach(spec: str) -> bool:
    """Exact pricing is out of reach for DATA (a ``.npy`` is only memory-mapped to check)."""
    from ..scale_compare import priceable
    from .compare_scale import open_data

    X = open_data(spec)
    if isinstance(X, np.memmap) and X.shape[0] * X.shape[1] <= 2_000_000:
        X = np.asarray(X, dtype=np.float64)
    return not priceable(X)


def run(args: argparse.Namespace) -> int:
    """Load, certify, compare, print, and write the JSON and figures."""
    from rich.console import Console
    from rich.markup import escape

    from .._validation import check_positive
    from ..certify import certify
    from ..compare import compare
    from ..datasets import load_data
    from ..sae import SAE

    lam = check_positive("lam", args.lam)
    tol = check_positive("tol", args.tol)
    check_output_file(args.json, "--json")
    check_output_dir(args.plots, "--plots")
    if not Path(args.sae_path).exists():
        raise FileNotFoundError(f"SAE path '{args.sae_path}' does not exist.")
    check_output_file(args.latents, "--latents")
    sae = SAE.load(args.sae_path)
    if args.streamed or _out_of_reach(args.data):
        from .compare_scale import run_streamed

        return run_streamed(args, sae, lam, tol)
    X = load_data(args.data)
    if X.shape[1] != sae.d_in:
        raise CLIError(
            f"DATA has d={X.shape[1]} columns but the SAE expects d_in={sae.d_in}."
        )
    cert = certify(X, lam, solver=args.solver, progress=True)
    cmp = compare(sae, X, lam, cert, tol=tol)
    console = Console()
    console.print(comparison_table(cmp, title=f"convexdict compare {escape(args.sae_path)}"))
    say(console, cmp.message)
    if args.json is not None:
        out = write_json_atomic(args.json, {"comparison": cmp.to_dict(),
                                            "certificate": cert.to_dict()})
        say(console, f"results written to {out}")
    if args.latents is not None:
        from ..scale_compare import latent_table
        from .compare_scale import write_latents

        written = write_latents(latent_table(cmp), Path(args.latents))
        say(console, "per-latent results written to " + ", ".join(map(str, written)))
    if args.plots is not None:
        from .. import plots

        folder = Path(args.plots)
        written = [plots.plot_stationarity(cmp.stationarity, folder / "stationarity.png")]
        if X.shape[1] == 2:
            written.append(plots.plot_atoms_2d(
                X, {"SAE": sae}, folder / "atoms.png", reference=cert.optimum_sae))
        say(console, "figures written to " + ", ".join(map(str, written)))
    return 0
