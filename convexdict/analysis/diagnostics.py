"""Diagnostics of an SAE's latents: paper A's stationarity and four named pathologies.

Definitions chosen here (THEORY section 5 and the two paper summaries; the papers give the
phenomena, not these exact numbers):

* **active**: latent ``k`` fires on sample ``n`` when its reconstruction term
  ``Z[n, k] ||W_dec[k]||`` exceeds ``ACTIVE_RTOL`` times the data's scale (the largest
  ``||x_n - mean(X)||``). Activations of order ``1e-16`` on points lying on a latent's
  hyperplane, which the certified optimum has by construction, do not count, and neither
  does a latent with an all-zero decoder row.
* **dead latent** (:func:`dead_latents`): active on no sample of ``X``.
* **feature absorption** (:func:`feature_absorption`, ground truth ``parent`` and
  ``child``): on the samples where both features are present, the latent that best
  matches the parent (decoder cosine) stays silent and other latents that point between
  parent and child fire instead: one atom aligned with the sum is cheaper than parent plus
  child, since ``||z_p f_p + z_c f_c|| <= z_p + z_c``.
* **feature splitting** (:func:`feature_splitting`): two or more live latents whose
  decoder rows all lie within ``cos_threshold`` of one ground-truth feature divide that
  feature's samples between them (mean pairwise Jaccard overlap of their firing sets
  below 1/2), as the two copies ``dhat +- eps v`` of paper A do.
* **antipodal pair** (:func:`antipodal_pairs`): two live latents with decoder cosine
  ``<= -cos_threshold`` that never fire together; *dense* when together they fire on at
  least half of the samples (paper A's symmetric sources, ``+-u``).

:func:`stationarity` reads an SAE as a point of paper A's joint problem and reports its
residuals per latent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convexdict._validation import check_int, check_matrix, check_positive
from convexdict.models.sae import SAE

ACTIVE_RTOL = 1e-9
# A sample violates latent k's code condition when its per-sample residual (see
# Stationarity.code_violation) exceeds CODE_RTOL * lam.
CODE_RTOL = 1e-3


def _unit_rows(A: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    return A / np.where(norms > 0, norms, 1.0)


def active_mask(sae: SAE, X: np.ndarray) -> np.ndarray:
    """Which latents are active on which samples: boolean array of shape ``(N, K)``.

    ``Z[n, k] ||W_dec[k]|| > ACTIVE_RTOL * max_n ||x_n - mean(X)||`` (see the module
    docstring).
    """
    X = check_matrix("X", X, n_cols=sae.d_in)
    scale = float(np.linalg.norm(X - X.mean(axis=0), axis=1).max())
    return sae.encode(X) * sae.decoder_norms() > ACTIVE_RTOL * (scale if scale > 0 else 1.0)


def dead_latents(sae: SAE, X: np.ndarray) -> np.ndarray:
    """Indices (sorted, int) of the latents active on no sample of ``X (N, d)``."""
    return np.flatnonzero(~active_mask(sae, X).any(axis=0))


# --------------------------------------------------------------------------- stationarity


@dataclass(frozen=True)
class Stationarity:
    """Paper A's stationarity residuals of an SAE, read as a point of the joint problem.

    With unit atoms ``dhat_k = W_dec[k] / ||W_dec[k]||``, codes
    ``z_nk = Z[n, k] ||W_dec[k]||`` and residuals ``r_n = x_n - xhat_n`` (THEORY section 5):

    Attributes
    ----------
    code_violation : ndarray of shape (K,)
        ``max_n`` of ``|dhat_k . r_n - lam|`` where latent ``k`` is active on sample ``n``
        (:func:`active_mask`) and ``max(0, dhat_k . r_n - lam)`` elsewhere: the *joint*
        problem's per-sample conditions. An SAE's codes come from an encoder, so even its
        global optimum violates them wherever an interior point cannot get a private latent
        (the amortisation gap, THEORY section 3); they hold at the optimum when every point
        is a vertex of the convex hull. nan for an all-zero decoder row (no direction).
    atom_residual : ndarray of shape (K,)
        ``||sum_n z_nk r_n - lam (sum_n z_nk) dhat_k|| / (lam sum_n z_nk)``: zero at every
        minimum of the decoder block; 0 for a latent that never fires (vacuous).
    encoder_gradient : ndarray of shape (K,)
        ``||(1/N) sum_{n active} (lam - dhat_k . r_n) (x_n, 1)||``: the gradient of the
        loss in latent ``k``'s encoder weights at unit decoder rows, the amortised form of
        the code condition (zero at a minimum inside a piece; not on a piece's boundary).
    bias_residual : float
        ``||sum_n r_n|| / N``.
    code_violation_fraction : ndarray of shape (K,) or None
        Fraction of the ``N`` samples whose per-sample code residual (as in
        ``code_violation``) exceeds ``CODE_RTOL * lam``: how often the code condition
        fails, not only by how much (nan for an all-zero decoder row).
    """

    code_violation: np.ndarray
    atom_residual: np.ndarray
    encoder_gradient: np.ndarray
    bias_residual: float
    code_violation_fraction: np.ndarray | None = None

    @property
    def max_code_violation(self) -> float:
        """Largest code-condition violation over latents with a direction (0 if none)."""
        return float(np.nanmax(self.code_violation, initial=0.0))

    @property
    def max_atom_residual(self) -> float:
        """Largest normalised atom residual (0 for width 0)."""
        return float(np.max(self.atom_residual, initial=0.0))


def stationarity(sae: SAE, X: np.ndarray, lam: float) -> Stationarity:
    """Paper A's stationarity residuals of ``sae`` on ``X`` (see :class:`Stationarity`).

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    lam : float

    Returns
    -------
    Stationarity
    """
    X = check_matrix("X", X, n_cols=sae.d_in)
    lam = check_positive("lam", lam)
    n = X.shape[0]
    norms = sae.decoder_norms()
    has_dir = norms > 0
    dhat = sae.W_dec / np.where(has_dir, norms, 1.0)[:, None]
    active = active_mask(sae, X)
    z = np.where(active, sae.encode(X) * norms, 0.0)  # codes at unit atoms
    R = X - sae.reconstruct(X)
    proj = R @ dhat.T  # (N, K)
    per_sample = np.where(active, np.abs(proj - lam), np.maximum(proj - lam, 0.0))
    code = np.where(has_dir, per_sample.max(axis=0, initial=0.0), np.nan)
    fails = np.where(has_dir, (per_sample > CODE_RTOL * lam).mean(axis=0), np.nan)
    zsum = z.sum(axis=0)
    atom_vec = z.T @ R - lam * zsum[:, None] * dhat
    atom = np.linalg.norm(atom_vec, axis=1) / np.where(zsum > 0, lam * zsum, 1.0)
    atom = np.where(zsum > 0, atom, 0.0)
    Xt = np.hstack([X, np.ones((n, 1))])
    enc = np.linalg.norm((active * (lam - proj)).T @ Xt, axis=1) / n
    bias = float(np.linalg.norm(R.sum(axis=0))) / n
    return Stationarity(code, atom, enc, bias, fails)


# --------------------------------------------------------------------------- ground truth


def _check_truth(
    sae: SAE, X: np.ndarray, features: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = check_matrix("X", X, n_cols=sae.d_in)
    F = check_matrix("features", features, n_cols=sae.d_in)
    C = check_matrix("codes", codes, n_cols=F.shape[0])
    if C.shape[0] != X.shape[0]:
        raise ValueError(
            f"The 'codes' parameter must have one row per sample of X ({X.shape[0]}). "
            f"Got shape {C.shape}."
        )
    return X, F, C


@dataclass(frozen=True)
class Absorption:
    """How a child feature is absorbed into the parent's latents (:func:`feature_absorption`).

    Attributes
    ----------
    parent_latent : int
        The live latent whose decoder row has the largest cosine with the parent feature
        (-1 when no live latent has a positive cosine).
    parent_cosine : float
    rate : float
        Fraction of the samples with both parent and child present on which
        ``parent_latent`` is silent (nan if there are no such samples or no parent latent).
    absorbing_latents : list of int
        Other latents that fire on those silent samples and whose decoder rows have a
        positive cosine with both the parent and the child (they encode the combination).
    n_samples : int
        Number of samples with both features present.
    """

    parent_latent: int
    parent_cosine: float
    rate: float
    absorbing_latents: list[int]
    n_samples: int

    @property
    def absorbed(self) -> bool:
        """``rate >= 1/2`` and some latent absorbs the child."""
        return bool(self.rate >= 0.5 and self.absorbing_latents)


def feature_absorption(
    sae: SAE, X: np.ndarray, features: np.ndarray, codes: np.ndarray, parent: int, child: int
) -> Absorption:
    """Measure absorption of feature ``child`` into latents that also carry ``parent``.

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    features : ndarray of shape (n_features, d)
        Ground-truth directions.
    codes : ndarray of shape (N, n_features)
        Ground-truth codes (a feature is present where its code is > 0).
    parent, child : int
        Feature indices.

    Returns
    -------
    Absorption
    """
    X, F, C = _check_truth(sae, X, features, codes)
    for name, idx in (("parent", parent), ("child", child)):
        check_int(name, idx, minimum=0)
        if idx >= F.shape[0]:
            raise ValueError(
                f"The '{name}' parameter must be a feature index < {F.shape[0]}. Got {idx}."
            )
    active = active_mask(sae, X)
    cos = _unit_rows(sae.W_dec) @ _unit_rows(F).T
    both = (C[:, parent] > 0) & (C[:, child] > 0)
    live = active.any(axis=0)
    cp = np.where(live, cos[:, parent], -np.inf)
    if not live.any() or cp.max() <= 0:
        return Absorption(-1, float("nan"), float("nan"), [], int(both.sum()))
    kp = int(np.argmax(cp))
    silent = both & ~active[:, kp]
    rate = float(silent.sum() / both.sum()) if both.any() else float("nan")
    between = (cos[:, parent] > 0) & (cos[:, child] > 0)
    fires = active[silent].any(axis=0) & between
    fires[kp] = False
    return Absorption(kp, float(cos[kp, parent]), rate, np.flatnonzero(fires).tolist(),
                      int(both.sum()))


@dataclass(frozen=True)
class Split:
    """The latents that share one ground-truth feature (:func:`feature_splitting`).

    Attributes
    ----------
    feature : int
    latents : list of int
        Live latents within ``cos_threshold`` of the feature that fire on its samples.
    overlap : float
        Mean pairwise Jaccard overlap of their firing sets on the feature's samples
        (nan with fewer than two latents).
    coverage : float
        Fraction of the feature's samples on which one of them fires.
    split : bool
        Two or more latents with ``overlap < 1/2``.
    """

    feature: int
    latents: list[int]
    overlap: float
    coverage: float
    split: bool


def feature_splitting(
    sae: SAE, X: np.ndarray, features: np.ndarray, codes: np.ndarray, *,
    cos_threshold: float = 0.9,
) -> list[Split]:
    """For each ground-truth feature, the latents that divide its samples between them.

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    features : ndarray of shape (n_features, d)
    codes : ndarray of shape (N, n_features)
    cos_threshold : float
        A latent belongs to a feature when their decoder cosine is at least this.

    Returns
    -------
    list of Split
        One per feature, in order.
    """
    X, F, C = _check_truth(sae, X, features, codes)
    cos_threshold = check_positive("cos_threshold", cos_threshold)
    active = active_mask(sae, X)
    cos = _unit_rows(sae.W_dec) @ _unit_rows(F).T
    out = []
    for j in range(F.shape[0]):
        rows = C[:, j] > 0
        A = active[rows]
        members = np.flatnonzero((cos[:, j] >= cos_threshold) & A.any(axis=0))
        coverage = float(A[:, members].any(axis=1).mean()) if rows.any() else float("nan")
        overlaps = []
        for a_i, a in enumerate(members):
            for b in members[a_i + 1 :]:
                union = np.sum(A[:, a] | A[:, b])
                overlaps.append(np.sum(A[:, a] & A[:, b]) / union)
        overlap = float(np.mean(overlaps)) if overlaps else float("nan")
        out.append(Split(j, members.tolist(), overlap, coverage,
                         bool(len(members) >= 2 and overlap < 0.5)))
    return out


@dataclass(frozen=True)
class AntipodalPair:
    """Two latents pointing in opposite directions that never fire together.

    Attributes
    ----------
    latents : tuple of int
    cosine : float
        Cosine of their decoder rows (``<= -cos_threshold``).
    coverage : float
        Fraction of samples on which one of them fires.
    dense : bool
        ``coverage >= 1/2``.
    """

    latents: tuple[int, int]
    cosine: float
    coverage: float
    dense: bool


def antipodal_pairs(
    sae: SAE, X: np.ndarray, *, cos_threshold: float = 0.9
) -> list[AntipodalPair]:
    """All antipodal pairs of live latents, by decreasing coverage.

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    cos_threshold : float
        Pairs need decoder cosine ``<= -cos_threshold``.

    Returns
    -------
    list of AntipodalPair
    """
    X = check_matrix("X", X, n_cols=sae.d_in)
    cos_threshold = check_positive("cos_threshold", cos_threshold)
    active = active_mask(sae, X)
    cos = _unit_rows(sae.W_dec) @ _unit_rows(sae.W_dec).T
    live = active.any(axis=0)
    pairs = []
    for a, b in zip(*np.nonzero(np.triu(cos <= -cos_threshold, k=1)), strict=True):
        if live[a] and live[b] and not np.any(active[:, a] & active[:, b]):
            coverage = float(np.mean(active[:, a] | active[:, b]))
            pairs.append(AntipodalPair((int(a), int(b)), float(cos[a, b]), coverage,
                                       coverage >= 0.5))
    return sorted(pairs, key=lambda p: -p.coverage)
