"""Feature anchoring (paper B): anchor construction, the penalty term, its effect on
training for every activation and for crosscoders, and lam_anchor = 0 as a no-op."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from convexdict_solvers.anchoring import Anchors, check_anchors
from convexdict_solvers.sgd.objective import Objective
from convexdict_solvers.sgd.torch_sae import TorchSAE
from convexdict_solvers.sgd.trainer import TrainConfig, train

from convexdict import linear_representation_bench
from convexdict.training.train import (
    anchors_from_class_means,
    anchors_from_features,
    train_crosscoder,
    train_sae,
    train_transcoder,
)

WEIGHTS = ("W_enc", "b_enc", "W_dec", "b_dec")
ACTIVATIONS = [("relu", None), ("topk", 2), ("batchtopk", 2)]


@pytest.fixture(scope="module")
def bench() -> tuple[np.ndarray, np.ndarray]:
    b = linear_representation_bench(n_features=8, d=4, n_samples=300, seed=0)
    return b.X, b.features


# ---------------------------------------------------------------------------- construction
def test_anchors_from_features_are_unit_directions() -> None:
    F = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, -2.0]])
    a = anchors_from_features(F)
    assert isinstance(a, Anchors) and a.k == 2
    np.testing.assert_allclose(a.A_dec, F / np.linalg.norm(F, axis=1, keepdims=True))
    np.testing.assert_array_equal(a.A_enc, a.A_dec.T)
    with pytest.raises(ValueError, match="'features'.*zero rows at \\[1\\]"):
        anchors_from_features(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_anchors_from_class_means_match_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 4))
    labels = np.repeat(["b", "a", "c"], 30)
    a = anchors_from_class_means(X, labels)
    for row, c in zip(a.A_dec, ["a", "b", "c"], strict=True):  # np.unique order
        direction = X[labels == c].mean(axis=0) - X.mean(axis=0)
        np.testing.assert_allclose(row, direction / np.linalg.norm(direction))
    np.testing.assert_array_equal(a.A_enc, a.A_dec.T)
    picked = anchors_from_class_means(X, labels, classes=["c", "a"])
    np.testing.assert_array_equal(picked.A_dec, a.A_dec[[2, 0]])
    with pytest.raises(ValueError, match="'labels'"):
        anchors_from_class_means(X, labels[:-1])
    with pytest.raises(ValueError, match="'classes'.*'z'"):
        anchors_from_class_means(X, labels, classes=["z"])


@pytest.mark.parametrize(
    ("anchors", "name"),
    [
        (np.zeros((3, 2)), "anchors"),
        ((None, None), "anchors"),
        ((np.zeros((5, 2)), None), r"anchors\[0\]"),
        ((None, np.zeros((2, 5))), r"anchors\[1\]"),
        ((None, np.zeros((7, 4))), r"anchors\[1\]"),  # more anchors than latents
        ((np.zeros((4, 2)), np.zeros((3, 4))), "anchors"),  # k differs
        ((None, np.full((2, 4), np.nan)), r"anchors\[1\]"),
    ],
)
def test_check_anchors_names_the_problem(anchors: object, name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'"):
        check_anchors(anchors, d_in=4, d_out=4, width=6)


def test_per_layer_decoder_anchors_are_concatenated() -> None:
    a = check_anchors((None, [np.ones((2, 3)), np.zeros((2, 1))]), d_in=4, d_out=4, width=6)
    assert a.A_enc is None and a.A_dec.shape == (2, 4) and a.k == 2


# ---------------------------------------------------------------------------- the term
def test_anchor_term_is_the_stated_formula() -> None:
    rng = np.random.default_rng(1)
    d, width, k = 4, 6, 2
    arrays = {"W_enc": rng.normal(size=(d, width)), "b_enc": rng.normal(size=width),
              "W_dec": rng.normal(size=(width, d)), "b_dec": rng.normal(size=d)}
    model = TorchSAE.from_arrays(*arrays.values(), torch.float64)
    a_enc, a_dec = rng.normal(size=(d, k)), rng.normal(size=(k, d))
    x = torch.from_numpy(rng.normal(size=(10, d)))
    obj = Objective(model, torch.from_numpy(a_enc), torch.from_numpy(a_dec), lam_anchor=0.3)
    out = obj(x, 0.1)
    expected = 0.3 * (((arrays["W_enc"][:, :k] - a_enc) ** 2).sum()
                      + ((arrays["W_dec"][:k] - a_dec) ** 2).sum())
    assert float(out.anchor.detach()) == pytest.approx(expected, rel=1e-14)
    assert float(out.loss.detach()) == float(model.train_loss(x, 0.1).loss.detach())  # apart
    only_dec = Objective(model, None, torch.from_numpy(a_dec), lam_anchor=0.3)(x, 0.1)
    assert float(only_dec.anchor.detach()) == pytest.approx(
        0.3 * ((arrays["W_dec"][:k] - a_dec) ** 2).sum(), rel=1e-14)
    assert Objective(model, None, torch.from_numpy(a_dec), 0.0)(x, 0.1).anchor is None


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize(("activation", "k"), ACTIVATIONS)
def test_strong_anchoring_pins_the_first_latents(bench: tuple, activation: str,
                                                 k: int | None) -> None:
    X, F = bench
    anchors = anchors_from_features(F[:3])
    kw = {"steps": 120, "lr": 3e-2, "batch_size": 64, "decay": "constant", "device": "cpu",
          "dtype": "float64", "activation": activation, "k": k}
    free = train_sae(X, 0.05, 8, **kw)
    pinned = train_sae(X, 0.05, 8, anchors=anchors, lam_anchor=10.0, return_history=True, **kw)
    assert pinned.anchored == 3
    np.testing.assert_allclose(pinned.sae.W_dec[:3], anchors.A_dec, atol=0.03)
    np.testing.assert_allclose(pinned.sae.W_enc[:, :3], anchors.A_enc, atol=0.03)
    assert np.abs(free.W_dec[:3] - anchors.A_dec).max() > 0.3  # not where it starts anyway
    penalty = pinned.history["anchor_penalty"]
    assert penalty[-1] < 0.01 * penalty[0]


def test_strong_anchoring_pins_crosscoder_latents(bench: tuple) -> None:
    X, F = bench
    rot = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))[0]
    layers = [X, X @ rot]
    anchors = anchors_from_features(np.hstack([F[:3], F[:3] @ rot]))
    out = train_crosscoder(np.hstack(layers), layers, 0.05, 8, anchors=anchors,
                           lam_anchor=10.0, steps=120, lr=3e-2, batch_size=64,
                           decay="constant", device="cpu", dtype="float64")
    np.testing.assert_allclose(np.hstack(out.W_decs)[:3], anchors.A_dec, atol=0.03)
    np.testing.assert_allclose(out.W_enc[:, :3], anchors.A_enc, atol=0.03)


@pytest.mark.parametrize(("activation", "k"), [*ACTIVATIONS, ("jumprelu", None)])
def test_zero_lam_anchor_is_bit_for_bit_unanchored(bench: tuple, activation: str,
                                                   k: int | None) -> None:
    X, F = bench
    kw = {"steps": 25, "batch_size": 48, "lr": 1e-2, "seed": 1, "device": "cpu",
          "activation": activation, "k": k, "resample_dead_every": 10, "dead_window": 2}
    plain = train_sae(X, 0.05, 8, **kw)
    zero = train_sae(X, 0.05, 8, anchors=anchors_from_features(F[:3]), lam_anchor=0.0, **kw)
    for name in WEIGHTS:
        np.testing.assert_array_equal(getattr(zero, name), getattr(plain, name), err_msg=name)


def test_transcoder_anchoring_and_missing_anchors(bench: tuple) -> None:
    X, F = bench
    Y = X[:, :3]
    a_dec = np.eye(3)[:2]
    out = train_transcoder(X, Y, 0.05, 6, anchors=(None, a_dec), lam_anchor=10.0, steps=120,
                           lr=3e-2, batch_size=64, decay="constant", device="cpu")
    np.testing.assert_allclose(out.W_dec[:2], a_dec, atol=0.03)
    with pytest.raises(ValueError, match="'lam_anchor'.*anchors"):
        train_sae(X, 0.05, 6, lam_anchor=1.0, steps=2, device="cpu")
    with pytest.raises(ValueError, match="'lam_anchor'"):
        train_sae(X, 0.05, 6, lam_anchor=-1.0, steps=2, device="cpu")
    with pytest.raises(ValueError, match=r"'anchors\[1\]'"):
        train_transcoder(X, Y, 0.05, 6, anchors=(None, F[:2]), lam_anchor=1.0, steps=2,
                         device="cpu")
    with pytest.raises(ValueError, match="'lam_anchor'"):
        train(X, TrainConfig(lam=0.1, width=4, steps=1, quiet=True, lam_anchor=1.0))


def test_resume_refuses_different_anchors(bench: tuple, tmp_path: Path) -> None:
    X, F = bench
    config = TrainConfig(lam=0.05, width=6, steps=10, quiet=True, lam_anchor=1.0,
                         checkpoint_dir=str(tmp_path))
    train(X, config, anchors=anchors_from_features(F[:2]))
    with pytest.raises(ValueError, match="anchors"):
        train(X, config, anchors=anchors_from_features(F[2:4]), resume=True)
    again = train(X, config, anchors=anchors_from_features(F[:2]), resume=True)
    assert again["step"] == 10
