"""The certificate file and the independent exact verifier (issue "Certificates anyone can
check"): finder certificates verify, float and exact verdicts agree, near-degenerate data
are decided exactly, tampered files are refuted, large ones are out of reach, and the CLI
answers with exit codes 0 / 1 / 2."""

import hashlib
import json
from fractions import Fraction
from itertools import combinations

import numpy as np
import pytest

import convexdict as cd
from convexdict.cli import main
from convexdict.convex.certificate_file import SCHEMA, certificate_payload, data_sha256
from convexdict.verification import verify
from convexdict.verification._bounds import exact_centred
from convexdict.verification._enumerate import (
    _signed_values,
    check_feasible,
    cofactor_normals,
    exact_columns,
)
from convexdict.verification._exact import dyadic

CONTRACT_META = ("schema", "kind", "lam", "tol", "upper_bound", "lower_bound", "data_sha256",
                 "width")


def clusters(seed: int = 0, per: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return np.vstack([c + 0.1 * rng.normal(size=(per, 2)) for c in centres])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A certified SAE on 24 points, saved once for the module."""
    X = clusters()
    cert = cd.certify(X, 0.2)
    assert cert.certified
    path = tmp_path_factory.mktemp("cert") / "cert.npz"
    cert.save(path)
    return X, cert, path


def _rewrite(src, dst, arrays=None, meta=None):
    """Copy a certificate file with some arrays or meta fields replaced (a tampered file)."""
    with np.load(src, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    fields = json.loads(data["meta"].item().decode("utf-8"))
    fields.update(meta or {})
    data.update(arrays or {})
    data["meta"] = np.array(json.dumps(fields).encode("utf-8"))
    with open(dst, "wb") as fh:
        np.savez(fh, **data)
    return dst


def _dual_value(R, T):
    return float((np.sum(R * (T - T.mean(axis=0))) - 0.5 * np.sum(R * R)) / R.shape[0])


def _check_both(path, X, **kw):
    """Exact and float verdicts, which must agree."""
    exact = verify(path, X, **kw)
    loose = verify(path, X, exact=False, **kw)
    assert exact.status == loose.status, (exact.reason, loose.reason)
    return exact


# --- the file ------------------------------------------------------------------------------


def test_save_writes_the_contract_schema(saved):
    X, cert, path = saved
    with np.load(path, allow_pickle=False) as npz:
        names = set(npz.files)
        meta = json.loads(npz["meta"].item().decode("utf-8"))
        R = npz["R"]
    assert {"W_enc", "b_enc", "W_dec", "b_dec", "R", "meta", "frame_origin",
            "frame_basis"} <= names
    assert all(key in meta for key in CONTRACT_META)
    assert meta["schema"] == SCHEMA == "convexdict-certificate/1" and meta["kind"] == "sae"
    assert meta["lam"] == 0.2 and meta["upper_bound"] == cert.upper_bound
    assert meta["lower_bound"] == cert.lower_bound and meta["width"] == cert.sae.width
    h = hashlib.sha256(repr(X.shape).encode() + np.ascontiguousarray(X).tobytes()).hexdigest()
    assert meta["data_sha256"] == h == data_sha256(X)
    # R exactly as used for the bound: lower_bound is its dual value.
    assert _dual_value(R, X) == pytest.approx(cert.lower_bound, rel=1e-12)
    assert not list(path.parent.glob("*.tmp"))


def test_save_refuses_a_certificate_without_its_data_hash(saved):
    from dataclasses import replace

    _, cert, _ = saved
    with pytest.raises(ValueError, match="data_sha256"):
        certificate_payload(replace(cert, data_sha256=""))


def test_the_verifier_imports_nothing_from_the_finder():
    import ast
    import sys
    from pathlib import Path

    import convexdict.verification as package

    allowed = {"numpy", "__future__"} | set(sys.stdlib_module_names)
    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:  # inside the verification package
                    continue
                names = [("." * node.level) + (node.module or "")]
            else:
                continue
            for name in names:
                ok = (name.split(".")[0] in allowed
                      or name.startswith("convexdict.verification")
                      or name in ("convexdict.convex.certificate_file", "convexdict.tolerance"))
                assert ok, f"{path.name} imports {name}"


# --- finder certificates verify exactly ----------------------------------------------------


def _grid_with_degeneracies():
    """Duplicates, exactly collinear triples and a dyadic grid."""
    g = np.array([[i, j] for i in range(4) for j in range(3)], dtype=float) / 4
    return np.vstack([g, g[:2], [[0.125, 0.125]]])


def _plane_in_3d(seed=3):
    rng = np.random.default_rng(seed)
    P = rng.integers(-8, 9, size=(14, 2)) / 8.0
    return np.column_stack([P, P[:, 0] + 0.5 * P[:, 1]])  # exactly coplanar (dyadic)


CASES = {
    "d2": lambda: (np.random.default_rng(1).normal(size=(25, 2)), 0.3, {}),
    "d3": lambda: (np.random.default_rng(2).normal(size=(14, 3)), 0.3, {}),
    "degenerate": lambda: (_grid_with_degeneracies(), 0.05, {}),
    "rank2_in_3d": lambda: (_plane_in_3d(), 0.1, {}),
    "mean_only": lambda: (clusters(), 50.0, {}),
    "padded": lambda: (clusters(), 0.2, {"width": 12}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_finder_certificates_verify_exactly(name, tmp_path):
    X, lam, kw = CASES[name]()
    cert = cd.certify(X, lam, **kw)
    cert.save(tmp_path / "c.npz")
    result = _check_both(tmp_path / "c.npz", X)
    assert cert.certified and result.verified, result.reason
    lo, up = result.lower_interval, result.upper_interval
    # Claims are float64 evaluations: inside the rigorous intervals up to CLAIM_RTOL.
    assert lo[0] * (1 - 1e-9) <= cert.lower_bound <= lo[1] * (1 + 1e-9)
    assert up[0] * (1 - 1e-9) <= cert.upper_bound <= up[1] * (1 + 1e-9)
    assert result.details["rank"] == cert.rank


def test_transcoder_and_crosscoder_certificates_verify(tmp_path):
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(16, 2)), rng.normal(size=(16, 3))
    layers = [rng.normal(size=(16, 2)), rng.normal(size=(16, 1))]
    cd.certify(X, 0.3, target=Y).save(tmp_path / "t.npz")
    cd.certify(X, 0.3, targets=layers).save(tmp_path / "x.npz")
    assert _check_both(tmp_path / "t.npz", X, target=Y).verified
    assert _check_both(tmp_path / "x.npz", X, targets=layers).verified
    wrong = verify(tmp_path / "t.npz", X, target=Y[:, :2])
    assert wrong.status == "refuted" and "data_sha256" in wrong.reason
    with pytest.raises(ValueError, match="'target'"):
        verify(tmp_path / "t.npz", X)


def test_fixed_width_tree_claim_is_out_of_reach_with_the_wide_bound(tmp_path):
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.2]])
    cert = cd.certify(X, 0.05, width=1, time_limit=10, max_nodes=40)
    cert.save(tmp_path / "f.npz")
    meta = json.loads(np.load(tmp_path / "f.npz")["meta"].item())
    assert meta["fixed_width"]["not_checkable"]
    result = _check_both(tmp_path / "f.npz", X)
    assert result.status == "out_of_reach" and "branch-and-bound tree" in result.reason
    up = result.upper_interval
    assert up[0] * (1 - 1e-9) <= cert.upper_bound <= up[1] * (1 + 1e-9)
    assert np.isfinite(result.lower_interval[0])  # the verified wide bound
    assert result.lower_interval[1] < cert.lower_bound


# --- exact predicates on near-degenerate data ----------------------------------------------


def _reference_signs(X, subset):
    """Exact side of every point w.r.t. the line through two points (Fractions)."""
    (ax, ay), (bx, by) = (map(Fraction, X[i]) for i in subset)
    out = []
    for x, y in X:
        v = (bx - ax) * (Fraction(y) - ay) - (by - ay) * (Fraction(x) - ax)
        out.append((v > 0) - (v < 0))
    return np.array(out)


@pytest.mark.parametrize("a", [0.5, 5e7, 3e-200])
def test_sign_filter_is_exact_where_float_orientation_fails(a):
    # Kettner et al.'s classroom example: points a few ulps around (a, a), and the line
    # through (12 a, 12 a) and (24 a, 24 a); the naive float orientation gets sides wrong.
    ulp = np.spacing(a)
    grid = np.array([[a + i * ulp, a + j * ulp] for i in range(16) for j in range(16)])
    X = np.vstack([[[12 * a, 12 * a], [24 * a, 24 * a]], grid])
    Xi, e = dyadic(X)
    subsets = np.array([[0, 1], [1, 0], [2, 40]])
    normals = cofactor_normals(Xi, subsets)
    s, _, fallbacks = _signed_values(X, Xi, e, subsets, normals)
    assert fallbacks > 0
    naive_errors = 0
    for b, (i, j) in enumerate(subsets):
        ref = _reference_signs(X, (i, j))
        assert np.array_equal(np.sign(s[b]), ref)
        p, q = X[i], X[j]
        naive = (q[0] - p[0]) * (X[:, 1] - p[1]) - (q[1] - p[1]) * (X[:, 0] - p[0])
        naive_errors += int((np.sign(naive) != ref).sum())
    assert naive_errors > 0  # the data are adversarial for plain float64


def _hull_coordinates(X):
    """Exact affine coordinates w.r.t. data points spanning the hull (Fractions), by a
    route independent of the verifier's column projection."""
    Q = [[Fraction(v) for v in row] for row in X]
    basis, coords_rows = [], []
    diffs = [[a - b for a, b in zip(row, Q[0], strict=True)] for row in Q]
    # Gram-Schmidt-free: greedily keep differences independent of the kept ones.
    for row in diffs:
        trial = basis + [row]
        if _rank(trial) == len(trial):
            basis = trial
    G = [[sum(a * b for a, b in zip(u, v, strict=True)) for v in basis] for u in basis]
    Ginv = _inverse(G)
    for row in diffs:
        proj = [sum(a * b for a, b in zip(row, u, strict=True)) for u in basis]
        coords_rows.append([sum(Ginv[i][j] * proj[j] for j in range(len(basis)))
                            for i in range(len(basis))])
    return coords_rows


def _rank(rows):
    M = [list(r) for r in rows]
    rank, col = 0, 0
    n_cols = len(M[0]) if M else 0
    while rank < len(M) and col < n_cols:
        piv = next((i for i in range(rank, len(M)) if M[i][col] != 0), None)
        if piv is None:
            col += 1
            continue
        M[rank], M[piv] = M[piv], M[rank]
        for i in range(rank + 1, len(M)):
            f = M[i][col] / M[rank][col]
            M[i] = [a - f * b for a, b in zip(M[i], M[rank], strict=True)]
        rank, col = rank + 1, col + 1
    return rank


def _inverse(G):
    n = len(G)
    A = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(G)]
    for c in range(n):
        p = next(i for i in range(c, n) if A[i][c] != 0)
        A[c], A[p] = A[p], A[c]
        A[c] = [v / A[c][c] for v in A[c]]
        for i in range(n):
            if i != c and A[i][c] != 0:
                A[i] = [a - A[i][c] * b for a, b in zip(A[i], A[c], strict=True)]
    return [row[n:] for row in A]


def _det(M):
    if not M:
        return Fraction(1)
    return sum((-1) ** j * M[0][j] * _det([r[:j] + r[j + 1:] for r in M[1:]])
               for j in range(len(M)))


def _reference_max_ratio2(X, R):
    """``max_e ||Rc^T e||^2`` over E0 in Fractions (slow; tiny N only)."""
    C = _hull_coordinates(X)
    r, n = (len(C[0]) if C else 0), len(X)
    Rq = [[Fraction(v) for v in row] for row in R]
    mean = [sum(col) / n for col in zip(*Rq, strict=True)]
    Rc = [[v - m for v, m in zip(row, mean, strict=True)] for row in Rq]
    best = Fraction(0)
    for subset in combinations(range(n), r):
        base = [[a - b for a, b in zip(C[i], C[subset[0]], strict=True)] for i in subset[1:]]
        s = [_det(base + [[a - b for a, b in zip(C[m], C[subset[0]], strict=True)]])
             for m in range(n)]
        if all(v == 0 for v in s) and r > 0:
            continue
        for sigma in (1, -1):
            a = [max(sigma * v, 0) for v in s] if r else [Fraction(1)] * n
            w = sum(a)
            if w == 0:
                continue
            v = [sum(a[m] * Rc[m][k] for m in range(n)) for k in range(len(Rc[0]))]
            best = max(best, sum(x * x for x in v) / (w * w))
    return best


@pytest.mark.parametrize("data", ["degenerate", "rank2_in_3d", "collinear", "offset"])
def test_enumeration_matches_a_bruteforce_reference_at_the_boundary(data):
    rng = np.random.default_rng(7)
    X = {
        "degenerate": _grid_with_degeneracies()[::2],
        "rank2_in_3d": _plane_in_3d()[:8],
        "collinear": np.outer(np.arange(7) / 8.0, [1.0, 3.0]) + 1.0,
        "offset": 1e8 + np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 1e-7], [3, 2e-7]]),
    }[data]
    R = rng.normal(size=(len(X), 2))
    best = _reference_max_ratio2(X, R)
    Xi, e = dyadic(X)
    dual = exact_centred(R)
    root = float(best) ** 0.5
    exact_norms = 0
    for lam in (np.nextafter(root, 0), root, np.nextafter(root, 2 * root)):
        res = check_feasible(X, Xi, e, dual, float(lam), [slice(0, 2)])
        assert res.feasible == (Fraction(float(lam)) ** 2 >= best), (data, lam)
        assert res.rank == len(exact_columns(Xi))
        exact_norms += res.n_norm_fallbacks
    assert exact_norms > 0  # one ulp from the maximum, the norm filter defers to exact


@pytest.mark.parametrize("kind", ["near_line", "offset_1e8", "nearly_collinear"])
def test_near_degenerate_certificates_float_and_exact_agree(kind, tmp_path):
    rng = np.random.default_rng(11)
    base = rng.normal(size=(14, 2))
    if kind == "near_line":
        t = np.linspace(-1, 1, 6)
        line = np.column_stack([t, t / 3])
        line[2, 1] *= 1 + 1e-15  # within 1e-15 relative of the line through the others
        X = np.vstack([base, line])
    elif kind == "offset_1e8":
        X = 1e8 + base
    else:
        X = np.vstack([base, [[0.1, 0.1], [0.2, 0.2 + 1e-16], [0.3, 0.3 - 1e-16]]])
    cert = cd.certify(X, 0.3)
    cert.save(tmp_path / "c.npz")
    result = _check_both(tmp_path / "c.npz", X)
    if cert.certified:
        assert result.verified, result.reason
    assert result.details["rank"] == 2


@pytest.mark.parametrize("seed", range(12))
def test_finder_never_claims_what_exact_verification_refutes(tmp_path, seed):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=10)
    X = np.column_stack([t, 0.5 * t + 1e-13 * rng.normal(size=10)])
    cert = cd.certify(X, 0.3)
    cert.save(tmp_path / "c.npz")
    result = verify(tmp_path / "c.npz", X)
    assert result.details["rank"] == 2
    assert not (cert.certified and result.status == "refuted"), result.reason


# --- tampered files are refuted ------------------------------------------------------------


def _tampered(saved, tmp_path):
    X, cert, path = saved
    npz = np.load(path)
    R, W = npz["R"], npz["W_dec"]
    bumped = W.copy()
    bumped[0] *= 1.001
    return {
        "scaled_dual_claim_kept": dict(arrays={"R": R * 1.01}),
        "scaled_dual_claim_updated": dict(arrays={"R": R * (1 + 1e-8)},
                                          meta={"lower_bound": _dual_value(R * (1 + 1e-8), X)}),
        "perturbed_decoder": dict(arrays={"W_dec": bumped}),
        "perturbed_decoder_claim_updated": dict(
            arrays={"W_dec": bumped},
            meta={"upper_bound": cd.sae_loss(cd.SAE(npz["W_enc"], npz["b_enc"], bumped,
                                                    npz["b_dec"]), X, 0.2)}),
        "lam_up": dict(meta={"lam": 0.2 * 1.01}),
        "lam_down": dict(meta={"lam": 0.2 * 0.99}),
        "nan_weight": dict(arrays={"b_enc": np.full_like(npz["b_enc"], np.nan)}),
        "claims_tighter": dict(meta={"lower_bound": cert.lower_bound * (1 + 1e-7)}),
    }


@pytest.mark.parametrize("how", ["scaled_dual_claim_kept", "scaled_dual_claim_updated",
                                 "perturbed_decoder", "perturbed_decoder_claim_updated",
                                 "lam_up", "lam_down", "nan_weight", "claims_tighter"])
def test_tampered_certificates_are_refuted(saved, tmp_path, how):
    X = saved[0]
    path = _rewrite(saved[2], tmp_path / "bad.npz", **_tampered(saved, tmp_path)[how])
    result = verify(path, X)
    assert result.status == "refuted" and not result.verified, result.reason
    if how == "scaled_dual_claim_updated":
        assert "infeasible" in result.reason and "samples" in result.reason


def test_wrong_data_is_a_hash_mismatch(saved):
    X, _, path = saved
    Y = X.copy()
    Y[3, 1] = np.nextafter(Y[3, 1], 1.0)  # one ulp
    result = verify(path, Y)
    assert result.status == "refuted" and "data_sha256" in result.reason


# --- size caps -----------------------------------------------------------------------------


def test_above_the_cap_is_out_of_reach(saved):
    X, cert, path = saved
    result = verify(path, X, max_predicates=1_000)
    assert result.status == "out_of_reach" and "cap" in result.reason
    assert result.upper_interval[0] * (1 - 1e-9) <= cert.upper_bound
    assert np.isnan(result.lower_interval[0])
    assert verify(path, X, max_loss_terms=10).status == "out_of_reach"


def test_default_cap_refuses_large_data_quickly(tmp_path):
    from types import SimpleNamespace

    X = np.random.default_rng(0).normal(size=(20_001, 2))
    sae = cd.SAE.zeros(X.mean(axis=0))
    fake = SimpleNamespace(kind="sae", lam=0.1, tol=1e-6, upper_bound=cd.sae_loss(sae, X, 0.1),
                           lower_bound=0.0, certified=False, data_sha256=data_sha256(X),
                           width=0, width_needed=0, n_samples=len(X), d=2, rank=2, sae=sae,
                           dual_point=np.zeros_like(X), frame=None, search=None, message="")
    np.savez(tmp_path / "big.npz", **certificate_payload(fake))
    result = verify(tmp_path / "big.npz", X)
    assert result.status == "out_of_reach" and result.timings["total"] < 10


# --- the command line ----------------------------------------------------------------------


def _one_line_error(capsys, code):
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_cli_exit_codes(saved, tmp_path, capsys):
    X, _, path = saved
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", X + 1.0)
    out = tmp_path / "v.json"
    assert main(["verify", str(path), str(tmp_path / "X.npy"), "--json", str(out)]) == 0
    assert capsys.readouterr().out.startswith("verified")
    assert json.loads(out.read_text())["status"] == "verified"
    assert main(["verify", str(path), str(tmp_path / "Y.npy")]) == 1
    assert "data_sha256" in capsys.readouterr().out
    _one_line_error(capsys, main(["verify", str(tmp_path / "none.npz"), str(tmp_path / "X.npy")]))
    (tmp_path / "junk.npz").write_text("not a certificate")
    err = _one_line_error(capsys, main(["verify", str(tmp_path / "junk.npz"),
                                        str(tmp_path / "X.npy")]))
    assert "certificate file" in err
    _one_line_error(capsys, main(["verify", str(tmp_path / "X.npy"), str(tmp_path / "X.npy")]))
    _one_line_error(capsys, main(["verify", str(path), str(tmp_path / "X.npy"), "--target",
                                  str(tmp_path / "X.npy")]))


def test_cli_certify_save_then_verify(tmp_path, capsys):
    np.save(tmp_path / "X.npy", clusters())
    cert = tmp_path / "out" / "cert.npz"
    assert main(["certify", str(tmp_path / "X.npy"), "--lam", "0.2", "--save", str(cert)]) == 0
    assert "convexdict verify" in capsys.readouterr().out
    assert main(["verify", str(cert), str(tmp_path / "X.npy")]) == 0
    assert main(["verify", str(cert), str(tmp_path / "X.npy"), "--float"]) == 0
