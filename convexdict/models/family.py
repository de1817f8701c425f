"""Paper B's family beyond SAEs: transcoders and crosscoders (THEORY section 6).

* A **transcoder** encodes ``X_in (N, d_in)`` and reconstructs a different target
  ``Y (N, d_out)``: ``W_enc (d_in, K)``, ``b_enc (K,)``, ``W_dec (K, d_out)``, ``b_dec (d_out,)``.
* A **crosscoder** encodes ``X (N, d_in)`` (typically several layers concatenated) and
  decodes each target layer ``Y_l (N, d_l)`` with its own decoder ``W_dec[l] (K, d_l)``;
  the penalty is ``lam * sum_k z_k * sum_l ||W_dec[l][k]||``.

Both have the canonical objective's form (mean over samples, 1/2 on squared error,
decoder-norm-weighted L1), so (P) and its certificates extend to them: the target changes,
and for crosscoders the dual constraint becomes one norm per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from convexdict_solvers.objective import mean_terms

from convexdict._validation import check_matrix, check_positive, check_vector
from convexdict.models.sae import LossTerms


def _checked_encoder(W_enc, b_enc):
    W_enc = np.asarray(W_enc, dtype=np.float64)
    if W_enc.ndim != 2:
        raise ValueError(f"The 'W_enc' parameter must be 2-D (d_in, K). Got shape {W_enc.shape}.")
    if W_enc.shape[1]:
        W_enc = check_matrix("W_enc", W_enc)
    return W_enc, check_vector("b_enc", b_enc, length=W_enc.shape[1])


def _checked_decoder(name, W_dec, b_dec, k):
    W_dec = np.asarray(W_dec, dtype=np.float64)
    if W_dec.ndim != 2 or W_dec.shape[0] != k or not np.all(np.isfinite(W_dec)):
        raise ValueError(
            f"The '{name}' parameter must be a finite array of shape ({k}, d_out). "
            f"Got shape {W_dec.shape}."
        )
    return W_dec, check_vector(name.replace("W_dec", "b_dec"), b_dec, length=W_dec.shape[1])


@dataclass(frozen=True, eq=False)
class Transcoder:
    """ReLU transcoder: ``Z = relu(X_in W_enc + b_enc)``, ``Yhat = Z W_dec + b_dec``.

    Parameters
    ----------
    W_enc : ndarray of shape (d_in, K)
    b_enc : ndarray of shape (K,)
    W_dec : ndarray of shape (K, d_out)
    b_dec : ndarray of shape (d_out,)
    """

    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    b_dec: np.ndarray

    def __post_init__(self) -> None:
        W_enc, b_enc = _checked_encoder(self.W_enc, self.b_enc)
        W_dec, b_dec = _checked_decoder("W_dec", self.W_dec, self.b_dec, W_enc.shape[1])
        for name, arr in (("W_enc", W_enc), ("b_enc", b_enc), ("W_dec", W_dec), ("b_dec", b_dec)):
            object.__setattr__(self, name, arr)

    @property
    def width(self) -> int:
        return int(self.W_enc.shape[1])

    def encode(self, X_in: np.ndarray) -> np.ndarray:
        """Codes ``(N, K)``."""
        X_in = check_matrix("X_in", X_in, n_cols=self.W_enc.shape[0])
        return np.maximum(X_in @ self.W_enc + self.b_enc, 0.0)

    def predict(self, X_in: np.ndarray) -> np.ndarray:
        """``Yhat (N, d_out)``."""
        return self.encode(X_in) @ self.W_dec + self.b_dec


@dataclass(frozen=True, eq=False)
class Crosscoder:
    """ReLU crosscoder with one decoder per target layer.

    Parameters
    ----------
    W_enc : ndarray of shape (d_in, K)
    b_enc : ndarray of shape (K,)
    W_decs : tuple of ndarray, each of shape (K, d_l)
    b_decs : tuple of ndarray, each of shape (d_l,)
    """

    W_enc: np.ndarray
    b_enc: np.ndarray
    W_decs: tuple
    b_decs: tuple

    def __post_init__(self) -> None:
        W_enc, b_enc = _checked_encoder(self.W_enc, self.b_enc)
        if len(self.W_decs) != len(self.b_decs) or not self.W_decs:
            raise ValueError(
                "The 'W_decs' and 'b_decs' parameters must be non-empty sequences of equal "
                f"length. Got {len(self.W_decs)} and {len(self.b_decs)}."
            )
        pairs = [
            _checked_decoder(f"W_decs[{i}]", W, b, W_enc.shape[1])
            for i, (W, b) in enumerate(zip(self.W_decs, self.b_decs, strict=True))
        ]
        object.__setattr__(self, "W_enc", W_enc)
        object.__setattr__(self, "b_enc", b_enc)
        object.__setattr__(self, "W_decs", tuple(p[0] for p in pairs))
        object.__setattr__(self, "b_decs", tuple(p[1] for p in pairs))

    @property
    def width(self) -> int:
        return int(self.W_enc.shape[1])

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes ``(N, K)``."""
        X = check_matrix("X", X, n_cols=self.W_enc.shape[0])
        return np.maximum(X @ self.W_enc + self.b_enc, 0.0)

    def predict(self, X: np.ndarray) -> list[np.ndarray]:
        """One reconstruction ``(N, d_l)`` per layer."""
        Z = self.encode(X)
        return [Z @ W + b for W, b in zip(self.W_decs, self.b_decs, strict=True)]


def transcoder_loss_terms(tc: Transcoder, X_in: np.ndarray, Y: np.ndarray, lam: float) -> LossTerms:
    """Canonical objective of a transcoder, split into reconstruction and penalty."""
    lam = check_positive("lam", lam, allow_zero=True)
    Y = check_matrix("Y", Y, n_cols=tc.W_dec.shape[1])
    Z = tc.encode(X_in)
    if Y.shape[0] != Z.shape[0]:
        raise ValueError(f"The 'Y' parameter must have {Z.shape[0]} rows. Got {Y.shape[0]}.")
    return LossTerms(*mean_terms(Y - (Z @ tc.W_dec + tc.b_dec), Z,
                                 np.linalg.norm(tc.W_dec, axis=1), lam))


def transcoder_loss(tc: Transcoder, X_in: np.ndarray, Y: np.ndarray, lam: float) -> float:
    """``(1/N) sum_n [1/2 ||y_n - yhat_n||^2 + lam sum_k ||W_dec[k]|| z_nk]``."""
    return transcoder_loss_terms(tc, X_in, Y, lam).total


def crosscoder_loss_terms(
    cc: Crosscoder, X: np.ndarray, targets: list[np.ndarray], lam: float
) -> LossTerms:
    """Canonical crosscoder objective: squared error summed over layers, penalty
    ``lam * sum_k z_k sum_l ||W_dec[l][k]||``."""
    lam = check_positive("lam", lam, allow_zero=True)
    if len(targets) != len(cc.W_decs):
        raise ValueError(
            f"The 'targets' parameter must hold {len(cc.W_decs)} arrays. Got {len(targets)}."
        )
    Z = cc.encode(X)
    layers = [check_matrix(f"targets[{i}]", Y, n_cols=W.shape[1])
              for i, (Y, W) in enumerate(zip(targets, cc.W_decs, strict=True))]
    resid = np.hstack([Y - (Z @ W + b) for Y, W, b in zip(layers, cc.W_decs, cc.b_decs,
                                                          strict=True)])
    norms = sum(np.linalg.norm(W, axis=1) for W in cc.W_decs)
    return LossTerms(*mean_terms(resid, Z, norms, lam))


def crosscoder_loss(cc: Crosscoder, X: np.ndarray, targets: list[np.ndarray], lam: float) -> float:
    """Total of :func:`crosscoder_loss_terms`."""
    return crosscoder_loss_terms(cc, X, targets, lam).total
