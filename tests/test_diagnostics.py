"""Stationarity residuals and the ground-truth pathologies, each on a toy built to show it."""

import numpy as np
import pytest
from conftest import random_sae

import convexdict as cd
from convexdict.analysis.diagnostics import (
    active_mask,
    antipodal_pairs,
    dead_latents,
    feature_absorption,
    feature_splitting,
    stationarity,
)


def unit(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([np.cos(a), np.sin(a)])


def polygon(n: int = 8) -> np.ndarray:
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + 0.1
    return np.stack([np.cos(angles), 0.7 * np.sin(angles)], axis=1)


def clusters_with_interior(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return np.vstack([c + 0.2 * rng.normal(size=(10, 2)) for c in centres])


# --------------------------------------------------------------------------- stationarity


def test_all_conditions_hold_at_the_optimum_on_points_in_convex_position():
    """Every point can have a private latent: no amortisation gap, paper A's joint
    conditions (codes, atoms, bias) all hold at the certified SAE optimum."""
    X = polygon()
    cert = cd.certify(X, 0.3)
    st = stationarity(cert.optimum_sae, X, 0.3)
    assert st.max_code_violation < 1e-5
    assert st.max_atom_residual < 1e-5
    assert st.bias_residual < 1e-8


def test_atom_and_bias_conditions_hold_at_the_optimum_but_codes_are_amortised():
    X = clusters_with_interior()
    lam = 0.2
    cert = cd.certify(X, lam)
    st = stationarity(cert.optimum_sae, X, lam)
    assert st.max_atom_residual < 1e-5 and st.bias_residual < 1e-8
    # interior points cannot get a private ReLU latent: the per-sample code condition of the
    # joint problem fails at the SAE's own global optimum (THEORY section 3)
    assert st.max_code_violation > 1e-2
    assert cert.joint_bound < cert.lower_bound - 1e-6


def test_random_sae_violates_stationarity(rng):
    X = clusters_with_interior()
    st = stationarity(random_sae(rng, 2, 4), X, 0.2)
    assert st.max_atom_residual > 0.1 and st.bias_residual > 1e-2
    assert st.max_code_violation > 0.1 and np.max(st.encoder_gradient) > 1e-3


# --------------------------------------------------------------------------- dead latents


def test_dead_latents_ignore_rounding_level_activations():
    X = polygon()
    cert = cd.certify(X, 0.3)
    opt = cert.optimum_sae
    # the optimum's hyperplanes pass through data points: some activations are ~1e-16
    assert np.sum(opt.encode(X) > 0) > np.sum(active_mask(opt, X))
    assert dead_latents(opt, X).size == 0
    padded = opt.padded(opt.width + 2)
    np.testing.assert_array_equal(dead_latents(padded, X), [opt.width, opt.width + 1])


# --------------------------------------------------------------------------- absorption


def test_certified_optimum_absorbs_children_on_the_hierarchical_toy():
    toy = cd.load_toy("hierarchical", n=40)
    lam = 0.2 * cd.lam_max(toy.X)
    opt = cd.certify(toy.X, lam).optimum_sae
    for child in (1, 2):
        report = feature_absorption(opt, toy.X, toy.features, toy.codes, 0, child)
        assert report.parent_cosine > 0.7
        assert report.rate > 0.8 and report.absorbed
        assert report.n_samples > 0


def test_parent_latent_that_always_fires_absorbs_nothing():
    toy = cd.load_toy("hierarchical", n=40)
    f = toy.features  # parent at 90 degrees, children at 20 and 160 degrees
    # parent latent: relu(y) fires on every sample; children: relu(+-x) on their side
    sae = cd.SAE(np.array([[0.0, 1.0, -1.0], [1.0, 0.0, 0.0]]), np.zeros(3),
                 np.stack([f[0], unit(0.0), unit(180.0)]), np.zeros(2))
    report = feature_absorption(sae, toy.X, toy.features, toy.codes, 0, 1)
    assert report.parent_latent == 0
    assert report.rate == 0.0 and not report.absorbed


def test_hand_built_absorbing_sae():
    """Parent p at 90 degrees, child c at 0 degrees (present only with p): latent 0 fires on
    parent-only samples, latent 1 on the combined direction p + c."""
    rng = np.random.default_rng(0)
    p, c = unit(90.0), unit(0.0)
    codes = np.zeros((30, 2))
    codes[:, 0] = rng.uniform(0.5, 1.0, 30)
    codes[15:, 1] = rng.uniform(0.5, 1.0, 15)
    X = codes @ np.stack([p, c])
    combined = (p + c) / np.sqrt(2)
    sae = cd.SAE(np.array([[-4.0, 1.0], [1.0, 0.0]]), np.array([0.0, 0.0]),
                 np.stack([p, combined]), np.zeros(2))
    report = feature_absorption(sae, X, np.stack([p, c]), codes, 0, 1)
    assert report.parent_latent == 0
    assert report.rate == 1.0 and report.absorbing_latents == [1] and report.absorbed


# --------------------------------------------------------------------------- splitting


def spread_feature(n: int = 30, seed: int = 0):
    """One feature u = e_x whose samples spread across v = e_y."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.5, 1.0, n)
    t = rng.uniform(-0.3, 0.3, n)
    X = np.stack([s, t], axis=1)
    return X, np.array([[1.0, 0.0]]), s[:, None]


def test_two_copies_dividing_a_feature_are_a_split():
    X, features, codes = spread_feature()
    up, down = unit(10.0), unit(-10.0)  # u +- eps v
    sae = cd.SAE(np.array([[0.0, 0.0], [1.0, -1.0]]), np.zeros(2), np.stack([up, down]),
                 np.zeros(2))
    (split,) = feature_splitting(sae, X, features, codes)
    assert split.latents == [0, 1] and split.split
    assert split.overlap == 0.0 and split.coverage > 0.95


def test_one_latent_or_duplicates_are_not_a_split():
    X, features, codes = spread_feature()
    single = cd.SAE(np.array([[1.0], [0.0]]), np.zeros(1), np.array([[1.0, 0.0]]), np.zeros(2))
    (one,) = feature_splitting(single, X, features, codes)
    assert one.latents == [0] and not one.split and one.coverage == 1.0
    twin = cd.SAE(np.array([[1.0, 1.0], [0.0, 0.0]]), np.zeros(2),
                  np.stack([unit(5.0), unit(-5.0)]), np.zeros(2))
    (dup,) = feature_splitting(twin, X, features, codes)
    assert dup.latents == [0, 1] and dup.overlap == 1.0 and not dup.split


# --------------------------------------------------------------------------- antipodal pairs


def test_plus_minus_u_is_a_dense_antipodal_pair():
    toy = cd.load_toy("antipodal", n=30)
    u = toy.features[0]
    sae = cd.SAE(np.stack([u, -u], axis=1), np.zeros(2), np.stack([u, -u]), np.zeros(2))
    (pair,) = antipodal_pairs(sae, toy.X)
    assert pair.latents == (0, 1) and pair.cosine == pytest.approx(-1.0)
    assert pair.dense and pair.coverage == 1.0


def test_single_atom_with_bias_has_no_antipodal_pair():
    toy = cd.load_toy("antipodal", n=30)
    u = toy.features[0]
    # x = -u + relu(x.u + 1) u: one latent and a bias reach the whole segment
    sae = cd.SAE(u[:, None], np.array([1.0]), u[None, :], -u)
    assert antipodal_pairs(sae, toy.X) == []


def test_certified_optimum_of_a_symmetric_source_has_antipodal_atoms():
    toy = cd.load_toy("antipodal", n=30)
    lam = 0.1 * cd.lam_max(toy.X)
    pairs = antipodal_pairs(cd.certify(toy.X, lam).optimum_sae, toy.X)
    assert pairs and pairs[0].dense


def test_diagnostics_reject_mismatched_ground_truth():
    X, features, codes = spread_feature()
    sae = cd.SAE(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    with pytest.raises(ValueError, match="'codes'"):
        feature_splitting(sae, X, features, codes[:5])
    with pytest.raises(ValueError, match="'child'"):
        feature_absorption(sae, X, features, codes, 0, 3)
