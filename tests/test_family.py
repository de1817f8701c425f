"""Transcoders, crosscoders and the regularisation path in the convex program."""

import numpy as np
import pytest
from convexdict_solvers.group_lasso.cvxpy_solve import GroupLassoProblem

import convexdict as cd
from convexdict.convex.atoms import atoms_from_hyperplanes


def _data(rng, n=16):
    X = rng.normal(size=(n, 2))
    Y = np.tanh(X @ np.array([[1.0, -0.5, 0.3], [0.2, 0.8, -1.0]]))
    return X, Y


def test_transcoder_with_target_x_is_the_sae(rng):
    X, _ = _data(rng)
    sae = cd.certify(X, 0.3)
    tc = cd.certify(X, 0.3, target=X)
    cc = cd.certify(X, 0.3, targets=[X])
    assert tc.kind == "transcoder" and cc.kind == "crosscoder"
    assert tc.upper_bound == pytest.approx(sae.upper_bound, rel=1e-7)
    assert cc.upper_bound == pytest.approx(sae.upper_bound, rel=1e-7)


def test_transcoder_certificate_is_honest(rng):
    X, Y = _data(rng)
    cert = cd.certify(X, 0.1, target=Y)
    assert cert.certified
    assert isinstance(cert.sae, cd.Transcoder)
    assert cert.upper_bound == cd.transcoder_loss(cert.sae, X, Y, 0.1)
    assert cert.joint_bound <= cert.lower_bound + 1e-9
    # No random transcoder beats the lower bound.
    for _ in range(50):
        k = int(rng.integers(1, 8))
        tc = cd.Transcoder(
            rng.normal(size=(2, k)), rng.normal(size=k), rng.normal(size=(k, 3)), rng.normal(size=3)
        )
        assert cd.transcoder_loss(tc, X, Y, 0.1) >= cert.lower_bound - 1e-12


def test_crosscoder_matches_bruteforce_group_lasso(rng):
    """Independent reference: (P) with per-layer groups over every enumerated atom."""
    X, Y = _data(rng, n=10)
    lam = 0.15
    cert = cd.certify(X, lam, targets=[X, Y], method="colgen")
    assert cert.certified and isinstance(cert.sae, cd.Crosscoder)
    assert cert.upper_bound == cd.crosscoder_loss(cert.sae, X, [X, Y], lam)
    frame = cd.affine_frame(X)
    atoms = cd.enumerate_atoms(frame.coords(X))
    T = np.hstack([X, Y])
    groups = [slice(0, 2), slice(2, 5)]
    sol = GroupLassoProblem(atoms.E, T, groups).solve(lam)
    resid = T - sol.b - atoms.E.T @ sol.G
    penalty = sum(np.linalg.norm(sol.G[:, g], axis=1).sum() for g in groups)
    reference = (0.5 * np.sum(resid**2) + lam * penalty) / len(X)
    assert cert.upper_bound == pytest.approx(reference, rel=1e-6)
    # Random extra atoms cannot improve the crosscoder optimum either.
    U = rng.normal(size=(500, 3))
    U[:, :2] /= np.linalg.norm(U[:, :2], axis=1, keepdims=True)
    extra = atoms_from_hyperplanes(frame.coords(X), U)
    sol2 = GroupLassoProblem(extra.E, T, groups).solve(lam)
    resid2 = T - sol2.b - extra.E.T @ sol2.G
    pen2 = sum(np.linalg.norm(sol2.G[:, g], axis=1).sum() for g in groups)
    assert (0.5 * np.sum(resid2**2) + lam * pen2) / len(X) >= cert.lower_bound - 1e-9


def test_target_arguments_are_validated(rng):
    X, Y = _data(rng)
    with pytest.raises(ValueError, match="exclusive"):
        cd.certify(X, 0.1, target=Y, targets=[Y])
    with pytest.raises(ValueError, match="'target'.*rows"):
        cd.certify(X, 0.1, target=Y[:-1])
    with pytest.raises(ValueError, match="'targets"):
        cd.certify(X, 0.1, targets=[])


def test_certify_path_matches_independent_certificates(rng):
    X, _ = _data(rng, n=30)
    lams = list(cd.lam_max(X) * np.array([0.1, 0.5, 0.25]))
    path = cd.certify_path(X, lams)
    assert [c.lam for c in path] == lams
    for cert, lam in zip(path, lams, strict=True):
        alone = cd.certify(X, lam)
        assert cert.certified
        assert cert.upper_bound == pytest.approx(alone.upper_bound, rel=1e-6)
    # Along the path, reconstruction error falls and the penalty share changes with lam.
    recon = {c.lam: cd.sae_loss_terms(c.sae, X, c.lam).reconstruction for c in path}
    ordered = [recon[lam] for lam in sorted(lams)]
    assert ordered == sorted(ordered)


def test_warm_start_needs_the_same_data(rng):
    X, _ = _data(rng)
    cert = cd.certify(X, 0.2)
    with pytest.raises(ValueError, match="warm_start"):
        cd.certify(X[:-2], 0.2, warm_start=cert, method="colgen")


@pytest.mark.parametrize("kind", ["transcoder", "crosscoder"])
def test_padding_keeps_the_optimum(rng, kind):
    X, Y = _data(rng, n=12)
    kwargs = {"target": Y} if kind == "transcoder" else {"targets": [X, Y]}
    cert = cd.certify(X, 0.2, **kwargs)
    wide = cd.certify(X, 0.2, width=cert.width_needed + 2, **kwargs)
    assert wide.sae.width == cert.width_needed + 2
    assert wide.upper_bound == pytest.approx(cert.upper_bound, rel=1e-12)
