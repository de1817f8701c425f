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

from . import CLIError, field_table
from .certify import say, write_json_atomic

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
    p.set_defaults(func=run)


def comparison_table(cmp: Any, title: str = "comparison") -> Any:
    """A :class:`rich.table.Table` summarising a :class:`convexdict.compare.Comparison`."""
    style = VERDICT_STYLE.get(cmp.verdict, "white")
    st = cmp.stationarity
    rows = [
        ("width (K*)", f"{cmp.width} ({cmp.width_needed})"),
        ("loss = recon + penalty",
         f"{cmp.loss:.10g} = {cmp.reconstruction:.6g} + {cmp.penalty:.6g}"),
        ("L0, explained variance", f"{cmp.l0:.3g}, {cmp.explained_variance:.4f}"),
        ("dead latents", f"{len(cmp.dead_latents)} ({cmp.dead_fraction:.1%})"),
        ("certified lower bound", f"{cmp.lower_bound:.10g}"),
        ("gap (relative)", f"{cmp.gap:.3g} ({cmp.relative_gap:.3g})"),
        ("own dual bound", f"{cmp.sae_dual_bound:.10g}"),
        ("block improvements (dec, enc)", f"{cmp.improve_decoder:.3g}, {cmp.improve_encoder:.3g}"),
        ("max code violation / atom residual",
         f"{st.max_code_violation:.3g} / {st.max_atom_residual:.3g}"),
    ]
    for match in (cmp.decoder_matching, cmp.activation_matching):
        if match is not None:
            rows.append((f"matching ({match.criterion})", f"mean quality {match.mean_quality:.4f}"))
    rows.append(("verdict", f"[{style}]{cmp.verdict}[/{style}]"))
    return field_table(title, rows)


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
    if not Path(args.sae_path).exists():
        raise FileNotFoundError(f"SAE path '{args.sae_path}' does not exist.")
    sae = SAE.load(args.sae_path)
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
    if args.plots is not None:
        from .. import plots

        folder = Path(args.plots)
        written = [plots.plot_stationarity(cmp.stationarity, folder / "stationarity.png")]
        if X.shape[1] == 2:
            written.append(plots.plot_atoms_2d(
                X, {"SAE": sae}, folder / "atoms.png", reference=cert.optimum_sae))
        say(console, "figures written to " + ", ".join(map(str, written)))
    return 0
