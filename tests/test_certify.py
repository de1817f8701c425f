import cvxpy as cp
import numpy as np
import pytest
from conftest import random_sae
from convexdict_solvers.group_lasso.cvxpy_solve import GroupLassoProblem
from hypothesis import given, settings
from hypothesis import strategies as st

import convexdict as cd
from convexdict.convex.atoms import atoms_from_hyperplanes


def _blob(rng, n=25, d=2):
    centres = np.array([[1.5, 0.0], [-1.0, 1.0], [0.0, -1.5], [0.5, 0.5]])[:, :d]
    if d > 2:
        centres = rng.normal(size=(4, d)) * 1.5
    return centres[rng.integers(0, len(centres), n)] + 0.3 * rng.normal(size=(n, d))


def _assert_certificate_is_honest(cert, X, lam):
    assert cert.sae is not None
    assert cert.upper_bound == cd.sae_loss(cert.sae, X, lam)  # recomputed, bit for bit
    assert cert.lower_bound <= cert.upper_bound + 1e-12
    assert cert.gap == pytest.approx(cert.upper_bound - cert.lower_bound)


@pytest.mark.parametrize("method", ["direct", "colgen"])
def test_certifies_small_2d(rng, method):
    X = _blob(rng)
    lam = 0.3 * cd.lam_max(X)
    cert = cd.certify(X, lam, method=method)
    assert cert.certified
    _assert_certificate_is_honest(cert, X, lam)
    assert cert.width_needed == cert.sae.width >= 1
    assert cert.joint_bound <= cert.lower_bound + 1e-9


def test_direct_and_colgen_agree(rng):
    X = _blob(rng, n=30)
    lam = 0.2 * cd.lam_max(X)
    a = cd.certify(X, lam, method="direct")
    b = cd.certify(X, lam, method="colgen")
    assert a.upper_bound == pytest.approx(b.upper_bound, rel=1e-6)


def test_random_hyperplane_atoms_do_not_improve_on_E0(rng):
    """(P) over E0 equals (P) over E0 plus thousands of random realizable atoms."""
    X = _blob(rng, n=14)
    lam = 0.25 * cd.lam_max(X)
    frame = cd.affine_frame(X)
    Y = frame.coords(X)
    E0 = cd.enumerate_atoms(Y)
    U = rng.normal(size=(3000, 3))
    U[:, :2] /= np.linalg.norm(U[:, :2], axis=1, keepdims=True)
    U[:, 2] *= 0.9
    extra = atoms_from_hyperplanes(Y, U)
    base = GroupLassoProblem(E0.E, X).solve(lam)
    both = GroupLassoProblem(np.vstack([E0.E, extra.E]), X).solve(lam)
    only_random = GroupLassoProblem(extra.E, X).solve(lam)

    def value(E, sol):
        res = X - sol.b - E.T @ sol.G
        return (0.5 * np.sum(res**2) + lam * np.linalg.norm(sol.G, axis=1).sum()) / len(X)

    v0 = value(E0.E, base)
    v1 = value(np.vstack([E0.E, extra.E]), both)
    v2 = value(extra.E, only_random)
    assert v1 == pytest.approx(v0, rel=1e-6)
    assert v2 >= v0 - 1e-7  # random atoms alone are a subset of E: never better


def test_bruteforce_1d_threshold_grid(rng):
    """Independent reference in d = 1: a dense grid of ReLU thresholds (all realizable)."""
    X = np.sort(rng.normal(size=(8, 1)), axis=0)
    lam = 0.2 * cd.lam_max(X)
    cert = cd.certify(X, lam)
    grid = np.linspace(X.min() - 0.5, X.max() + 0.5, 2001)
    A = np.vstack(
        [np.maximum(X[:, 0] - t, 0) for t in grid] + [np.maximum(t - X[:, 0], 0) for t in grid]
    )
    A = A[A.sum(axis=1) > 0]
    E = A / A.sum(axis=1, keepdims=True)
    sol = GroupLassoProblem(E, X).solve(lam)
    res = X - sol.b - E.T @ sol.G
    grid_value = (0.5 * np.sum(res**2) + lam * np.abs(sol.G).sum()) / len(X)
    assert grid_value >= cert.lower_bound - 1e-8
    assert grid_value == pytest.approx(cert.upper_bound, rel=1e-3)


def test_lam_max_gives_the_zero_sae(rng):
    X = _blob(rng)
    lmax = cd.lam_max(X)
    above = cd.certify(X, lmax * 1.001)
    assert above.certified and above.width_needed == 0
    np.testing.assert_allclose(above.sae.b_dec, X.mean(axis=0), atol=1e-7)
    expected = 0.5 * np.sum((X - X.mean(0)) ** 2) / len(X)
    assert above.upper_bound == pytest.approx(expected, rel=1e-9)
    below = cd.certify(X, lmax * 0.97)
    assert below.width_needed >= 1
    assert below.upper_bound < expected


def test_joint_closed_form_matches_cvxpy(rng):
    X = _blob(rng, n=20)
    lam = 0.4
    jw = cd.joint_wide_limit(X, lam)
    b = cp.Variable(2)
    M = cp.Variable((20, 2))
    obj = (
        0.5 * cp.sum_squares(X - np.ones((20, 1)) @ cp.reshape(b, (1, 2), order="C") - M)
        + lam * cp.sum(cp.norm(M, 2, axis=1))
    ) / 20
    value = cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL)
    assert jw.primal_value == pytest.approx(value, rel=1e-7)
    assert jw.lower_bound == pytest.approx(value, rel=1e-7)
    assert jw.lower_bound <= value + 1e-9
    norms = np.linalg.norm(X - jw.b, axis=1)
    expected_codes = np.maximum(0, 1 - lam / norms)[:, None] * (X - jw.b)
    np.testing.assert_allclose(jw.codes, expected_codes)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 100_000), width=st.integers(1, 12), scale=st.floats(0.05, 3.0))
def test_no_sae_beats_the_lower_bound(seed, width, scale):
    rng = np.random.default_rng(seed)
    X = _blob(np.random.default_rng(7), n=20)
    lam = 0.3
    cert = _cached_certificate(lam)
    sae = random_sae(rng, 2, width, scale)
    assert cd.sae_loss(sae, X, lam) >= cert.lower_bound - 1e-12
    assert cd.dual_bound(X, lam, X - sae.reconstruct(X)) <= cert.upper_bound + 1e-12


_CACHE: dict = {}


def _cached_certificate(lam):
    if lam not in _CACHE:
        X = _blob(np.random.default_rng(7), n=20)
        _CACHE[lam] = cd.certify(X, lam)
    return _CACHE[lam]


def test_sgd_trained_sae_never_beats_the_lower_bound():
    torch = pytest.importorskip("torch")
    X = _blob(np.random.default_rng(7), n=20)
    lam = 0.3
    cert = _cached_certificate(lam)
    torch.manual_seed(0)
    Xt = torch.tensor(X)
    W_enc = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    b_enc = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    W_dec = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    b_dec = Xt.mean(0).clone().requires_grad_(True)
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=0.02)
    for _ in range(800):
        Z = torch.relu(Xt @ W_enc + b_enc)
        loss = (0.5 * ((Xt - Z @ W_dec - b_dec) ** 2).sum(1) + lam * Z @ W_dec.norm(dim=1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    sae = cd.SAE(*(t.detach().numpy() for t in (W_enc, b_enc, W_dec, b_dec)))
    assert cd.sae_loss(sae, X, lam) >= cert.lower_bound - 1e-12


def test_clarabel_and_scs_agree(rng):
    X = _blob(rng, n=15)
    lam = 0.3 * cd.lam_max(X)
    a = cd.certify(X, lam, solver="clarabel")
    b = cd.certify(X, lam, solver="scs", tol=1e-4)
    assert b.solver in ("scs", "clarabel")
    assert a.certified
    assert b.upper_bound == pytest.approx(a.upper_bound, rel=1e-4)
    assert b.lower_bound <= a.upper_bound + 1e-12


@pytest.mark.parametrize(
    "X",
    [
        np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [0.5, 0.5]]),  # collinear
        np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),  # duplicates
        np.array([[0.3], [1.0], [-2.0], [0.5]]),  # d = 1
        np.array([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]),  # N <= d
        np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]),  # all points equal
    ],
    ids=["collinear", "duplicates", "d1", "N<=d", "constant"],
)
def test_degenerate_data_certify(X):
    lam = 0.2 * max(cd.lam_max(X), 1e-3)
    cert = cd.certify(X, lam)
    assert cert.certified
    _assert_certificate_is_honest(cert, X, lam)
    assert cert.rank <= min(X.shape[0] - 1, X.shape[1])


def test_width_semantics(rng):
    X = _blob(rng, n=12)
    lam = 0.3 * cd.lam_max(X)
    cert = cd.certify(X, lam)
    k = cert.width_needed
    wide = cd.certify(X, lam, width=k + 3)
    assert wide.certified and wide.sae.width == k + 3
    assert wide.upper_bound == pytest.approx(cert.upper_bound, rel=1e-12)
    # Below K* the fixed-width branch and bound runs (here with a tiny budget): whatever it
    # returns is an explicit width-(K*-1) SAE and a bound no lower than P*'s.
    narrow = cd.certify(X, lam, width=max(k - 1, 0), time_limit=2.0, max_nodes=50)
    if k >= 1:
        assert narrow.search is not None
        assert narrow.sae.width == k - 1
        assert narrow.upper_bound == cd.sae_loss(narrow.sae, X, lam)
        assert cert.lower_bound - 1e-12 <= narrow.lower_bound <= narrow.upper_bound
        assert narrow.certified or "budget ran out" in narrow.message


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(lam=0.0), "'lam'"),
        (dict(lam=-1.0), "'lam'"),
        (dict(lam=0.1, solver="mosek"), "'solver'"),
        (dict(lam=0.1, width=-2), "'width'"),
        (dict(lam=0.1, method="magic"), "'method'"),
    ],
)
def test_certify_rejects_bad_arguments(kwargs, needle):
    X = np.random.default_rng(0).normal(size=(6, 2))
    with pytest.raises(ValueError, match=needle):
        cd.certify(X, **kwargs)


def test_certify_rejects_bad_data():
    with pytest.raises(ValueError, match="'X'.*finite"):
        cd.certify(np.array([[np.nan, 1.0], [0.0, 1.0]]), 0.1)
    with pytest.raises(ValueError, match="'X'.*2-D"):
        cd.certify(np.zeros(5), 0.1)


def test_too_large_problem_points_to_joint_bound():
    X = np.random.default_rng(0).normal(size=(400, 6))
    with pytest.raises(ValueError, match="joint_bound"):
        cd.certify(X, 0.1)


def test_dual_bound_of_any_residual_is_below_the_optimum(rng):
    X = _blob(rng, n=15)
    lam = 0.3 * cd.lam_max(X)
    cert = cd.certify(X, lam)
    for _ in range(20):
        R = rng.normal(size=X.shape) * rng.uniform(0.01, 3)
        assert cd.dual_bound(X, lam, R) <= cert.upper_bound + 1e-12
    # The optimum's own residual certifies it.
    best = cd.dual_bound(X, lam, X - cert.sae.reconstruct(X))
    assert best == pytest.approx(cert.upper_bound, rel=1e-6)


def test_solver_failure_gives_an_honest_uncertified_result(rng, monkeypatch):
    import convexdict_solvers.group_lasso.cvxpy_solve as gl

    def broken(self, lam, solver="clarabel", fallback=True):
        raise gl.SolverFailure("clarabel: simulated failure; scs: simulated failure")

    monkeypatch.setattr(gl.GroupLassoProblem, "solve", broken)
    # The cold CVXPY master (the default warm master needs no CVXPY solver).
    monkeypatch.setattr("convexdict_solvers.colgen.loop.DEFAULT_MASTER", "clarabel")
    X = _blob(rng, n=12)
    lam = 0.3 * cd.lam_max(X)
    cert = cd.certify(X, lam, method="colgen")
    assert not cert.certified
    assert "failed" in cert.message
    monkeypatch.undo()
    truth = cd.certify(X, lam)
    assert cert.lower_bound <= truth.upper_bound + 1e-12  # still a valid bound
    assert cert.upper_bound == cd.sae_loss(cert.sae, X, lam)


def test_solver_error_falls_back_to_the_other_solver(rng, monkeypatch):
    import convexdict_solvers.group_lasso.cvxpy_solve as gl

    bad = dict(gl.SOLVERS["clarabel"])
    bad["options"] = {"max_iter": 0}
    monkeypatch.setitem(gl.SOLVERS, "clarabel", bad)
    X = _blob(rng, n=10)
    lam = 0.3 * cd.lam_max(X)
    sol = GroupLassoProblem(np.eye(10)[:3], X).solve(lam, "clarabel")
    assert sol.solver == "scs"


def test_sparse_support_keeps_the_optimum_with_fewer_latents(rng):
    X = _blob(rng, n=40)
    lam = 0.2 * cd.lam_max(X)
    wide = cd.certify(X, lam, sparsify=False)
    sparse = cd.certify(X, lam)
    assert sparse.certified and wide.certified
    assert sparse.width_needed <= wide.width_needed
    assert sparse.upper_bound == pytest.approx(wide.upper_bound, rel=1e-6)
    assert sparse.upper_bound == cd.sae_loss(sparse.sae, X, lam)


@pytest.mark.parametrize("max_rounds", [1, 2, 3])
def test_round_limit_gives_an_honest_result(rng, max_rounds):
    X = _blob(rng, n=60)
    lam = 0.1 * cd.lam_max(X)
    cert = cd.certify(X, lam, method="colgen", max_rounds=max_rounds, atoms_per_round=3)
    _assert_certificate_is_honest(cert, X, lam)
    if not cert.certified:
        assert "stopped before pricing converged" in cert.message


def test_merging_parallel_latents_preserves_the_function(rng):
    from convexdict.convex.merge import merge_parallel_latents

    X = rng.normal(size=(30, 2))
    # Two latents with the same direction and compatible signs (nested half-planes).
    W_enc = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    b_enc = np.array([-0.5, -1.0, 0.2])
    W_dec = np.array([[1.0, 1.0], [2.0, 2.0], [0.0, 3.0]])
    sae = cd.SAE(W_enc, b_enc, W_dec, np.zeros(2))
    W2, b2, D2 = merge_parallel_latents(W_enc, b_enc, W_dec, X)
    merged = cd.SAE(W2, b2, D2, np.zeros(2))
    assert merged.width == 2
    np.testing.assert_allclose(merged.reconstruct(X), sae.reconstruct(X), atol=1e-12)
    assert cd.sae_loss(merged, X, 0.3) == pytest.approx(cd.sae_loss(sae, X, 0.3), rel=1e-12)
    # Opposite signs on some sample: not merged.
    W_bad = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    assert merge_parallel_latents(W_bad, np.zeros(3), W_dec, X)[2].shape[0] == 3


def test_torch_backend_gives_the_same_certificate(rng):
    X = _blob(rng, n=30)
    lam = 0.25 * cd.lam_max(X)
    a = cd.certify(X, lam)
    b = cd.certify(X, lam, backend="torch", device="cpu")
    assert b.certified and b.method == "colgen-torch"
    assert b.upper_bound == pytest.approx(a.upper_bound, rel=1e-6)
    assert b.upper_bound == cd.sae_loss(b.sae, X, lam)
    assert cd.joint_bound(X, lam, backend="torch") == pytest.approx(
        cd.joint_bound(X, lam), rel=1e-9
    )
    with pytest.raises(ValueError, match="'backend'"):
        cd.certify(X, lam, backend="jax")
