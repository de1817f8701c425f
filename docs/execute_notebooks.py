"""Execute the theory notebooks in place, storing their outputs (figures as PNG).

Usage (from anywhere; paths are relative to the repository root)::

    python docs/execute_notebooks.py                  # every notebooks/*.ipynb
    python docs/execute_notebooks.py notebooks/00_five_minute_tour.ipynb
    python docs/execute_notebooks.py --jobs 2         # two kernels at a time

Each notebook runs top to bottom in a fresh ``python3`` kernel with ``notebooks/`` as its
working directory, exactly as ``pytest --nbmake`` runs it in CI. A cell that raises (a
failed ``assert`` included) stops that notebook, leaves its file untouched and makes the
command exit with status 1. A notebook whose stored size exceeds ``--max-bytes`` (default
1 MB) is also an error. Cell metadata tagged ``figure:NAME`` has its first PNG output
written to ``docs/assets/NAME.png`` (the figure on the README and the site's home page).

The documentation site (``mkdocs build``) renders these stored outputs and never executes
the notebooks.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ASSETS = ROOT / "docs" / "assets"
MAX_BYTES = 1_000_000


def execute_notebook(path: Path, timeout: int = 1800) -> tuple[float, int]:
    """Execute one notebook in place and write it back with its outputs.

    Parameters
    ----------
    path : Path
        The ``.ipynb`` file; rewritten only when every cell ran without an error.
    timeout : int
        Seconds allowed per cell.

    Returns
    -------
    seconds : float
        Wall-clock execution time.
    size : int
        Size in bytes of the written notebook.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        When a cell raises (including a failed ``assert``).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,  # no timestamps in the stored file: diffs show content only
        allow_errors=False,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    _export_figures(nb)
    return seconds, path.stat().st_size


def _export_figures(nb) -> None:
    """Write the first PNG output of each cell tagged ``figure:NAME`` to docs/assets."""
    for cell in nb.cells:
        names = [t.split(":", 1)[1] for t in cell.metadata.get("tags", [])
                 if t.startswith("figure:")]
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", [])
                if "image/png" in o.get("data", {})]
        for name in names:
            if pngs:
                ASSETS.mkdir(parents=True, exist_ok=True)
                (ASSETS / f"{name}.png").write_bytes(base64.b64decode(pngs[0]))


def _run(path: Path, timeout: int) -> tuple[Path, float, int, str]:
    try:
        seconds, size = execute_notebook(path, timeout)
    except Exception as exc:  # reported by main; the file is left as it was
        return path, 0.0, 0, f"{type(exc).__name__}: {exc}"
    return path, seconds, size, ""


def main(argv: list[str] | None = None) -> int:
    """Execute the notebooks given on the command line (default: all); return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to execute (default: notebooks/*.ipynb)")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="kernels run at a time")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES,
                        help="largest stored notebook allowed")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    failures = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        jobs = [pool.submit(_run, path, args.timeout) for path in paths]
        for job in jobs:
            path, seconds, size, error = job.result()
            name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            if error:
                failures.append(name)
                print(f"FAILED {name}\n{error}", file=sys.stderr)
            elif size > args.max_bytes:
                failures.append(name)
                print(f"TOO LARGE {name}: {size / 1e6:.2f} MB > {args.max_bytes / 1e6:.2f} MB "
                      "(fewer or smaller figures)", file=sys.stderr)
            else:
                print(f"ok {name}: {seconds:.1f} s, {size / 1e3:.0f} kB")
    if failures:
        print(f"{len(failures)} notebook(s) failed: {', '.join(map(str, failures))}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
