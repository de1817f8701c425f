"""Transcoders and crosscoders in the SGD trainer: canonical losses, the SAE special case,
soundness against the certified lower bound, determinism, resume and validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from convexdict_solvers.sgd.torch_sae import TorchSAE
from convexdict_solvers.sgd.trainer import TrainConfig, train

from convexdict import (
    Crosscoder,
    Transcoder,
    certify,
    crosscoder_loss,
    load_toy,
    transcoder_loss,
)
from convexdict.training.train import TrainResult, train_crosscoder, train_sae, train_transcoder

WEIGHTS = ("W_enc", "b_enc", "W_dec", "b_dec")
CPU64 = {"device": "cpu", "dtype": "float64"}


def _pair(n: int = 160, d_in: int = 4, d_out: int = 3, seed: int = 0) -> tuple:
    """Sparse inputs and a fixed nonlinear function of them as the target."""
    rng = np.random.default_rng(seed)
    codes = rng.exponential(size=(n, 5)) * (rng.random((n, 5)) < 0.4)
    X = codes @ rng.normal(size=(5, d_in)) + 0.05 * rng.normal(size=(n, d_in))
    Y = np.maximum(X @ rng.normal(size=(d_in, d_out)), 0.0) + 0.5
    return X, Y


def _assert_same(a: object, b: object, names: tuple[str, ...] = WEIGHTS) -> None:
    for name in names:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# ---------------------------------------------------------------------------- the losses
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("lam", [0.0, 0.07, 1.1])
def test_torch_transcoder_loss_equals_canonical(seed: int, lam: float) -> None:
    rng = np.random.default_rng(seed)
    d_in, d_out, width = 4, 6, 7
    tc = Transcoder(rng.normal(size=(d_in, width)), rng.normal(size=width) - 0.3,
                    rng.normal(size=(width, d_out)) * rng.uniform(0.2, 3, (width, 1)),
                    rng.normal(size=d_out))
    X, Y = rng.normal(size=(40, d_in)) * 2, rng.normal(size=(40, d_out))
    model = TorchSAE.from_arrays(tc.W_enc, tc.b_enc, tc.W_dec, tc.b_dec, torch.float64,
                                 out_dims=(d_out,))
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    codes = model(x)[1]
    assert 0 < int((codes > 0).sum()) < codes.numel()  # both regimes of the ReLU occur
    expected = transcoder_loss(tc, X, Y, lam)
    tol = 1e-10 * max(1.0, expected)
    assert abs(float(model.loss(x, lam, y).detach()) - expected) <= tol
    assert abs(float(model.train_loss(x, lam, y).loss.detach()) - expected) <= tol


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("lam", [0.0, 0.07, 1.1])
def test_torch_crosscoder_loss_equals_canonical(seed: int, lam: float) -> None:
    rng = np.random.default_rng(seed)
    dims, d_in, width = (3, 5, 2), 6, 7
    cc = Crosscoder(rng.normal(size=(d_in, width)), rng.normal(size=width) - 0.3,
                    tuple(rng.normal(size=(width, d)) * rng.uniform(0.2, 3, (width, 1))
                          for d in dims),
                    tuple(rng.normal(size=d) for d in dims))
    X = rng.normal(size=(40, d_in)) * 2
    layers = [rng.normal(size=(40, d)) for d in dims]
    model = TorchSAE.from_arrays(cc.W_enc, cc.b_enc, np.hstack(cc.W_decs),
                                 np.concatenate(cc.b_decs), torch.float64, out_dims=dims)
    expected_norms = sum(np.linalg.norm(W, axis=1) for W in cc.W_decs)
    np.testing.assert_allclose(model.decoder_norms().detach().numpy(), expected_norms,
                               rtol=1e-14)
    x, y = torch.from_numpy(X), torch.from_numpy(np.hstack(layers))
    expected = crosscoder_loss(cc, X, layers, lam)
    tol = 1e-10 * max(1.0, expected)
    assert abs(float(model.loss(x, lam, y).detach()) - expected) <= tol
    assert abs(float(model.train_loss(x, lam, y).loss.detach()) - expected) <= tol


# ---------------------------------------------------------------------------- SAE special case
@pytest.mark.parametrize(("activation", "k"), [("relu", None), ("batchtopk", 2)])
def test_transcoder_with_y_equal_x_trains_like_the_sae(activation: str, k: int | None) -> None:
    X, _ = _pair()
    kw = {"steps": 40, "batch_size": 32, "lr": 3e-3, "seed": 2, "activation": activation,
          "k": k, "warmup_steps": 3, "l1_warmup_steps": 5, **CPU64}
    sae = train_sae(X, 0.05, 6, **kw)
    tc = train_transcoder(X, X.copy(), 0.05, 6, **kw)
    cc = train_crosscoder(X, [X.copy()], 0.05, 6, **kw)
    assert isinstance(tc, Transcoder) and isinstance(cc, Crosscoder)
    _assert_same(tc, sae)
    _assert_same(cc, sae, ("W_enc", "b_enc"))
    np.testing.assert_array_equal(cc.W_decs[0], sae.W_dec)
    np.testing.assert_array_equal(cc.b_decs[0], sae.b_dec)


def test_untied_initialisation_when_shapes_differ() -> None:
    X, Y = _pair(d_in=4, d_out=3)
    config = TrainConfig(lam=0.1, width=5, steps=0, quiet=True, dtype="float64")
    out = train(X, config, targets=[Y])
    np.testing.assert_allclose(np.linalg.norm(out["W_dec"], axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(out["W_enc"], axis=0), 1.0)
    np.testing.assert_allclose(out["b_dec"], Y.mean(axis=0))
    np.testing.assert_allclose(out["b_enc"], -X.mean(axis=0) @ out["W_enc"])
    assert out["W_enc"].shape == (4, 5) and out["W_dec"].shape == (5, 3)


# ---------------------------------------------------------------------------- soundness
@pytest.fixture(scope="module")
def small_2d() -> tuple:
    """Twelve 2-D points, a 3-D nonlinear target, and certificates for both models."""
    X = load_toy("superposition_2d", n=12, seed=0).X
    Y = np.maximum(X @ np.random.default_rng(0).normal(size=(2, 3)), 0.0)
    lam = 0.05
    tc_cert = certify(X, lam, target=Y)
    cc_cert = certify(X, lam, targets=[X, Y])
    assert tc_cert.certified and cc_cert.certified
    return X, Y, lam, tc_cert, cc_cert


@pytest.mark.parametrize(("width", "seed"), [(2, 0), (4, 1), (8, 2)])
def test_trained_models_never_beat_the_certified_lower_bound(small_2d: tuple, width: int,
                                                             seed: int) -> None:
    X, Y, lam, tc_cert, cc_cert = small_2d
    kw = {"steps": 300, "lr": 1e-2, "seed": seed, "batch_size": 64, **CPU64}
    tc = train_transcoder(X, Y, lam, width, **kw)
    cc = train_crosscoder(X, [X, Y], lam, width, **kw)
    slack = 1e-9
    assert transcoder_loss(tc, X, Y, lam) >= tc_cert.lower_bound - slack
    assert crosscoder_loss(cc, X, [X, Y], lam) >= cc_cert.lower_bound - slack


def test_training_from_the_certified_optimum_stays_above_the_bound(small_2d: tuple) -> None:
    """The sharpest check: start Adam at the optimum itself, where any unsound bound or
    mismatched loss would show as a trained loss below ``lower_bound``."""
    X, Y, lam, tc_cert, cc_cert = small_2d
    config = TrainConfig(lam=lam, width=tc_cert.width_needed, steps=100, lr=1e-3,
                         batch_size=64, quiet=True, dtype="float64", decay="constant",
                         log_every=1)
    opt = tc_cert.sae
    out = train(X, config, init={name: getattr(opt, name) for name in WEIGHTS}, targets=[Y])
    trained = Transcoder(*(out[name] for name in WEIGHTS))
    assert transcoder_loss(opt, X, Y, lam) == pytest.approx(tc_cert.upper_bound, rel=1e-12)
    assert transcoder_loss(trained, X, Y, lam) >= tc_cert.lower_bound - 1e-9
    # the first record is the full-batch loss at the starting point, before any step
    assert out["history"]["loss"][0] == pytest.approx(tc_cert.upper_bound, rel=1e-12)

    cc = cc_cert.sae
    config = TrainConfig(lam=lam, width=cc.width, steps=100, lr=1e-3, batch_size=64,
                         quiet=True, dtype="float64", decay="constant")
    init = {"W_enc": cc.W_enc, "b_enc": cc.b_enc, "W_dec": np.hstack(cc.W_decs),
            "b_dec": np.concatenate(cc.b_decs)}
    out = train(X, config, init=init, targets=[X, Y])
    trained = Crosscoder(out["W_enc"], out["b_enc"], (out["W_dec"][:, :2], out["W_dec"][:, 2:]),
                         (out["b_dec"][:2], out["b_dec"][2:]))
    assert crosscoder_loss(trained, X, [X, Y], lam) >= cc_cert.lower_bound - 1e-9


# ---------------------------------------------------------------------------- training
def test_training_decreases_the_canonical_losses_and_evaluate_agrees() -> None:
    X, Y = _pair()
    lam = 0.05
    kw = {"steps": 200, "batch_size": 64, "lr": 5e-3, "return_history": True, **CPU64}
    result = train_transcoder(X, Y, lam, 8, **kw)
    assert isinstance(result, TrainResult) and result.kind == "transcoder"
    assert result.model is result.sae and result.certifiable
    first, last = result.history["loss"][0], result.history["loss"][-1]
    assert last < 0.7 * first
    metrics = result.evaluate(X, lam, target=Y)
    assert metrics["loss"] == pytest.approx(transcoder_loss(result.sae, X, Y, lam), rel=1e-12)
    assert 0.3 < metrics["explained_variance"] <= 1.0

    layers = [X, Y]
    result = train_crosscoder(np.hstack(layers), layers, lam, 8, **kw)
    assert result.kind == "crosscoder" and len(result.sae.W_decs) == 2
    assert result.history["loss"][-1] < 0.7 * result.history["loss"][0]
    metrics = result.evaluate(np.hstack(layers), lam, targets=layers)
    assert metrics["loss"] == pytest.approx(
        crosscoder_loss(result.sae, np.hstack(layers), layers, lam), rel=1e-12)
    np.testing.assert_array_equal(result.history["anchor_penalty"], 0.0)


@pytest.mark.parametrize("kind", ["transcoder", "crosscoder"])
def test_same_seed_same_weights_different_seed_different(kind: str) -> None:
    X, Y = _pair()

    def fit(seed: int) -> np.ndarray:
        kw = {"steps": 30, "batch_size": 32, "seed": seed, "device": "cpu",
              "resample_dead_every": 10, "dead_window": 3}
        if kind == "transcoder":
            model = train_transcoder(X, Y, 0.1, 6, **kw)
            return np.concatenate([model.W_enc.ravel(), model.W_dec.ravel(), model.b_enc])
        model = train_crosscoder(np.hstack([X, Y]), [X, Y], 0.1, 6, **kw)
        return np.concatenate([model.W_enc.ravel(), *(W.ravel() for W in model.W_decs)])

    a, b, c = fit(3), fit(3), fit(4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


class _Crash(Exception):
    pass


def test_crosscoder_kill_and_resume_is_bit_identical(tmp_path: Path) -> None:
    X, Y = _pair(n=120)
    config = TrainConfig(lam=0.05, width=6, steps=30, batch_size=40, lr=3e-3, quiet=True,
                         resample_dead_every=10, dead_window=3, checkpoint_every=10,
                         checkpoint_dir=str(tmp_path))
    reference = train(X, TrainConfig(**{**config.__dict__, "checkpoint_dir": None}),
                      targets=[X, Y])

    def crash(step: int, record: dict) -> None:
        if step >= 15:
            raise _Crash

    with pytest.raises(_Crash):
        train(X, config, targets=[X, Y], callback=crash)
    with pytest.raises(ValueError, match="target_dims"):
        train(X, config, targets=[Y], resume=True)  # a different model: refused
    resumed = train(X, config, targets=[X, Y], resume=True)
    for name in WEIGHTS:
        np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)


# ---------------------------------------------------------------------------- validation
_X, _Y = _pair(n=20)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: train_transcoder(_X, _Y[:-1], 0.1, 4), "Y"),
        (lambda: train_transcoder(_X, np.where(_Y > 1, np.nan, _Y), 0.1, 4), "Y"),
        (lambda: train_transcoder(_X[0], _Y, 0.1, 4), "X_in"),
        (lambda: train_transcoder(_X, _Y, -0.1, 4), "lam"),
        (lambda: train_crosscoder(_X, _Y, 0.1, 4), "targets"),
        (lambda: train_crosscoder(_X, [], 0.1, 4), "targets"),
        (lambda: train_crosscoder(_X, [_X, _Y[:5]], 0.1, 4), r"targets\[1\]"),
        (lambda: train(_X, TrainConfig(lam=0.1, width=3, steps=1, quiet=True), targets=_Y),
         "targets"),
        (lambda: train(_X, TrainConfig(lam=0.1, width=3, steps=1, quiet=True),
                       targets=[_Y[:4]]), r"targets\[0\]"),
    ],
)
def test_bad_family_arguments_name_the_argument(call, name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'"):
        call()


def test_unknown_keyword_names_the_function() -> None:
    with pytest.raises(TypeError, match="train_transcoder.*l2"):
        train_transcoder(_X, _Y, 0.1, 4, steps=2, device="cpu", l2=1.0)


def test_evaluate_asks_for_the_right_targets() -> None:
    result = train_transcoder(_X, _Y, 0.1, 4, steps=2, device="cpu", return_history=True)
    with pytest.raises(ValueError, match="'target'"):
        result.evaluate(_X, 0.1)
    with pytest.raises(ValueError, match="'target'"):
        result.evaluate(_X, 0.1, target=_Y[:3])
    cc = train_crosscoder(_X, [_X, _Y], 0.1, 4, steps=2, device="cpu", return_history=True)
    with pytest.raises(ValueError, match="'targets'"):
        cc.evaluate(_X, 0.1, targets=[_X])
