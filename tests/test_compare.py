"""compare(): verdicts, gaps, matching and the JSON/text reports."""

import json

import numpy as np
import pytest
from conftest import random_sae

import convexdict as cd
from convexdict.analysis._compare import compare
from convexdict.analysis.comparison import VERDICTS, match_latents
from convexdict.analysis.pieces import polish

LAM = 0.2


def three_clusters(seed: int = 0, per: int = 8) -> np.ndarray:
    """Clusters at the origin, (2, 0) and (0, 2): N = 3 * per, d = 2."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return np.vstack([c + 0.1 * rng.normal(size=(per, 2)) for c in centres])


def polygon(n: int = 8) -> np.ndarray:
    """Points in convex position (an ellipse): every point can have a private latent."""
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + 0.1
    return np.stack([np.cos(angles), 0.7 * np.sin(angles)], axis=1)


@pytest.fixture(scope="module")
def clusters():
    X = three_clusters()
    return X, cd.certify(X, LAM)


def one_latent_for_two_clusters() -> cd.SAE:
    """A polysemantic latent that fires on both outer clusters (the optimum uses two)."""
    return cd.SAE(np.array([[1.0], [1.0]]), np.array([-1.0]), np.array([[1.0, 1.0]]),
                  np.zeros(2))


def test_certified_optimum_is_certified_global(clusters):
    X, cert = clusters
    cmp = compare(cert.optimum_sae, X, LAM, cert)
    assert cmp.verdict == "certified_global"
    assert abs(cmp.gap) <= 1e-6 and abs(cmp.relative_gap) <= 1e-6
    assert cmp.loss == cd.sae_loss(cert.optimum_sae, X, LAM)
    assert cmp.loss == pytest.approx(cmp.reconstruction + cmp.penalty, rel=1e-15)
    assert cmp.width == cmp.width_needed == cert.width_needed
    assert cmp.dead_latents == [] and cmp.dead_fraction == 0.0
    assert cmp.sae_dual_bound == pytest.approx(cert.lower_bound, abs=1e-7)
    assert np.allclose(cmp.decoder_matching.quality, 1.0)
    assert np.allclose(cmp.activation_matching.quality, 1.0)


def test_hand_built_spurious_partial_minimum(clusters):
    X, cert = clusters
    trap = polish(one_latent_for_two_clusters().padded(cert.width_needed), X, LAM)
    cmp = compare(trap, X, LAM, cert)
    assert cmp.verdict == "spurious_partial_minimum", cmp.message
    assert cmp.gap > 0.1
    assert cmp.improve_decoder <= 1e-6 and cmp.improve_encoder <= 1e-6
    assert len(cmp.dead_latents) == cert.width_needed - 1
    # the same trap below K*: without the width-K search nothing certifies it as spurious
    narrow = polish(one_latent_for_two_clusters(), X, LAM)
    blind = compare(narrow, X, LAM, cert, search_time=0)
    assert blind.verdict == "partial_minimum" and blind.better_sae is None
    assert "bracket" in blind.message
    # ... but an explicit width-1 SAE (issue 13's incumbents) beats it: spurious, with proof
    seen = compare(narrow, X, LAM, cert)
    assert seen.verdict == "spurious_partial_minimum", seen.message
    assert seen.better_sae.width <= 1
    assert seen.better_loss == cd.sae_loss(seen.better_sae, X, LAM) < seen.loss


def test_random_sae_is_not_converged(clusters, rng):
    X, cert = clusters
    cmp = compare(random_sae(rng, 2, cert.width_needed), X, LAM, cert)
    assert cmp.verdict == "not_converged"
    assert max(cmp.improve_decoder, cmp.improve_encoder) > 1e-3
    assert cmp.gap > 1e-2
    assert cmp.sae_dual_bound <= cert.upper_bound + 1e-9  # any residual gives a valid bound
    assert cmp.stationarity.max_atom_residual > 0.1


def test_metrics_match_independent_formulas(clusters, rng):
    X, cert = clusters
    sae = random_sae(rng, 2, 3)
    cmp = compare(sae, X, LAM, cert)
    Z = sae.encode(X)
    R = X - sae.reconstruct(X)
    assert cmp.reconstruction == pytest.approx(0.5 * np.sum(R**2) / len(X), rel=1e-12)
    assert cmp.l0 == pytest.approx(np.mean(np.sum(Z > 0, axis=1)))
    ev = 1 - np.sum(R**2) / np.sum((X - X.mean(axis=0)) ** 2)
    assert cmp.explained_variance == pytest.approx(ev, rel=1e-12)
    assert cmp.dead_latents == np.flatnonzero(~(Z > 0).any(axis=0)).tolist()
    # below K* in 2-D the lower bound may be the joint bound J_K, never below P*
    assert cmp.lower_bound >= cert.lower_bound
    assert cmp.gap == pytest.approx(cmp.loss - cmp.lower_bound, rel=1e-12)


def test_compare_certifies_when_no_certificate_is_given(clusters):
    X, cert = clusters
    cmp = compare(cert.optimum_sae, X, LAM)
    assert cmp.lower_bound == pytest.approx(cert.lower_bound, abs=1e-9)
    assert cmp.verdict == "certified_global"


def test_reports_are_json_ready_and_readable(clusters, rng):
    X, cert = clusters
    cmp = compare(random_sae(rng, 2, 3).padded(4), X, LAM, cert)
    payload = json.loads(json.dumps(cmp.to_dict(), allow_nan=False))
    assert payload["verdict"] in VERDICTS
    assert 3 in payload["dead_latents"]
    assert payload["stationarity"]["code_violation"][3] == "nan"  # no direction: nan
    assert len(payload["stationarity"]["atom_residual"]) == 4
    assert payload["decoder_matching"]["mean_quality"] == pytest.approx(
        cmp.decoder_matching.mean_quality)
    text = cmp.summary()
    assert cmp.verdict in text and "gap" in text


def test_hungarian_matching_recovers_a_permutation():
    X = polygon()
    cert = cd.certify(X, 0.3)
    opt = cert.optimum_sae
    perm = np.random.default_rng(3).permutation(opt.width)
    shuffled = cd.SAE(opt.W_enc[:, perm], opt.b_enc[perm], opt.W_dec[perm], opt.b_dec)
    for criterion in ("cosine", "jaccard"):
        match = match_latents(shuffled, opt, X, criterion=criterion)
        # reference atom j sits at position argsort(perm)[j] of the shuffled SAE
        np.testing.assert_array_equal(match.matched_latent, np.argsort(perm))
        np.testing.assert_allclose(match.quality, 1.0)


def test_matching_a_narrower_sae_leaves_atoms_unmatched(clusters):
    X, cert = clusters
    opt = cert.optimum_sae
    keep = np.arange(opt.width - 1)
    narrow = cd.SAE(opt.W_enc[:, keep], opt.b_enc[keep], opt.W_dec[keep], opt.b_dec)
    match = match_latents(narrow, opt)
    assert np.sum(match.matched_latent == -1) == 1
    assert match.quality[match.matched_latent == -1] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"lam": 0.0}, "lam"), ({"tol": 0.0}, "tol"), ({"lam": 0.5}, "certificate")],
)
def test_compare_rejects_bad_arguments(clusters, kwargs, name):
    X, cert = clusters
    args = {"lam": LAM, "tol": 1e-6} | kwargs
    with pytest.raises(ValueError, match=f"'{name}'"):
        compare(cert.optimum_sae, X, args["lam"], cert, tol=args["tol"])


def test_huge_lam_needs_no_solver_and_is_not_converged():
    """Issue 12: any lam >= lam_max is valid input; the decoder block's optimum is then the
    zero decoder in closed form, so compare neither crashes nor calls a solver."""
    X = cd.load_data("toy:superposition_2d")[:30]
    sae = cd.SAE(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    cmp = cd.compare(sae, X, 1e300, search_time=0)
    mean_loss = cd.sae_loss(cd.SAE.zeros(X.mean(axis=0), 2), X, 1e300)
    assert cmp.verdict == "not_converged"
    assert cmp.improve_decoder == cmp.loss - mean_loss > 0
    assert cmp.lower_bound <= mean_loss * (1 + 1e-12)
