"""Figures are written, non-empty PNGs; bad inputs give ValueErrors naming the argument."""

import numpy as np
import pytest
from conftest import random_sae

import convexdict as cd
from convexdict.analysis import plots
from convexdict.analysis.diagnostics import stationarity

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def toy():
    X = cd.load_toy("superposition_2d", n=30).X
    lam = 0.3 * cd.lam_max(X)
    return X, lam, cd.certify(X, lam)


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_atoms_over_2d_data(toy, tmp_path, rng):
    X, _, cert = toy
    saes = {"random": random_sae(rng, 2, 3), "optimum": cert.optimum_sae}
    path = plots.plot_atoms_2d(X, saes, tmp_path / "sub" / "atoms.png",
                               reference=cert.optimum_sae, title="atoms")
    assert path == tmp_path / "sub" / "atoms.png" and _is_png(path)


def test_stationarity_bars(toy, tmp_path, rng):
    X, lam, _ = toy
    path = plots.plot_stationarity(stationarity(random_sae(rng, 2, 4).padded(5), X, lam),
                                   tmp_path / "st.png")
    assert _is_png(path)


def test_gap_vs_width_and_distribution(tmp_path):
    widths = [2, 2, 4, 4, 8, 8]
    gaps = [2e-2, 3e-2, 1e-3, 0.0, -1e-13, 4e-6]  # zero and rounding-negative gaps are floored
    path = plots.plot_gap_vs_width(widths, gaps, tmp_path / "gap.png", width_needed=6,
                                   labels=["SGD", "polished"] * 3)
    assert _is_png(path)
    hist = plots.plot_gap_distribution({"2": gaps[:2], "4": gaps[2:4], "8": gaps[4:]},
                                       tmp_path / "hist.png")
    assert _is_png(hist)


def test_plots_reject_bad_input(tmp_path, rng):
    with pytest.raises(ValueError, match="'X'"):
        plots.plot_atoms_2d(np.ones((4, 3)), {"a": random_sae(rng, 3, 2)}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="'saes'"):
        plots.plot_atoms_2d(np.ones((4, 2)), {"a": random_sae(rng, 3, 2)}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="'widths'"):
        plots.plot_gap_vs_width([2, 4], [0.1], tmp_path / "g.png")
    with pytest.raises(ValueError, match="'gaps'"):
        plots.plot_gap_distribution({"2": []}, tmp_path / "h.png")
    assert not list(tmp_path.iterdir())
