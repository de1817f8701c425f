"""Pictures: atoms over 2-D data, stationarity per latent, gaps across seeds and widths.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no global
backend switch, no display needed). Every function writes one image (the format follows
the file extension, e.g. ``.png``), creating parent directories, and returns its path.

An atom is drawn as an arrow from ``b_dec`` to ``b_dec + max_n Z[n, k] W_dec[k]``: the
farthest reconstruction the latent reaches on the data, which does not depend on how the
latent's scale is split between encoder and decoder. Dead latents are not drawn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from convexdict._validation import check_matrix
from convexdict.analysis.diagnostics import Stationarity
from convexdict.models.sae import SAE


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def _atom_arrows(sae: SAE, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start point ``(2,)`` and arrow vectors ``(m, 2)`` of the latents active on ``X``."""
    reach = (sae.encode(X).max(axis=0, initial=0.0))[:, None] * sae.W_dec
    live = np.linalg.norm(reach, axis=1) > 0
    return sae.b_dec, reach[live]


def _draw_atoms(ax, sae: SAE, X: np.ndarray, color: str, label: str, **style) -> None:
    start, arrows = _atom_arrows(sae, X)
    for i, vec in enumerate(arrows):
        ax.annotate(
            "", xy=start + vec, xytext=start,
            arrowprops=dict(arrowstyle="-|>", color=color, lw=1.6, **style),
        )
        if i == 0:  # one legend entry per SAE
            ax.plot([], [], color=color, lw=1.6, label=f"{label} ({len(arrows)} atoms)", **style)
    ax.plot(*start, marker="x", color=color, ms=7)


def plot_atoms_2d(
    X: np.ndarray,
    saes: Mapping[str, SAE],
    path: str | os.PathLike[str],
    *,
    reference: SAE | None = None,
    reference_label: str = "certified optimum",
    title: str | None = None,
) -> Path:
    """Atoms drawn over 2-D data, one panel per SAE, the reference atoms in every panel.

    Parameters
    ----------
    X : ndarray of shape (N, 2)
    saes : mapping of str to SAE
        Panel titles to SAEs (``d_in = 2``), e.g. SGD runs at several widths.
    path : path-like
        Output image.
    reference : SAE, optional
        Drawn dashed in grey in every panel (typically ``certificate.optimum_sae``).
    reference_label, title : str

    Returns
    -------
    Path
    """
    X = check_matrix("X", X, n_cols=2)
    if not saes and reference is None:
        raise ValueError("The 'saes' parameter must hold at least one SAE (or give a reference).")
    panels = dict(saes) if saes else {reference_label: reference}
    for label, sae in panels.items():
        if not isinstance(sae, SAE) or sae.d_in != 2:
            raise ValueError(f"The 'saes' parameter must map labels to SAEs with d_in=2. "
                             f"Got {sae!r} for {label!r}.")
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = _figure(4.2 * ncols, 4.0 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (label, sae) in zip(axes, panels.items(), strict=False):
        ax.scatter(X[:, 0], X[:, 1], s=10, color="0.55", alpha=0.7, label="data")
        if reference is not None and sae is not reference:
            _draw_atoms(ax, reference, X, "0.25", reference_label, linestyle="--")
        _draw_atoms(ax, sae, X, "tab:red", label)
        ax.set_title(label, fontsize=10)
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_stationarity(
    stat: Stationarity, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Per-latent bars of paper A's residuals
    (:func:`convexdict.analysis.diagnostics.stationarity`).

    Three panels: code-condition violation, normalised atom residual, encoder gradient;
    the bias residual is in the title.
    """
    if not isinstance(stat, Stationarity):
        raise ValueError(f"The 'stat' parameter must be a Stationarity. Got {type(stat).__name__}.")
    k = np.arange(stat.code_violation.size)
    fig = _figure(max(5.0, 0.35 * k.size + 2.0), 6.0)
    axes = fig.subplots(3, 1, sharex=True)
    rows = (
        ("code violation", np.nan_to_num(stat.code_violation), "tab:blue"),
        ("atom residual", stat.atom_residual, "tab:orange"),
        ("encoder gradient", stat.encoder_gradient, "tab:green"),
    )
    for ax, (name, values, color) in zip(axes, rows, strict=True):
        ax.bar(k, values, color=color)
        ax.set_ylabel(name, fontsize=9)
    axes[-1].set_xlabel("latent")
    fig.suptitle(title or f"stationarity (bias residual {stat.bias_residual:.2e})", fontsize=10)
    return _save(fig, path)


def _positive(gaps: np.ndarray, floor: float) -> np.ndarray:
    return np.maximum(np.asarray(gaps, dtype=np.float64), floor)


def plot_gap_vs_width(
    widths: Sequence[int],
    gaps: Sequence[float],
    path: str | os.PathLike[str],
    *,
    width_needed: int | None = None,
    labels: Sequence[str] | None = None,
    floor: float = 1e-12,
    title: str | None = None,
) -> Path:
    """Gap to the certified lower bound against width, one point per run, median line.

    Parameters
    ----------
    widths, gaps : sequences of equal length
        One entry per run (e.g. per width and seed).
    path : path-like
    width_needed : int, optional
        ``K*``, drawn as a vertical line.
    labels : sequence of str, optional
        A legend group per run (e.g. ``"SGD"``, ``"polished"``).
    floor : float
        Gaps below it (including those ``<= 0`` from rounding) are drawn at ``floor`` on
        the log axis.
    """
    w = np.asarray(widths, dtype=np.float64)
    g = _positive(np.asarray(gaps), floor)
    if w.shape != g.shape or w.ndim != 1 or w.size == 0:
        raise ValueError(f"The 'widths' and 'gaps' parameters must be non-empty sequences of "
                         f"equal length. Got lengths {w.size} and {g.size}.")
    groups = np.asarray(labels if labels is not None else ["runs"] * w.size)
    if groups.shape != w.shape:
        raise ValueError(f"The 'labels' parameter must have {w.size} entries. Got {groups.size}.")
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    for i, name in enumerate(dict.fromkeys(groups.tolist())):
        sel = groups == name
        jitter = 1.0 + 0.04 * (i - 0.5)
        points = ax.scatter(w[sel] * jitter, g[sel], s=22, alpha=0.8, label=name)
        ws = np.unique(w[sel])
        medians = [np.median(g[sel][w[sel] == x]) for x in ws]
        ax.plot(ws * jitter, medians, alpha=0.6, color=points.get_facecolor()[0])
    if width_needed is not None:
        ax.axvline(width_needed, color="0.3", linestyle=":", label=f"K* = {width_needed}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width K")
    ax.set_ylabel("loss - certified lower bound")
    ax.legend(fontsize=8)
    ax.set_title(title or "gap to the certified optimum", fontsize=10)
    return _save(fig, path)


def plot_gap_distribution(
    gaps: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    *,
    floor: float = 1e-12,
    title: str | None = None,
) -> Path:
    """Histograms of ``log10(gap)`` across seeds, one per group (e.g. per width).

    Parameters
    ----------
    gaps : mapping of str to sequence of float
    path : path-like
    floor : float
        Gaps below it count as ``floor``.
    """
    if not gaps or any(len(v) == 0 for v in gaps.values()):
        raise ValueError("The 'gaps' parameter must map group names to non-empty sequences.")
    values = {k: np.log10(_positive(np.asarray(v), floor)) for k, v in gaps.items()}
    lo = min(v.min() for v in values.values())
    hi = max(v.max() for v in values.values())
    bins = np.linspace(lo - 0.5, hi + 0.5, 21)
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    for name, v in values.items():
        ax.hist(v, bins=bins, alpha=0.55, label=f"{name} (n={v.size})")
    ax.set_xlabel("log10(loss - certified lower bound)")
    ax.set_ylabel("runs")
    ax.legend(fontsize=8)
    ax.set_title(title or "gap distribution", fontsize=10)
    return _save(fig, path)
