"""Figures for comparisons at scale: distributions over thousands of latents, polish losses.

:func:`convexdict.analysis.plots.plot_stationarity` draws one bar per latent, which is unreadable at
``K = 4096``; these draw distributions instead. matplotlib is imported lazily (Agg backend).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    return target


def _hist(ax: Any, values: np.ndarray, name: str, color: str) -> None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    else:
        positive = v[v > 0]
        if positive.size and positive.max() / max(positive.min(), 1e-300) > 1e3:
            lo = max(positive.min(), 1e-300)
            bins = np.logspace(np.log10(lo), np.log10(positive.max()) + 1e-9, 40)
            ax.hist(positive, bins=bins, color=color)
            ax.set_xscale("log")
            name += f" ({v.size - positive.size} zero)"
        else:
            ax.hist(v, bins=40, color=color)
    ax.set_xlabel(name, fontsize=9)
    ax.set_ylabel("latents", fontsize=9)


def plot_stationarity_distribution(
    table: dict[str, np.ndarray], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Histograms over latents of paper A's residuals and the code-failure fraction.

    Parameters
    ----------
    table : dict
        :func:`convexdict.analysis.scale_compare.latent_table`.
    path : str or path-like
        PNG file to write.
    title : str, optional
    """
    fig = _figure(10.0, 6.0)
    axes = fig.subplots(2, 2)
    panels = (
        ("atom_residual", "atom residual", "tab:orange"),
        ("code_violation_fraction", "fraction of samples violating the code condition",
         "tab:blue"),
        ("code_violation", "max code violation", "tab:purple"),
        ("encoder_gradient", "encoder gradient", "tab:green"),
    )
    for ax, (key, name, color) in zip(axes.flat, panels, strict=True):
        _hist(ax, table[key], name, color)
    fig.suptitle(title or "per-latent stationarity", fontsize=10)
    return _save(fig, path)


def plot_decoder_block(
    table: dict[str, np.ndarray], found: float, bound: float, path: str | os.PathLike[str]
) -> Path:
    """The decoder block: how far each row moves, and the improvement found vs. bounded.

    Parameters
    ----------
    table : dict
        :func:`convexdict.analysis.scale_compare.latent_table` (uses ``decoder_shift``).
    found, bound : float
        ``improve_decoder`` and ``improve_decoder_bound``.
    path : str or path-like
    """
    fig = _figure(10.0, 3.5)
    ax1, ax2 = fig.subplots(1, 2)
    _hist(ax1, table["decoder_shift"], "||W_dec'[k] - W_dec[k]|| (decoder block)", "tab:red")
    ax2.bar(["found", "upper bound"], [found, bound], color=["tab:red", "tab:gray"])
    ax2.set_ylabel("loss decrease", fontsize=9)
    ax2.set_title("decoder block improvement", fontsize=9)
    return _save(fig, path)


def plot_polish(steps: Sequence[Any], path: str | os.PathLike[str]) -> Path:
    """Loss after each polish step (:class:`convexdict.analysis.blocks.PolishStep`)."""
    fig = _figure(6.0, 3.5)
    ax = fig.subplots()
    losses = [s.loss for s in steps]
    labels = [s.block if s.block == "start" else f"{s.round}:{s.block[:3]}" for s in steps]
    ax.plot(range(len(losses)), losses, marker="o")
    ax.set_xticks(range(len(losses)), labels, rotation=45, fontsize=8)
    ax.set_ylabel("canonical loss", fontsize=9)
    ax.set_title(f"polish: {losses[0]:.6g} -> {losses[-1]:.6g}", fontsize=9)
    return _save(fig, path)
