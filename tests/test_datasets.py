"""Data loading, built-in toys, the Linear Representation Bench and its recovery metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from convexdict.data.datasets import TOYS, ToyData, list_toys, load_data, load_toy
from convexdict.data.lrb import (
    BENCH_PRESETS,
    LinearRepresentationBench,
    gt_recovery,
    linear_representation_bench,
    mean_max_inner_product,
    welch_bound,
)

A = np.arange(12, dtype=np.float64).reshape(4, 3) / 7.0


# --------------------------------------------------------------------------- files


def test_load_npy_npz_safetensors(tmp_path):
    np.save(tmp_path / "a.npy", A.astype(np.float32))
    np.savez(tmp_path / "named.npz", X=A, other=np.zeros(2))
    np.savez(tmp_path / "single.npz", data=A)
    save_file({"X": torch.from_numpy(A), "y": torch.zeros(2)}, str(tmp_path / "named.safetensors"))
    save_file({"acts": torch.from_numpy(A)}, str(tmp_path / "single.safetensors"))
    for name in ("named.npz", "single.npz", "named.safetensors", "single.safetensors"):
        out = load_data(str(tmp_path / name))
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, A)
    np.testing.assert_allclose(load_data(tmp_path / "a.npy"), A, rtol=1e-7)


@pytest.mark.parametrize("header", ["", "f0,f1,f2\n"])
def test_load_csv(tmp_path, header):
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in A) + "\n"
    (tmp_path / "a.csv").write_text(header + body)
    np.testing.assert_array_equal(load_data(str(tmp_path / "a.csv")), A)


def test_load_single_column_csv_is_2d(tmp_path):
    (tmp_path / "a.csv").write_text("1\n2\n3\n")
    assert load_data(str(tmp_path / "a.csv")).shape == (3, 1)


@pytest.mark.parametrize("name", sorted(TOYS))
def test_load_data_every_toy(name):
    X = load_data(f"toy:{name}")
    assert X.ndim == 2 and X.dtype == np.float64 and np.all(np.isfinite(X))
    assert X.shape[0] <= 200
    np.testing.assert_array_equal(X, load_toy(name).X)
    X[0, 0] = 123.0  # a writable copy, not the toy's read-only array


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_data(str(tmp_path / "nope.npy"))


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("a.txt", A, "unknown extension '.txt'"),
        ("nan.npy", np.array([[1.0, np.nan]]), "1 NaN or infinite"),
        ("inf.npy", np.array([[1.0, np.inf]]), "NaN or infinite"),
        ("vec.npy", np.arange(3.0), r"2-D array \(N, d\); found shape \(3,\)"),
        ("cube.npy", np.zeros((2, 2, 2)), "found shape"),
        ("empty.npy", np.zeros((0, 3)), "non-empty"),
        ("str.npy", np.array([["a", "b"]]), "expected numbers"),
        ("two.npz", {"a": A, "b": A}, r"named 'X' or a single array; found \['a', 'b'\]"),
        ("bad.csv", "1,2\nx,y\n", "numeric"),
        ("empty.csv", "", "empty"),
        ("junk.npy", b"junk", r"junk\.npy"),
        ("trunc.npz", b"PK\x03\x04truncated", r"trunc\.npz"),
        ("junk.safetensors", b"junk", r"junk\.safetensors"),
    ],
)
def test_bad_files_raise_one_line_value_error(tmp_path, name, content, match):
    path = tmp_path / name
    if isinstance(content, dict):
        np.savez(path, **content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif name.endswith(".npy"):
        np.save(path, content)
    else:
        path.write_text("x")
    with pytest.raises(ValueError, match=match) as err:
        load_data(str(path))
    assert name in str(err.value) and "\n" not in str(err.value)


def test_bad_specs_raise(tmp_path):
    with pytest.raises(ValueError, match="Unknown toy 'nope'. Available toys: superposition_2d"):
        load_data("toy:nope")
    with pytest.raises(ValueError, match="directory"):
        load_data(str(tmp_path))


# --------------------------------------------------------------------------- toys


def test_list_toys_matches_registry():
    toys = list_toys()
    assert set(toys) == set(TOYS) == {
        "superposition_2d", "hierarchical", "antipodal", "digits2", "digits3"
    }  # fmt: skip
    assert all(isinstance(text, str) and text for text in toys.values())


@pytest.mark.parametrize("name", sorted(TOYS))
def test_toys_are_deterministic_and_consistent(name):
    toy = load_toy(name)
    assert isinstance(toy, ToyData) and toy.name == name and toy.description == list_toys()[name]
    np.testing.assert_array_equal(toy.X, load_toy(name).X)
    assert not np.array_equal(toy.X, load_toy(name, seed=1).X)
    assert not toy.X.flags.writeable
    if toy.features is None:
        return
    assert toy.codes.shape == (toy.X.shape[0], toy.features.shape[0])
    np.testing.assert_allclose(np.linalg.norm(toy.features, axis=1), 1.0, rtol=1e-12)
    assert np.all(toy.codes >= 0)
    # X = codes @ features + small noise
    assert np.abs(toy.X - toy.codes @ toy.features).max() < 0.25


def test_hierarchical_children_need_parent_and_antipodal_is_symmetric():
    h = load_toy("hierarchical")
    assert np.all(h.codes[:, 0] > 0)
    assert not np.any((h.codes[:, 1] > 0) & (h.codes[:, 2] > 0))
    assert (h.codes[:, 1:] > 0).any(axis=0).all()
    a = load_toy("antipodal")
    np.testing.assert_allclose(a.features[0], -a.features[1])
    assert 0.3 < np.mean(a.codes[:, 0] > 0) < 0.7


@pytest.mark.parametrize(("name", "d"), [("digits2", 2), ("digits3", 3)])
def test_digits_projection(name, d):
    toy = load_toy(name)
    assert toy.X.shape == (200, d)
    assert np.linalg.norm(toy.X, axis=1).mean() == pytest.approx(1.0, rel=1e-12)
    assert load_toy(name, n=50).X.shape == (50, d)


# --------------------------------------------------------------------------- the bench


@pytest.fixture(scope="module")
def small() -> LinearRepresentationBench:
    return linear_representation_bench(**BENCH_PRESETS["cpu_small"])


def test_bench_basic_invariants(small):
    p = BENCH_PRESETS["cpu_small"]
    assert small.X.shape == (p["n_samples"], p["d"])
    assert small.codes.shape == (p["n_samples"], p["n_features"])
    np.testing.assert_array_equal(small.X, small.codes @ small.features)
    np.testing.assert_allclose(np.linalg.norm(small.features, axis=1), 1.0, rtol=1e-12)
    G = small.features @ small.features.T
    np.fill_diagonal(G, 0.0)
    assert np.abs(G).max() == pytest.approx(small.max_interference, rel=1e-12)
    assert small.max_interference <= small.interference_bound
    assert small.interference_bound == pytest.approx(2 * welch_bound(p["n_features"], p["d"]))
    # zero with probability 0.9: 128000 Bernoulli draws, standard error ~ 0.0008
    assert small.achieved_sparsity == pytest.approx(p["sparsity"], abs=0.005)
    assert np.all(small.codes[small.codes > 0] >= 1.0)  # loc = 1 shifted exponential
    assert small.width == p["width"] and small.parents is None


def test_bench_is_seeded(small):
    again = linear_representation_bench(**BENCH_PRESETS["cpu_small"])
    np.testing.assert_array_equal(again.X, small.X)
    other = linear_representation_bench(**{**BENCH_PRESETS["cpu_small"], "seed": 1})
    assert not np.array_equal(other.features, small.features)


def test_bench_explicit_bound_and_orthonormal_case():
    bench = linear_representation_bench(40, 16, 0.8, 100, max_interference=0.4)
    assert bench.max_interference <= 0.4 == bench.interference_bound
    ortho = linear_representation_bench(8, 16, 0.5, 50)
    np.testing.assert_allclose(ortho.features @ ortho.features.T, np.eye(8), atol=1e-12)
    with pytest.raises(ValueError, match="Welch bound"):
        linear_representation_bench(40, 16, 0.8, 100, max_interference=0.05)
    with pytest.raises(ValueError, match="sparsity"):
        linear_representation_bench(40, 16, 1.0, 100)
    with pytest.warns(RuntimeWarning, match="above the bound"):  # Welch bound is 0.196
        tight = linear_representation_bench(40, 16, 0.8, 100, max_interference=0.2, max_steps=2)
    assert tight.max_interference > tight.interference_bound == 0.2  # reported, not hidden


def test_bench_hierarchy_constraint():
    bench = linear_representation_bench(64, 32, 0.8, 3000, hierarchy=3, child_probability=0.5)
    parents = bench.parents
    children = np.flatnonzero(parents >= 0)
    assert children.size == 48 and set(parents[children]) == set(range(0, 64, 4))
    child_on = bench.codes[:, children] > 0
    parent_on = bench.codes[:, parents[children]] > 0
    assert not np.any(child_on & ~parent_on)
    assert child_on.any()
    # P(child active | parent active) = 0.5
    assert child_on.sum() / parent_on.sum() == pytest.approx(0.5, abs=0.03)
    np.testing.assert_array_equal(bench.X, bench.codes @ bench.features)


def test_bench_correlated_keeps_marginals_and_correlates_groups():
    bench = linear_representation_bench(16, 16, 0.7, 20000, correlated=0.6, correlation_group=4)
    on = (bench.codes > 0).astype(float)
    assert on.mean() == pytest.approx(0.3, abs=0.01)
    corr = np.corrcoef(on.T)
    assert corr[0, 1] > 0.2 and corr[4, 5] > 0.2  # same group
    assert abs(corr[0, 4]) < 0.05  # different groups


def test_paper_preset_interference():
    bench = linear_representation_bench(**{**BENCH_PRESETS["paper"], "n_samples": 50})
    assert bench.features.shape == (1000, 768) and bench.width == 16000
    assert bench.max_interference <= bench.interference_bound < 0.05


# --------------------------------------------------------------------------- metrics


def test_metrics_perfect_and_invariances(small):
    f = small.features
    assert gt_recovery(f, f) == 1.0
    assert mean_max_inner_product(f, f) == pytest.approx(1.0)
    perm = np.random.default_rng(0).permutation(len(f))
    scaled = 3.0 * f[perm]
    extra = np.vstack([scaled, np.zeros((5, f.shape[1]))])  # dead atoms never match
    assert gt_recovery(f, extra) == 1.0
    assert gt_recovery(f, -f) == 0.0  # signed cosine
    assert mean_max_inner_product(f, -f, absolute=True) == pytest.approx(1.0)


def test_metrics_random_directions_in_high_d():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((50, 256))
    W_dec = rng.standard_normal((200, 256))
    assert gt_recovery(features, W_dec) == 0.0
    assert mean_max_inner_product(features, W_dec) < 0.35


def test_metrics_threshold_and_shape_errors():
    f = np.eye(2)
    W = np.array([[1.0, 0.0], [np.cos(0.6), np.sin(0.6)]])  # cos(0.6) = 0.825 with e1
    assert gt_recovery(f, W) == 0.5
    assert gt_recovery(f, W, threshold=0.5) == 1.0
    assert mean_max_inner_product(f, W) == pytest.approx((1 + np.sin(0.6)) / 2)
    with pytest.raises(ValueError, match="W_dec"):
        gt_recovery(f, np.ones((3, 3)))
