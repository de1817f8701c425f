"""Train a sparse autoencoder by SGD (Adam) on the canonical objective.

A thin, validated front end to the engine :func:`solvers.sgd.train`. With
``activation="relu"`` (the default) the trainer minimises the canonical objective of
THEORY section 1,

    L = (1/N) sum_n [ 1/2 ||x_n - xhat_n||^2 + lam * sum_k ||W_dec[k]|| z_nk ],

so the returned :class:`~convexdict.SAE` can be compared with, and certified against,
the convex program. ``"topk"``, ``"batchtopk"`` and ``"jumprelu"`` are offered for
comparisons only: the convex program does not certify them, ``topk``/``batchtopk`` train
on ``mean 1/2 ||x - xhat||^2`` alone and ``jumprelu`` on ``mean [1/2 ||x - xhat||^2 +
lam * L0]`` (see :mod:`solvers.torch_sae`). Their weights still come back as a
:class:`~convexdict.SAE`, but ``SAE.encode`` applies a plain ReLU, which is a different
function; use ``return_history=True`` and :meth:`TrainResult.encode` for the trained one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import check_choice, check_int, check_matrix, check_positive
from .sae import SAE

ACTIVATIONS = ("relu", "topk", "batchtopk", "jumprelu")
DTYPES = ("float32", "float64")
_EXPLICIT = ("lam", "width", "steps", "batch_size", "lr", "seed", "device", "dtype",
             "activation", "k", "checkpoint_dir", "quiet")


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A trained SAE with its activation and training history.

    Attributes
    ----------
    sae : SAE
        The weights (float64). ``sae.encode`` is ReLU whatever ``activation`` is.
    activation : str
        The activation the weights were trained with.
    k : int or None
        TopK / BatchTopK ``k``.
    threshold : ndarray of shape (K,) or (), or None
        JumpReLU thresholds ``(K,)`` or the BatchTopK inference threshold ``()``.
    history : dict of ndarray
        Per record (every ``log_every`` steps and at the end): ``step``, ``loss``
        (training objective on the batch), ``l0``, ``explained_variance``,
        ``dead_fraction``, ``lr``, ``lam``, ``time`` (seconds).
    steps : int
        Optimiser steps completed.
    """

    sae: SAE
    activation: str
    k: int | None
    threshold: np.ndarray | None
    history: dict[str, np.ndarray] = field(repr=False)
    steps: int

    @property
    def certifiable(self) -> bool:
        """Whether the convex program applies (ReLU activation with an L1 penalty)."""
        return self.activation == "relu"

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes ``(N, K)`` of ``X (N, d)`` with the trained activation (inference mode:
        BatchTopK uses its global threshold, TopK keeps ``k`` per row)."""
        X = check_matrix("X", X, n_cols=self.sae.d_in)
        return self._activate(X @ self.sae.W_enc + self.sae.b_enc)

    def _activate(self, pre: np.ndarray) -> np.ndarray:
        if self.activation == "relu":
            return np.maximum(pre, 0.0)
        if self.activation == "topk":
            keep = np.argpartition(-pre, self.k - 1, axis=1)[:, : self.k]
            out = np.zeros_like(pre)
            np.put_along_axis(out, keep, np.maximum(np.take_along_axis(pre, keep, 1), 0), 1)
            return out
        theta = np.maximum(self.threshold, 0.0)
        return np.where(pre > theta, pre, 0.0)

    def evaluate(self, X: np.ndarray, lam: float, *, max_rows: int = 100_000,
                 chunk: int = 4096) -> dict[str, float]:
        """Metrics of the trained function on ``X`` (float64, in chunks).

        Parameters
        ----------
        X : ndarray of shape (N, d) or memory map
        lam : float
        max_rows : int
            At most this many rows are used: all of them if ``N <= max_rows``, else a
            fixed random subset (seed 0).

        Returns
        -------
        dict
            ``loss`` (the canonical formula with the trained codes: for ``relu`` exactly
            :func:`convexdict.sae_loss` on those rows, otherwise a diagnostic that
            nothing certifies), ``reconstruction``, ``penalty``, ``l0`` (mean nonzeros
            per row), ``explained_variance`` (1 - SSE / SST about the rows' mean),
            ``dead_fraction`` (latents that never fire on these rows), ``rows``.
        """
        lam = check_positive("lam", lam, allow_zero=True)
        if not isinstance(X, np.ndarray):
            X = check_matrix("X", X, n_cols=self.sae.d_in)
        n = X.shape[0]
        rows = np.arange(n) if n <= max_rows else np.sort(
            np.random.default_rng(0).choice(n, max_rows, replace=False))
        norms = self.sae.decoder_norms()
        sse = pen = nnz = sq = 0.0
        total = np.zeros(self.sae.d_in)
        fired = np.zeros(self.sae.width, dtype=bool)
        for start in range(0, rows.size, chunk):
            part = check_matrix("X", X[rows[start : start + chunk]], n_cols=self.sae.d_in)
            codes = self._activate(part @ self.sae.W_enc + self.sae.b_enc)
            resid = part - self.sae.decode(codes)
            sse += float(np.einsum("ij,ij->", resid, resid))
            pen += float(codes.sum(axis=0) @ norms)
            nnz += float(np.count_nonzero(codes))
            fired |= (codes > 0).any(axis=0)
            total += part.sum(axis=0)
            sq += float(np.einsum("ij,ij->", part, part))
        m = rows.size
        sst = sq - float(total @ total) / m
        return {
            "loss": 0.5 * sse / m + lam * pen / m,
            "reconstruction": 0.5 * sse / m,
            "penalty": lam * pen / m,
            "l0": nnz / m,
            "explained_variance": 1.0 - sse / sst if sst > 0 else float("nan"),
            "dead_fraction": float(1.0 - fired.mean()),
            "rows": int(m),
        }


def _check_data(X: Any) -> Any:
    """An in-memory float array or a read-only memory map of a ``.npy`` file."""
    if isinstance(X, (str, os.PathLike)):
        path = Path(X)
        if path.suffix != ".npy":
            raise ValueError(
                f"The 'X' parameter must be an array or the path of a .npy file. Got {str(X)!r}; "
                "load other formats yourself (or use the CLI, which reads .npz and .csv)."
            )
        if not path.is_file():
            raise FileNotFoundError(f"The 'X' parameter names a missing file: {str(X)!r}.")
        X = np.load(path, mmap_mode="r")
    if isinstance(X, np.ndarray) and X.dtype.kind == "f":
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(
                "The 'X' parameter must be a 2-D array of shape (n_samples, n_features). "
                f"Got an array with shape {X.shape}."
            )
        return X  # finiteness is checked in the engine's chunked pass over the data
    return check_matrix("X", X)


def _check_device(device: Any) -> str:
    import torch

    if not isinstance(device, str):
        raise ValueError(f"The 'device' parameter must be a string. Got {device!r}.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(
            f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'. Got {device!r}."
        ) from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"The 'device' parameter must be a CPU or CUDA device. Got {device!r}.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"The 'device' parameter asks for {device!r} but torch.cuda.is_available() is "
            "False. Use device='cpu' or device='auto'."
        )
    return device


def train_sae(
    X: np.ndarray | str | os.PathLike,
    lam: float,
    width: int,
    *,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "float32",
    activation: str = "relu",
    k: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = True,
    return_history: bool = False,
    **more: Any,
) -> SAE | TrainResult:
    """Train an SAE of width ``width`` with Adam and return its float64 weights.

    Parameters
    ----------
    X : ndarray of shape (N, d), or path to a ``.npy`` file
        Training data, one sample per row. A path is memory-mapped and read batch by
        batch.
    lam : float
        Penalty weight, ``>= 0`` (L1 for ``relu``; L0 for ``jumprelu``; unused by
        ``topk``/``batchtopk``).
    width : int
        Number of latents ``K >= 1``.
    steps, batch_size, lr, seed : int, int, float, int
        Adam steps, samples per step (capped at ``N``; the whole data set each step
        when ``batch_size >= N``), peak learning rate, seed (CPU runs are
        bit-reproducible for a fixed seed).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    dtype : {"float32", "float64"}
        Training precision; the result is float64 either way.
    activation : {"relu", "topk", "batchtopk", "jumprelu"}
        Only ``relu`` is certifiable (see the module docstring).
    k : int, optional
        Required by ``topk`` and ``batchtopk`` (``1 <= k <= width``).
    checkpoint_dir : path, optional
        Write checkpoints there; with ``resume=True`` continue from the newest one.
    resume : bool
    quiet : bool
        No progress bar.
    return_history : bool
        Return a :class:`TrainResult` (SAE, activation, thresholds, history) instead
        of the bare :class:`SAE`.
    **more
        Other :class:`solvers.sgd.TrainConfig` fields: ``warmup_steps``, ``decay``,
        ``l1_warmup_steps``, ``resample_dead_every``, ``dead_window``,
        ``resample_samples``, ``jumprelu_threshold``, ``jumprelu_bandwidth``,
        ``checkpoint_every``, ``keep_checkpoints``, ``log_every``.

    Returns
    -------
    SAE or TrainResult

    Raises
    ------
    ValueError
        For an invalid argument; the message names it.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 3))
    >>> sae = train_sae(X, lam=0.1, width=4, steps=20, device="cpu")
    >>> sae.W_dec.shape
    (4, 3)
    """
    from solvers.sgd import TrainConfig, train

    lam = check_positive("lam", lam, allow_zero=True)
    width = check_int("width", width, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_positive("lr", lr)
    seed = check_int("seed", seed, minimum=0)
    dtype = check_choice("dtype", dtype, DTYPES)
    activation = check_choice("activation", activation, ACTIVATIONS)
    if activation in ("topk", "batchtopk"):
        if k is None:
            raise ValueError(
                f"The 'k' parameter is required with activation={activation!r} (nonzeros per "
                "sample, 1 <= k <= width). Got None."
            )
        k = check_int("k", k, minimum=1)
        if k > width:
            raise ValueError(f"The 'k' parameter must be <= width={width}. Got {k}.")
    elif k is not None:
        raise ValueError(
            f"The 'k' parameter is only used by activation='topk' or 'batchtopk'. Got k={k!r} "
            f"with activation={activation!r}; drop k."
        )
    for name, flag in (("resume", resume), ("quiet", quiet), ("return_history", return_history)):
        if not isinstance(flag, bool):
            raise ValueError(f"The '{name}' parameter must be True or False. Got {flag!r}.")
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise ValueError(f"The 'checkpoint_dir' parameter must be a path. Got {checkpoint_dir!r}.")
    if resume and checkpoint_dir is None:
        raise ValueError("The 'resume' parameter needs a 'checkpoint_dir' to resume from.")
    known = set(TrainConfig.__dataclass_fields__) - set(_EXPLICIT)
    unknown = sorted(set(more) - known)
    if unknown:
        raise TypeError(
            f"train_sae() got unexpected keyword argument(s) {unknown}; "
            f"accepted extras: {sorted(known)}."
        )
    device = _check_device(device)
    data = _check_data(X)
    config = TrainConfig(
        lam=lam, width=width, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        activation=activation, k=k, dtype=dtype, device=device, quiet=quiet,
        checkpoint_dir=None if checkpoint_dir is None else os.fspath(checkpoint_dir), **more,
    )
    out = train(data, config, resume=resume)
    sae = SAE(out["W_enc"], out["b_enc"], out["W_dec"], out["b_dec"])
    if not return_history:
        return sae
    return TrainResult(sae=sae, activation=activation, k=k, threshold=out.get("threshold"),
                       history=out["history"], steps=int(out["step"]))
