"""Train sparse autoencoders, transcoders and crosscoders by SGD (Adam).

A thin, validated front end to the engine :func:`convexdict_solvers.sgd.trainer.train`. With
``activation="relu"`` (the default) the trainer minimises the canonical objective of
THEORY section 1,

    L = (1/N) sum_n [ 1/2 ||x_n - xhat_n||^2 + lam * sum_k ||W_dec[k]|| z_nk ],

so the returned :class:`~convexdict.SAE` can be compared with, and certified against,
the convex program. ``"topk"``, ``"batchtopk"`` and ``"jumprelu"`` are offered for
comparisons only: the convex program does not certify them, ``topk``/``batchtopk`` train
on ``mean 1/2 ||x - xhat||^2`` alone and ``jumprelu`` on ``mean [1/2 ||x - xhat||^2 +
lam * L0]`` (see :mod:`convexdict_solvers.sgd.torch_sae`). Their weights still come back as a
:class:`~convexdict.SAE`, but ``SAE.encode`` applies a plain ReLU, which is a different
function; use ``return_history=True`` and :meth:`TrainResult.encode` for the trained one.

:func:`train_transcoder` (encode ``X_in``, reconstruct ``Y``) and :func:`train_crosscoder`
(encode ``X``, reconstruct each layer of ``targets`` with its own decoder) take the same
options and, with ``relu``, minimise the canonical losses of :mod:`convexdict.models.family`:

    transcoder:  (1/N) sum_n [ 1/2 ||y_n - yhat_n||^2 + lam sum_k ||W_dec[k]|| z_nk ]
    crosscoder:  (1/N) sum_n [ sum_l 1/2 ||y_nl - yhat_nl||^2
                               + lam sum_k z_nk sum_l ||W_dec^(l)[k]|| ]

so ``convexdict.certify(X, lam, target=Y)`` / ``certify(X, lam, targets=[...])`` bounds
them from below.

Feature anchoring (paper B): ``anchors=(A_enc, A_dec)`` with ``lam_anchor > 0`` adds
``lam_anchor * (||W_enc[:, :k] - A_enc||^2 + ||W_dec[:k] - A_dec||^2)`` to the *training*
loss (any activation, any model). The anchored run minimises a different objective; the
canonical loss of its weights (:func:`convexdict.sae_loss`, :meth:`TrainResult.evaluate`,
:func:`convexdict.certify`) is still what is reported and compared. Build anchors with
:func:`anchors_from_features` or :func:`anchors_from_class_means`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from convexdict_solvers.anchoring import (
    Anchors,
    anchors_from_class_means,
    anchors_from_features,
    check_anchors,
)

from convexdict._validation import check_choice, check_int, check_matrix, check_positive
from convexdict.models.family import Crosscoder, Transcoder
from convexdict.models.sae import SAE
from convexdict.training.result import Model, TrainResult

ACTIVATIONS = ("relu", "topk", "batchtopk", "jumprelu")
DTYPES = ("float32", "float64")
_EXPLICIT = ("lam", "width", "steps", "batch_size", "lr", "seed", "device", "dtype",
             "activation", "k", "checkpoint_dir", "quiet", "lam_anchor")


def _check_data(X: Any, name: str = "X") -> Any:
    """An in-memory float array or a read-only memory map of a ``.npy`` file.

    A path goes through :func:`convexdict.data.datasets.load_data` with ``mmap=True`` (the one
    loader: same checks as everywhere, a float ``.npy`` file stays a memory map).
    """
    if isinstance(X, (str, os.PathLike)):
        from convexdict.data.datasets import load_data

        if Path(X).suffix != ".npy":
            raise ValueError(
                f"The '{name}' parameter must be an array or the path of a .npy file. Got "
                f"{str(X)!r}; load other formats with convexdict.load_data (or use the CLI, "
                "which reads .npz, .csv and .safetensors)."
            )
        try:
            X = load_data(X, mmap=True)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"The '{name}' parameter names a missing file: {str(X)!r}.") \
                from exc
        except ValueError as exc:
            raise ValueError(f"The '{name}' parameter: {exc}") from exc
    if isinstance(X, np.ndarray) and X.dtype.kind == "f":
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(
                f"The '{name}' parameter must be a 2-D array of shape (n_samples, n_features). "
                f"Got an array with shape {X.shape}."
            )
        return X  # finiteness is checked in the engine's chunked pass over the data
    return check_matrix(name, X)


def _check_targets(targets: list[Any], names: list[str], n: int) -> list[Any]:
    """Each target checked like ``X`` (finite when in memory), with ``n`` rows."""
    out = []
    for name, T in zip(names, targets, strict=True):
        T = _check_data(T, name)
        if T.shape[0] != n:
            raise ValueError(
                f"The '{name}' parameter must have N={n} rows like the encoder input (row i is "
                f"the target of input row i). Got shape {T.shape}."
            )
        if not isinstance(T, np.memmap) and not np.all(np.isfinite(T)):
            raise ValueError(f"The '{name}' parameter must contain only finite values.")
        out.append(T)
    return out


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
    anchors: tuple[np.ndarray | None, np.ndarray | None] | None = None,
    lam_anchor: float = 0.0,
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
        Continue from the newest readable checkpoint in ``checkpoint_dir``, skipping
        truncated ones, and print the step resumed (see
        :func:`convexdict_solvers.sgd.trainer.train`).
    quiet : bool
        No progress bar.
    return_history : bool
        Return a :class:`TrainResult` (SAE, activation, thresholds, history) instead
        of the bare :class:`SAE`.
    anchors : tuple (A_enc (d, k) or None, A_dec (k, d) or None), optional
        Feature anchors for the first ``k`` latents (:func:`anchors_from_features`,
        :func:`anchors_from_class_means`); used when ``lam_anchor > 0``.
    lam_anchor : float
        Weight of ``||W_enc[:, :k] - A_enc||^2 + ||W_dec[:k] - A_dec||^2`` in the
        training loss (``>= 0``; 0 is exactly the unanchored run). With
        ``lam_anchor > 0`` the run does not minimise the canonical objective.
    **more
        Other :class:`convexdict_solvers.sgd.trainer.TrainConfig` fields: ``warmup_steps``,
        ``decay``,
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
    return _fit("sae", X, None, lam, width, steps=steps, batch_size=batch_size, lr=lr,
                seed=seed, device=device, dtype=dtype, activation=activation, k=k,
                checkpoint_dir=checkpoint_dir, resume=resume, quiet=quiet,
                return_history=return_history, anchors=anchors, lam_anchor=lam_anchor,
                **more)


def train_transcoder(
    X_in: np.ndarray | str | os.PathLike,
    Y: np.ndarray | str | os.PathLike,
    lam: float,
    width: int,
    **options: Any,
) -> Transcoder | TrainResult:
    """Train a transcoder (encode ``X_in``, reconstruct ``Y``) with Adam.

    With ``activation="relu"`` the objective is the canonical transcoder loss
    (:func:`convexdict.transcoder_loss`),
    ``(1/N) sum_n [1/2 ||y_n - yhat_n||^2 + lam sum_k ||W_dec[k]|| z_nk]``, and
    ``convexdict.certify(X_in, lam, target=Y).lower_bound`` bounds it from below.

    Parameters
    ----------
    X_in : ndarray of shape (N, d_in), or path to a ``.npy`` file
    Y : ndarray of shape (N, d_out), or path to a ``.npy`` file
        Row ``n`` is the target of ``X_in[n]``.
    lam, width
        As in :func:`train_sae`.
    **options
        Every keyword of :func:`train_sae` (``steps``, ``activation``, ``anchors`` with
        ``A_enc (d_in, k)`` and ``A_dec (k, d_out)``, ...). Initialisation: ``b_dec`` is
        the mean of ``Y``, ``b_enc = -mean(X_in) @ W_enc``, and ``W_enc = W_dec.T`` when
        ``d_in == d_out`` (independent unit columns otherwise), so ``Y = X_in`` trains
        exactly like :func:`train_sae` with the same seed (without dead-latent
        resampling, which centres inputs differently).

    Returns
    -------
    Transcoder or TrainResult
        ``TrainResult.sae`` is the :class:`~convexdict.models.family.Transcoder`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(64, 3))
    >>> tc = train_transcoder(X, X @ rng.normal(size=(3, 2)), 0.1, 4, steps=20, device="cpu")
    >>> tc.W_enc.shape, tc.W_dec.shape
    ((3, 4), (4, 2))
    """
    return _fit("transcoder", X_in, [Y], lam, width, **options)


def train_crosscoder(
    X: np.ndarray | str | os.PathLike,
    targets: list[np.ndarray | str | os.PathLike],
    lam: float,
    width: int,
    **options: Any,
) -> Crosscoder | TrainResult:
    """Train a crosscoder (encode ``X``, one decoder per target layer) with Adam.

    With ``activation="relu"`` the objective is the canonical crosscoder loss
    (:func:`convexdict.crosscoder_loss`): squared errors summed over layers plus
    ``lam sum_k z_k sum_l ||W_dec^(l)[k]||``, bounded from below by
    ``convexdict.certify(X, lam, targets=targets).lower_bound``.

    Parameters
    ----------
    X : ndarray of shape (N, d_in), or path to a ``.npy`` file
        The encoder's input, typically the layers concatenated.
    targets : list of ndarray of shape (N, d_l) or ``.npy`` paths
        One per layer, row-aligned with ``X``.
    lam, width
        As in :func:`train_sae`.
    **options
        Every keyword of :func:`train_sae`. ``anchors`` take ``A_enc (d_in, k)`` and
        ``A_dec`` of shape ``(k, sum_l d_l)`` (the layers side by side) or a list of
        per-layer ``(k, d_l)`` arrays. The decoder is initialised with unit rows over
        all layers together, and ``W_enc = W_dec.T`` when ``d_in == sum_l d_l``.

    Returns
    -------
    Crosscoder or TrainResult
        ``TrainResult.sae`` is the :class:`~convexdict.models.family.Crosscoder`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.normal(size=(64, 3)), rng.normal(size=(64, 2))
    >>> cc = train_crosscoder(np.hstack([A, B]), [A, B], 0.1, 4, steps=20, device="cpu")
    >>> [W.shape for W in cc.W_decs]
    [(4, 3), (4, 2)]
    """
    if isinstance(targets, (np.ndarray, str, os.PathLike)) or not isinstance(
            targets, (list, tuple)) or not targets:
        raise ValueError(
            "The 'targets' parameter must be a non-empty list of (N, d_l) arrays or .npy "
            f"paths, one per layer. Got {type(targets).__name__}."
        )
    return _fit("crosscoder", X, list(targets), lam, width, **options)


def _fit(
    kind: str,
    X: Any,
    targets: list[Any] | None,
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
    anchors: tuple[np.ndarray | None, np.ndarray | None] | None = None,
    lam_anchor: float = 0.0,
    **more: Any,
) -> Model | TrainResult:
    """The shared front end of :func:`train_sae`, :func:`train_transcoder` and
    :func:`train_crosscoder`: validate, run :func:`convexdict_solvers.sgd.trainer.train`, wrap the
    weights."""
    from convexdict_solvers.sgd.trainer import TrainConfig, train

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
    lam_anchor = check_positive("lam_anchor", lam_anchor, allow_zero=True)
    if lam_anchor > 0 and anchors is None:
        raise ValueError(
            f"The 'lam_anchor' parameter is {lam_anchor} but no 'anchors' were given. Pass "
            "anchors=anchors_from_features(F) (or (A_enc, A_dec)) or leave lam_anchor=0."
        )
    known = set(TrainConfig.__dataclass_fields__) - set(_EXPLICIT)
    unknown = sorted(set(more) - known)
    if unknown:
        raise TypeError(
            f"train_{kind}() got unexpected keyword argument(s) {unknown}; "
            f"accepted extras: {sorted(known)}."
        )
    device = _check_device(device)
    data = _check_data(X, "X_in" if kind == "transcoder" else "X")
    if targets is not None:
        names = ["Y"] if kind == "transcoder" else [f"targets[{i}]" for i in range(len(targets))]
        targets = _check_targets(targets, names, data.shape[0])
    if anchors is not None:
        d_out = data.shape[1] if targets is None else sum(T.shape[1] for T in targets)
        anchors = check_anchors(anchors, data.shape[1], d_out, width)
    config = TrainConfig(
        lam=lam, width=width, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        activation=activation, k=k, dtype=dtype, device=device, quiet=quiet,
        lam_anchor=lam_anchor,
        checkpoint_dir=None if checkpoint_dir is None else os.fspath(checkpoint_dir), **more,
    )
    out = train(data, config, resume=resume, targets=targets, anchors=anchors)
    model: Model
    if kind == "sae":
        model = SAE(out["W_enc"], out["b_enc"], out["W_dec"], out["b_dec"])
    elif kind == "transcoder":
        model = Transcoder(out["W_enc"], out["b_enc"], out["W_dec"], out["b_dec"])
    else:
        cuts = np.cumsum([T.shape[1] for T in targets])[:-1]
        model = Crosscoder(out["W_enc"], out["b_enc"],
                           tuple(np.split(out["W_dec"], cuts, axis=1)),
                           tuple(np.split(out["b_dec"], cuts)))
    if not return_history:
        return model
    n_anchored = anchors.k if anchors is not None and lam_anchor > 0 else 0
    return TrainResult(sae=model, activation=activation, k=k, threshold=out.get("threshold"),
                       history=out["history"], steps=int(out["step"]), kind=kind,
                       anchored=n_anchored)


__all__ = [
    "Anchors",
    "TrainResult",
    "anchors_from_class_means",
    "anchors_from_features",
    "train_crosscoder",
    "train_sae",
    "train_transcoder",
]
