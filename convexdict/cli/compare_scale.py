"""The streamed branch of ``convexdict compare`` and the helpers ``convexdict polish`` shares.

Taken when exact pricing is out of reach (or with ``--streamed``): no certificate, data
memory-mapped when DATA is a ``.npy``, a rich progress display over chunks, the summary
table, per-latent results as CSV (and Parquet when pyarrow is installed) and figures.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from convexdict.cli.certify import say, write_json_atomic


def add_scale_flags(p: argparse.ArgumentParser) -> None:
    """The flags of the streamed path (shared by ``compare`` and ``polish``)."""
    p.add_argument("--device", default=None,
                   help="torch device for the streamed path (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="rows per chunk of the streamed path (default: about 8M floats)")
    p.add_argument("--max-samples", type=int, default=None,
                   help="use a seeded random subset of this many samples (the bounds then "
                   "describe the subsample)")
    p.add_argument("--seed", type=int, default=0, help="seed of --max-samples")
    p.add_argument("--encoder-iters", type=int, default=3,
                   help="feasible-descent iterations of the encoder block")


def open_data(spec: str) -> Any:
    """A ``.npy`` file memory-mapped (never loaded whole), anything else via ``load_data``."""
    from convexdict.data.datasets import load_data

    path = Path(spec)
    if path.suffix == ".npy" and path.is_file():
        return np.load(path, mmap_mode="r")
    return load_data(spec)


class ChunkProgress:
    """Adapter from ``progress(stage, rows)`` callbacks to the one progress display."""

    def __init__(self, n_rows: int) -> None:
        from convexdict_solvers.progress import Display

        self.display = Display("statistics", total=n_rows, transient=True)
        self.stage = "statistics"

    def __call__(self, stage: str, rows: int) -> None:
        if stage != self.stage:
            self.stage = stage
            self.display.update(stage)
        if rows:
            self.display.update(advance=rows)

    def stop(self) -> None:
        self.display.stop()


def write_latents(table: dict[str, np.ndarray], path: Path) -> list[Path]:
    """Per-latent CSV at ``path``, plus ``.parquet`` beside it when pyarrow is installed."""
    from convexdict_solvers.atomic import atomic_write_text

    keys = list(table)
    rows = zip(*(table[k].tolist() for k in keys), strict=True)
    lines = []

    class _Sink:
        def write(self, s: str) -> None:
            lines.append(s)

    writer = csv.writer(_Sink(), lineterminator="\n")
    writer.writerow(keys)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(lines))
    written = [path]
    if importlib.util.find_spec("pyarrow") is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from convexdict_solvers.atomic import atomic_write

        frame = pa.table({k: np.asarray(v) for k, v in table.items()})
        written.append(atomic_write(path.with_suffix(".parquet"),
                                    lambda tmp: pq.write_table(frame, tmp)))
    return written


def run_streamed(args: argparse.Namespace, sae: Any, lam: float, tol: float) -> int:
    """Compare without a certificate on streamed data; print, write JSON/CSV/figures."""
    from rich.console import Console
    from rich.markup import escape

    from convexdict.analysis._compare import compare
    from convexdict.analysis.scale_compare import latent_table
    from convexdict.cli.tables import comparison_table

    X = open_data(args.data)
    if X.shape[1] != sae.d_in:
        from convexdict.cli import CLIError

        raise CLIError(f"DATA has d={X.shape[1]} columns but the SAE expects d_in={sae.d_in}.")
    n_rows = min(X.shape[0], args.max_samples or X.shape[0])
    progress = ChunkProgress(n_rows)
    try:
        cmp = compare(sae, X, lam, tol=tol, streamed=True, device=args.device,
                      batch_size=args.batch_size, max_samples=args.max_samples,
                      seed=args.seed, encoder_iters=args.encoder_iters, progress=progress,
                      incumbents=args.incumbents, incumbent_time=args.incumbent_time,
                      incumbent_restarts=args.incumbent_restarts,
                      incumbent_steps=args.incumbent_steps)
    finally:
        progress.stop()
    console = Console()
    console.print(comparison_table(cmp, title=f"convexdict compare {escape(args.sae_path)}"))
    say(console, cmp.message)
    table = latent_table(cmp)
    if args.json is not None:
        out = write_json_atomic(args.json, {"comparison": cmp.to_dict()})
        say(console, f"results written to {out}")
    if args.latents is not None:
        written = write_latents(table, Path(args.latents))
        say(console, "per-latent results written to " + ", ".join(map(str, written)))
    if args.plots is not None:
        from convexdict.analysis import scale_plots

        folder = Path(args.plots)
        written = [
            scale_plots.plot_stationarity_distribution(table, folder / "stationarity.png"),
            scale_plots.plot_decoder_block(table, cmp.improve_decoder,
                                           cmp.improve_decoder_bound, folder / "decoder.png"),
        ]
        say(console, "figures written to " + ", ".join(map(str, written)))
    return 0
