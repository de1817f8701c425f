"""The ReLU sparse autoencoder and its canonical objective (THEORY section 1).

Orientation follows SAELens: ``W_enc (d, K)``, ``b_enc (K,)``, ``W_dec (K, d)``,
``b_dec (d,)``. Codes ``Z = relu(X @ W_enc + b_enc)``, reconstruction
``Xhat = Z @ W_dec + b_dec``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from convexdict_solvers.objective import mean_terms

from convexdict._validation import check_matrix, check_positive, check_vector
from convexdict.models.loss_terms import LossTerms


@dataclass(frozen=True, eq=False)
class SAE:
    """A ReLU sparse autoencoder with float64 weights.

    Parameters
    ----------
    W_enc : ndarray of shape (d, K)
        Encoder weights.
    b_enc : ndarray of shape (K,)
        Encoder bias.
    W_dec : ndarray of shape (K, d)
        Decoder rows (one atom per latent).
    b_dec : ndarray of shape (d,)
        Decoder bias.

    Examples
    --------
    >>> import numpy as np
    >>> sae = SAE(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> sae.width, sae.d_in
    (2, 2)
    """

    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    b_dec: np.ndarray

    def __post_init__(self) -> None:
        w_enc = np.asarray(self.W_enc, dtype=np.float64)
        if w_enc.ndim != 2:
            raise ValueError(
                "The 'W_enc' parameter must be a 2-D array of shape (d, K). "
                f"Got an array with shape {w_enc.shape}."
            )
        d, k = w_enc.shape
        if d < 1:
            raise ValueError(
                f"The 'W_enc' parameter must have d >= 1 rows. Got shape {w_enc.shape}."
            )
        w_enc = check_matrix("W_enc", w_enc, n_cols=k) if k else w_enc
        b_enc = check_vector("b_enc", self.b_enc, length=k)
        w_dec = np.asarray(self.W_dec, dtype=np.float64)
        if w_dec.shape != (k, d):
            raise ValueError(
                f"The 'W_dec' parameter must have shape (K, d) = ({k}, {d}) to match W_enc. "
                f"Got shape {w_dec.shape}."
            )
        if not np.all(np.isfinite(w_dec)):
            raise ValueError("The 'W_dec' parameter must contain only finite values.")
        b_dec = check_vector("b_dec", self.b_dec, length=d)
        for name, arr in (("W_enc", w_enc), ("b_enc", b_enc), ("W_dec", w_dec), ("b_dec", b_dec)):
            arr = np.array(arr, dtype=np.float64, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def width(self) -> int:
        """Number of latents ``K``."""
        return int(self.W_enc.shape[1])

    @property
    def d_in(self) -> int:
        """Input dimension ``d``."""
        return int(self.W_enc.shape[0])

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes ``relu(X @ W_enc + b_enc)`` of shape ``(N, K)`` for ``X (N, d)``."""
        X = check_matrix("X", X, n_cols=self.d_in)
        return np.maximum(X @ self.W_enc + self.b_enc, 0.0)

    def decode(self, Z: np.ndarray) -> np.ndarray:
        """Reconstruction ``Z @ W_dec + b_dec`` of shape ``(N, d)`` for ``Z (N, K)``."""
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.width:
            raise ValueError(
                f"The 'Z' parameter must have shape (N, {self.width}). Got shape {Z.shape}."
            )
        return Z @ self.W_dec + self.b_dec

    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        """``decode(encode(X))``, shape ``(N, d)``."""
        return self.decode(self.encode(X))

    def decoder_norms(self) -> np.ndarray:
        """Euclidean norms of the decoder rows, shape ``(K,)``."""
        return np.linalg.norm(self.W_dec, axis=1)

    def normalized(self) -> SAE:
        """The same function with unit-norm decoder rows (dead-atom rows left as they are).

        The canonical objective is invariant under this rescaling.
        """
        norms = self.decoder_norms()
        scale = np.where(norms > 0, norms, 1.0)
        return SAE(self.W_enc * scale, self.b_enc * scale, self.W_dec / scale[:, None], self.b_dec)

    def padded(self, width: int) -> SAE:
        """The same function at a larger width, the extra latents dead (all-zero weights)."""
        extra = width - self.width
        if extra < 0:
            raise ValueError(
                f"The 'width' parameter must be >= the current width {self.width}. Got {width}."
            )
        return SAE(
            np.hstack([self.W_enc, np.zeros((self.d_in, extra))]),
            np.concatenate([self.b_enc, np.full(extra, -1.0)]),
            np.vstack([self.W_dec, np.zeros((extra, self.d_in))]),
            self.b_dec,
        )

    @classmethod
    def zeros(cls, b_dec: np.ndarray, width: int = 0) -> SAE:
        """The SAE that outputs the constant ``b_dec`` (``width`` dead latents)."""
        b_dec = np.asarray(b_dec, dtype=np.float64)
        d = b_dec.shape[0]
        return cls(np.zeros((d, width)), np.full(width, -1.0), np.zeros((width, d)), b_dec)

    @classmethod
    def load(cls, path: str) -> SAE:
        """Read an SAE file: SAELens directory, dictionary_learning ``ae.pt``,
        sparsify directory or ``.npz`` (see :mod:`convexdict.data.formats`)."""
        return load_sae(path)

    def save(self, path: str) -> None:
        """Write the SAELens layout (``cfg.json`` + ``sae_weights.safetensors``) to ``path``."""
        from convexdict.data.writers import save_sae

        save_sae(self, path)

    def __repr__(self) -> str:
        return f"SAE(d_in={self.d_in}, width={self.width})"


def sae_loss_terms(sae: SAE, X: np.ndarray, lam: float) -> LossTerms:
    """Reconstruction and penalty parts of :func:`sae_loss`.

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    lam : float
        L1 penalty weight, ``>= 0``.
    """
    X = check_matrix("X", X, n_cols=sae.d_in)
    lam = check_positive("lam", lam, allow_zero=True)
    Z = sae.encode(X)
    return LossTerms(*mean_terms(X - sae.decode(Z), Z, sae.decoder_norms(), lam))


def sae_loss(sae: SAE, X: np.ndarray, lam: float) -> float:
    r"""The canonical SAE objective, in float64.

    .. math::

        L = \frac{1}{N} \sum_n \Big[ \tfrac12 \|x_n - \hat x_n\|^2
            + \lambda \sum_k \|W_{dec}[k]\| \, Z_{nk} \Big]

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    lam : float

    Returns
    -------
    float
    """
    return sae_loss_terms(sae, X, lam).total


def load_sae(
    path: str | os.PathLike[str],
    *,
    return_info: bool = False,
    norm_scaling_factor: float | None = None,
) -> SAE | tuple[SAE, dict[str, Any]]:
    """Read an SAE file into the canonical ReLU form, detecting its format.

    Parameters
    ----------
    path : str or path-like
        An SAELens directory (``cfg.json`` + ``sae_weights.safetensors``), a sparsify
        directory (``cfg.json`` + ``sae.safetensors``), a dictionary_learning ``ae.pt``
        (or a directory holding one), or a ``.npz`` with ``W_enc (d, K)``, ``b_enc (K,)``,
        ``W_dec (K, d)``, ``b_dec (d,)``. A weights file inside an SAELens or sparsify
        directory stands for its directory.
    return_info : bool, default=False
        Also return a dict describing what was read (see Returns).
    norm_scaling_factor : float, optional
        For SAELens files with ``normalize_activations: "expected_average_only_in"``: the
        constant the inputs were multiplied by. It is folded into the weights so the SAE
        acts on raw inputs. Required for such files.

    Returns
    -------
    sae : SAE
        Float64 weights with every pre-encoder bias folded into ``b_enc``.
    info : dict
        Only with ``return_info=True``. Keys ``'format'`` (one of :data:`FORMATS`),
        ``'activation'`` (``'relu'``, ``'topk'`` or sparsify's ``'groupmax'``), ``'k'``
        (int or None), ``'certifiable'`` (True only for ReLU SAEs: the convex program
        certifies the L1 objective, not TopK) and ``'notes'`` (list of str: every
        convention that was folded or ignored, and every default that was assumed).

    Raises
    ------
    FileNotFoundError
        If ``path`` (or a file the format needs) does not exist.
    ValueError
        If ``path`` is not a path; if the files are empty, truncated or unreadable, lack
        a tensor or a required config key, have inconsistent shapes, hold NaN or
        infinity, or describe an architecture that is not a (Top-K) ReLU SAE. The message
        names the path, what was expected and what was found.

    Notes
    -----
    SAELens ``cfg.json`` keys. ``apply_b_dec_to_input`` is required: it decides whether
    ``b_dec`` is subtracted from the input, which changes every code, so a config without
    it is refused rather than guessed. Keys with a documented default (SAELens' own
    default, which configs written before the key existed relied on):

    - ``architecture``: ``"standard"`` (the ReLU SAE);
    - ``activation_fn_str`` (or the older ``activation_fn``): ``"relu"``;
    - ``normalize_activations``: ``"none"``;
    - ``d_in``, ``d_sae``: taken from the shape of ``W_enc`` (checked when present);
    - ``dtype``: informational only (weights are converted to float64);
    - ``k`` of a TopK SAE: ``None`` (unknown) when absent.

    Each default that is used is recorded in ``info["notes"]``; the CLI prints the notes.

    Examples
    --------
    >>> sae, info = load_sae("path/to/saelens_dir", return_info=True)  # doctest: +SKIP
    >>> info["certifiable"]  # doctest: +SKIP
    True
    """
    from convexdict.data.formats import read_sae

    arrays, info = read_sae(path, norm_scaling_factor=norm_scaling_factor)
    try:
        sae = SAE(*arrays)
    except ValueError as exc:
        raise ValueError(f"Cannot read an SAE from '{path}': {exc}") from exc
    return (sae, info) if return_info else sae
