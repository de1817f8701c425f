"""census(): where SGD lands, grouping of equal minima, bounds, reports and the CLI."""

import json

import numpy as np
import pytest

import convexdict as cd
import convexdict.cli as cli
from convexdict.analysis._census import Census, activation_signature, census, group_minima
from convexdict.analysis.comparison import VERDICTS

LAM = 0.2
WIDTH = 3  # = K* on the data below
STARTS = 4
FAST = dict(steps=300, lr=1e-2, device="cpu")


def three_points() -> np.ndarray:
    """Three distinct points repeated 8 times (N = 24, d = 2): K* = 3 at lam 0.2."""
    return np.repeat(np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]), 8, axis=0)


@pytest.fixture(scope="module")
def setting():
    X = three_points()
    cert = cd.certify(X, LAM)
    result = census(X, LAM, WIDTH, n_starts=STARTS, certificate=cert, **FAST)
    return X, cert, result


def test_counts_fractions_and_bounds(setting):
    X, cert, result = setting
    assert isinstance(result, Census)
    assert cert.width_needed == WIDTH == result.width_needed
    assert sum(g.count for g in result.groups) == STARTS == len(result.starts)
    assert sum(g.fraction for g in result.groups) == pytest.approx(1.0)
    losses = [g.loss for g in result.groups]
    assert losses == sorted(losses)
    for g in result.groups:
        assert g.loss >= cert.lower_bound - 1e-9  # P* bounds every SAE at every width
        assert g.gap == pytest.approx(g.loss - cert.lower_bound, abs=1e-15)
        assert g.verdict in VERDICTS and sum(g.verdict_counts.values()) == g.count
        assert g.sae.width == WIDTH and g.loss == pytest.approx(cd.sae_loss(g.sae, X, LAM))
        assert g.n_dead == len(cd.dead_latents(g.sae, X))
        assert 0.0 <= g.loss_spread <= 1e-6 * max(1.0, g.loss)
    assert sorted(s.seed for s in result.starts) == list(range(STARTS))
    for s in result.starts:
        assert s.loss <= s.sgd_loss + 1e-12  # polishing never raises the loss
        assert s.seed in result.groups[s.group].seeds
    assert result.best_loss == result.groups[0].loss
    assert result.bound_gap == pytest.approx(result.best_loss - result.lower_bound)


def test_verdicts_consistent_and_width_certified(setting):
    _, cert, result = setting
    tol = result.tol
    for g in result.groups:
        if g.verdict == "certified_global":
            assert g.gap <= tol * max(1.0, abs(g.loss))
        else:
            assert g.gap > tol * max(1.0, abs(g.loss))
    # at width K* with a few hundred steps some start reaches the certified optimum
    assert result.width_certified
    assert result.groups[0].verdict == "certified_global"
    assert result.best_loss <= cert.lower_bound + tol * max(1.0, result.best_loss)
    assert "certified" in result.message


def test_identical_and_permuted_saes_share_a_group(setting):
    X, _, result = setting
    sae = result.groups[0].sae
    perm = np.array([2, 0, 1])
    permuted = cd.SAE(sae.W_enc[:, perm], sae.b_enc[perm], sae.W_dec[perm], sae.b_dec)
    assert group_minima([sae, sae], X, LAM) == [[0, 1]]
    assert group_minima([sae, permuted], X, LAM) == [[0, 1]]
    assert activation_signature(sae, X) == activation_signature(permuted, X)
    if len(result.groups) > 1:
        other = result.groups[1].sae
        assert sorted(group_minima([other, sae, sae], X, LAM)) == [[0], [1, 2]]


def test_same_sae_every_start_is_one_group(setting, monkeypatch):
    import sys

    census_module = sys.modules["convexdict.analysis._census"]  # the attribute is the function

    X, cert, result = setting
    fixed = result.groups[0].sae
    monkeypatch.setattr(census_module, "train_sae", lambda *a, **k: fixed)
    again = census(X, LAM, WIDTH, n_starts=3, seed=5, certificate=cert, **FAST)
    assert len(again.groups) == 1
    assert again.groups[0].count == 3 and again.groups[0].seeds == [5, 6, 7]


def test_reports_are_json_ready(setting):
    _, _, result = setting
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["n_starts"] == STARTS and payload["width_certified"] is True
    assert sum(g["count"] for g in payload["groups"]) == STARTS
    assert set(payload["verdict_fractions"]) == set(VERDICTS)
    text = result.summary()
    assert "certified_global" in text and "lower bound" in text


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"width": 0}, "width"),
        ({"lam": -1.0}, "lam"),
        ({"n_starts": 0}, "n_starts"),
        ({"steps": 0}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"seed": -1}, "seed"),
        ({"tol": float("nan")}, "tol"),
        ({"group_rtol": 0.0}, "group_rtol"),
        ({"activation": "topk"}, "activation"),
        ({"quiet": False}, "quiet"),
        ({"certificate": "cert"}, "certificate"),
        ({"lam": 0.3}, "certificate"),  # the fixture's certificate is for lam 0.2
    ],
)
def test_bad_arguments_name_the_argument(setting, kwargs, name):
    X, cert, _ = setting
    args = {"lam": LAM, "width": WIDTH, "certificate": cert, "n_starts": 1, **FAST, **kwargs}
    lam, width = args.pop("lam"), args.pop("width")
    with pytest.raises(ValueError, match=f"'{name}'"):
        census(X, lam, width, **args)


@pytest.fixture
def with_census_command(monkeypatch):
    if "census" not in cli.COMMANDS:  # until the lead registers the sub-command
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "census"))


def test_cli_writes_json(with_census_command, tmp_path, capsys):
    np.save(tmp_path / "X.npy", three_points())
    out = tmp_path / "deep" / "census.json"
    code = cli.main(["census", str(tmp_path / "X.npy"), "--lam", str(LAM), "--width", "3",
                     "--starts", "2", "--steps", "100", "--lr", "0.01", "--device", "cpu",
                     "--json", str(out)])
    assert code == 0
    payload = json.loads(out.read_text())
    assert payload["census"]["n_starts"] == 2
    assert sum(g["count"] for g in payload["census"]["groups"]) == 2
    assert payload["certificate"]["lower_bound"] == payload["census"]["lower_bound"]
    assert not list(out.parent.glob("*.tmp"))
    printed = capsys.readouterr().out
    assert "census" in printed and str(out) in printed


@pytest.mark.parametrize("argv, name", [(["--lam", "0"], "'lam'"), (["--lam", "-1"], "'lam'"),
                                        (["--lam", "0.2", "--width", "0"], "'width'")])
def test_cli_bad_arguments_exit_2(with_census_command, tmp_path, capsys, argv, name):
    np.save(tmp_path / "X.npy", three_points())
    width = [] if "--width" in argv else ["--width", "3"]
    code = cli.main(["census", str(tmp_path / "X.npy"), *argv, *width])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert name in err
