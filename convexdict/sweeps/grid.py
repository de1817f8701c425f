"""Sweeps: a grid of (data, lam, width, seed, trainer) cells on Dask, with nothing lost.

A TOML file (:func:`load_config`, layout in ``docs/sweeps.md``) names data sets,
penalties, widths, seeds and trainers. :func:`run_sweep` runs the grid on any Dask
cluster: a new ``distributed.LocalCluster`` by default, a running scheduler given by its
address (same call, only the address differs), or any ``distributed.Client``.

Task graph, per data set: one load task; one certify task running
:func:`convexdict.certify_path` over the whole ``lam`` grid (warm-started; one
:func:`convexdict.certify` per ``lam`` if ``convexdict.convex.path`` is not importable) whose
certificates all cells of that data set reuse and which gives the certified frontier of
the figures; per cell, a train task (it does not wait for certification) and a small
evaluate task running :func:`convexdict.compare.compare` (skipped, leaving the verdict
empty, if that module is not importable). Only ``activation = "relu"`` is certified by
(P); other trainers are measured against the joint wide-limit bound
(``Certificate.joint_bound``), which the canonical formula respects for any nonnegative
codes (THEORY sections 1 and 3), and get the verdict ``"not_certifiable"``.

The client writes each result atomically to ``OUT/cells/<cell_id>.json`` as it arrives
(workers need a shared file system only for data files, never for outputs), rebuilds
``OUT/results.csv`` (and ``results.parquet`` at the end when pyarrow is importable) with
one row per finished cell, and draws ``OUT/figures/``. Re-running skips every cell that
has a file (``retry_failed=True`` reruns failed ones); a failing cell records
``error_stage``, ``error_type`` and ``error_message`` without stopping the others.
``cell_id`` hashes everything that determines a result, so editing a trainer's settings
makes new cells rather than reusing stale ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from convexdict_solvers.atomic import atomic_write

from convexdict._validation import check_int
from convexdict.sweeps.config import (
    ROW_FIELDS,
    TEXT_FIELDS,
    Cell,
    DataSpec,
    SweepConfig,
    load_config,
    number_label,
    slug,
)
from convexdict.tolerance import relative_gap

# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskError:
    """A failure carried through the task graph as data instead of an exception."""

    stage: str
    type: str
    message: str


def _guard(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or the first :class:`TaskError` among ``args``, or the new failure."""
    failed = next((a for a in args if isinstance(a, TaskError)), None)
    if failed is not None:
        return failed
    try:
        return fn(*args)
    except Exception as exc:  # any failure becomes data: the sweep goes on
        return TaskError(stage, type(exc).__name__, " ".join(str(exc).split())[:2000])


def _load(spec: DataSpec) -> np.ndarray:
    from convexdict.data.datasets import load_data

    X = load_data(spec.spec)
    if spec.max_samples is not None and len(X) > spec.max_samples:
        X = X[np.sort(np.random.default_rng(0).choice(len(X), spec.max_samples, replace=False))]
    return X


def _certify_all(X: np.ndarray, lams: tuple[float, ...], kwargs: Mapping) -> dict[str, Any]:
    """Certificates ``{"certs": [...], "frontier": {...}}`` for every ``lam`` (grid order)."""
    from convexdict.models.sae import sae_loss_terms

    try:
        from convexdict.convex.path import certify_path

        method = "certify_path"
    except ImportError:
        from convexdict.convex._certify import certify

        def certify_path(X: np.ndarray, lams: list[float], **kw: Any) -> list:
            return [certify(X, lam, **kw) for lam in lams]

        method = "certify per lam"
    certs = certify_path(X, list(lams), **kwargs)
    points = []
    for c in certs:
        terms = sae_loss_terms(c.optimum_sae, X, c.lam)
        points.append(dict(lam=c.lam, optimum_loss=c.upper_bound, lower_bound=c.lower_bound,
                           joint_bound=c.joint_bound, reconstruction=terms.reconstruction,
                           penalty=terms.penalty, k_star=c.width_needed, certified=c.certified,
                           time=c.time_total))
    return {"certs": certs, "frontier": dict(lams=list(lams), method=method, points=points,
                                             certificates=[c.to_dict() for c in certs])}


def _pick(payload: Any, i: int) -> Any:
    return payload if isinstance(payload, TaskError) else payload["certs"][i]


def _frontier(payload: Any) -> Any:
    return payload if isinstance(payload, TaskError) else payload["frontier"]


def _train(X: np.ndarray, cell: Cell, threads: int) -> dict[str, Any]:
    import torch

    from convexdict.training.train import train_sae

    torch.set_num_threads(threads)
    start = time.perf_counter()
    result = train_sae(X, cell.lam, cell.width, seed=cell.seed, quiet=True, return_history=True,
                       **cell.train)
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = ""
    return {"result": result, "time": time.perf_counter() - start, "worker": worker}


def _base_row(cell: Cell) -> dict[str, Any]:
    row = dict.fromkeys(ROW_FIELDS)
    row.update(cell_id=cell.cell_id, data=cell.data.label, lam=cell.lam, width=cell.width,
               seed=cell.seed, trainer=cell.trainer, activation="relu")
    row.update({k: cell.train[k] for k in ("activation", "k", "steps", "lr", "batch_size")
                if k in cell.train})
    return row


def _evaluate(cell: Cell, X: np.ndarray, cert: Any, trained: dict[str, Any]) -> dict[str, Any]:
    """The cell's record: flat ``row``, ``comparison`` (dict or None) and ``history``."""
    row, result, comparison = _base_row(cell), trained["result"], None
    start = time.perf_counter()
    row.update(status="ok", optimum_loss=cert.upper_bound, k_star=cert.width_needed,
               certified=cert.certified, n_samples=len(X), d=X.shape[1],
               time_certify=cert.time_total, time_train=trained["time"], worker=trained["worker"],
               **{k: v for k, v in result.evaluate(X, cell.lam).items() if k in ROW_FIELDS})
    if result.certifiable:
        row.update(lower_bound=cert.lower_bound, bound="certified", verdict="")
        try:
            from convexdict.analysis._compare import compare
        except ImportError:  # the comparison is optional: loss and gap are already known
            compare = None
        if compare is not None:
            found = compare(result.sae, X, cell.lam, cert)
            row.update(verdict=found.verdict, l0=found.l0, dead_fraction=found.dead_fraction)
            comparison = found.to_dict()
    else:
        row.update(lower_bound=cert.joint_bound, bound="joint", verdict="not_certifiable")
    row["gap"] = row["loss"] - row["lower_bound"]
    row["relative_gap"] = relative_gap(row["loss"], row["loss"] - row["gap"])
    row["time_compare"] = time.perf_counter() - start
    history = {k: np.asarray(v).tolist() for k, v in result.history.items()}
    return {"row": row, "comparison": comparison, "history": history}


def _error_record(cell: Cell, err: TaskError) -> dict[str, Any]:
    row = _base_row(cell)
    row.update(status="error", error_stage=err.stage, error_type=err.type,
               error_message=err.message)
    return {"row": row, "comparison": None, "history": None}


def _finish(cell: Cell, X: Any, cert: Any, trained: Any) -> dict[str, Any]:
    out = _guard("compare", _evaluate, cell, X, cert, trained)
    return _error_record(cell, out) if isinstance(out, TaskError) else out


# --------------------------------------------------------------------------- files


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, non-finite floats as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _write_atomic(path: Path, write: Callable[[str], Any]) -> None:
    """``write(tmp)`` next to ``path``, then ``os.replace`` (:func:`solvers.atomic.atomic_write`:
    readers never see half a file, permissions follow the umask)."""
    atomic_write(path, write)


def _write_json(path: Path, payload: Any) -> None:
    text = json.dumps(_plain(payload), indent=1, allow_nan=False) + "\n"
    _write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _table(rows: Mapping[str, dict], cells: list[Cell]) -> Any:
    import pandas as pd

    frame = pd.DataFrame([rows[c.cell_id] for c in cells if c.cell_id in rows],
                         columns=list(ROW_FIELDS))
    for name in set(ROW_FIELDS) - TEXT_FIELDS:  # "nan" / "inf" strings back to floats
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def _write_tables(out: Path, frame: Any, parquet: bool) -> None:
    import importlib.util

    _write_atomic(out / "results.csv", lambda tmp: frame.to_csv(tmp, index=False))
    if parquet and importlib.util.find_spec("pyarrow") is not None:
        _write_atomic(out / "results.parquet", lambda tmp: frame.to_parquet(tmp, index=False))


# --------------------------------------------------------------------------- figures


def write_figures(frame: Any, frontiers: Mapping[str, Mapping], folder: Path) -> list[Path]:
    """Draw the sweep's summary figures into ``folder`` and return their paths.

    * ``gap_<data>_lam<lam>.png``: loss minus lower bound against width, one group per
      trainer (:func:`convexdict.analysis.plots.plot_gap_vs_width`); non-ReLU trainers are measured
      against the joint bound and labelled so.
    * ``frontier_<data>.png``: left, canonical loss against ``lam``: the certified lower
      bound (``P*`` within tolerance where certified; valid for ReLU SAEs of any width), the
      joint bound (any nonnegative codes) and every SGD run; right, reconstruction against
      L1 mass (penalty / lam) of the optimal SAEs on the grid and of the SGD runs.

    Parameters
    ----------
    frame : pandas.DataFrame
        The rows of ``results.csv``.
    frontiers : mapping of str to dict
        Per data label, the ``frontier/*.json`` payload (its ``points``, one per lam).
    folder : path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from convexdict.analysis.plots import plot_gap_vs_width

    folder.mkdir(parents=True, exist_ok=True)
    ok = frame[(frame["status"] == "ok") & np.isfinite(frame["gap"])]
    paths = []
    for (data, lam), runs in ok.groupby(["data", "lam"], sort=True):
        labels = [t if b == "certified" else f"{t} (vs joint bound)"
                  for t, b in zip(runs["trainer"], runs["bound"], strict=True)]
        paths.append(plot_gap_vs_width(
            runs["width"].to_numpy(), runs["gap"].to_numpy(),
            folder / f"gap_{slug(data)}_lam{number_label(lam)}.png", labels=labels,
            width_needed=int(runs["k_star"].iloc[0]), title=f"{data}, lam={lam:g}"))
    for data, front in frontiers.items():
        pts = sorted(front["points"], key=lambda p: p["lam"])
        fig = Figure(figsize=(10.0, 4.0), layout="constrained")
        FigureCanvasAgg(fig)
        ax_loss, ax_mass = fig.subplots(1, 2)
        lams = [p["lam"] for p in pts]
        ax_loss.plot(lams, [p["lower_bound"] for p in pts], "k-o", ms=4,
                     label="certified lower bound (ReLU, any width)")
        ax_loss.plot(lams, [p["joint_bound"] for p in pts], "k:", label="joint bound (any codes)")
        ax_mass.plot([p["penalty"] / p["lam"] for p in pts], [p["reconstruction"] for p in pts],
                     "k-", lw=1, label="optima on the lam grid (hollow: not certified)")
        for p in pts:
            ax_mass.plot(p["penalty"] / p["lam"], p["reconstruction"], "ko", ms=4,
                         mfc="k" if p["certified"] else "none")
        for trainer, runs in ok[ok["data"] == data].groupby("trainer", sort=False):
            dots = ax_loss.scatter(runs["lam"], runs["loss"], s=14, alpha=0.7, label=trainer)
            ax_mass.scatter(runs["penalty"] / runs["lam"], runs["reconstruction"], s=14,
                            alpha=0.7, color=dots.get_facecolor()[0], label=trainer)
        ax_loss.set(xscale="log", xlabel="lam", ylabel="canonical loss", title=data)
        ax_mass.set(xlabel="L1 mass (penalty / lam)", ylabel="reconstruction (SSE / 2N)")
        for ax in (ax_loss, ax_mass):
            ax.legend(fontsize=7)
        paths.append(folder / f"frontier_{slug(data)}.png")
        fig.savefig(paths[-1], dpi=120)
    return paths


# --------------------------------------------------------------------------- the run


@dataclass
class SweepResult:
    """What :func:`run_sweep` did; ``table`` is the pandas DataFrame of ``results.csv``."""

    table: Any
    out: Path
    n_cells: int
    n_skipped: int
    n_run: int
    n_errors: int
    seconds: float
    figures: list[Path]


def _open_client(scheduler: str | None, workers: int | None) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    if scheduler is None:
        n = check_int("workers", (os.cpu_count() or 1) if workers is None else workers, minimum=1)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        return Client(cluster), cluster
    if workers is not None:
        raise ValueError(f"The 'workers' parameter sizes a local cluster only; got workers="
                         f"{workers} with scheduler={scheduler!r}. Drop one of them.")
    try:
        return Client(scheduler, timeout="20s"), None
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"The 'scheduler' parameter {scheduler!r}: cannot connect ({exc}). "
                         "Start one with `dask scheduler`, workers with `dask worker`.") from None


def _submit(client: Any, cfg: SweepConfig, specs: list[DataSpec], todo: list[Cell]) -> dict:
    """Submit the graph; map each future the client waits on to ``(kind, item)``."""
    waiting: dict[Any, tuple[str, Any]] = {}
    for spec in specs:
        X = client.submit(_guard, "load", _load, spec, pure=False, priority=20)
        certs = client.submit(_guard, "certify", _certify_all, X, cfg.lams, dict(cfg.certify),
                              pure=False, priority=10)
        waiting[client.submit(_frontier, certs, pure=False)] = ("frontier", spec)
        for cell in (c for c in todo if c.data == spec):
            cert = client.submit(_pick, certs, cfg.lams.index(cell.lam), pure=False)
            trained = client.submit(_guard, "train", _train, X, cell, cfg.torch_threads,
                                    pure=False)
            future = client.submit(_finish, cell, X, cert, trained, pure=False, priority=5)
            waiting[future] = ("cell", cell)
    return waiting


def run_sweep(
    config: SweepConfig | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    retry_failed: bool = False,
    figures: bool = True,
    progress: bool = True,
) -> SweepResult:
    """Run every unfinished cell of a sweep on Dask; collect one row per cell.

    Parameters
    ----------
    config : SweepConfig or path to a TOML file
    out : path
        Output folder: ``cells/``, ``frontier/``, ``results.csv``, ``figures/``.
    scheduler : str, optional
        Address of a running Dask scheduler (``"tcp://host:8786"``). Default: a new
        ``LocalCluster`` of ``workers`` single-threaded worker processes, closed at the end.
    workers : int, optional
        Size of that local cluster (default: the CPU count); not allowed with ``scheduler``.
    client : distributed.Client, optional
        Use this client (any cluster, e.g. ``Client(SLURMCluster(...))``); left open.
    retry_failed : bool
        Also rerun cells whose recorded row has ``status == "error"``.
    figures, progress : bool
        Draw ``OUT/figures/``; show a progress bar over cells.

    Returns
    -------
    SweepResult
    """
    from convexdict_solvers.progress import Display
    from distributed import as_completed

    start = time.perf_counter()
    cfg = config if isinstance(config, SweepConfig) else load_config(config)
    out = Path(out)
    cells_dir, front_dir = out / "cells", out / "frontier"
    for folder in (cells_dir, front_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.tmp"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
    cells, rows = cfg.cells(), {}
    for cell in cells:
        record = _read_json(cells_dir / f"{cell.cell_id}.json")
        row = record.get("row") if isinstance(record, dict) else None
        if isinstance(row, dict) and (row.get("status") == "ok" or not retry_failed):
            rows[cell.cell_id] = row
    todo = [c for c in cells if c.cell_id not in rows]

    def front_path(spec: DataSpec) -> Path:
        key = json.dumps([dataclasses.asdict(spec), cfg.lams, dict(cfg.certify)], sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        return front_dir / f"{slug(spec.label)}_{digest}.json"

    def needed(spec: DataSpec) -> bool:  # pending cells, or a frontier lost to a kill
        mine = [c.cell_id for c in cells if c.data == spec]
        return any(i not in rows for i in mine) or (_read_json(front_path(spec)) is None and any(
            rows[i]["status"] == "ok" for i in mine))

    specs = [s for s in cfg.data if needed(s)]
    n_errors = 0
    if specs:
        own, cluster = client is None, None
        if own:
            client, cluster = _open_client(scheduler, workers)
        bar = None
        try:
            waiting = _submit(client, cfg, specs, todo)
            bar = Display("cells", len(cells), enabled=progress,
                          completed=len(cells) - len(todo))
            last_flush = 0.0
            for future in as_completed(list(waiting)):
                kind, item = waiting.pop(future)
                try:
                    value = future.result()
                except Exception as exc:  # a lost worker, a cancelled task, ...
                    value = TaskError("dask", type(exc).__name__, " ".join(str(exc).split()))
                future.release()
                if kind == "frontier":
                    if not isinstance(value, TaskError):
                        _write_json(front_path(item), {"data": item.label, **value})
                    continue
                record = _error_record(item, value) if isinstance(value, TaskError) else value
                _write_json(cells_dir / f"{item.cell_id}.json",
                            {"config": item.describe(), **record})
                rows[item.cell_id] = record["row"]
                n_errors += record["row"]["status"] == "error"
                bar.update(f"cells ({n_errors} failed)", advance=1)
                if time.perf_counter() - last_flush > 1.0:
                    _write_tables(out, _table(rows, cells), parquet=False)
                    last_flush = time.perf_counter()
        finally:
            if bar is not None:
                bar.stop()
            _write_tables(out, _table(rows, cells), parquet=False)
            if own:
                client.close()
                if cluster is not None:
                    cluster.close()
    frame = _table(rows, cells)
    _write_tables(out, frame, parquet=True)
    paths: list[Path] = []
    if figures:
        frontiers = {s.label: _read_json(front_path(s)) for s in cfg.data}
        paths = write_figures(frame, {k: v for k, v in frontiers.items() if v}, out / "figures")
    return SweepResult(frame, out, len(cells), len(cells) - len(todo), len(todo),
                       int((frame["status"] == "error").sum()), time.perf_counter() - start, paths)
