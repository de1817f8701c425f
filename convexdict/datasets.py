"""Data: files, built-in toys, and paper B's Linear Representation Bench (THEORY section 6).

Every array of samples has shape ``(N, d)`` (one sample per row) and dtype float64.

- :func:`load_data` reads ``.npy``, ``.npz``, ``.csv`` and ``.safetensors`` files, or a
  built-in toy named ``"toy:NAME"``.
- Toys (:func:`list_toys`) are small (``N <= 200``), deterministic for a given seed, and
  carry their ground-truth features and codes when they have them, so the convex program
  certifies them in seconds.
- :func:`linear_representation_bench` generates ``X = codes @ features`` with
  bounded-interference unit features and shifted-exponential sparse codes;
  :func:`gt_recovery` and :func:`mean_max_inner_product` score a decoder against it.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._validation import check_int, check_matrix, check_positive

DATA_SUFFIXES = (".npy", ".npz", ".csv", ".safetensors")


# --------------------------------------------------------------------------- toys


@dataclass(frozen=True, eq=False)
class ToyData:
    """A built-in data set with its ground truth, when it has one.

    Attributes
    ----------
    X : ndarray of shape (N, d)
        The samples (read-only, float64).
    features : ndarray of shape (n_features, d) or None
        Unit-norm ground-truth directions.
    codes : ndarray of shape (N, n_features) or None
        Nonnegative ground-truth codes; ``X = codes @ features + noise``.
    name : str
    description : str
    """

    X: np.ndarray
    features: np.ndarray | None
    codes: np.ndarray | None
    name: str
    description: str

    def __post_init__(self) -> None:
        for field in ("X", "features", "codes"):
            value = getattr(self, field)
            if value is not None:
                arr = np.array(value, dtype=np.float64, copy=True)
                arr.setflags(write=False)
                object.__setattr__(self, field, arr)


_DESCRIPTIONS = {
    "superposition_2d": "5 unit directions in 2-D mixed by sparse nonnegative codes (+ noise)",
    "hierarchical": "2-D parent direction with 2 children that fire only with it",
    "antipodal": "symmetric 1-D source s*u in 2-D: ground truth is the pair +u, -u",
    "digits2": "scikit-learn digits on 2 principal components, unit mean norm",
    "digits3": "scikit-learn digits on 3 principal components, unit mean norm",
}


def _unit(angles_deg: list[float]) -> np.ndarray:
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def superposition_2d(n: int = 120, seed: int = 0, noise: float = 0.01) -> ToyData:
    """Five unit directions in 2-D (a regular pentagon) mixed with sparse nonnegative codes.

    Each feature is active independently with probability 0.25 (at least one per
    sample) with magnitude uniform on ``[0.25, 1]``; Gaussian noise of standard deviation
    ``noise`` is added. ``features`` has shape ``(5, 2)``, ``codes`` ``(n, 5)``.
    """
    n = check_int("n", n, minimum=1)
    rng = np.random.default_rng(seed)
    features = _unit([90.0 + 72.0 * i for i in range(5)])
    active = rng.random((n, 5)) < 0.25
    none = ~active.any(axis=1)
    active[np.flatnonzero(none), rng.integers(0, 5, size=int(none.sum()))] = True
    codes = active * rng.uniform(0.25, 1.0, size=(n, 5))
    X = codes @ features + noise * rng.standard_normal((n, 2))
    return ToyData(X, features, codes, "superposition_2d", _DESCRIPTIONS["superposition_2d"])


def hierarchical(n: int = 120, seed: int = 0, noise: float = 0.01) -> ToyData:
    """A parent direction and two child directions in 2-D; a child fires only with its parent.

    Features (rows): parent at 90 degrees, children at 20 and 160 degrees. Each sample has
    the parent (magnitude uniform on ``[0.5, 1]``) plus, with probability 0.3 each, one
    child (magnitude uniform on ``[0.25, 0.75]``); the rest are parent-only. The setting
    of paper A's absorption and splitting (THEORY section 5).
    """
    n = check_int("n", n, minimum=1)
    rng = np.random.default_rng(seed)
    features = _unit([90.0, 20.0, 160.0])
    codes = np.zeros((n, 3))
    codes[:, 0] = rng.uniform(0.5, 1.0, size=n)
    which = rng.choice(3, size=n, p=[0.4, 0.3, 0.3])  # 0: parent only, 1/2: that child too
    for child in (1, 2):
        rows = which == child
        codes[rows, child] = rng.uniform(0.25, 0.75, size=int(rows.sum()))
    X = codes @ features + noise * rng.standard_normal((n, 2))
    return ToyData(X, features, codes, "hierarchical", _DESCRIPTIONS["hierarchical"])


def antipodal(n: int = 100, seed: int = 0, noise: float = 0.05) -> ToyData:
    """A symmetric source along one direction: ``x = s u + noise``, ``s ~ Uniform(-1, 1)``.

    Ground truth is the dense antipodal pair ``features = [u, -u]`` with codes
    ``[relu(s), relu(-s)]`` (``u`` at 30 degrees); the noise is orthogonal to ``u``. The
    setting of paper A's dense antipodal features (THEORY section 5).
    """
    n = check_int("n", n, minimum=1)
    rng = np.random.default_rng(seed)
    u = _unit([30.0])[0]
    v = np.array([-u[1], u[0]])
    s = rng.uniform(-1.0, 1.0, size=n)
    X = s[:, None] * u + (noise * rng.standard_normal(n))[:, None] * v
    codes = np.stack([np.maximum(s, 0.0), np.maximum(-s, 0.0)], axis=1)
    return ToyData(X, np.stack([u, -u]), codes, "antipodal", _DESCRIPTIONS["antipodal"])


@functools.lru_cache(maxsize=1)
def _digits_pca() -> np.ndarray:
    """All 1797 digits projected onto their principal axes, shape (1797, 64), read-only."""
    from sklearn.datasets import load_digits

    data = load_digits().data.astype(np.float64)  # bundled with scikit-learn, no download
    centred = data - data.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    vt *= np.where(vt.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)  # fix the sign ambiguity
    proj = centred @ vt.T
    proj.setflags(write=False)
    return proj


def _digits(n_components: int, n: int, seed: int) -> np.ndarray:
    n = check_int("n", n, minimum=1)
    proj = _digits_pca()[:, :n_components]
    if n < proj.shape[0]:
        idx = np.sort(np.random.default_rng(seed).choice(proj.shape[0], size=n, replace=False))
        proj = proj[idx]
    return proj / np.linalg.norm(proj, axis=1).mean()


def digits2(n: int = 200, seed: int = 0) -> ToyData:
    """scikit-learn's bundled digits on their top 2 principal components, unit mean norm.

    ``n`` points are drawn without replacement with ``seed`` (all 1797 if ``n >= 1797``).
    """
    return ToyData(_digits(2, n, seed), None, None, "digits2", _DESCRIPTIONS["digits2"])


def digits3(n: int = 200, seed: int = 0) -> ToyData:
    """scikit-learn's bundled digits on their top 3 principal components, unit mean norm.

    ``n`` points are drawn without replacement with ``seed`` (all 1797 if ``n >= 1797``).
    """
    return ToyData(_digits(3, n, seed), None, None, "digits3", _DESCRIPTIONS["digits3"])


TOYS: dict[str, Callable[..., ToyData]] = {
    "superposition_2d": superposition_2d,
    "hierarchical": hierarchical,
    "antipodal": antipodal,
    "digits2": digits2,
    "digits3": digits3,
}


def list_toys() -> dict[str, str]:
    """Names of the built-in toys mapped to one-line descriptions."""
    return dict(_DESCRIPTIONS)


def load_toy(name: str, **kwargs: object) -> ToyData:
    """Build the toy ``name`` (see :func:`list_toys`); ``kwargs`` go to its function."""
    if name not in TOYS:
        raise ValueError(f"Unknown toy {name!r}. Available toys: {', '.join(TOYS)}.")
    return TOYS[name](**kwargs)


# --------------------------------------------------------------------------- files


def _bad(path: Path, message: str) -> ValueError:
    return ValueError(f"Cannot load data from '{path}': {message}.")


def _pick(arrays: dict[str, np.ndarray], path: Path, kind: str) -> np.ndarray:
    if "X" in arrays:
        return arrays["X"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise _bad(path, f"expected a {kind} named 'X' or a single {kind}; found {sorted(arrays)}")


def _read_csv(path: Path) -> np.ndarray:
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
    except UnicodeDecodeError as exc:
        raise _bad(path, f"expected a UTF-8 text file of numbers ({_first_line(exc)})") from exc
    if not first.strip():
        raise _bad(path, "the CSV file is empty")
    try:
        [float(field) for field in first.split(",")]
        skip = 0
    except ValueError:
        skip = 1  # a header line
    try:
        return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64,
                          encoding="utf-8")
    except (ValueError, OverflowError) as exc:
        raise _bad(path, f"expected numeric comma-separated values ({_first_line(exc)})") from exc


def _read_file(path: Path, mmap: bool = False) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (ValueError, OSError, EOFError, OverflowError) as exc:
            raise _bad(path, f"not a readable .npy array ({_first_line(exc)})") from exc
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (ValueError, OSError, EOFError, OverflowError, zipfile.BadZipFile) as exc:
            raise _bad(path, f"not a readable .npz archive ({_first_line(exc)})") from exc
        return _pick(arrays, path, "array")
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise _bad(path, f"not a readable safetensors file ({_first_line(exc)})") from exc
        return _pick({k: v.double().numpy() for k, v in tensors.items()}, path, "tensor")
    raise _bad(
        path, f"unknown extension '{path.suffix}'; expected one of {', '.join(DATA_SUFFIXES)}"
    )


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (one line, at most 200 characters)."""
    lines = str(exc).strip().splitlines()
    text = lines[0][:200] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_finite_chunks(arr: np.ndarray, path: Path, rows: int = 65536) -> None:
    """NaN / infinity check of a memory map, ``rows`` rows at a time (never loaded whole)."""
    bad = 0
    for start in range(0, arr.shape[0], rows):
        chunk = np.asarray(arr[start : start + rows])
        bad += int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
    if bad:
        raise _bad(path, f"found {bad} NaN or infinite entries")


def load_data(spec: str | os.PathLike[str], *, mmap: bool = False) -> np.ndarray:
    """Load samples from a file or a built-in toy.

    Parameters
    ----------
    spec : str or path-like
        ``"toy:NAME"`` for a built-in toy with default arguments (see :func:`list_toys`),
        or a path to ``.npy``, ``.npz`` (array ``X`` or the only array), ``.csv``
        (numbers separated by commas, one sample per line, optional header line) or
        ``.safetensors`` (tensor ``X`` or the only tensor).
    mmap : bool, default=False
        For a ``.npy`` file of floats: return a read-only :class:`numpy.memmap` in the
        file's dtype (float32 stays float32) instead of loading it, for data larger
        than memory. The same checks run (shape, dtype, and NaN/infinity in chunks of
        rows). Other formats, toys and integer ``.npy`` files are loaded as usual.

    Returns
    -------
    X : ndarray of shape (N, d)
        float64, or with ``mmap=True`` a read-only memory map of a float ``.npy`` file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For a ``spec`` that is not a string or path, an unknown toy or extension, an
        unreadable file (empty, truncated, corrupt), an array that is not 2-D and
        non-empty, or NaN/infinite entries. The one-line message names the source.
    """
    if isinstance(spec, bool) or not isinstance(spec, (str, os.PathLike)):
        raise ValueError(
            "The 'spec' parameter must be a path (str or os.PathLike) or 'toy:NAME'. "
            f"Got {type(spec).__name__} {spec!r}."
        )
    if not isinstance(mmap, bool):
        raise ValueError(f"The 'mmap' parameter must be True or False. Got {mmap!r}.")
    text = os.fspath(spec)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.startswith("toy:"):
        return np.array(load_toy(text[4:]).X)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"Data file '{path}' does not exist.")
    if path.is_dir():
        raise _bad(path, f"it is a directory; expected a file ({', '.join(DATA_SUFFIXES)})")
    arr = _read_file(path, mmap=mmap)
    if not isinstance(arr, np.memmap):
        arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise _bad(path, f"expected numbers; found dtype {arr.dtype}")
    if arr.ndim != 2 or 0 in arr.shape:
        raise _bad(path, f"expected a non-empty 2-D array (N, d); found shape {arr.shape}")
    if isinstance(arr, np.memmap) and arr.dtype.kind == "f":
        _check_finite_chunks(arr, path)
        return arr
    try:
        arr = np.asarray(arr, dtype=np.float64)
    except OverflowError as exc:
        raise _bad(path, f"values too large for float64 ({exc})") from exc
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise _bad(path, f"found {bad} NaN or infinite entries")
    return arr


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

    parents = None
    if hierarchy is not None:
        hierarchy = check_int("hierarchy", hierarchy, minimum=1)
        parents = np.full(n_features, -1, dtype=np.int64)
        size = hierarchy + 1
        for start in range(0, n_features - size + 1, size):
            parents[start + 1 : start + size] = start
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
