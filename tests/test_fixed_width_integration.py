"""Fixed-width certificates in census, compare and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import convexdict as cd
from convexdict.cli import main


def _data() -> np.ndarray:
    return np.random.default_rng(11).normal(size=(7, 2))


LAM = 0.1


@pytest.fixture(scope="module")
def fixed() -> cd.Certificate:
    cert = cd.certify(_data(), LAM, width=2, tol=1e-4)
    assert cert.width_needed > 2 and cert.search is not None and cert.certified
    return cert


def test_census_below_k_star_uses_the_fixed_width_certificate(fixed) -> None:
    X = _data()
    result = cd.census(X, LAM, 2, n_starts=4, steps=300, lr=1e-2, tol=1e-4, device="cpu",
                       time_limit=30.0)
    assert result.fixed_width
    assert result.lower_bound >= cd.certify(X, LAM).lower_bound - 1e-12
    assert result.best_loss >= result.lower_bound - 1e-12
    # The branch and bound's explicit SAE is at least as good as every polished start.
    assert result.certificate_upper_bound <= result.best_loss + 1e-4 * max(1, result.best_loss)
    for g in result.groups:
        scale = 1e-4 * max(1.0, g.loss)
        if g.loss - result.lower_bound <= scale:
            assert g.verdict == "certified_global"
        elif g.verdict != "not_converged":
            # Converged and above the width-2 optimum's explicit SAE: certifiably spurious.
            assert g.verdict == "spurious_partial_minimum", g.comparison.message
    assert "fixed-width branch and bound" in result.message


def test_compare_against_fixed_width_certificate(fixed) -> None:
    X = _data()
    cmp = cd.compare(fixed.sae, X, LAM, fixed, tol=1e-4)
    assert cmp.verdict == "certified_global"
    wider = fixed.sae.padded(3)
    with pytest.raises(ValueError, match="'certificate' parameter is a fixed-width certificate"):
        cd.compare(wider, X, LAM, fixed)


def test_cli_certify_width_runs_branch_and_bound(tmp_path, capsys) -> None:
    path = tmp_path / "X.npy"
    np.save(path, _data())
    out = tmp_path / "cert.json"
    code = main(["certify", str(path), "--lam", str(LAM), "--width", "1", "--tol", "1e-4",
                 "--time-limit", "30", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "branch and bound" in printed
    payload = json.loads(out.read_text())
    assert payload["width"] == 1 and payload["search"]["n_patterns"] > 0
    assert payload["lower_bound"] <= payload["upper_bound"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--width", "1", "--time-limit", "0"], "--time-limit"),
        (["--width", "1", "--max-nodes", "0"], "--max-nodes"),
    ],
)
def test_cli_certify_budget_errors(tmp_path, capsys, args, needle) -> None:
    path = tmp_path / "X.npy"
    np.save(path, _data())
    code = main(["certify", str(path), "--lam", "0.1", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in err


def test_too_many_patterns_returns_an_explicit_sae_and_the_wide_bound() -> None:
    X = np.random.default_rng(0).normal(size=(80, 2))
    wide = cd.certify(X, 0.1)
    cert = cd.certify(X, 0.1, width=2, time_limit=10)
    assert wide.width_needed > 2
    assert cert.sae is not None and cert.sae.width == 2
    assert cert.upper_bound == cd.sae_loss(cert.sae, X, 0.1)
    # the lower end is P*, raised in 2-D by the joint bound J_K (docs/theory.md section 12)
    assert cert.lower_bound >= cert.search["joint_bound"]
    assert wide.lower_bound * (1 - 1e-9) <= cert.lower_bound <= cert.upper_bound
    assert cert.certified == cd.within_tol(cert.upper_bound, cert.lower_bound, cert.tol)
    assert "activation patterns" in cert.message and cert.search["budget_exhausted"] == "patterns"
    assert "bracket" in cert.summary()
