"""Paper B's Linear Representation Bench (THEORY section 6), and metrics against it.

:func:`linear_representation_bench` generates ``X = codes @ features`` with
bounded-interference unit features and shifted-exponential sparse codes;
:func:`gt_recovery` and :func:`mean_max_inner_product` score a decoder against it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from convexdict._validation import check_int, check_matrix, check_positive

# --------------------------------------------------------------------------- the bench


@dataclass(frozen=True, eq=False)
class LinearRepresentationBench:
    """Samples of paper B's Linear Representation Bench with their ground truth.

    Attributes
    ----------
    X : ndarray of shape (n_samples, d)
        ``codes @ features``.
    features : ndarray of shape (n_features, d)
        Unit-norm true feature directions.
    codes : ndarray of shape (n_samples, n_features)
        Nonnegative sparse codes.
    max_interference : float
        Achieved ``max_{i != j} |<features[i], features[j]>|``.
    interference_bound : float
        The bound projected gradient descent aimed for.
    sparsity : float
        Requested probability that a code entry is zero (per root feature).
    parents : ndarray of shape (n_features,) of int, or None
        ``parents[j]`` is the parent of feature ``j`` (``-1`` for a root); ``None``
        without hierarchy.
    correlation : float
        Correlation of the latent Gaussians that gate features of one group.
    width : int or None
        Suggested SAE width (``n_q`` in paper B); not used to generate data.
    seed : int
    """

    X: np.ndarray
    features: np.ndarray
    codes: np.ndarray
    max_interference: float
    interference_bound: float
    sparsity: float
    parents: np.ndarray | None
    correlation: float
    width: int | None
    seed: int

    @property
    def achieved_sparsity(self) -> float:
        """Fraction of code entries that are exactly zero."""
        return float(np.mean(self.codes == 0.0))


BENCH_PRESETS: dict[str, dict[str, float | int]] = {
    # fast enough for CPU tests and notebooks
    "cpu_small": dict(n_features=64, d=32, width=256, sparsity=0.9, n_samples=2000),
    # paper B's main setting (n = 1000, n_p = 768, n_q = 16000, S = 0.99); n_samples ours
    "paper": dict(n_features=1000, d=768, width=16000, sparsity=0.99, n_samples=20000),
}


def welch_bound(n_features: int, d: int) -> float:
    """Smallest possible max coherence of ``n_features`` unit vectors in ``R^d``.

    ``sqrt((n - d) / (d (n - 1)))`` for ``n > d``, else 0 (orthonormal vectors exist).
    """
    if n_features <= d:
        return 0.0
    return math.sqrt((n_features - d) / (d * (n_features - 1)))


def _coherence(W: np.ndarray) -> float:
    G = W @ W.T
    np.fill_diagonal(G, 0.0)
    return float(np.abs(G).max()) if G.size > 1 else 0.0


def bounded_interference_features(
    n_features: int, d: int, bound: float, *, rng: np.random.Generator, max_steps: int = 2000
) -> np.ndarray:
    """Unit rows ``(n_features, d)`` with max pairwise ``|cos| <= bound``, by projected GD.

    Minimises ``sum_{i != j} relu(|G_ij| - 0.9 bound)^2`` (``G`` the Gram matrix) with
    steps tangent to the sphere, normalised so that the largest row moves by the
    current excess, and projects back onto unit rows after each step. For
    ``n_features <= d`` returns random orthonormal rows directly. Warns
    (``RuntimeWarning``) if the bound is not reached within ``max_steps``.
    """
    if n_features <= d:
        q, _ = np.linalg.qr(rng.standard_normal((d, n_features)))
        return np.ascontiguousarray(q.T)
    W = rng.standard_normal((n_features, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    target = 0.9 * bound
    for _ in range(max_steps):
        G = W @ W.T
        np.fill_diagonal(G, 0.0)
        worst = float(np.abs(G).max())
        if worst <= bound:
            return W
        S = np.sign(G) * np.maximum(np.abs(G) - target, 0.0)
        grad = S @ W
        grad -= np.sum(grad * W, axis=1, keepdims=True) * W  # tangent to the sphere
        scale = float(np.linalg.norm(grad, axis=1).max())
        if scale == 0.0:
            break
        W -= ((worst - target) / scale) * grad
        W /= np.linalg.norm(W, axis=1, keepdims=True)
    achieved = _coherence(W)
    if achieved > bound:
        warnings.warn(
            f"Projected gradient descent reached max interference {achieved:.4g}, above the "
            f"bound {bound:.4g} after {max_steps} steps. Raise max_interference or "
            "max_steps.",
            RuntimeWarning,
            stacklevel=3,
        )
    return W


def _gates(
    n_samples: int,
    n_features: int,
    p_active: float,
    rho: float,
    group: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean (n_samples, n_features); P(active) = p_active, corr. rho within groups."""
    if rho == 0.0:
        return rng.random((n_samples, n_features)) < p_active
    from scipy.stats import norm

    n_groups = -(-n_features // group)
    shared = np.repeat(rng.standard_normal((n_samples, n_groups)), group, axis=1)[:, :n_features]
    latent = math.sqrt(rho) * shared + math.sqrt(1.0 - rho) * rng.standard_normal(
        (n_samples, n_features)
    )
    return latent > norm.ppf(1.0 - p_active)


def _parents(n_features: int, hierarchy: int | None) -> np.ndarray | None:
    """``parents (n_features,)``: each group of ``hierarchy + 1`` features is a parent
    followed by its children (``-1`` marks a root); None without a hierarchy."""
    if hierarchy is None:
        return None
    hierarchy = check_int("hierarchy", hierarchy, minimum=1)
    parents = np.full(n_features, -1, dtype=np.int64)
    size = hierarchy + 1
    for start in range(0, n_features - size + 1, size):
        parents[start + 1 : start + size] = start
    return parents


def linear_representation_bench(
    n_features: int = 64,
    d: int = 32,
    sparsity: float = 0.9,
    n_samples: int = 2000,
    seed: int = 0,
    *,
    max_interference: float | None = None,
    hierarchy: int | None = None,
    child_probability: float = 0.5,
    correlated: bool | float = False,
    correlation_group: int = 4,
    loc: float = 1.0,
    scale: float = 1.0,
    width: int | None = None,
    max_steps: int = 2000,
) -> LinearRepresentationBench:
    """Generate paper B's Linear Representation Bench: ``X = codes @ features``.

    Parameters
    ----------
    n_features : int
        Number of true features ``n`` (paper B: 1000).
    d : int
        Ambient dimension ``n_p`` (paper B: 768).
    sparsity : float in [0, 1)
        Probability ``S`` that a root feature's code is zero (paper B: 0.99).
    n_samples : int
    seed : int
        Seeds everything (features and codes).
    max_interference : float, optional
        Bound on ``max_{i != j} |cos(features[i], features[j])|`` enforced by projected
        gradient descent. Default: twice the Welch bound (:func:`welch_bound`), the
        smallest bound any ``n_features`` unit vectors in ``R^d`` can meet; orthonormal
        features (bound ``1e-12``) when ``n_features <= d``. A bound below the Welch
        bound is impossible and raises.
    hierarchy : int, optional
        Children per parent. Features are split into groups of ``1 + hierarchy``: the
        first of each group is a root (gated with ``sparsity``), the others are its
        children, each active with probability ``child_probability`` when its parent is
        active and never otherwise. Leftover features are roots.
    child_probability : float in (0, 1]
    correlated : bool or float
        Gate features through Gaussians that share a factor within consecutive groups of
        ``correlation_group`` features (a Gaussian copula); ``True`` means correlation
        0.5, a float in [0, 1) sets it. Marginal activation probabilities are unchanged.
    correlation_group : int
    loc, scale : float
        Active codes are ``loc + Exponential(scale)`` (shifted exponential; paper B's
        parameters are not stated, so these defaults are ours).
    width : int, optional
        Suggested SAE width, stored on the result (presets carry paper B's ``n_q``).
    max_steps : int
        Iteration cap for projected gradient descent.

    Returns
    -------
    LinearRepresentationBench

    Examples
    --------
    >>> bench = linear_representation_bench(**BENCH_PRESETS["cpu_small"])
    >>> bench.X.shape, bench.max_interference <= bench.interference_bound
    ((2000, 32), True)
    """
    n_features = check_int("n_features", n_features, minimum=1)
    d = check_int("d", d, minimum=1)
    n_samples = check_int("n_samples", n_samples, minimum=1)
    sparsity = check_positive("sparsity", sparsity, allow_zero=True)
    if sparsity >= 1.0:
        raise ValueError(f"The 'sparsity' parameter must be in [0, 1). Got {sparsity!r} instead.")
    welch = welch_bound(n_features, d)
    if max_interference is None:
        bound = 2.0 * welch if n_features > d else 1e-12
    else:
        bound = check_positive("max_interference", max_interference, allow_zero=True)
        if bound < welch:
            raise ValueError(
                f"The 'max_interference' parameter must be >= the Welch bound {welch:.4g} "
                f"for {n_features} unit vectors in R^{d}: no smaller bound exists. Got "
                f"{bound!r} instead."
            )
    rho = 0.5 if correlated is True else float(correlated)
    if not 0.0 <= rho < 1.0:
        raise ValueError(
            f"The 'correlated' parameter must be a bool or a float in [0, 1). Got {correlated!r}."
        )
    child_probability = check_positive("child_probability", child_probability)
    if child_probability > 1.0:
        raise ValueError(
            f"The 'child_probability' parameter must be in (0, 1]. Got {child_probability!r}."
        )
    scale = check_positive("scale", scale)
    loc = check_positive("loc", loc, allow_zero=True)

    rng = np.random.default_rng(seed)
    features = bounded_interference_features(n_features, d, bound, rng=rng, max_steps=max_steps)

    parents = _parents(n_features, hierarchy)
    roots = np.arange(n_features) if parents is None else np.flatnonzero(parents < 0)

    group = check_int("correlation_group", correlation_group, minimum=1)
    gates = np.zeros((n_samples, n_features), dtype=bool)
    gates[:, roots] = _gates(n_samples, roots.size, 1.0 - sparsity, rho, group, rng)
    if parents is not None:
        children = np.flatnonzero(parents >= 0)
        coin = rng.random((n_samples, children.size)) < child_probability
        gates[:, children] = gates[:, parents[children]] & coin
    codes = gates * (loc + rng.exponential(scale, size=(n_samples, n_features)))
    X = codes @ features
    return LinearRepresentationBench(
        X=X,
        features=features,
        codes=codes,
        max_interference=_coherence(features),
        interference_bound=bound,
        sparsity=sparsity,
        parents=parents,
        correlation=rho,
        width=width,
        seed=seed,
    )


# --------------------------------------------------------------------------- metrics


def _cosines(features: np.ndarray, W_dec: np.ndarray) -> np.ndarray:
    F = check_matrix("features", features)
    D = check_matrix("W_dec", W_dec, n_cols=F.shape[1])
    fn = np.linalg.norm(F, axis=1, keepdims=True)
    dn = np.linalg.norm(D, axis=1, keepdims=True)
    F = F / np.where(fn > 0, fn, 1.0)
    D = D / np.where(dn > 0, dn, 1.0)  # all-zero (dead) atoms get cosine 0
    return F @ D.T


def gt_recovery(features: np.ndarray, W_dec: np.ndarray, threshold: float = 0.9) -> float:
    """Fraction of true features whose best-matching decoder atom has cosine > ``threshold``.

    Parameters
    ----------
    features : ndarray of shape (n_features, d)
        True feature directions (need not be normalised).
    W_dec : ndarray of shape (K, d)
        Decoder rows (one atom per latent); all-zero rows never match.
    threshold : float, default=0.9
        Cosine a match must exceed. Signed cosine: with nonnegative codes the atom
        ``-f`` cannot stand in for ``f``.

    Returns
    -------
    float in [0, 1]
    """
    return float(np.mean(_cosines(features, W_dec).max(axis=1) > threshold))


def mean_max_inner_product(
    features: np.ndarray, W_dec: np.ndarray, *, absolute: bool = False
) -> float:
    """Mean over true features of the largest cosine with any decoder atom.

    ``(1/n) sum_i max_k cos(features[i], W_dec[k])``: 1 when every feature has an exact
    atom. Signed cosine by default, matching :func:`gt_recovery` (nonnegative codes make
    ``-f`` useless for ``f``); ``absolute=True`` uses ``|cos|`` instead.

    Parameters
    ----------
    features : ndarray of shape (n_features, d)
    W_dec : ndarray of shape (K, d)
    absolute : bool, default=False

    Returns
    -------
    float
    """
    cos = _cosines(features, W_dec)
    if absolute:
        cos = np.abs(cos)
    return float(cos.max(axis=1).mean())
