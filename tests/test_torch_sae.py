"""The PyTorch SAE module: canonical loss, round trips and the non-ReLU activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from convexdict_solvers.sgd.torch_sae import TorchSAE

from convexdict import SAE, sae_loss


def _random_sae(seed: int, d: int = 5, width: int = 7) -> SAE:
    rng = np.random.default_rng(seed)
    return SAE(rng.normal(size=(d, width)), rng.normal(size=width) - 0.3,
               rng.normal(size=(width, d)) * rng.uniform(0.2, 3.0, size=(width, 1)),
               rng.normal(size=d))


def _module(sae: SAE, **kwargs) -> TorchSAE:
    return TorchSAE.from_arrays(sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, torch.float64,
                                **kwargs)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lam", [0.0, 0.05, 1.3])
def test_loss_matches_canonical_sae_loss(seed: int, lam: float) -> None:
    sae = _random_sae(seed)
    X = np.random.default_rng(100 + seed).normal(size=(40, sae.d_in)) * 2
    x = torch.from_numpy(X)
    model = _module(sae)
    codes = model(x)[1]
    assert 0 < int((codes > 0).sum()) < codes.numel()  # both regimes of the ReLU occur
    expected = sae_loss(sae, X, lam)
    tol = 1e-10 * max(1.0, expected)
    assert abs(float(model.loss(x, lam).detach()) - expected) <= tol
    assert abs(float(model.train_loss(x, lam).loss.detach()) - expected) <= tol


def test_round_trip_is_lossless() -> None:
    sae = _random_sae(7)
    arrays = _module(sae).to_arrays()
    assert set(arrays) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    back = SAE(**arrays)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert arrays[name].dtype == np.float64
        np.testing.assert_array_equal(getattr(back, name), getattr(sae, name))


def test_from_arrays_rejects_wrong_shapes() -> None:
    sae = _random_sae(1)
    with pytest.raises(ValueError, match="'W_dec'"):
        TorchSAE.from_arrays(sae.W_enc, sae.b_enc, sae.W_dec.T, sae.b_dec)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"activation": "gelu"}, "activation"), ({"activation": "topk"}, "k"),
     ({"activation": "batchtopk", "k": 99}, "k"), ({"activation": "relu", "k": 2}, "k")],
)
def test_constructor_validates(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'"):
        TorchSAE(3, 4, **kwargs)


def test_initialize_unit_decoder_tied_encoder_centred_bias() -> None:
    model = TorchSAE(4, 6, dtype=torch.float64)
    mean = np.array([1.0, -2.0, 0.5, 3.0])
    model.initialize(mean, torch.Generator().manual_seed(0))
    w_dec = model.W_dec.detach()
    torch.testing.assert_close(w_dec.norm(dim=1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(model.W_enc.detach(), w_dec.T)
    x = torch.from_numpy(mean)[None, :]
    torch.testing.assert_close(model.pre_activation(x).detach(), torch.zeros(1, 6,
                               dtype=torch.float64), atol=1e-12, rtol=0)


def test_topk_keeps_at_most_k_per_sample_and_has_no_penalty() -> None:
    sae = _random_sae(3, d=6, width=10)
    model = _module(sae, activation="topk", k=3)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(30, 6)))
    recon, codes = model(x)
    assert int((codes > 0).sum(dim=1).max()) <= 3
    pre = model.pre_activation(x)
    kth = pre.topk(3, dim=1).values[:, -1:]
    torch.testing.assert_close(codes, torch.where(pre >= kth, torch.relu(pre), 0.0))
    expected = 0.5 * ((x - recon) ** 2).sum(dim=1).mean()
    torch.testing.assert_close(model.train_loss(x, lam=5.0).loss, expected)


def test_batchtopk_train_and_inference() -> None:
    d, width, k, batch = 4, 12, 2, 16
    rng = np.random.default_rng(0)
    model = TorchSAE.from_arrays(rng.normal(size=(d, width)), np.full(width, 5.0),
                                 rng.normal(size=(width, d)), np.zeros(d), torch.float64,
                                 activation="batchtopk", k=k)
    x = torch.from_numpy(rng.normal(size=(batch, d)))
    model.train()
    codes = model(x)[1].detach()  # all pre-activations are positive: exactly k * batch survive
    assert int((codes > 0).sum()) == k * batch
    assert int((codes > 0).sum(dim=1).max()) > k  # uneven across samples, by design
    theta = float(model.batch_threshold)
    kept = codes[codes > 0]
    assert float(kept.min()) == pytest.approx(theta)
    model.eval()
    pre = model.pre_activation(x)
    torch.testing.assert_close(model(x)[1], torch.where(pre > theta, pre, 0.0))
    assert float(model.to_arrays()["threshold"]) == theta


def test_jumprelu_gate_and_straight_through_gradient() -> None:
    rng = np.random.default_rng(2)
    d, width, eps, lam = 3, 5, 0.5, 0.7
    model = TorchSAE.from_arrays(rng.normal(size=(d, width)), np.zeros(width),
                                 rng.normal(size=(width, d)), np.zeros(d), torch.float64,
                                 activation="jumprelu", threshold=0.4, bandwidth=eps)
    x = torch.from_numpy(rng.normal(size=(50, d)))
    pre = model.pre_activation(x).detach()
    theta = model.thresholds().detach()
    out = model.train_loss(x, lam)
    torch.testing.assert_close(out.codes, torch.where(pre > theta, pre, 0.0))
    l0 = (pre > theta).to(torch.float64).sum(dim=1).mean()
    recon = 0.5 * ((x - out.recon) ** 2).sum(dim=1).mean()
    torch.testing.assert_close(out.loss, recon + lam * l0)
    # The L0 term alone: d/dtheta = -(1/eps) * #(|pre - theta| < eps/2) / B, then * theta
    # for the log parameterisation.
    model.zero_grad()
    (model.train_loss(x, lam).loss - model.train_loss(x, 0.0).loss).backward()
    window = ((pre - theta).abs() < eps / 2).to(torch.float64).sum(dim=0) / x.shape[0]
    torch.testing.assert_close(model.log_threshold.grad, -lam / eps * window * theta)
    assert model.to_arrays()["threshold"].shape == (width,)
