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
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convexdict._validation import check_int

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
