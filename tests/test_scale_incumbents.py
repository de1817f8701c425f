"""compare(..., streamed=True, incumbents=True): explicit width-K SAEs at any size."""

import numpy as np
import pytest

import convexdict as cd
from convexdict.analysis._compare import compare
from convexdict.analysis.blocks import polish_at_scale
from convexdict.analysis.comparison import VERDICTS

LAM = 0.1
FAST = {"device": "cpu", "incumbent_restarts": 2, "incumbent_steps": 150}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    F = rng.normal(size=(8, 6))
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    codes = rng.exponential(size=(400, 8)) * (rng.random((400, 8)) < 0.3)
    X = codes @ F + 0.01 * rng.normal(size=(400, 6))
    # Deliberately bad: one live latent, three dead ones (no block can revive them).
    W_enc, b_enc = np.zeros((6, 4)), -np.ones(4)
    W_enc[:, 0], b_enc[0] = F[0], 0.0
    bad = cd.SAE(W_enc, b_enc, rng.normal(size=(4, 6)), X.mean(axis=0))
    return X, bad


def test_incumbents_beat_a_bad_sae_with_a_recomputed_loss(data):
    X, bad = data
    c = compare(bad, X, LAM, streamed=True, incumbents=True, **FAST)
    assert c.better_sae is not None and c.better_sae.width <= bad.width
    assert c.better_loss == pytest.approx(cd.sae_loss(c.better_sae, X, LAM), rel=1e-10)
    inc = c.incumbents
    assert inc["polished_loss"] <= c.loss and len(inc["restart_losses"]) == 2
    assert c.better_loss == inc["best_loss"] == min(inc["restart_losses"])
    assert c.better_loss < inc["polished_loss"] * (1 - c.tol)
    assert c.optimum_loss == c.better_loss and c.lower_bound <= c.better_loss
    # the blocks still lower this SAE's loss: not converged, better SAE reported anyway
    assert c.verdict == "not_converged"
    assert "better explicit SAE" in c.summary() and c.to_dict()["incumbents"]["seconds"] >= 0


def test_a_beaten_partial_minimum_is_spurious(data):
    X, bad = data
    stuck = polish_at_scale(bad, X, LAM, rounds=30, tol=1e-9, device="cpu").sae
    c = compare(stuck, X, LAM, streamed=True, incumbents=True, **FAST)
    assert c.verdict == "spurious_partial_minimum" and c.verdict in VERDICTS
    assert c.better_loss == pytest.approx(cd.sae_loss(c.better_sae, X, LAM), rel=1e-10)
    assert c.better_loss < c.loss * (1 - c.tol)
    without = compare(stuck, X, LAM, streamed=True, device="cpu")
    assert without.verdict != "spurious_partial_minimum" and without.better_sae is None


def test_default_streamed_compare_runs_no_incumbents(data, monkeypatch):
    import convexdict.analysis.scale_compare as sc

    X, bad = data
    monkeypatch.setattr(sc, "search_incumbents", lambda *a, **k: pytest.fail("searched"))
    c = compare(bad, X, LAM, streamed=True, device="cpu")
    assert c.incumbents is None and c.better_sae is None
    assert np.isnan(c.better_loss) and np.isnan(c.optimum_loss)


def test_the_time_budget_stops_the_search(data):
    X, bad = data
    c = compare(bad, X, LAM, streamed=True, device="cpu", incumbents=True,
                incumbent_time=1e-3, incumbent_restarts=5, incumbent_steps=10_000)
    assert c.incumbents["out_of_time"] and c.incumbents["seconds"] < 30
    assert len(c.incumbents["restart_losses"]) <= 1
    if c.better_sae is not None:
        assert c.better_loss == pytest.approx(cd.sae_loss(c.better_sae, X, LAM), rel=1e-10)
    for bad_value in ({"incumbent_time": -1.0}, {"incumbent_steps": 0},
                      {"incumbents": "yes"}):
        with pytest.raises(ValueError):
            compare(bad, X, LAM, streamed=True, device="cpu", **{"incumbents": True,
                                                                 **bad_value})


def test_cli_incumbents_flag(data, tmp_path, capsys):
    from convexdict.cli import main

    X, bad = data
    np.save(tmp_path / "acts.npy", X)
    bad.save(tmp_path / "sae")
    sae, acts = str(tmp_path / "sae"), str(tmp_path / "acts.npy")
    assert main(["compare", sae, acts, "--lam", "0.1", "--streamed", "--device", "cpu",
                 "--incumbents", "--incumbent-restarts", "1", "--incumbent-steps", "100",
                 "--json", str(tmp_path / "c.json")]) == 0
    import json

    out = json.loads((tmp_path / "c.json").read_text())["comparison"]
    assert out["incumbents"]["restart_losses"] and out["better_sae"] is not None
    capsys.readouterr()
    for flags in (["--incumbent-time", "0"], ["--incumbent-steps", "0"],
                  ["--incumbent-restarts", "-1"]):
        assert main(["compare", sae, acts, "--lam", "0.1", "--streamed", "--incumbents",
                     *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err


def test_trainer_time_limit_stops_early(data):
    from convexdict_solvers.sgd.trainer import TrainConfig, train

    X, _ = data
    config = TrainConfig(lam=LAM, width=4, steps=1_000_000, batch_size=64, device="cpu",
                         quiet=True)
    out = train(X, config, time_limit=0.2)
    assert 1 <= out["step"] < 1_000_000 and out["W_dec"].shape == (4, 6)
