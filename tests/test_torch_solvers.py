"""The torch engines: FISTA master, device pricing, device column generation, joint bound.

Every engine is checked twice: against its own optimality measure and against an
independent float64 numpy/CVXPY implementation.
"""

import ast
import pathlib
import warnings

import numpy as np
import pytest
import torch
from convexdict_solvers.blocks.torch_joint import joint_wide_limit_torch
from convexdict_solvers.colgen.torch_loop import column_generation_torch
from convexdict_solvers.group_lasso.cvxpy_solve import GroupLassoProblem
from convexdict_solvers.group_lasso.torch_fista import (
    ProximalSettings,
    group_structure,
    solve_group_lasso_torch,
)
from convexdict_solvers.pricing.exact import activations, price_bruteforce
from convexdict_solvers.pricing.torch_sweep import (
    price_enumerate_torch,
    price_sampled_torch,
    price_sweep_torch,
    price_torch,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import convexdict as cd
from convexdict import affine_frame, enumerate_atoms
from convexdict.convex.bounds import joint_wide_limit

CROSS = [slice(0, 2), slice(2, 4)]
TOL = {torch.float64: 1e-7, torch.float32: 1e-4}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _objective(E, T, lam, b, G, groups=None):
    """(P) recomputed in float64 numpy."""
    R = T - b - E.T @ G
    groups = groups or [slice(0, T.shape[1])]
    pen = sum(np.linalg.norm(G[:, g], axis=1).sum() for g in groups)
    return (0.5 * np.sum(R * R) + lam * pen) / T.shape[0]


def _instance(rng, m=30, n=50, p=4):
    A = np.maximum(rng.normal(size=(m, n)) + 0.3, 0.0)
    return A / A.sum(axis=1, keepdims=True), rng.normal(size=(n, p))


def _cvxpy(E, T, lam, groups):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sol = GroupLassoProblem(E, T, groups).solve(lam)
    return _objective(E, T, lam, sol.b, sol.G, groups)


def _fista(E, T, lam, groups=None, dtype=torch.float64, device="cpu", **kw):
    sol = solve_group_lasso_torch(
        torch.tensor(E, dtype=dtype, device=device), torch.tensor(T, dtype=dtype, device=device),
        lam, groups=groups, settings=ProximalSettings(**kw))
    b, G = (x.to("cpu", torch.float64).numpy() for x in (sol.b, sol.G))
    return sol, b, G


@pytest.mark.parametrize("groups", [None, CROSS], ids=["sae", "crosscoder"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fista_matches_cvxpy(seed, dtype, groups):
    rng = np.random.default_rng(seed)
    E, T = _instance(rng)
    lam = 0.05
    ref = _cvxpy(E, T, lam, groups)
    sol, b, G = _fista(E, T, lam, groups, dtype)
    assert sol.converged
    assert _objective(E, T, lam, b, G, groups) == pytest.approx(ref, rel=TOL[dtype])


@pytest.mark.parametrize("polish", [True, False])
def test_fista_satisfies_optimality_conditions(polish):
    # Independent of the solver's own residual: KKT of the group lasso in numpy.
    E, T = _instance(np.random.default_rng(3), m=40, p=3)
    lam = 0.04
    sol, b, G = _fista(E, T, lam, polish=polish)
    assert sol.residual <= 1e-10
    Ec, Tc = E - E.mean(axis=1, keepdims=True), T - T.mean(axis=0)
    grad = Ec @ (Ec.T @ G - Tc)
    norms = np.linalg.norm(G, axis=1)
    on = norms > 0
    np.testing.assert_allclose(grad[on] + lam * G[on] / norms[on, None], 0.0, atol=1e-8)
    assert np.all(np.linalg.norm(grad[~on], axis=1) <= lam * (1 + 1e-8))
    np.testing.assert_allclose(b, (T - E.T @ G).mean(axis=0), atol=1e-12)


def test_fista_warm_start_and_restart_agree():
    E, T = _instance(np.random.default_rng(4))
    lam = 0.05
    cold, _, G = _fista(E, T, lam)
    plain, _, G_plain = _fista(E, T, lam, restart=False, polish=False)
    np.testing.assert_allclose(G_plain, G, atol=1e-7)
    warm = solve_group_lasso_torch(torch.tensor(E), torch.tensor(T), lam, G0=cold.G)
    assert warm.converged and warm.n_iter <= ProximalSettings().check_every


def test_group_soft_threshold_matches_scalar_reference():
    rng = np.random.default_rng(5)
    V = rng.normal(size=(7, 5))
    groups = [slice(0, 2), slice(2, 4)]  # column 4 is in no group: not penalised
    out = group_structure(groups, 5).soft_threshold(torch.tensor(V), 0.8).numpy()
    ref = V.copy()
    for i in range(7):
        for g in groups:
            norm = np.linalg.norm(V[i, g])
            ref[i, g] = V[i, g] * max(0.0, 1 - 0.8 / norm)
    np.testing.assert_allclose(out, ref, rtol=1e-14)


def test_invalid_arguments_are_diagnosed():
    E, T = _instance(np.random.default_rng(6), m=3, n=5, p=4)
    with pytest.raises(ValueError, match="disjoint"):
        group_structure([slice(0, 3), slice(2, 4)], 4)
    with pytest.raises(ValueError, match="'E' and 'T'"):
        solve_group_lasso_torch(torch.tensor(E), torch.tensor(T[:4]), 0.1)
    with pytest.raises(ValueError, match="'lam'"):
        solve_group_lasso_torch(torch.tensor(E), torch.tensor(T), -1.0)
    with pytest.raises(ValueError, match="'n_samples'"):
        price_sampled_torch(np.zeros((3, 1)), np.zeros((3, 1)), 0)
    with pytest.raises(ValueError, match="'method'"):
        price_torch(np.zeros((3, 1)), np.zeros((3, 1)), method="sampled")
    with pytest.raises(ValueError, match="'Y' and 'R'"):
        price_enumerate_torch(np.zeros((3, 1)), np.zeros((4, 1)))


def test_torch_engines_never_import_convexdict():
    root = pathlib.Path(__file__).resolve().parents[1] / "solvers"
    for name in ("group_lasso/torch_fista", "pricing/torch_sweep", "colgen/torch_loop",
                 "blocks/torch_joint"):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for a in node.names]
        imported += [node.module or "" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)]
        assert not any(m.split(".")[0] == "convexdict" for m in imported), name


def _coords(rng, n, r):
    X = rng.normal(size=(n, r))
    return affine_frame(X).coords(X)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 14), r=st.integers(1, 3),
       crosscoder=st.booleans())
def test_torch_pricing_equals_bruteforce(seed, n, r, crosscoder):
    rng = np.random.default_rng(seed)
    Y = _coords(rng, max(n, r + 1), r)
    R = rng.normal(size=(len(Y), 4))
    R -= R.mean(axis=0)
    groups = CROSS if crosscoder else None
    ref = price_bruteforce(Y, R, groups=groups, top=5)
    enum = price_enumerate_torch(Y, R, groups=groups, top=5, chunk=64)
    sweep = price_sweep_torch(Y, R, groups=groups, chunk=256)
    assert enum.max_value == pytest.approx(ref.max_value, rel=1e-10, abs=1e-12)
    assert sweep.max_value == pytest.approx(ref.max_value, rel=1e-9, abs=1e-12)
    assert enum.n_candidates == ref.n_candidates
    np.testing.assert_allclose(enum.values, ref.values, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("price", [price_enumerate_torch, price_sweep_torch])
def test_torch_pricing_degenerate_points_and_hyperplanes(price):
    Y = np.array([[0, 0], [1, 1], [2, 2], [0, 1], [1, 0], [1, 0], [0.5, 0.5]], float)
    Y = (Y - Y.mean(0)) / np.linalg.norm(Y - Y.mean(0), axis=1).max()
    R = np.random.default_rng(7).normal(size=(7, 2))
    res = price(Y, R, top=6)
    assert res.max_value == pytest.approx(price_bruteforce(Y, R).max_value, rel=1e-10)
    A = activations(Y, res.hyperplanes)  # the returned hyperplanes realise their values
    E = A / A.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(E @ R, axis=1), res.values, rtol=1e-9)


def test_constant_data_prices_the_uniform_atom():
    R = np.random.default_rng(8).normal(size=(5, 3))
    ref = price_bruteforce(np.zeros((5, 0)), R, top=1)
    res = price_enumerate_torch(np.zeros((5, 0)), R, top=1)
    assert res.max_value == pytest.approx(ref.max_value, rel=1e-14)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_sampled_pricing_never_exceeds_exact_and_is_not_certified(r):
    rng = np.random.default_rng(9)
    Y = _coords(rng, 15, r)
    R = rng.normal(size=(15, 2))
    exact = price_bruteforce(Y, R).max_value
    sampled = price_sampled_torch(Y, R, 3000, seed=1, top=3)
    assert sampled.max_value <= exact * (1 + 1e-12)
    assert sampled.max_value >= 0.5 * exact
    assert sampled.method == "sampled" and sampled.certified is False


def _toy(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d)) * 1.5
    return centres[rng.integers(0, 4, n)] + 0.4 * rng.normal(size=(n, d))


@pytest.mark.parametrize("n, d", [(30, 2), (18, 3)])
def test_column_generation_torch_reaches_the_certified_optimum(n, d):
    X = _toy(n, d)
    lam = 0.2 * cd.lam_max(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cert = cd.certify(X, lam)
    assert cert.certified
    res = column_generation_torch(X, lam, affine_frame(X).coords(X))
    sol = res.solution
    assert res.converged and sol.solver == "torch-fista" and sol.status == "optimal"
    assert res.E.dtype == np.float64 and res.hyperplanes.shape == (len(res.E), d + 1)
    value = _objective(res.E, X, lam, sol.b, sol.G)
    assert value == pytest.approx(cert.upper_bound, rel=1e-6)


def test_column_generation_torch_crosscoder_matches_direct_solve():
    X = _toy(14, 2, seed=1)
    T = np.hstack([X, X @ np.array([[1.0, 0.5], [-0.3, 2.0]])])
    lam = 0.3
    Y = affine_frame(X).coords(X)
    ref = _cvxpy(enumerate_atoms(Y).E, T, lam, CROSS)
    res = column_generation_torch(T, lam, Y, groups=CROSS)
    value = _objective(res.E, T, lam, res.solution.b, res.solution.G, CROSS)
    assert res.converged
    assert value == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("n, d, lam", [(60, 2, 0.3), (500, 40, 3.0), (200, 5, 50.0)])
def test_joint_bound_equals_numpy(n, d, lam):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d) + 1.0
    ref = joint_wide_limit(X, lam)
    res = joint_wide_limit_torch(X, lam, chunk_rows=37)
    assert res.lower_bound == pytest.approx(ref.lower_bound, rel=1e-9)
    assert res.primal_value == pytest.approx(ref.primal_value, rel=1e-9)
    np.testing.assert_allclose(res.b, ref.b, rtol=1e-9, atol=1e-12)
    assert res.lower_bound <= res.primal_value


def test_joint_bound_streams_a_memmap(tmp_path):
    rng = np.random.default_rng(10)
    X = rng.normal(size=(1000, 8))
    mm = np.memmap(tmp_path / "x.f64", dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.memmap(tmp_path / "x.f64", dtype=np.float64, mode="r", shape=X.shape)
    res = joint_wide_limit_torch(ro, 1.5, chunk_rows=128)
    assert res.lower_bound == pytest.approx(joint_wide_limit(X, 1.5).lower_bound, rel=1e-9)
    with pytest.raises(ValueError, match="'lam'"):
        joint_wide_limit_torch(ro, 0.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("groups", [None, CROSS], ids=["sae", "crosscoder"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fista_on_cuda_matches_cvxpy(dtype, groups):
    E, T = _instance(np.random.default_rng(11))
    sol, b, G = _fista(E, T, 0.05, groups, dtype, device="cuda")
    assert sol.converged
    assert _objective(E, T, 0.05, b, G, groups) == pytest.approx(
        _cvxpy(E, T, 0.05, groups), rel=TOL[dtype])


@pytest.mark.parametrize("r", [1, 2, 3])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pricing_on_cuda_equals_bruteforce(r):
    rng = np.random.default_rng(12)
    Y = _coords(rng, 40, r)
    R = rng.normal(size=(40, 3))
    ref = price_bruteforce(Y, R).max_value
    assert price_enumerate_torch(Y, R, device="cuda").max_value == pytest.approx(ref, rel=1e-10)
    assert price_sweep_torch(Y, R, device="cuda").max_value == pytest.approx(ref, rel=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_column_generation_and_joint_bound_on_cuda():
    X = _toy(30, 2)
    lam = 0.2 * cd.lam_max(X)
    res = column_generation_torch(X, lam, affine_frame(X).coords(X), device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        upper = cd.certify(X, lam).upper_bound
    assert _objective(res.E, X, lam, res.solution.b, res.solution.G) == pytest.approx(
        upper, rel=1e-6)
    joint = joint_wide_limit_torch(X, lam, device="cuda").lower_bound
    assert joint == pytest.approx(joint_wide_limit(X, lam).lower_bound, rel=1e-9)
