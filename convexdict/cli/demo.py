"""``convexdict demo``: SGD-trained SAEs against the certified optimum on a built-in toy.

Steps: the ``superposition_2d`` toy (five directions in 2-D; subsampled so that it
certifies in about a second), ``lam = 0.3 lam_max``, :func:`convexdict.certify`, then SGD
(Adam, :func:`convexdict.training.train.train_sae`, ReLU) at several widths up to ``K*`` and several
seeds, each compared with the optimum (:func:`convexdict.compare.compare`) before and after
:func:`convexdict.polish` (alternating the two convex blocks of paper B). Writes
``results.json`` (atomically), ``atoms.png`` (optimal vs SGD atoms over the data),
``gap_vs_width.png``, ``gap_distribution.png`` and ``stationarity.png`` into ``--out``.
``--quick`` runs a reduced version in a few seconds (for tests).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convexdict.cli.certify import say, write_json_atomic


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of one demo run."""

    n_samples: int
    widths: tuple[int, ...]  # 0 stands for K*
    seeds: tuple[int, ...]
    steps: int
    lam_fraction: float = 0.3
    lr: float = 1e-2
    search_time: float = 6.0  # seconds of explicit width-K incumbents per width below K*


FULL = DemoConfig(n_samples=100, widths=(2, 4, 8, 0), seeds=(0, 1, 2), steps=1200)
QUICK = DemoConfig(n_samples=24, widths=(2, 0), seeds=(0,), steps=100, search_time=3.0)


SHORT = {
    "certified_global": "global",
    "spurious_partial_minimum": "spurious",
    "partial_minimum": "partial",
    "not_converged": "no conv",
    "undetermined": "undetermined",
}


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "demo",
        help="SGD SAEs vs the certified optimum on a built-in toy",
        description="Certify the optimum on the superposition_2d toy, train ReLU SAEs by SGD "
        "at several widths and seeds, compare each with the optimum before and after "
        "polishing, and write a table, figures and JSON.",
    )
    p.add_argument("--out", metavar="DIR", default="convexdict-demo",
                   help="output directory (default: ./convexdict-demo)")
    p.add_argument("--quick", action="store_true", help="a reduced run of a few seconds")
    p.set_defaults(func=run)


def _row(width: int, seed: int, cmp: Any, polished: Any, seconds: float) -> dict[str, Any]:
    return {
        "width": width,
        "seed": seed,
        "train_seconds": seconds,
        "sgd": cmp.to_dict(),
        "polished": {
            key: getattr(polished, key)
            for key in ("loss", "gap", "relative_gap", "verdict", "message", "dead_latents",
                        "improve_decoder", "improve_encoder", "lower_bound", "optimum_loss",
                        "better_loss")
        },
        "bracket": _bracket(width, cmp, polished),
    }


def _bracket(width: int, *cmps: Any) -> dict[str, float] | None:
    """Below ``K*``: the bracket ``[lower, upper]`` of the width-``K`` optimum from both
    comparisons (the best explicit SAE either knows), with its relative width."""
    if width >= cmps[0].width_needed:
        return None
    from convexdict.fixed_width.width_incumbents import bracket_width

    lower = max(c.lower_bound for c in cmps)
    known = [v for c in cmps for v in (c.optimum_loss, c.better_loss, c.loss) if v == v]
    upper = min(known)
    return {"lower": lower, "upper": upper, "relative_width": bracket_width(lower, upper)}


def _table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich import box
    from rich.table import Table

    from convexdict.cli.tables import VERDICT_STYLE

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("K", "seed", "loss", "gap", "rel.gap", "verdict", "dead", "pol.gap",
                 "polished", "bracket"):
        table.add_column(name, justify="left" if name in ("verdict", "polished") else "right",
                         no_wrap=True)
    for row in rows:
        sgd, pol = row["sgd"], row["polished"]
        s_style = VERDICT_STYLE.get(sgd["verdict"], "white")
        p_style = VERDICT_STYLE.get(pol["verdict"], "white")
        table.add_row(
            str(row["width"]), str(row["seed"]), f"{sgd['loss']:.5f}", f"{sgd['gap']:.1e}",
            f"{sgd['relative_gap']:.1e}", f"[{s_style}]{SHORT[sgd['verdict']]}[/{s_style}]",
            f"{len(sgd['dead_latents'])}/{row['width']}", f"{pol['gap']:.1e}",
            f"[{p_style}]{SHORT[pol['verdict']]}[/{p_style}]",
            "-" if row["bracket"] is None else f"{row['bracket']['relative_width']:.2%}",
        )
    return table


def run_demo(out: Path, config: DemoConfig, console: Any) -> dict[str, Any]:
    """Run the demo with ``config``, write everything into ``out``, return the results."""
    from convexdict.analysis import plots
    from convexdict.analysis._compare import compare
    from convexdict.analysis.pieces import polish
    from convexdict.convex._certify import certify
    from convexdict.convex.bounds import lam_max
    from convexdict.data.datasets import load_toy
    from convexdict.training.train import train_sae

    start = time.perf_counter()
    toy = load_toy("superposition_2d", n=config.n_samples, seed=0)
    X = np.array(toy.X)
    lam = config.lam_fraction * lam_max(X)
    cert = certify(X, lam)
    k_star = cert.width_needed
    say(console, cert.summary())
    widths = sorted({k_star if w == 0 else w for w in config.widths})
    rows, saes = [], {}
    for width in widths:
        for seed in config.seeds:
            t0 = time.perf_counter()
            sae = train_sae(X, lam, width, steps=config.steps, batch_size=X.shape[0],
                            lr=config.lr, seed=seed, device="cpu")
            seconds = time.perf_counter() - t0
            cmp = compare(sae, X, lam, cert, search_time=config.search_time)
            polished = compare(polish(sae, X, lam), X, lam, cert,
                               search_time=config.search_time)
            rows.append(_row(width, seed, cmp, polished, seconds))
            saes[(width, seed)] = (sae, cmp)

    out.mkdir(parents=True, exist_ok=True)
    seed0 = config.seeds[0]
    panels = {f"SGD, width {w} (seed {seed0})": saes[(w, seed0)][0] for w in widths}
    for w in widths:  # the explicit SAE that proves a row spurious, next to it
        better = saes[(w, seed0)][1].better_sae
        if better is not None and w < k_star:
            panels[f"better width-{w} SAE (loss {saes[(w, seed0)][1].better_loss:.4g})"] = better
    figures = [
        plots.plot_atoms_2d(
            X, panels,
            out / "atoms.png", reference=cert.optimum_sae,
            title=f"superposition_2d, N={X.shape[0]}, lam={lam:.3g}: certified optimum "
            f"(K* = {k_star}) vs SGD"),
        plots.plot_gap_vs_width(
            [r["width"] for r in rows] * 2,
            [r["sgd"]["gap"] for r in rows] + [r["polished"]["gap"] for r in rows],
            out / "gap_vs_width.png", width_needed=k_star,
            labels=["SGD"] * len(rows) + ["SGD + polish"] * len(rows)),
        plots.plot_gap_distribution(
            {f"width {w}": [r["sgd"]["gap"] for r in rows if r["width"] == w] for w in widths},
            out / "gap_distribution.png", title="SGD gap across seeds"),
        plots.plot_stationarity(
            saes[(k_star, seed0)][1].stationarity, out / "stationarity.png",
            title=f"stationarity of the SGD SAE at width K* = {k_star} (seed {seed0})"),
    ]
    elapsed = time.perf_counter() - start
    results = {
        "data": {"toy": toy.name, "n_samples": int(X.shape[0]), "d": int(X.shape[1])},
        "lam": lam,
        "config": {"widths": widths, "seeds": list(config.seeds), "steps": config.steps,
                   "lr": config.lr, "lam_fraction": config.lam_fraction},
        "certificate": cert.to_dict(),
        "runs": rows,
        "seconds": elapsed,
    }
    json_path = write_json_atomic(out / "results.json", results)
    console.print(_table(rows, f"SGD SAEs vs the certified optimum (lower bound "
                               f"{cert.lower_bound:.8g}, K* = {k_star})"))
    say(
        console,
        "verdicts: global = certified_global; spurious = spurious_partial_minimum (a "
        "partial minimum that an explicit SAE of width <= K beats); partial = "
        "partial minimum that no explicit SAE found beats; no conv = a convex block still "
        "improves. pol.gap / polished: after alternating the two convex blocks (polish). "
        "bracket (below K*): relative width (upper - lower) / upper of [lower bound, best "
        "explicit width-K SAE known], the interval that holds the width-K optimum. Spurious "
        "rows below K* are proven by an explicit SAE of width <= K with a lower loss "
        "(drawn in atoms.png).",
    )
    say(console, f"computed in {elapsed:.1f} s; results: {json_path}")
    say(console, "figures: " + ", ".join(str(f) for f in figures))
    return results


def run(args: argparse.Namespace) -> int:
    """Run the demo (``--quick``: reduced) into ``--out``."""
    from rich.console import Console

    from convexdict.cli.paths import check_output_dir

    out = check_output_dir(args.out, "--out")
    run_demo(out, QUICK if args.quick else FULL, Console())
    return 0
