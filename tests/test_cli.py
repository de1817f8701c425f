"""The certify / compare / demo sub-commands: outputs, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

import convexdict as cd
from convexdict.cli import main


def three_clusters(seed: int = 0, per: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return np.vstack([c + 0.1 * rng.normal(size=(per, 2)) for c in centres])


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, three_clusters())
    return path


def _one_line_error(capsys, code):
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_certify_toy_writes_parseable_json(tmp_path, capsys):
    out = tmp_path / "deep" / "cert.json"
    assert main(["certify", "toy:superposition_2d", "--lam", "0.3", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["certified"] is True
    assert payload["n_samples"] == 120 and payload["width_needed"] >= 1
    assert payload["lower_bound"] <= payload["upper_bound"]
    printed = capsys.readouterr().out
    assert "CERTIFIED" in printed and str(out) in printed
    assert not list(out.parent.glob("*.tmp"))  # the temporary file was renamed


def test_certify_npy_file(npy, tmp_path):
    out = tmp_path / "cert.json"
    assert main(["certify", str(npy), "--lam", "0.2", "--method", "direct", "--json",
                 str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["certified"] is True and payload["method"] == "direct"
    assert payload["lower_bound"] == pytest.approx(cd.certify(three_clusters(), 0.2).lower_bound,
                                                   abs=1e-9)


@pytest.mark.parametrize("lam", ["0", "-1", "nan"])
def test_certify_bad_lam(npy, capsys, lam):
    err = _one_line_error(capsys, main(["certify", str(npy), "--lam", lam]))
    assert "'lam'" in err


def test_certify_missing_file(tmp_path, capsys):
    err = _one_line_error(capsys, main(["certify", str(tmp_path / "nope.npy"), "--lam", "0.1"]))
    assert "does not exist" in err


def test_certify_nan_data(tmp_path, capsys):
    X = three_clusters()
    X[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", X)
    err = _one_line_error(capsys, main(["certify", str(tmp_path / "nan.npy"), "--lam", "0.1"]))
    assert "NaN" in err


def test_certify_wrong_extension(tmp_path, capsys):
    path = tmp_path / "X.txt"
    path.write_text("1,2\n3,4\n")
    err = _one_line_error(capsys, main(["certify", str(path), "--lam", "0.1"]))
    assert "extension" in err


def test_certify_missing_lam_is_a_usage_error(npy):
    with pytest.raises(SystemExit) as exc:
        main(["certify", str(npy)])
    assert exc.value.code == 2


def test_real_process_exit_code_and_single_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "convexdict", "certify", str(tmp_path / "nope.npy"), "--lam",
         "0.1"], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_compare_optimum_json_and_plots(npy, tmp_path, capsys):
    cert = cd.certify(three_clusters(), 0.2)
    cert.optimum_sae.save(str(tmp_path / "sae"))
    out = tmp_path / "cmp.json"
    code = main(["compare", str(tmp_path / "sae"), str(npy), "--lam", "0.2", "--json", str(out),
                 "--plots", str(tmp_path / "figs")])
    assert code == 0
    payload = json.loads(out.read_text())
    assert payload["comparison"]["verdict"] == "certified_global"
    assert payload["certificate"]["certified"] is True
    for name in ("stationarity.png", "atoms.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 0
    assert "certified_global" in capsys.readouterr().out


def test_compare_errors(npy, tmp_path, capsys):
    err = _one_line_error(capsys, main(["compare", str(tmp_path / "none"), str(npy), "--lam",
                                        "0.2"]))
    assert "does not exist" in err
    sae = cd.SAE(np.eye(3), np.zeros(3), np.eye(3), np.zeros(3))
    sae.save(str(tmp_path / "sae3"))
    err = _one_line_error(capsys, main(["compare", str(tmp_path / "sae3"), str(npy), "--lam",
                                        "0.2"]))
    assert "d_in=3" in err


def test_demo_quick_writes_its_files(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["certificate"]["certified"] is True
    assert results["runs"] and {r["sgd"]["verdict"] for r in results["runs"]} <= {
        "certified_global", "spurious_partial_minimum", "partial_minimum", "not_converged"}
    for name in ("atoms.png", "gap_vs_width.png", "gap_distribution.png", "stationarity.png"):
        assert (out / name).stat().st_size > 0
    assert str(out / "results.json") in capsys.readouterr().out
