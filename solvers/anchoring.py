"""Feature anchoring (paper B): tie the first ``k`` latents to known feature directions.

Anchoring adds

    lam_anchor * ( ||W_enc[:, :k] - A_enc||_F^2 + ||W_dec[:k] - A_dec||_F^2 )

to the training loss of any activation (``relu``, ``topk``, ``batchtopk``, ``jumprelu``) and
any model of the family (SAE, transcoder, crosscoder: for a crosscoder ``A_dec`` spans the
concatenated layers). This **changes the objective**: the anchored model minimises
``training loss + anchoring term``, not the canonical loss of THEORY section 1, and it
breaks the canonical loss's per-latent scale invariance (anchors fix the scale of the
anchored latents). The canonical loss of the trained weights remains what is reported,
compared and certified.

This module is numpy only (no torch import): it builds and validates anchors. The term
itself is :meth:`convexdict_solvers.sgd.torch_sae.TorchSAE.anchor_distance`, added by the trainer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np


class Anchors(NamedTuple):
    """Anchors for the first ``k`` latents (either may be ``None``, not both).

    Attributes
    ----------
    A_enc : ndarray of shape (d_in, k) or None
        Targets for the encoder columns ``W_enc[:, :k]``.
    A_dec : ndarray of shape (k, D) or None
        Targets for the decoder rows ``W_dec[:k]`` (``D`` = output dimension; the layers
        side by side for a crosscoder).
    """

    A_enc: np.ndarray | None
    A_dec: np.ndarray | None

    @property
    def k(self) -> int:
        """Number of anchored latents."""
        if self.A_dec is not None:
            return int(self.A_dec.shape[0])
        return 0 if self.A_enc is None else int(self.A_enc.shape[1])

    def fingerprint(self) -> str:
        """SHA-256 of shapes and float64 bytes (identifies the anchors in checkpoints)."""
        digest = hashlib.sha256()
        for arr in self:
            digest.update(b"none" if arr is None else repr(arr.shape).encode())
            if arr is not None:
                digest.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        return digest.hexdigest()


def _finite_2d(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"The '{name}' parameter must be a numeric 2-D array. Got {type(value).__name__}."
        ) from exc
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(
            f"The '{name}' parameter must be a non-empty 2-D array. Got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"The '{name}' parameter must contain only finite values.")
    return arr


def check_anchors(anchors: Any, d_in: int, d_out: int, width: int) -> Anchors:
    """Validate ``anchors = (A_enc, A_dec)`` against a model's shapes.

    Parameters
    ----------
    anchors : tuple (A_enc, A_dec)
        ``A_enc`` of shape ``(d_in, k)`` or ``None``; ``A_dec`` of shape ``(k, d_out)``,
        a sequence of per-layer ``(k, d_l)`` arrays (concatenated along columns), or
        ``None``. At least one must be given, and ``k <= width``.
    d_in, d_out, width : int
        Input dimension, output dimension ``D`` and number of latents of the model.

    Returns
    -------
    Anchors
        Float64 copies.

    Raises
    ------
    ValueError
        Naming the argument, the expected shape and the one received.
    """
    if isinstance(anchors, np.ndarray) or not isinstance(anchors, Sequence) \
            or len(anchors) != 2:
        raise ValueError(
            "The 'anchors' parameter must be a pair (A_enc (d_in, k) or None, A_dec (k, D) or "
            f"None), e.g. from anchors_from_features. Got {type(anchors).__name__}."
        )
    a_enc, a_dec = anchors
    if a_enc is None and a_dec is None:
        raise ValueError("The 'anchors' parameter must hold at least one array. Got (None, None).")
    if isinstance(a_dec, (list, tuple)):
        a_dec = np.hstack([_finite_2d(f"anchors[1][{i}]", a) for i, a in enumerate(a_dec)])
    if a_enc is not None:
        a_enc = _finite_2d("anchors[0]", a_enc).copy()
        if a_enc.shape[0] != d_in or a_enc.shape[1] > width:
            raise ValueError(
                f"The 'anchors[0]' (A_enc) parameter must have shape ({d_in}, k) with "
                f"k <= width={width}. Got shape {a_enc.shape}."
            )
    if a_dec is not None:
        a_dec = _finite_2d("anchors[1]", a_dec).copy()
        if a_dec.shape[1] != d_out or a_dec.shape[0] > width:
            raise ValueError(
                f"The 'anchors[1]' (A_dec) parameter must have shape (k, {d_out}) with "
                f"k <= width={width}. Got shape {a_dec.shape}."
            )
    if a_enc is not None and a_dec is not None and a_enc.shape[1] != a_dec.shape[0]:
        raise ValueError(
            "The 'anchors' parameter must anchor the same number k of latents in A_enc "
            f"(d_in, k) and A_dec (k, D). Got A_enc {a_enc.shape} and A_dec {a_dec.shape}."
        )
    return Anchors(a_enc, a_dec)


def _unit_rows(name: str, rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    bad = np.flatnonzero(norms[:, 0] <= 1e-12 * max(1.0, float(norms.max())))
    if bad.size:
        raise ValueError(
            f"The '{name}' parameter must have nonzero rows (they become unit directions). "
            f"Got zero rows at {bad[:5].tolist()}."
        )
    return rows / norms


def anchors_from_features(features: np.ndarray) -> Anchors:
    """Anchors at known feature directions: ``A_dec = f / ||f||``, ``A_enc = A_dec.T``.

    Parameters
    ----------
    features : ndarray of shape (k, D)
        One direction per anchored latent (normalised to unit rows here). For a
        crosscoder pass the layers' directions side by side, shape ``(k, sum_l d_l)``; the
        whole row is normalised, and ``A_enc = A_dec.T`` then fits an encoder whose input
        is those layers concatenated.

    Returns
    -------
    Anchors
        ``A_enc (D, k)``, ``A_dec (k, D)``.

    Examples
    --------
    >>> import numpy as np
    >>> a = anchors_from_features(np.array([[3.0, 4.0]]))
    >>> a.A_dec.tolist(), a.A_enc.shape
    ([[0.6, 0.8]], (2, 1))
    """
    unit = _unit_rows("features", _finite_2d("features", features))
    return Anchors(np.ascontiguousarray(unit.T), unit)


def anchors_from_class_means(X: np.ndarray, labels: np.ndarray,
                             classes: Sequence[Any] | None = None) -> Anchors:
    """Anchors at labelled concepts: class means minus the global mean, normalised.

    ``A_dec[j] = (mean(X[labels == c_j]) - mean(X)) / ||...||``, ``A_enc = A_dec.T``.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    labels : ndarray of shape (N,)
    classes : sequence, optional
        The classes to anchor, in latent order; default ``np.unique(labels)``.

    Returns
    -------
    Anchors
        ``A_enc (d, k)``, ``A_dec (k, d)`` with ``k = len(classes)``.

    Raises
    ------
    ValueError
        For mismatched lengths, a class with no samples, or a class whose mean equals the
        global mean (no direction).
    """
    X = _finite_2d("X", X)
    labels = np.asarray(labels)
    if labels.shape != (X.shape[0],):
        raise ValueError(
            f"The 'labels' parameter must have shape ({X.shape[0]},) like the rows of X. "
            f"Got shape {labels.shape}."
        )
    chosen = list(np.unique(labels)) if classes is None else list(classes)
    if not chosen:
        raise ValueError("The 'classes' parameter must name at least one class. Got none.")
    centre = X.mean(axis=0)
    means = []
    for c in chosen:
        mask = labels == c
        if not mask.any():
            raise ValueError(f"The 'classes' parameter names class {c!r}, which has no samples.")
        means.append(X[mask].mean(axis=0) - centre)
    unit = _unit_rows("labels (class means minus the global mean)", np.array(means))
    return Anchors(np.ascontiguousarray(unit.T), unit)


__all__ = ["Anchors", "anchors_from_class_means", "anchors_from_features", "check_anchors"]
