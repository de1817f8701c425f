"""compare / polish at any size: streamed sums, the two blocks' bounds, SAELens round trip."""

import numpy as np
import pytest
import torch
from conftest import random_sae

import convexdict as cd
from convexdict.analysis._compare import compare
from convexdict.analysis.blocks import decoder_block, encoder_block, polish_at_scale
from convexdict.analysis.comparison import VERDICTS
from convexdict.analysis.pieces import decoder_step, encoder_step
from convexdict.analysis.scale_compare import compare_streamed, latent_table
from convexdict.analysis.streaming import moments, sae_pass, sae_tensors
from convexdict.data.loss_units import to_canonical_loss

LAM = 0.2
CPU = {"device": "cpu", "dtype": torch.float64}


def three_clusters(seed: int = 0, per: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return np.vstack([c + 0.1 * rng.normal(size=(per, 2)) for c in centres])


def sparse_data(rng, n: int, d: int, n_features: int = 24) -> np.ndarray:
    F = rng.normal(size=(n_features, d))
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    codes = rng.exponential(size=(n, n_features)) * (rng.random((n, n_features)) < 0.1)
    return codes @ F + 0.01 * rng.normal(size=(n, d))


@pytest.fixture(scope="module")
def certified():
    X = three_clusters()
    return X, cd.certify(X, LAM)


def _block_inputs(sae, X):
    mom = moments(X, 7, "cpu", torch.float64)
    return {"mom": mom, "rows": 7, **CPU}


def test_streamed_compare_equals_in_memory_compare(certified, rng, tmp_path):
    X, cert = certified
    sae = random_sae(rng, 2, 5, scale=0.7)
    mem = compare(sae, X, LAM, cert)
    np.save(tmp_path / "X.npy", X)
    for data in (X, tmp_path / "X.npy"):
        st = compare_streamed(sae, data, LAM, batch_size=5, device="cpu")
        for name in ("loss", "reconstruction", "penalty", "l0", "explained_variance"):
            assert getattr(st, name) == pytest.approx(getattr(mem, name), rel=1e-10, abs=1e-12)
        assert st.dead_latents == mem.dead_latents
        for name in ("code_violation", "atom_residual", "encoder_gradient",
                     "code_violation_fraction"):
            np.testing.assert_allclose(getattr(st.stationarity, name),
                                       getattr(mem.stationarity, name), rtol=1e-10, atol=1e-12)
        assert st.stationarity.bias_residual == pytest.approx(mem.stationarity.bias_residual,
                                                              rel=1e-10, abs=1e-12)
        assert st.improve_decoder_bound == pytest.approx(mem.improve_decoder_bound, rel=1e-6)
        assert st.method == "streamed" and mem.method == "certificate"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decoder_block_agrees_with_cvxpy_and_bounds_it(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3))
    sae = random_sae(rng, 3, 6, scale=0.5)
    exact = decoder_step(sae, X, LAM)
    res = decoder_block(sae, X, LAM, **_block_inputs(sae, X))
    loss0 = cd.sae_loss(sae, X, LAM)
    assert res.loss_after == pytest.approx(cd.sae_loss(res.sae, X, LAM), rel=1e-12)
    assert res.loss_after == pytest.approx(loss0 - exact.improvement, rel=1e-6)
    # the block's lower bound (loss0 - bound) is never above a refit found by CVXPY
    assert loss0 - res.bound <= cd.sae_loss(exact.sae, X, LAM) + 1e-12
    assert res.bound >= res.improvement - 1e-12


def test_decoder_bound_below_a_gradient_descent_refit(rng):
    X = sparse_data(rng, 400, 16)
    sae = random_sae(rng, 16, 32, scale=0.3)
    res = decoder_block(sae, X, LAM, **_block_inputs(sae, X))
    lower = cd.sae_loss(sae, X, LAM) - res.bound
    Z = sae.encode(X)
    W, b = sae.W_dec.copy(), sae.b_dec.copy()
    step = 0.5 * X.shape[0] / np.linalg.norm(np.hstack([Z, np.ones((400, 1))]), 2) ** 2
    for _ in range(300):  # plain (sub)gradient descent on the decoder block
        R = Z @ W + b - X
        nrm = np.linalg.norm(W, axis=1, keepdims=True)
        gW = (Z.T @ R + LAM * Z.sum(0)[:, None] * W / np.where(nrm > 0, nrm, 1)) / 400
        W, b = W - step * gW, b - step * R.mean(0)
        refit = cd.sae_loss(cd.SAE(sae.W_enc, sae.b_enc, W, b), X, LAM)
        assert lower <= refit + 1e-12


def test_encoder_block_stays_below_its_bound_and_cvxpy(rng):
    X = rng.normal(size=(40, 3))
    sae = random_sae(rng, 3, 5, scale=0.5)
    exact = encoder_step(sae, X, LAM).improvement
    res = encoder_block(sae, X, LAM, rows=7, iters=10, **CPU)
    sums = sae_pass(X, sae_tensors(sae, "cpu", torch.float64), LAM,
                    mom=moments(X, 7, "cpu", torch.float64), rows=7, **CPU)
    bound = compare_streamed(sae, X, LAM, device="cpu").improve_encoder_bound
    assert 0 < res.improvement <= exact + 1e-9
    assert exact <= bound + 1e-9
    assert res.loss_after == pytest.approx(cd.sae_loss(res.sae, X, LAM), rel=1e-10)
    assert sums.enc_lower > 0


def test_polish_never_raises_the_loss(rng, tmp_path):
    X = sparse_data(rng, 300, 8)
    sae = random_sae(rng, 8, 16, scale=0.3)
    res = polish_at_scale(sae, X, LAM, rounds=3, device="cpu", batch_size=64)
    losses = [s.loss for s in res.steps]
    assert all(b <= a for a, b in zip(losses, losses[1:], strict=False))
    assert res.loss_after == pytest.approx(cd.sae_loss(res.sae, X, LAM), rel=1e-10)
    assert res.loss_after < res.loss_before
    via_cd = cd.polish(sae, X, LAM, max_iter=1, streamed=True, device="cpu")
    assert cd.sae_loss(via_cd, X, LAM) <= cd.sae_loss(sae, X, LAM)


def test_residuals_vanish_at_a_certified_optimum_and_not_for_sgd(certified):
    X, cert = certified
    opt = compare_streamed(cert.optimum_sae, X, LAM, device="cpu").stationarity
    assert opt.max_atom_residual <= 1e-5 and opt.bias_residual <= 1e-6
    sgd = cd.train_sae(X, LAM, 3, steps=60, seed=0, device="cpu")
    st = compare_streamed(sgd, X, LAM, device="cpu").stationarity
    assert st.max_atom_residual > 1e-3 and st.bias_residual > 1e-4
    assert np.nanmax(st.code_violation_fraction) > 0.05


def test_compare_at_d64_needs_no_certificate(rng, monkeypatch):
    import sys

    cmp_mod = sys.modules["convexdict.analysis._compare"]
    monkeypatch.setattr(cmp_mod, "certify", lambda *a, **k: pytest.fail("certify called"))
    X = sparse_data(rng, 500, 64)
    sae = random_sae(rng, 64, 32, scale=0.2)
    c = compare(sae, X, LAM, device="cpu", encoder_iters=1)
    assert c.method == "streamed" and c.width_needed == -1 and np.isnan(c.optimum_loss)
    assert c.lower_bound == pytest.approx(cd.joint_bound(X, LAM), rel=1e-8)
    assert c.gap == pytest.approx(c.loss - c.lower_bound)
    assert c.verdict in VERDICTS and c.stationarity.atom_residual.shape == (32,)
    assert 0 <= c.improve_decoder <= c.improve_decoder_bound + 1e-12
    table = latent_table(c)
    assert all(len(v) == 32 for v in table.values())
    assert c.to_dict()["improve_encoder_bound"] >= 0


def test_loss_units_invert_the_io_conversions(rng):
    X = sparse_data(rng, 200, 8)
    sae = random_sae(rng, 8, 12, scale=0.3)
    c = compare_streamed(sae, X, LAM, device="cpu", blocks=False)
    u = c.loss_units
    sl = to_canonical_loss(u["saelens"], source="saelens", l1_coefficient=2 * LAM)
    assert sl.total == pytest.approx(c.loss, rel=1e-12)
    sp = to_canonical_loss(u["sparsify"], source="sparsify", total_variance=u["sparsify"][
        "total_variance"], n_samples=200)
    assert sp.reconstruction == pytest.approx(c.reconstruction, rel=1e-12)
    dl = to_canonical_loss(u["dictionary_learning"], source="dictionary_learning",
                           l1_penalty=2 * LAM)
    assert dl.reconstruction == pytest.approx(c.reconstruction, rel=1e-12)


def test_verdict_is_scale_invariant_and_subsample_is_reported(rng):
    X = sparse_data(rng, 300, 8)
    sae = random_sae(rng, 8, 12, scale=0.3)
    ref = compare_streamed(sae, X, LAM, device="cpu", encoder_iters=1)
    for s in (1e-3, 1e2):
        big = compare_streamed(cd.SAE(sae.W_enc, sae.b_enc * s, sae.W_dec, sae.b_dec * s),
                               X * s, LAM * s, device="cpu", encoder_iters=1)
        assert big.verdict == ref.verdict
        assert big.relative_gap == pytest.approx(ref.relative_gap, rel=1e-6)
    sub = compare_streamed(sae, X, LAM, device="cpu", max_samples=100, blocks=False)
    assert sub.n_samples == 100 and sub.subsample["n_total"] == 300
    assert "subsample" in sub.message


def test_saelens_directory_round_trips_through_compare_and_polish(rng, tmp_path):
    X = sparse_data(rng, 300, 64).astype(np.float32)
    np.save(tmp_path / "acts.npy", X)
    sae = random_sae(rng, 64, 48, scale=0.2)
    sae.save(tmp_path / "sae")
    loaded = cd.SAE.load(str(tmp_path / "sae"))
    c = compare(loaded, str(tmp_path / "acts.npy"), LAM, device="cpu", encoder_iters=1)
    assert c.loss == pytest.approx(cd.sae_loss(sae, X.astype(np.float64), LAM), rel=1e-10)
    res = polish_at_scale(loaded, tmp_path / "acts.npy", LAM, rounds=1, device="cpu")
    res.sae.save(tmp_path / "polished")
    back = cd.SAE.load(str(tmp_path / "polished"))
    assert cd.sae_loss(back, X.astype(np.float64), LAM) == pytest.approx(res.loss_after,
                                                                         rel=1e-10)
    assert res.loss_after <= c.loss


@pytest.mark.interop
def test_saelens_loads_the_polished_sae(rng, tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    X = sparse_data(rng, 200, 64)
    sae = random_sae(rng, 64, 32, scale=0.2)
    res = polish_at_scale(sae, X, LAM, rounds=1, device="cpu")
    res.sae.save(tmp_path / "polished")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "polished"), device="cpu")
    with torch.no_grad():
        out = theirs(torch.as_tensor(X, dtype=theirs.W_enc.dtype)).double().numpy()
    np.testing.assert_allclose(out, res.sae.reconstruct(X), rtol=1e-6, atol=1e-8)


def test_cli_compare_and_polish_on_a_memmap(rng, tmp_path, capsys):
    from convexdict.cli import main

    X = sparse_data(rng, 200, 16).astype(np.float32)
    np.save(tmp_path / "acts.npy", X)
    random_sae(rng, 16, 24, scale=0.3).save(tmp_path / "sae")
    sae, acts = str(tmp_path / "sae"), str(tmp_path / "acts.npy")
    assert main(["compare", sae, acts, "--lam", "0.2", "--device", "cpu", "--batch-size", "64",
                 "--max-samples", "150", "--latents", str(tmp_path / "lat.csv")]) == 0
    assert (tmp_path / "lat.csv").read_text().count("\n") == 25
    assert main(["polish", sae, acts, "--lam", "0.2", "--out", str(tmp_path / "pol"),
                 "--rounds", "1", "--device", "cpu"]) == 0
    assert cd.SAE.load(str(tmp_path / "pol")).width == 24
    assert main(["polish", sae, acts, "--lam", "0.2", "--out", acts]) == 2
    assert "error" in capsys.readouterr().err


def test_streamed_sums_match_their_definitions(rng):
    """The sliced, fused pass against the formulas: the Gram from its upper blocks, the
    atom and encoder-gradient sums derived from Z^T R and gZ^T X less the pairs below the
    activity threshold, and the encoder block's starting gradient bit for bit."""
    from convexdict_solvers.blocks.torch_encoder import gradient_pass

    from convexdict.analysis.diagnostics import ACTIVE_RTOL
    from convexdict.analysis.streaming import encoder_start

    X = sparse_data(rng, 90, 6)
    sae = random_sae(rng, 6, 9, scale=0.5)
    W_enc, b_enc, W_dec = sae.W_enc.copy(), sae.b_enc.copy(), sae.W_dec.copy()
    W_enc[:, 0], b_enc[0], W_dec[1] = 0.0, 1e-12, 0.0  # codes below the threshold; no atom
    sae = cd.SAE(W_enc, b_enc, W_dec, sae.b_dec)
    mom = moments(X, 7, "cpu", torch.float64)
    p = sae_tensors(sae, "cpu", torch.float64)
    sums = sae_pass(X, p, LAM, mom=mom, rows=7, gram=True, **CPU)
    Z = sae.encode(X)
    R = X - Z @ sae.W_dec - sae.b_dec
    norms = np.linalg.norm(sae.W_dec, axis=1)
    active = Z * norms > ACTIVE_RTOL * mom.scale
    assert (Z[:, 0] > 0).all() and not active[:, 0].any()
    z = np.where(active, Z * norms, 0.0)
    g = np.where(active, LAM - R @ (sae.W_dec / np.where(norms > 0, norms, 1.0)[:, None]).T, 0.0)
    np.testing.assert_allclose(sums.ZtZ.numpy(), Z.T @ Z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums.atom.numpy(), z.T @ R, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sums.enc_grad.numpy(), np.c_[g.T @ X, g.sum(0)], rtol=1e-10,
                               atol=1e-10)
    assert sums.l0 == active.sum() and (sums.fires.numpy() == active.sum(0)).all()
    loss, gW, gb = gradient_pass(X, p, LAM, 7, "cpu", torch.float64)
    start = encoder_start(sums, len(X), torch.float64)
    assert start[0] == loss and torch.equal(start[1], gW) and torch.equal(start[2], gb)


def test_polish_after_compare_reuses_its_decoder_block(rng, monkeypatch):
    from convexdict.analysis import blocks

    X = sparse_data(rng, 200, 6)
    sae = random_sae(rng, 6, 10, scale=0.3)
    opts = {"device": "cpu", "batch_size": 64}
    alone = polish_at_scale(sae, X, LAM, rounds=1, **opts)
    blocks._LAST_DECODER.clear()
    calls = []
    solve = blocks.solve_decoder_block
    monkeypatch.setattr(blocks, "solve_decoder_block",
                        lambda *a, **k: calls.append(1) or solve(*a, **k))
    compare_streamed(sae, X, LAM, **opts)
    after = polish_at_scale(sae, X, LAM, rounds=1, **opts)
    assert len(calls) == 1
    assert [s.loss for s in after.steps] == [s.loss for s in alone.steps]
    assert np.array_equal(after.sae.W_enc, alone.sae.W_enc)
    assert np.array_equal(after.sae.W_dec, alone.sae.W_dec)
    polish_at_scale(sae, X + 1e-3, LAM, rounds=1, **opts)  # other data: solved again
    assert len(calls) == 2
