"""Fixed-width certification: pattern cones, batched relaxations and the branch and bound."""

from __future__ import annotations

from itertools import product
from math import comb

import numpy as np
import pytest
from convexdict_solvers.group_lasso.batched_fista import solve_batch
from convexdict_solvers.group_lasso.cvxpy_solve import GroupLassoProblem
from convexdict_solvers.pattern_cones import (
    cone_rays,
    cut_cone_rays,
    lifted,
    pattern_rows,
    realizable_patterns,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import nnls

import convexdict as cd

FAST = {"tol": 1e-4, "time_limit": 60.0}


def _one_latent_losses(X: np.ndarray, A: np.ndarray, lam: float) -> np.ndarray:
    """Exact width-1 loss (optimal decoder and bias) for each activation column ``A[i]``.

    ``min_g,b (1/N)[1/2 ||X - 1 b^T - e g^T||^2 + lam ||g||]`` with ``e = a / sum(a)`` is
    ``(||Xc||^2 - (||Xc^T ec|| - lam)_+^2 / ||ec||^2) / (2N)``, ``ec`` the centred ``e``.
    """
    n = X.shape[0]
    Xc = X - X.mean(axis=0)
    total = float(np.sum(Xc * Xc))
    s = A.sum(axis=1, keepdims=True)
    ok = s[:, 0] > 1e-12
    E = np.where(ok[:, None], A / np.where(s > 0, s, 1.0), 0.0)
    Ec = E - E.mean(axis=1, keepdims=True)
    v = np.linalg.norm(Ec @ Xc, axis=1)
    q = np.sum(Ec * Ec, axis=1)
    gain = np.where(q > 1e-15, np.maximum(v - lam, 0.0) ** 2 / np.where(q > 0, q, 1.0), 0.0)
    return np.where(ok, (total - gain) / (2 * n), total / (2 * n))


def _sampled_width1_min(X: np.ndarray, lam: float, n_samples: int, seed: int) -> float:
    """Best width-1 loss over random encoders (an upper bound on the width-1 optimum)."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n_samples, X.shape[1] + 1))
    A = np.maximum(U[:, :-1] @ X.T + U[:, -1:], 0.0)
    return float(_one_latent_losses(X, A, lam).min())


# ---------------------------------------------------------------- patterns and cones


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 9), r=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_pattern_count_matches_cover_formula(n: int, r: int, seed: int) -> None:
    # Points in general position: the central arrangement of N hyperplanes in R^{r+1} has
    # 2 sum_{i<=r} C(N-1, i) cells (Cover's function counting theorem); minus the empty one.
    Y = np.random.default_rng(seed).normal(size=(n, r))
    patterns = realizable_patterns(Y)
    assert len(patterns) == 2 * sum(comb(n - 1, i) for i in range(r + 1)) - 1
    assert len({p.tobytes() for p in patterns}) == len(patterns)


@pytest.mark.parametrize("kind", ["duplicates", "collinear", "general"])
def test_every_sampled_pattern_is_enumerated(kind: str) -> None:
    rng = np.random.default_rng(3)
    if kind == "duplicates":
        Y = rng.normal(size=(5, 2))
        Y = np.vstack([Y, Y[:2]])
    elif kind == "collinear":
        # Four points on a line plus three in general position (many on one hyperplane).
        Y = np.vstack([np.c_[np.linspace(-1, 1, 4), np.zeros(4)], rng.normal(size=(3, 2))])
    else:
        Y = rng.normal(size=(8, 2))
    patterns = {p.tobytes() for p in realizable_patterns(Y)}
    U = rng.normal(size=(20_000, 3))
    sampled = (U[:, :2] @ Y.T + U[:, 2:]) > 0
    for mask in sampled[sampled.any(axis=1)]:
        assert mask.tobytes() in patterns


def test_cone_rays_generate_the_cone() -> None:
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(7, 2))
    Yt = lifted(Y)
    for mask in realizable_patterns(Y)[:20]:
        A = pattern_rows(Yt, mask)
        rays = cone_rays(A)
        assert (A @ rays.T >= -1e-8).all()
        # Random points of the cone are nonnegative combinations of the rays.
        U = rng.normal(size=(4000, 3))
        inside = U[(U @ A.T >= 0).all(axis=1)][:30]
        for u in inside:
            _, resid = nnls(rays.T, u)
            assert resid <= 1e-9 * np.linalg.norm(u) + 1e-12


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000))
def test_cut_cone_rays_contain_every_extreme_ray(seed: int) -> None:
    rng = np.random.default_rng(seed)
    r = int(rng.integers(1, 4))
    Y = rng.normal(size=(int(rng.integers(r + 2, 9)), r))
    Yt = lifted(Y)
    patterns = realizable_patterns(Y)
    A = pattern_rows(Yt, patterns[rng.integers(len(patterns))])
    rays = cone_rays(A)
    for _ in range(3):
        if len(rays) < 2:
            break
        w = rng.normal(size=r + 1)
        incremental = cut_cone_rays(A, rays, w)
        A = np.vstack([A, w])
        full = cone_rays(A)
        for ray in full:  # a missing vertex would make the relaxation invalid
            assert np.abs(incremental - ray).max(axis=1).min() <= 1e-7
        assert (A @ incremental.T >= -1e-7).all()
        rays = full


# ---------------------------------------------------------------- batched relaxations


def test_batched_bounds_bracket_the_cvxpy_optimum() -> None:
    rng = np.random.default_rng(1)
    n, m, B = 9, 7, 12
    T = rng.normal(size=(n, 2))
    E = rng.random(size=(B, m + 2, n))
    E[:, m:] = 0.0  # padding atoms
    E[:, :m] /= E[:, :m].sum(axis=2, keepdims=True)
    lam = 0.2
    for iters in (5, 3000):
        res = solve_batch(E, T, lam, max_iter=iters, rtol=1e-12)
        for b in range(B):
            problem = GroupLassoProblem(E[b, :m], T)
            sol = problem.solve(lam)
            resid = T - sol.b - E[b, :m].T @ sol.G
            value = (0.5 * np.sum(resid**2) + lam * np.linalg.norm(sol.G, axis=1).sum()) / n
            assert res.lower[b] <= value + 1e-9
            assert res.primal[b] >= value - 1e-7
            if iters > 100:
                assert res.primal[b] - res.lower[b] <= 1e-8


# ---------------------------------------------------------------- branch and bound


def test_width_one_matches_dense_sampling_2d() -> None:
    X = np.random.default_rng(5).normal(size=(7, 2))
    lam = 0.15
    cert = cd.certify(X, lam, width=1, **FAST)
    assert cert.width_needed > 1 and cert.search is not None
    assert cert.certified, cert.message
    sampled = _sampled_width1_min(X, lam, 300_000, seed=0)
    assert cert.lower_bound <= sampled + 1e-12
    # Dense sampling comes close to the optimum from above; the certified SAE is as good.
    assert cert.upper_bound <= sampled + 1e-4 * max(1.0, sampled)
    assert sampled - cert.upper_bound <= 1e-3 * max(1.0, sampled)


def test_width_one_matches_threshold_grid_1d() -> None:
    # In 1-D two latents (one per direction) already attain P* here, so K* = 2 and the
    # branch and bound runs at width 1 (with the sparser optimum found since issue 17).
    x = np.array([-1.3, -0.6, -0.1, 0.35, 0.9, 1.6])
    X = x[:, None]
    lam = 0.08
    cert = cd.certify(X, lam, width=1, **FAST)
    assert cert.width_needed > 1 and cert.fixed_width
    assert cert.certified, cert.message
    # Every (orientation, threshold) latent on a grid, decoder solved exactly.
    grid = np.linspace(x.min() - 0.1, x.max() + 0.1, 200)
    latents = [np.maximum(s * (x - t), 0.0) for s, t in product((1.0, -1.0), grid)]
    singles = np.array([[a / a.sum()] for a in latents if a.sum() > 0])
    res = solve_batch(singles, X, lam, max_iter=1500, rtol=1e-10)
    grid_best = float(res.primal.min())
    assert cert.lower_bound <= grid_best + 1e-12
    assert cert.upper_bound <= grid_best * (1 + 1e-4)


def test_certified_sae_and_bounds_are_consistent() -> None:
    X = cd.load_toy("superposition_2d").X[:8]
    lam = 0.1
    wide = cd.certify(X, lam)
    assert wide.width_needed > 3
    previous = np.inf
    for K in range(1, 4):
        cert = cd.certify_width(X, lam, K, **FAST)
        assert cert.sae.width == K
        assert cert.upper_bound == pytest.approx(cd.sae_loss(cert.sae, X, lam), rel=0, abs=0)
        assert wide.lower_bound - 1e-12 <= cert.lower_bound <= cert.upper_bound
        assert cert.certified, (K, cert.message)
        # A wider optimum is never worse.
        assert cert.upper_bound <= previous + 1e-4 * max(1.0, previous)
        previous = cert.upper_bound
    assert wide.upper_bound <= previous + 1e-9


def test_width_zero_is_the_mean() -> None:
    X = np.random.default_rng(2).normal(size=(6, 2))
    cert = cd.certify(X, 0.1, width=0)
    Xc = X - X.mean(axis=0)
    assert cert.certified and cert.sae.width == 0
    assert cert.upper_bound == pytest.approx(0.5 * np.sum(Xc * Xc) / 6, rel=1e-14)


def test_node_budget_returns_honest_bounds() -> None:
    X = np.random.default_rng(4).normal(size=(10, 2))
    cert = cd.certify(X, 0.1, width=2, max_nodes=3)
    assert not cert.certified
    assert cert.search["budget_exhausted"] == "nodes"
    assert "budget ran out" in cert.message
    assert cert.lower_bound <= cert.upper_bound
    assert cert.sae.width == 2
    assert cert.upper_bound == cd.sae_loss(cert.sae, X, 0.1)


def test_starts_are_used_and_validated() -> None:
    X = np.random.default_rng(6).normal(size=(6, 2))
    first = cd.certify(X, 0.1, width=2, **FAST)
    again = cd.certify(X, 0.1, width=2, starts=[first.sae], **FAST)
    assert again.upper_bound <= first.upper_bound
    with pytest.raises(ValueError, match="'starts' parameter must hold SAEs of width 2"):
        cd.certify(X, 0.1, width=2, starts=[first.sae.padded(3)])


def test_transcoder_below_k_star_keeps_lower_bound_only() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 2))
    cert = cd.certify(X, 0.05, width=1, target=X @ rng.normal(size=(2, 3)))
    assert cert.width_needed > 1
    assert not cert.certified and cert.sae is None
    assert "transcoders" in cert.message


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(4, 6),
    d=st.integers(1, 2),
    K=st.integers(1, 2),
    lam=st.floats(0.02, 0.3),
    seed=st.integers(0, 10_000),
)
def test_no_random_sae_beats_the_fixed_width_bound(n, d, K, lam, seed) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    cert = cd.certify(X, lam, width=K, tol=1e-4, time_limit=20.0)
    assert cert.lower_bound <= cert.upper_bound + 1e-15
    if cert.sae is not None:
        assert cert.upper_bound == cd.sae_loss(cert.sae, X, lam)
    # 4000 random width-K encoders, decoders solved (any decoder gives an explicit SAE).
    U = rng.normal(size=(4000, K, d + 1)) * rng.choice([0.3, 1.0, 3.0], size=(4000, 1, 1))
    A = np.maximum(np.einsum("bkd,nd->bkn", U[..., :d], X) + U[..., d:], 0.0)
    s = A.sum(axis=2, keepdims=True)
    E = np.where(s > 0, A / np.where(s > 0, s, 1.0), 0.0)
    res = solve_batch(E, X, lam, max_iter=400)
    assert res.primal.min() >= cert.lower_bound - 1e-12


def test_small_batches_mix_tree_levels_and_agree() -> None:
    # Small batches pop pattern nodes of different depths together; the result must not
    # depend on the batch size.
    from convexdict.fixed_width.search import branch_and_bound

    X = np.random.default_rng(8).normal(size=(5, 2))
    lam = 0.05
    wide = cd.certify(X, lam)
    assert wide.width_needed > 3
    resid = X - wide.optimum_sae.reconstruct(X)
    results = []
    for batch_size in (4, 1024):
        lower, best, stats = branch_and_bound(
            X, lam, 3, lower_floor=wide.lower_bound, wide_residual=resid, starts=[],
            tol=1e-4, time_limit=60.0, batch_size=batch_size,
        )
        assert stats.open_nodes == 0 and best.sae.width == 3
        assert best.loss - lower <= 1e-4 * max(1.0, best.loss)
        results.append((lower, best.loss))
    (l1, u1), (l2, u2) = results
    assert l1 <= u2 + 1e-12 and l2 <= u1 + 1e-12


def test_torch_leaf_batches_match_numpy() -> None:
    rng = np.random.default_rng(3)
    T = rng.normal(size=(9, 2))
    E = rng.random(size=(40, 8, 9))
    E[:, 6:] = 0.0  # padding atoms
    E[:, :6] /= np.linalg.norm(E[:, :6], axis=2, keepdims=True)
    options = dict(max_iter=400, check_every=10, stop_above=0.5, stop_below=0.25)
    ref = solve_batch(E, T, 0.2, **options)
    dev = solve_batch(E, T, 0.2, device="cpu", **options)
    np.testing.assert_allclose(dev.lower, ref.lower, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dev.primal, ref.primal, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dev.G, ref.G, rtol=0, atol=1e-10)


def test_branch_and_bound_on_a_torch_device_agrees() -> None:
    from convexdict.fixed_width.search import branch_and_bound

    X = np.random.default_rng(8).normal(size=(6, 2))
    lam = 0.05
    wide = cd.certify(X, lam)
    resid = X - wide.optimum_sae.reconstruct(X)
    runs = [branch_and_bound(X, lam, 2, lower_floor=wide.lower_bound, wide_residual=resid,
                             starts=[], tol=1e-4, time_limit=60.0, device=device)
            for device in (None, "cpu")]
    for lower, best, stats in runs:
        assert stats.open_nodes == 0 and best.loss - lower <= 1e-4 * best.loss
    (l1, b1, _), (l2, b2, _) = runs
    assert l1 <= b2.loss + 1e-12 and l2 <= b1.loss + 1e-12


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), m=st.integers(2, 3))
def test_shared_cone_split_covers_every_sae_up_to_permutation(seed: int, m: int) -> None:
    # m latents in one pattern's cone, cut at once: every choice of m encoder directions in
    # the cone lies, after permuting the latents, in one of the m + 1 children.
    from convexdict.convex.atoms import affine_frame
    from convexdict.fixed_width import pattern_tree as pt

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(7, 2))
    prob = pt.Problem(X, 0.1, affine_frame(X))
    cone = max(prob.cones, key=lambda c: len(c.all_rays))
    cut = rng.normal(size=prob.Yt.shape[1])
    children = pt._split_cones(prob, (cone,) * m, 0, cut)
    assert len(children) <= m + 1
    for child in children:  # the latents of the group are cut together
        assert all(len(c.cuts) == len(cone.cuts) + 1 for c in child)
    weights = rng.random(size=(200, m, len(cone.all_rays)))
    for w in weights:
        U = w @ cone.all_rays  # (m, q) directions in the cone
        n_plus = int(np.sum(U @ cut >= 0))
        signs = sorted((U @ cut >= 0).tolist(), reverse=True)
        assert any(
            all(((c.cuts[-1] @ cut) > 0) == s for c, s in zip(child, signs, strict=True))
            for child in children
        ), (n_plus, signs)
