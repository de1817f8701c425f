"""Verdicts must not depend on units: scaling X (and targets) and lam by s scales every loss
by s^2 and changes no verdict (CONTRACTS "Tolerance and gaps", issue "Trust first")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convexdict as cd
from convexdict.tolerance import improves, relative_gap, within_tol
from convexdict.units import Units, power_of_two_rms

SCALES = (1e-5, 1.0, 1e3)


def _close(a: float, b: float) -> bool:
    """Relative gaps agree to 1e-6 relative; near zero (a certified optimum, where solver
    noise of ~1e-10 dominates) they agree to 1e-7, ten times below the default tol."""
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def _data(seed: int, n: int, d: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def _scaled_sae(sae: cd.SAE, s: float) -> cd.SAE:
    return cd.SAE(sae.W_enc / s, sae.b_enc, sae.W_dec * s, sae.b_dec * s)


def _check(results: dict[float, tuple[bool, float, float]]) -> None:
    flag, rg, loss = results[1.0]
    for s, (flag_s, rg_s, loss_s) in results.items():
        assert flag_s == flag, f"verdict changed at scale {s}"
        assert _close(rg_s, rg), f"relative gap {rg_s} at scale {s} vs {rg}"
        assert math.isclose(loss_s / s**2, loss, rel_tol=1e-6), (s, loss_s, loss)


def test_within_tol_is_relative_and_the_old_rule_was_not() -> None:
    # The issue's example: a relative gap of 0.94 must never be "certified".
    assert not within_tol(1e-6, 0.06e-6, 1e-6)
    assert within_tol(1.0, 1.0 - 1e-7, 1e-6) and not within_tol(1.0, 1.0 - 1e-5, 1e-6)
    assert within_tol(0.0, 0.0, 1e-6) and not within_tol(0.0, -1e-300, 1e-6)
    assert not within_tol(float("inf"), 0.0, 1e-6)
    assert relative_gap(2.0, 1.0) == 0.5 and relative_gap(0.0, 0.0) == 0.0
    assert improves(0.9, 1.0, 1e-6) and not improves(1.0 - 1e-8, 1.0, 1e-6)


@given(st.integers(-60, 60), st.floats(0.5, 2.0), st.floats(0.0, 1.0), st.floats(1e-8, 1e-2))
def test_within_tol_invariant_under_scaling(log2s, upper, frac, tol) -> None:
    s = 2.0**log2s  # exact scaling: the rule itself must not move (borderline cases included)
    lower = upper * (1 - frac)
    assert within_tol(upper, lower, tol) == within_tol(upper * s, lower * s, tol)


def test_units_are_exact_powers_of_two() -> None:
    X = _data(0, 30) * 3e-4 + 7.0
    units = Units.of(X)
    assert math.frexp(units.x)[0] == 0.5 and units.x == power_of_two_rms(X)
    assert np.array_equal((X / units.x) * units.x, X)
    sae = cd.train_sae(X, 1e-5, width=3, steps=50, seed=0)
    back = units.model_to_user(units.model_to_internal(sae))
    assert np.array_equal(back.W_enc, sae.W_enc) and np.array_equal(back.W_dec, sae.W_dec)


def _run_wide(X, lam, s, **kw):
    c = cd.certify(X * s, lam * s, **kw)
    return c.certified, c.relative_gap, c.upper_bound


def test_issue_example_early_stopped_is_never_certified_at_any_scale() -> None:
    X = np.random.default_rng(3).normal(size=(200, 2))
    results = {s: _run_wide(X, 0.1, s, max_rounds=1) for s in SCALES}
    assert not results[1.0][0] and results[1.0][1] > 0.5
    _check(results)


@pytest.mark.parametrize("path", ["wide", "direct", "transcoder", "crosscoder", "huge_lam"])
def test_deterministic_paths_are_scale_invariant(path: str) -> None:
    X = _data(1, 24)
    lam = 0.15
    results = {}
    for s in SCALES:
        if path == "wide":
            c = cd.certify(X * s, lam * s, method="colgen")
        elif path == "direct":
            c = cd.certify(X * s, lam * s, method="direct")
        elif path == "transcoder":
            Y = X @ np.array([[1.0, 0.5, -0.2], [0.3, -1.0, 0.7]]) * 40.0
            c = cd.certify(X * s, lam * s * 40, target=Y * s)
        elif path == "crosscoder":
            c = cd.certify(X * s, lam * s, targets=[X * s, 2.0 * X[:, :1] * s])
        else:
            c = cd.certify(X * s, 1e30 * s)
            assert c.certified and c.width_needed == 0
        results[s] = (c.certified, c.relative_gap, c.upper_bound)
    assert results[1.0][0]
    _check(results)


def test_fixed_width_with_node_budget_is_scale_invariant() -> None:
    X = _data(2, 10)
    results, nodes = {}, set()
    for s in SCALES:
        c = cd.certify(X * s, 0.1 * s, width=2, tol=1e-4, max_nodes=400, time_limit=None)
        results[s] = (c.certified, c.relative_gap, c.upper_bound)
        nodes.add(c.search["nodes_evaluated"])
    _check(results)


def test_path_is_scale_invariant() -> None:
    X = _data(3, 20)
    lams = [0.3, 0.1]
    base = cd.certify_path(X, lams)
    for s in (1e-5, 1e3):
        scaled = cd.certify_path(X * s, [lam * s for lam in lams])
        for a, b in zip(base, scaled, strict=True):
            assert a.certified == b.certified
            assert _close(a.relative_gap, b.relative_gap)


def test_compare_without_training_is_scale_invariant() -> None:
    X = _data(4, 20)
    lam = 0.1
    sae = cd.train_sae(X, lam, width=3, steps=300, seed=0)
    results = {}
    for s in SCALES:
        cert = cd.certify(X * s, lam * s)
        # search_time=None: the width-K search's deterministic work budget (a time budget
        # depends on the machine, not on the units).
        cmp = cd.compare(_scaled_sae(sae, s), X * s, lam * s, cert, search_time=None)
        results[s] = (cmp.verdict, cmp.relative_gap, cmp.loss)
    verdict, rg, loss = results[1.0]
    for s, (v, r, l_s) in results.items():
        assert v == verdict, (s, v, verdict)
        assert _close(r, rg)
        assert math.isclose(l_s / s**2, loss, rel_tol=1e-9)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.floats(-5.0, 3.0), st.integers(0, 50))
def test_wide_certificate_property_over_scales(log10s: float, seed: int) -> None:
    s = 10.0**log10s
    X = _data(seed, 15)
    lam = 0.2
    base = cd.certify(X, lam)
    scaled = cd.certify(X * s, lam * s)
    assert scaled.certified == base.certified
    assert _close(scaled.relative_gap, base.relative_gap)
    assert math.isclose(scaled.lower_bound / s**2, base.lower_bound, rel_tol=1e-6)
    assert scaled.lower_bound <= scaled.upper_bound * (1 + 1e-12)
