"""Issue 12, section 2: bad input is one ValueError naming the argument (API) or one line
on stderr with exit code 2 (CLI); nothing hangs and a true bug keeps its traceback."""

from __future__ import annotations

import time

import numpy as np
import pytest

import convexdict as cd
from convexdict.cli import main
from convexdict.data.datasets import load_data


def _one_line_exit_2(code: int, capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- bounds


def test_lam_max_and_dual_bound_refuse_large_data_at_once() -> None:
    X = np.random.default_rng(0).normal(size=(2000, 64))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="'X'.*joint_bound.*lam_max_bound"):
        cd.lam_max(X)
    with pytest.raises(ValueError, match="'X'.*joint_bound"):
        cd.dual_bound(X, 0.1, X - X.mean(axis=0))
    assert time.perf_counter() - start < 30  # refused before any pricing (it hung before)
    bound = cd.lam_max_bound(X)
    assert np.isfinite(bound) and bound > 0


def test_lam_max_bound_is_an_upper_bound() -> None:
    rng = np.random.default_rng(1)
    for shape in ((30, 2), (25, 3), (12, 1)):
        X = rng.normal(size=shape)
        assert cd.lam_max(X) <= cd.lam_max_bound(X) * (1 + 1e-12)
    X, Y = rng.normal(size=(20, 2)), rng.normal(size=(20, 3))
    assert cd.lam_max(X, target=Y) <= cd.lam_max_bound(X, target=Y) * (1 + 1e-12)
    with pytest.raises(ValueError, match="'target'"):
        cd.lam_max_bound(X, target=Y[:5])
    # above lam_max_bound the mean-only SAE is certified optimal
    cert = cd.certify(X, 1.01 * cd.lam_max_bound(X))
    assert cert.width_needed == 0 and cert.certified


# --------------------------------------------------------------------------- bare TypeErrors


@pytest.mark.parametrize("lams", [0.1, 1, np.float64(0.3), "0.1", np.array([[0.1]])])
def test_certify_path_names_lams(lams) -> None:
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="'lams'"):
        cd.certify_path(X, lams)


@pytest.mark.parametrize("spec", [123, None, 1.5, ["a.npy"]])
def test_load_data_names_spec(spec) -> None:
    with pytest.raises(ValueError, match="'spec'"):
        load_data(spec)


# --------------------------------------------------------------------------- load_data(mmap=True)


def test_load_data_mmap_keeps_the_checks(tmp_path) -> None:
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    mapped = load_data(tmp_path / "x.npy", mmap=True)
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.float32
    np.testing.assert_array_equal(mapped, X)
    assert load_data(tmp_path / "x.npy").dtype == np.float64
    np.save(tmp_path / "i.npy", np.arange(6).reshape(3, 2))  # integers: loaded as float64
    assert load_data(tmp_path / "i.npy", mmap=True).dtype == np.float64
    X[7, 1] = np.inf
    np.save(tmp_path / "inf.npy", X)
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    (tmp_path / "zero.npy").write_bytes(b"")
    np.save(tmp_path / "full.npy", np.zeros((100, 3)))
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:300])
    for name, match in (("inf.npy", "1 NaN or infinite"), ("empty.npy", "non-empty"),
                        ("zero.npy", "not a readable"), ("trunc.npy", "not a readable")):
        for mmap in (True, False):
            with pytest.raises(ValueError, match=match) as err:
                load_data(tmp_path / name, mmap=mmap)
            assert name in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="'mmap'"):
        load_data(tmp_path / "x.npy", mmap="yes")


# --------------------------------------------------------------------------- the CLI's mapping


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad value\nsecond line"), NotADirectoryError("x is not a directory"),
     FileExistsError("x exists"), PermissionError("denied"), IsADirectoryError("a folder"),
     FileNotFoundError("missing")],
)
def test_user_errors_are_one_line_exit_2(monkeypatch, capsys, exc) -> None:
    from convexdict.cli import train as cli_train

    def fail(args):
        raise exc

    monkeypatch.setattr(cli_train, "run", fail)
    code = main(["train", "toy:antipodal", "--lam", "0.1", "--width", "2", "--out", "o"])
    err = _one_line_exit_2(code, capsys)
    assert str(exc).split()[0] in err


def test_a_true_bug_keeps_its_traceback(monkeypatch) -> None:
    from convexdict.cli import train as cli_train

    def bug(args):
        raise KeyError("internal")

    monkeypatch.setattr(cli_train, "run", bug)
    with pytest.raises(KeyError, match="internal"):
        main(["train", "toy:antipodal", "--lam", "0.1", "--width", "2", "--out", "o"])


# --------------------------------------------------------------------------- sweep extra


def test_sweep_without_the_extra_says_what_to_install(tmp_path, monkeypatch, capsys) -> None:
    from convexdict.cli import sweep as cli_sweep

    real = cli_sweep.importlib.util.find_spec
    monkeypatch.setattr(cli_sweep.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("distributed", "pandas")
                        else real(name, *a))
    (tmp_path / "s.toml").write_text("[sweep]\n")
    code = main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")])
    err = _one_line_exit_2(code, capsys)
    assert 'pip install "convexdict[sweep]"' in err and "distributed" in err
    assert not (tmp_path / "out").exists()
