"""Paper B's convex blocks: exactness, monotonicity, partial minima, scale invariance."""

import numpy as np
import pytest
from conftest import random_sae
from scipy.optimize import minimize

import convexdict as cd
from convexdict.analysis import pieces
from convexdict.analysis._compare import compare
from convexdict.analysis.diagnostics import stationarity
from convexdict.analysis.pieces import (
    activation_pattern,
    block_improvements,
    decoder_step,
    encoder_step,
    partial_minimum_test,
    polish,
)

LAM = 0.2


def three_clusters(seed: int = 0, per: int = 8) -> np.ndarray:
    """Clusters at the origin, (2, 0) and (0, 2): N = 3 * per, d = 2."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return np.vstack([c + 0.1 * rng.normal(size=(per, 2)) for c in centres])


@pytest.fixture(scope="module")
def data():
    X = three_clusters()
    return X, cd.certify(X, LAM)


def _fixed_code_objective(Z, W, b, X, lam):
    R = X - Z @ W - b
    return (0.5 * np.sum(R**2) + lam * Z.sum(axis=0) @ np.linalg.norm(W, axis=1)) / len(X)


def test_certified_optimum_is_a_partial_minimum(data):
    X, cert = data
    dec, enc = block_improvements(cert.optimum_sae, X, LAM)
    assert dec <= 1e-9 and enc <= 1e-9
    assert partial_minimum_test(cert.optimum_sae, X, LAM, 1e-6) == (False, False)


def test_random_sae_is_not_a_partial_minimum(rng):
    X = three_clusters()
    sae = random_sae(rng, 2, 4)
    dec, enc = block_improvements(sae, X, LAM)
    assert max(dec, enc) > 1e-3
    assert any(partial_minimum_test(sae, X, LAM, 1e-6))


def test_decoder_step_minimises_its_block(rng):
    """Own optimality residual (atom and bias conditions) plus random-perturbation check."""
    X = three_clusters()
    sae = random_sae(rng, 2, 4)
    step = decoder_step(sae, X, LAM)
    assert step.improvement > 0
    assert cd.sae_loss(step.sae, X, LAM) == pytest.approx(cd.sae_loss(sae, X, LAM)
                                                          - step.improvement, abs=1e-12)
    st = stationarity(step.sae, X, LAM)
    assert st.max_atom_residual < 1e-5 and st.bias_residual < 1e-7
    Z = step.sae.encode(X)
    best = _fixed_code_objective(Z, step.sae.W_dec, step.sae.b_dec, X, LAM)
    for _ in range(200):
        W = step.sae.W_dec + 1e-3 * rng.normal(size=step.sae.W_dec.shape)
        b = step.sae.b_dec + 1e-3 * rng.normal(size=2)
        assert _fixed_code_objective(Z, W, b, X, LAM) >= best - 1e-12


def _encoder_block_by_slsqp(sae, X, lam):
    """The encoder block on the current piece, solved independently by scipy's SLSQP."""
    S = activation_pattern(sae, X).astype(float)
    d, k = sae.W_enc.shape
    norms = sae.decoder_norms()

    def split(theta):
        return theta[: d * k].reshape(d, k), theta[d * k :]

    def objective(theta):
        W, b = split(theta)
        Z = S * (X @ W + b)
        R = X - Z @ sae.W_dec - sae.b_dec
        return (0.5 * np.sum(R**2) + lam * np.sum(Z @ norms)) / len(X)

    def feasible(theta):
        W, b = split(theta)
        return ((2 * S - 1) * (X @ W + b)).ravel()

    theta0 = np.concatenate([sae.W_enc.ravel(), sae.b_enc])
    res = minimize(objective, theta0, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": feasible}],
                   options={"ftol": 1e-14, "maxiter": 2000})
    assert feasible(res.x).min() > -1e-8
    return res.fun


def test_encoder_step_stays_on_the_piece_and_agrees_with_slsqp(rng):
    X = three_clusters()
    sae = random_sae(rng, 2, 4)
    S_old = activation_pattern(sae, X)
    step = encoder_step(sae, X, LAM)
    assert step.improvement > 0
    new = step.sae
    pre = X @ new.W_enc + new.b_enc
    assert np.all(pre[~S_old] <= 1e-7)  # off the pattern stays off (closure of the piece)
    reference = _encoder_block_by_slsqp(sae, X, LAM)
    assert cd.sae_loss(new, X, LAM) == pytest.approx(reference, rel=1e-6, abs=1e-9)


def test_polish_never_increases_the_loss_and_reaches_a_partial_minimum(rng):
    X = three_clusters()
    sae = random_sae(rng, 2, 5)
    losses = [cd.sae_loss(sae, X, LAM)]
    for max_iter in (1, 2, 4, 50):
        losses.append(cd.sae_loss(polish(sae, X, LAM, max_iter=max_iter), X, LAM))
    assert all(b <= a + 1e-15 for a, b in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0] - 1e-2
    final = polish(sae, X, LAM)
    dec, enc = block_improvements(final, X, LAM)
    assert dec <= 1e-8 and enc <= 1e-8


def test_dead_and_zero_decoder_latents_are_left_as_they_are(data):
    X, cert = data
    padded = cert.optimum_sae.padded(cert.width_needed + 2)
    W_enc = np.array(padded.W_enc)
    W_dec = np.array(padded.W_dec)
    W_enc[:, -1] = [0.3, 0.4]  # fires on every sample but has an all-zero decoder row
    b_enc = np.array(padded.b_enc)
    b_enc[-1] = 5.0
    sae = cd.SAE(W_enc, b_enc, W_dec, padded.b_dec)
    out = polish(cd.SAE(sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec + 0.05), X, LAM)
    np.testing.assert_array_equal(out.W_enc[:, -2:], sae.W_enc[:, -2:])
    np.testing.assert_array_equal(out.b_enc[-2:], sae.b_enc[-2:])
    assert np.all(out.W_dec[-2] == 0)


def test_steps_are_scale_invariant(rng):
    X = three_clusters()
    sae = random_sae(rng, 2, 3)
    s = np.array([0.01, 1.0, 50.0])
    scaled = cd.SAE(sae.W_enc * s, sae.b_enc * s, sae.W_dec / s[:, None], sae.b_dec)
    assert cd.sae_loss(scaled, X, LAM) == pytest.approx(cd.sae_loss(sae, X, LAM), rel=1e-12)
    for step in (decoder_step, encoder_step):
        a = cd.sae_loss(step(sae, X, LAM).sae, X, LAM)
        b = cd.sae_loss(step(scaled, X, LAM).sae, X, LAM)
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"lam": 0.0}, "lam"), ({"lam": -1.0}, "lam"), ({"X": np.ones((5, 3))}, "X"),
     ({"max_iter": 0}, "max_iter"), ({"tol": -1.0}, "tol"), ({"solver": "mosek"}, "solver")],
)
def test_polish_rejects_bad_arguments(rng, kwargs, name):
    args = {"sae": random_sae(rng, 2, 2), "X": three_clusters(), "lam": LAM} | kwargs
    with pytest.raises(ValueError, match=f"'{name}'"):
        polish(args.pop("sae"), args.pop("X"), args.pop("lam"), **args)


def test_scs_agrees_with_clarabel(rng):
    X = three_clusters()
    sae = random_sae(rng, 2, 4)
    for step in (decoder_step, encoder_step):
        a = step(sae, X, LAM, solver="clarabel").improvement
        b = step(sae, X, LAM, solver="scs").improvement
        assert a == pytest.approx(b, rel=1e-6)


def test_falls_back_to_scs_and_reports_total_failure(rng, monkeypatch):
    X = three_clusters()
    sae = random_sae(rng, 2, 3)
    expected = decoder_step(sae, X, LAM).improvement
    monkeypatch.setitem(pieces.SOLVERS, "clarabel", {"solver": "NOT_A_SOLVER", "options": {}})
    assert decoder_step(sae, X, LAM).improvement == pytest.approx(expected, rel=1e-6)
    monkeypatch.setitem(pieces.SOLVERS, "scs", {"solver": "NOT_A_SOLVER", "options": {}})
    with pytest.raises(pieces.PieceSolveError, match="clarabel"):
        encoder_step(sae, X, LAM)
    cmp = compare(sae, X, LAM, cd.certify(X, LAM))
    assert cmp.verdict == "undetermined"
