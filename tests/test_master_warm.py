"""The warm column-generation master (solvers/group_lasso/warm_master.py, reduced_solve.py).

Checks against the cold CVXPY solve and an independent dual bound computed in the full
``N``-dimensional space: the objective agrees, gap-safe screening never removes an atom
of the optimum, and certificates are unchanged.
"""

import numpy as np
import pytest
from convexdict_solvers.colgen import loop
from convexdict_solvers.group_lasso.cvxpy_solve import GroupLassoProblem
from convexdict_solvers.group_lasso.reduced_solve import (
    WarmSettings,
    restricted_gap,
    screen,
    solve_reduced,
)
from convexdict_solvers.group_lasso.warm_master import ReducedGram, WarmGroupLasso
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convexdict as cd

GROUPS = [slice(0, 2), slice(2, 5)]


def _atoms(rng, n, m, d=2, duplicates=0):
    """Normalised ReLU activations of ``m`` random hyperplanes on ``n`` points, plus
    ``duplicates`` near-copies (relative perturbation ``1e-7``) of existing atoms."""
    X = rng.normal(size=(n, d))
    A = np.maximum(np.hstack([X, np.ones((n, 1))]) @ rng.normal(size=(d + 1, 4 * m)), 0.0)
    A = A[:, A.sum(axis=0) > 0][:, :m].T
    if duplicates:
        copies = A[rng.integers(0, len(A), duplicates)]
        A = np.vstack([A, copies * (1 + 1e-7 * rng.uniform(size=copies.shape))])
    return A / A.sum(axis=1, keepdims=True)


def _problem(seed, duplicates, grouped, frac, n=40, m=30):
    rng = np.random.default_rng(seed)
    E = _atoms(rng, n, m, duplicates=duplicates)
    T = rng.normal(size=(n, 5 if grouped else 3))
    groups = GROUPS if grouped else None
    norms = _block_norms(E @ (T - T.mean(axis=0)), groups)
    return E, T, groups, frac * norms.max()


def _block_norms(V, groups):
    groups = groups or [slice(0, V.shape[1])]
    return np.stack([np.linalg.norm(V[:, g], axis=1) for g in groups], axis=1)


def _objective(E, T, G, lam, groups):
    """(P) times N at ``G`` with its optimal bias, in the full space."""
    R = T - E.T @ G
    R = R - R.mean(axis=0)
    return 0.5 * np.sum(R * R) + lam * _block_norms(G, groups).sum()


def _dual_bound(E, T, G, lam, groups):
    """Independent lower bound (times N): the residual scaled into dual feasibility."""
    R = T - E.T @ G
    R = R - R.mean(axis=0)
    Tc = T - T.mean(axis=0)
    a, q = np.sum(R * Tc), np.sum(R * R)
    t = min(a / q, lam / _block_norms(E @ R, groups).max())
    return t * a - 0.5 * t * t * q


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    duplicates=st.sampled_from([0, 6]),
    grouped=st.booleans(),
    frac=st.floats(0.05, 0.9),
)
def test_warm_master_agrees_with_clarabel(seed, duplicates, grouped, frac):
    E, T, groups, lam = _problem(seed, duplicates, grouped, frac)
    warm = WarmGroupLasso(T, groups).solve(E, lam)
    cold = GroupLassoProblem(E, T, groups).solve(lam)
    f_warm = _objective(E, T, warm.G, lam, groups)
    f_cold = _objective(E, T, cold.G, lam, groups)
    lower = _dual_bound(E, T, warm.G, lam, groups)
    assert f_warm - lower <= 1e-10 * f_warm  # within 1e-10 of the restricted optimum
    assert f_warm <= f_cold * (1 + 1e-12)  # never worse than Clarabel
    # Agreement to 1e-9, unless Clarabel's own certified gap (1e-11 to 1e-8 on these
    # problems, tolerances 1e-10) is larger: then the warm answer is the better one.
    cold_gap = f_cold - _dual_bound(E, T, cold.G, lam, groups)
    assert f_cold - f_warm <= max(1e-9 * f_cold, cold_gap)
    # The bias is the optimal one for G.
    assert np.allclose(warm.b, (T - E.T @ warm.G).mean(axis=0), atol=1e-12)


def test_warm_starts_across_rounds_match_cold_solves():
    """A column-generation-like sequence: atoms dropped, kept and added between rounds."""
    rng = np.random.default_rng(7)
    pool = _atoms(rng, 60, 80, duplicates=10)
    T = rng.normal(size=(60, 5))
    lam = 0.2 * _block_norms(pool @ (T - T.mean(axis=0)), GROUPS).max()
    master = WarmGroupLasso(T, GROUPS)
    active = np.arange(20)
    for _ in range(5):
        E = pool[active]
        warm = master.solve(E, lam)
        cold = GroupLassoProblem(E, T, GROUPS).solve(lam)
        f_warm = _objective(E, T, warm.G, lam, GROUPS)
        assert f_warm == pytest.approx(_objective(E, T, cold.G, lam, GROUPS), rel=1e-9)
        assert f_warm - _dual_bound(E, T, warm.G, lam, GROUPS) <= 1e-10 * f_warm
        kept = active[np.linalg.norm(warm.G, axis=1) > 0]
        fresh = rng.choice(np.setdiff1d(np.arange(len(pool)), active), 12, replace=False)
        active = np.concatenate([kept, fresh])


def test_reduced_gap_matches_the_full_space_gap():
    rng = np.random.default_rng(3)
    E, T, groups, lam = _problem(3, 4, True, 0.3)
    gram = ReducedGram(T)
    Q, C, _ = gram.update(E)
    for scale in (0.0, 0.1, 1.0, 5.0):
        G = scale * rng.normal(size=(len(E), T.shape[1]))
        gap = restricted_gap(Q, C, gram.c0, G, lam, groups)
        f = _objective(E, T, G, lam, groups)
        assert gap.primal == pytest.approx(f, rel=1e-10)
        assert gap.primal - gap.gap == pytest.approx(_dual_bound(E, T, G, lam, groups),
                                                     rel=1e-9, abs=1e-12)


def test_incremental_gram_equals_a_fresh_one():
    rng = np.random.default_rng(4)
    pool = _atoms(rng, 50, 40)
    T = rng.normal(size=(50, 3))
    gram = ReducedGram(T)
    gram.update(pool[:25])
    E = pool[np.r_[3:20, 30:40]]
    Q, C, old = gram.update(E)
    Ec = E - E.mean(axis=1, keepdims=True)
    assert np.allclose(Q, Ec @ Ec.T, rtol=1e-13, atol=1e-15)
    assert np.allclose(C, Ec @ (T - T.mean(axis=0)), rtol=1e-13, atol=1e-15)
    assert np.array_equal(old, np.r_[3:20, [-1] * 10])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    duplicates=st.sampled_from([0, 6]),
    grouped=st.booleans(),
    frac=st.floats(0.05, 0.9),
    iterations=st.sampled_from([0, 5, 40, 400]),
    noise=st.sampled_from([0.0, 1e-3, 0.3]),
)
def test_screening_never_removes_an_atom_of_the_clarabel_optimum(
    seed, duplicates, grouped, frac, iterations, noise
):
    E, T, groups, lam = _problem(seed, duplicates, grouped, frac)
    groups_ = groups or [slice(0, T.shape[1])]
    cold = GroupLassoProblem(E, T, groups).solve(lam)
    norms = np.linalg.norm(cold.G, axis=1)
    support = norms > 1e-6 * norms.max()
    gram = ReducedGram(T)
    Q, C, _ = gram.update(E)
    rng = np.random.default_rng(seed)
    starts = [np.zeros_like(cold.G), cold.G * (1 + noise * rng.normal(size=cold.G.shape))]
    for G0 in starts:
        res = solve_reduced(Q, C, gram.c0, lam, G0, groups_,
                            WarmSettings(max_iter=iterations, newton=False, rtol=0.0))
        for G in (G0, res.G):
            dropped = screen(np.diag(Q), restricted_gap(Q, C, gram.c0, G, lam, groups_), lam,
                             groups_)
            assert not np.any(dropped & support)


def test_screening_at_the_optimum_removes_the_clearly_inactive_atoms():
    E, T, groups, lam = _problem(11, 0, False, 0.3)
    gram = ReducedGram(T)
    Q, C, _ = gram.update(E)
    G = WarmGroupLasso(T).solve(E, lam).G
    gap = restricted_gap(Q, C, gram.c0, G, lam, [slice(0, 3)])
    dropped = screen(np.diag(Q), gap, lam, [slice(0, 3)])
    clearly = np.linalg.norm(gap.S, axis=1) < 0.99 * lam
    assert clearly.any() and np.all(dropped[clearly])


def test_cold_fallback_when_fista_does_not_reach_the_target(monkeypatch):
    """No FISTA iterations allowed: the cold CVXPY solve answers (and if every CVXPY
    solver fails, the warm iterate is kept as "inaccurate")."""
    import convexdict_solvers.group_lasso.warm_master as wm

    E, T, groups, lam = _problem(5, 0, True, 0.3)
    master = WarmGroupLasso(T, groups, settings=WarmSettings(max_iter=0))
    sol = master.solve(E, lam)
    assert master.info.fallback and sol.solver == "clarabel"
    cold = GroupLassoProblem(E, T, groups).solve(lam)
    assert _objective(E, T, sol.G, lam, groups) == pytest.approx(
        _objective(E, T, cold.G, lam, groups), rel=1e-12)

    def broken(self, lam, solver="clarabel", fallback=True):
        raise wm.SolverFailure("simulated")

    monkeypatch.setattr(wm.GroupLassoProblem, "solve", broken)
    sol = WarmGroupLasso(T, groups, settings=WarmSettings(max_iter=0)).solve(E, lam)
    assert sol.status == "inaccurate" and sol.solver == "fista-newton"
    assert np.all(sol.G == 0)  # the warm start (zeros) was the best iterate


def test_master_option_is_validated():
    with pytest.raises(ValueError, match="'master'"):
        loop.column_generation(np.zeros((3, 2)), 0.1, price_fn=None, atoms_fn=None,
                               master="newton")


def _blobs(rng, n, d):
    centres = 2.0 * rng.normal(size=(4, d))
    return centres[rng.integers(0, 4, n)] + 0.4 * rng.normal(size=(n, d))


@pytest.mark.parametrize(("n", "d", "layers"), [(80, 2, 1), (25, 3, 1), (12, 2, 2)])
def test_certificates_are_unchanged(monkeypatch, n, d, layers):
    """Column generation with the warm and the cold master certifies the same optimum."""
    rng = np.random.default_rng(n + d)
    X = _blobs(rng, n, d)
    targets = [X, X @ rng.normal(size=(d, 3))] if layers == 2 else None
    lam = 0.2 * cd.lam_max(X) if targets is None else 0.15
    certs = {}
    for master in ("warm", "clarabel"):
        monkeypatch.setattr(loop, "DEFAULT_MASTER", master)
        certs[master] = cd.certify(X, lam, targets=targets, method="colgen")
    warm, cold = certs["warm"], certs["clarabel"]
    assert warm.certified and cold.certified
    assert warm.upper_bound == pytest.approx(cold.upper_bound, rel=1e-8)
    assert warm.solver == "fista-newton" and cold.solver == "clarabel"
    assert all(r.master_time > 0 for r in warm.rounds)
