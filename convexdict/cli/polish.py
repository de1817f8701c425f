"""``convexdict polish SAE_PATH DATA --lam L --out DIR``: alternate the two convex blocks.

SAE_PATH is anything :meth:`convexdict.SAE.load` reads; DATA a ``.npy`` (memory-mapped,
streamed in chunks) or anything :func:`convexdict.data.datasets.load_data` reads. Runs
:func:`convexdict.analysis.blocks.polish_at_scale` on a torch device and writes the polished SAE
in the SAELens layout to DIR. Output paths are checked before any work starts.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from convexdict.cli import CLIError, field_table
from convexdict.cli.certify import say, write_json_atomic
from convexdict.cli.compare_scale import add_scale_flags, open_data
from convexdict.cli.paths import check_output_dir, check_output_file


def register(subparsers: Any) -> None:
    """Add the ``polish`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "polish",
        help="polish an SAE by alternating its two convex blocks",
        description="Alternate the decoder block (FISTA on the K x K Gram matrix, with a "
        "duality gap) and the encoder block (feasible descent on the activation piece) on "
        "streamed data; the loss never rises. Writes the polished SAE in SAELens layout.",
    )
    p.add_argument("sae_path", metavar="SAE_PATH",
                   help="SAELens/sparsify directory, dictionary_learning ae.pt or .npz")
    p.add_argument("data", metavar="DATA", help=".npy (memory-mapped) or any DATA of compare")
    p.add_argument("--lam", type=float, required=True, help="L1 penalty weight (> 0)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="write the polished SAE here (SAELens layout)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the two blocks at most")
    p.add_argument("--tol", type=float, default=1e-6,
                   help="stop when a round lowers the loss by at most tol * loss")
    p.add_argument("--json", metavar="PATH", default=None, help="write the loss history here")
    p.add_argument("--plots", metavar="DIR", default=None, help="write the loss figure here")
    add_scale_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check paths, load, polish, print the loss history and save."""
    from rich.console import Console

    from convexdict._validation import check_int, check_positive
    from convexdict.models.sae import SAE

    lam = check_positive("lam", args.lam)
    tol = check_positive("tol", args.tol)
    rounds = check_int("rounds", args.rounds, minimum=1)
    out = check_output_dir(args.out, "--out")
    if out.exists() and (out / "sae_weights.safetensors").exists() and \
            Path(args.sae_path).resolve() == out.resolve():
        raise CLIError(f"--out {args.out!r} is SAE_PATH itself; choose a new directory.")
    check_output_file(args.json, "--json")
    check_output_dir(args.plots, "--plots")
    if not Path(args.sae_path).exists():
        raise FileNotFoundError(f"SAE path '{args.sae_path}' does not exist.")
    sae = SAE.load(args.sae_path)
    X = open_data(args.data)
    if X.shape[1] != sae.d_in:
        raise CLIError(f"DATA has d={X.shape[1]} columns but the SAE expects d_in={sae.d_in}.")
    console = Console()
    from convexdict.analysis.blocks import polish_at_scale  # heavy (torch): after the checks

    def log(step: Any) -> None:
        say(console, f"round {step.round} {step.block}: loss {step.loss:.10g} "
            f"(-{step.improvement:.3g})")

    res = polish_at_scale(sae, X, lam, rounds=rounds, tol=tol, device=args.device,
                          batch_size=args.batch_size, max_samples=args.max_samples,
                          seed=args.seed, encoder_iters=args.encoder_iters, log=log)
    res.sae.save(out)
    rows = [("loss before", f"{res.loss_before:.10g}"), ("loss after", f"{res.loss_after:.10g}"),
            ("steps", str(len(res.steps) - 1)), ("saved to", str(out))]
    if args.max_samples is not None and args.max_samples < X.shape[0]:
        rows.append(("samples", f"seeded subsample of {args.max_samples:,} of {X.shape[0]:,}"))
    console.print(field_table("convexdict polish", rows))
    if args.json is not None:
        history = [asdict(s) for s in res.steps]
        written = write_json_atomic(args.json, {"loss_before": res.loss_before,
                                                "loss_after": res.loss_after, "steps": history})
        say(console, f"history written to {written}")
    if args.plots is not None:
        from convexdict.analysis.scale_plots import plot_polish

        say(console, f"figure written to {plot_polish(res.steps, Path(args.plots) / 'polish.png')}")
    return 0
