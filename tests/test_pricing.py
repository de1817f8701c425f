from math import comb

import numpy as np
import pytest
from convexdict_solvers.colgen.loop import column_generation
from convexdict_solvers.pricing.exact import (
    EarlyStop,
    activations,
    price,
    price_bruteforce,
    price_sweep,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from convexdict import affine_frame, enumerate_atoms
from convexdict.convex.atoms import atoms_from_hyperplanes

KERNELS = ("fast", "legacy", "numpy")


def _frame_data(rng, n, d):
    X = rng.normal(size=(n, d))
    frame = affine_frame(X)
    return X, frame.coords(X)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(3, 25),
    r=st.integers(2, 4),
    p=st.integers(1, 6),
    grid=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_every_sweep_kernel_matches_bruteforce(seed, n, r, p, grid):
    """The three sweeps price exactly the maximum of brute-force enumeration, also on
    rounded data (duplicates, collinear and coplanar points, tied angles) and for
    ``p > 4`` residual columns (the fast kernel's general path)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(max(n, r + 1), r))
    if grid:
        X = np.round(X / grid) * grid
    frame = affine_frame(X)
    Y = frame.coords(X)
    R = rng.normal(size=(Y.shape[0], p))
    R -= R.mean(axis=0)
    exact = price_bruteforce(Y, R).max_value
    for kernel in KERNELS if Y.shape[1] >= 2 else ():
        value = price_sweep(Y, R, kernel=kernel).max_value
        assert value == pytest.approx(exact, rel=1e-9, abs=1e-12), kernel


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(6, 20), r=st.integers(2, 4))
def test_fast_kernel_with_groups_matches_bruteforce(seed, n, r):
    rng = np.random.default_rng(seed)
    _, Y = _frame_data(rng, n, r)
    R = rng.normal(size=(n, 5))
    groups = [slice(0, 2), slice(2, 5)]
    exact = price_bruteforce(Y, R, groups=groups).max_value
    fast = price_sweep(Y, R, groups=groups, kernel="fast").max_value
    assert fast == pytest.approx(exact, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_fast_kernel_counts_every_event_and_its_parts_cover_the_full_sweep(rng, r):
    n = 40
    _, Y = _frame_data(rng, n, r)
    R = rng.normal(size=(n, r))
    full = price_sweep(Y, R, kernel="fast", top=5)
    # General position: every pivot set is valid and sees the other n - r + 1 points.
    assert full.n_events == comb(n, r - 1) * 2 * (n - r + 1)
    assert full.method == "sweep"
    parts = [price_sweep(Y, R, kernel="fast", part=(i, 3)) for i in range(3)]
    assert all(part.method == "partial-sweep" for part in parts)
    assert sum(part.n_events for part in parts) == full.n_events
    assert max(part.max_value for part in parts) == full.max_value
    legacy = price_sweep(Y, R, kernel="legacy")
    assert full.max_value == pytest.approx(legacy.max_value, rel=1e-10)


@pytest.mark.parametrize("r", [3, 4])
def test_fast_kernel_top_hyperplanes_realise_their_values(rng, r):
    _, Y = _frame_data(rng, 25, r)
    R = rng.normal(size=(25, 3))
    res = price_sweep(Y, R, top=12, kernel="fast")
    np.testing.assert_allclose(np.linalg.norm(res.hyperplanes[:, :r], axis=1), 1.0)
    A = activations(Y, res.hyperplanes)
    E = A / A.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(E @ R, axis=1), res.values, rtol=1e-9)
    assert res.values[0] == pytest.approx(res.max_value)
    assert np.all(np.diff(res.values) <= 1e-12)


def test_kernel_parameter_is_validated(rng):
    _, Y = _frame_data(rng, 10, 2)
    R = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="'kernel' parameter must be one of"):
        price_sweep(Y, R, kernel="gpu")
    _, Y5 = _frame_data(rng, 8, 5)
    with pytest.raises(ValueError, match="affine dimension 2 to 4"):
        price_sweep(Y5, rng.normal(size=(8, 2)), kernel="fast")
    auto = price_sweep(Y5, rng.normal(size=(8, 2)))  # r = 5: the legacy kernel
    assert auto.n_events == -1


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
    for kernel in KERNELS:
        assert price_sweep(Y, R, kernel=kernel).max_value == pytest.approx(exact, rel=1e-10)


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


@pytest.mark.parametrize("r", [2, 3])
def test_early_stop_returns_true_violators_and_completes_when_there_are_few(rng, r):
    n = 60
    _, Y = _frame_data(rng, n, r)
    R = rng.normal(size=(n, 2))
    full = price_sweep(Y, R, top=10)
    low = 0.5 * full.max_value  # many violators: the sweep stops early
    early = price_sweep(Y, R, top=10, part=EarlyStop(low, 10, min_fraction=0.0))
    assert early.method == "partial-sweep"
    assert 0 < early.n_events < full.n_events
    assert early.max_value > low and early.max_value <= full.max_value
    counted = price_sweep(Y, R, top=10, part=EarlyStop(low, 10, min_fraction=0.25))
    assert counted.method == "partial-sweep" and np.sum(counted.values > low) == 10
    A = activations(Y, early.hyperplanes)
    E = A / A.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(E @ R, axis=1), early.values, rtol=1e-9)
    # Above the maximum nothing is found: the sweep completes and is a full exact pricing.
    done = price(Y, R, top=10, part=EarlyStop(full.max_value * 1.01, 1, offset=3))
    assert done.method == "sweep" and done.n_events == full.n_events
    assert done.max_value == full.max_value
    legacy = price_sweep(Y, R, part=EarlyStop(low, 1), kernel="legacy")
    assert legacy.method == "sweep"


def test_column_generation_with_early_stop_reaches_the_same_optimum(rng):
    """Early-exit rounds (EarlyStop) and fixed parts both end with a full exact pricing
    below the threshold, at the same master optimum."""
    centres = 3.0 * np.array([[0, 0], [1, 0], [0, 1]])
    X = np.vstack([rng.normal(size=(40, 2)) + c for c in centres])
    Y = affine_frame(X).coords(X)
    lam = 0.2 * price_sweep(Y, X - X.mean(axis=0)).max_value
    calls = []

    def price_fn(R, top, part):
        calls.append(part)
        return price(Y, R, top=top, part=part)

    def atoms_fn(U):
        atoms = atoms_from_hyperplanes(Y, U)
        return atoms.hyperplanes, atoms.E

    results = {}
    for early in (True, False):
        res = column_generation(
            X, lam, price_fn=price_fn, atoms_fn=atoms_fn, n_parts=4, early_stop=early
        )
        assert res.converged
        fit = X - res.solution.b - res.E.T @ res.solution.G
        results[early] = 0.5 * np.sum(fit**2) + lam * np.linalg.norm(res.solution.G, axis=1).sum()
    assert any(isinstance(part, EarlyStop) for part in calls)
    assert results[True] == pytest.approx(results[False], rel=1e-7)


def test_sequential_parts_declare_convergence_only_after_every_part(rng, monkeypatch):
    """Parts priced one after another: convergence needs all of them priced with one
    residual (their union is E0), and the optimum equals the one-part loop's."""
    import convexdict_solvers.colgen.loop as loop

    X = rng.normal(size=(60, 2))
    Y = affine_frame(X).coords(X)
    lam = 0.2 * price_sweep(Y, X - X.mean(axis=0)).max_value
    calls = []

    def price_fn(R, top, part):
        calls.append((part, R.copy()))
        return price(Y, R, top=top, part=part)

    def atoms_fn(U):
        atoms = atoms_from_hyperplanes(Y, U)
        return atoms.hyperplanes, atoms.E

    values = {}
    for n_parts, sequential in ((1, False), (5, True), (5, False)):
        monkeypatch.setattr(loop, "SEQUENTIAL_PARTS", sequential)
        calls.clear()
        res = column_generation(X, lam, price_fn=price_fn, atoms_fn=atoms_fn, n_parts=n_parts)
        assert res.converged
        if sequential:
            # The last round priced all five parts with one residual, and nothing else.
            last = calls[-5:]
            assert sorted(part[0] for part, _ in last) == list(range(5))
            assert all(np.array_equal(R, last[0][1]) for _, R in last)
            assert all(part is not None for part, _ in calls)
        fit = X - res.solution.b - res.E.T @ res.solution.G
        values[n_parts, sequential] = (0.5 * np.sum(fit**2)
                                       + lam * np.linalg.norm(res.solution.G, axis=1).sum())
    assert values[5, True] == pytest.approx(values[1, False], rel=1e-7)
    assert values[5, False] == pytest.approx(values[1, False], rel=1e-7)
