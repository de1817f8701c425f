import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convexdict import affine_frame, enumerate_atoms
from solvers.pricing import activations, price_bruteforce, price_sweep


def _frame_data(rng, n, d):
    X = rng.normal(size=(n, d))
    frame = affine_frame(X)
    return X, frame.coords(X)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 25), r=st.integers(2, 4))
def test_sweep_matches_bruteforce(seed, n, r):
    rng = np.random.default_rng(seed)
    _, Y = _frame_data(rng, max(n, r + 1), r)
    R = rng.normal(size=(Y.shape[0], 3))
    R -= R.mean(axis=0)
    a = price_bruteforce(Y, R).max_value
    compiled = price_sweep(Y, R).max_value
    plain = price_sweep(Y, R, compiled=False).max_value
    assert compiled == pytest.approx(a, rel=1e-9, abs=1e-12)
    assert plain == pytest.approx(a, rel=1e-9, abs=1e-12)


def test_enumerated_atoms_give_the_same_maximum(rng):
    _, Y = _frame_data(rng, 15, 2)
    R = rng.normal(size=(15, 2))
    atoms = enumerate_atoms(Y)
    direct = np.linalg.norm(atoms.E @ R, axis=1).max()
    assert price_sweep(Y, R).max_value == pytest.approx(direct, rel=1e-10)
    np.testing.assert_allclose(atoms.E.sum(axis=1), 1.0)
    assert np.all(atoms.E >= 0)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_random_hyperplanes_never_exceed_exact_maximum(rng, r):
    _, Y = _frame_data(rng, 12, r)
    R = rng.normal(size=(12, 2))
    exact = price_bruteforce(Y, R).max_value
    U = rng.normal(size=(20_000, r + 1))
    U[:, :r] /= np.linalg.norm(U[:, :r], axis=1, keepdims=True)
    U[:, r] *= 0.8
    A = activations(Y, U)
    tot = A.sum(axis=1)
    ok = tot > 1e-9
    sampled = np.linalg.norm((A[ok] @ R) / tot[ok, None], axis=1).max()
    assert sampled <= exact * (1 + 1e-9)
    assert sampled >= 0.8 * exact  # dense sampling comes close to the vertex maximum


def test_top_hyperplanes_realise_their_values(rng):
    _, Y = _frame_data(rng, 30, 2)
    R = rng.normal(size=(30, 2))
    res = price_sweep(Y, R, top=10)
    A = activations(Y, res.hyperplanes)
    E = A / A.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(E @ R, axis=1), res.values, rtol=1e-9)
    assert res.values[0] == pytest.approx(res.max_value)
    assert np.all(np.diff(res.values) <= 1e-12)


def test_degenerate_points_collinear_and_duplicates(rng):
    Y = np.array([[0, 0], [1, 1], [2, 2], [0, 1], [1, 0], [1, 0], [0.5, 0.5]], float)
    Y = (Y - Y.mean(0)) / np.linalg.norm(Y - Y.mean(0), axis=1).max()
    R = rng.normal(size=(7, 2))
    exact = price_bruteforce(Y, R).max_value
    assert price_sweep(Y, R).max_value == pytest.approx(exact, rel=1e-10)
    assert price_sweep(Y, R, compiled=False).max_value == pytest.approx(exact, rel=1e-10)


def test_crosscoder_groups_take_the_max_over_layers(rng):
    _, Y = _frame_data(rng, 10, 2)
    R = rng.normal(size=(10, 4))
    groups = [slice(0, 2), slice(2, 4)]
    both = price_bruteforce(Y, R, groups=groups).max_value
    first = price_bruteforce(Y, R[:, :2]).max_value
    second = price_bruteforce(Y, R[:, 2:]).max_value
    assert both == pytest.approx(max(first, second), rel=1e-12)
    assert price_sweep(Y, R, groups=groups).max_value == pytest.approx(both, rel=1e-9)
    assert price_sweep(Y, R, groups=groups, compiled=False).max_value == pytest.approx(
        both, rel=1e-9
    )
