"""Internal units: exact power-of-two scaling of the data, ``lam`` and models.

Scaling the encoder input ``X`` by ``a`` changes no activation pattern (the encoder absorbs
it); scaling the target ``T`` and ``lam`` by ``c`` multiplies every loss, every bound and
every dual value by ``c^2`` (docs/theory.md, "Units"). The solvers therefore run on
``X / a`` and ``T / c`` with ``lam / c``, where ``a`` and ``c`` are the powers of two
nearest the RMS of the centred ``X`` and ``T``: division by a power of two is exact in
floating point (barring underflow), so the internal problem *is* the user's problem, and
numerical thresholds inside the solvers see data of unit size whatever the user's units.
Results are mapped back exactly and verified again in the user's units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from convexdict.models.family import Crosscoder, Transcoder
from convexdict.models.sae import SAE


def power_of_two_rms(A: np.ndarray) -> float:
    """The power of two nearest the RMS of ``A``'s centred entries (``1.0`` if it is zero).

    Parameters
    ----------
    A : ndarray of shape (N, p)
    """
    if A.size == 0:
        return 1.0
    centred = A - A.mean(axis=0)
    peak = float(np.abs(centred).max())
    if not peak > 0 or not math.isfinite(peak):
        return 1.0
    rms = peak * float(np.sqrt(np.mean((centred / peak) ** 2)))  # no overflow near 1e308
    if not rms > 0:
        return 1.0
    return math.ldexp(1.0, round(math.log2(rms)))


@dataclass(frozen=True)
class Units:
    """Exact scales between the user's units and the internal ones.

    Attributes
    ----------
    x : float
        Internal encoder input is ``X / x`` (a power of two).
    t : float
        Internal target is ``T / t`` and internal ``lam`` is ``lam / t`` (a power of two);
        internal losses are user losses divided by ``t^2``.
    """

    x: float = 1.0
    t: float = 1.0

    @classmethod
    def of(cls, X: np.ndarray, T: np.ndarray | None = None) -> Units:
        """Units for encoder input ``X (N, d)`` and target ``T (N, p)`` (``T = X`` for an SAE)."""
        x = power_of_two_rms(X)
        return cls(x, x if T is None or T is X else power_of_two_rms(T))

    @property
    def loss(self) -> float:
        """User loss = internal loss times this (``t^2``)."""
        return self.t * self.t

    def model_to_user(self, model):
        """Map an internal SAE, Transcoder or Crosscoder to the user's units (exact)."""
        if model is None:
            return None
        if isinstance(model, SAE):
            return SAE(model.W_enc / self.x, model.b_enc, model.W_dec * self.t,
                       model.b_dec * self.t)
        if isinstance(model, Transcoder):
            return Transcoder(model.W_enc / self.x, model.b_enc, model.W_dec * self.t,
                              model.b_dec * self.t)
        if isinstance(model, Crosscoder):
            return Crosscoder(model.W_enc / self.x, model.b_enc,
                              tuple(W * self.t for W in model.W_decs),
                              tuple(b * self.t for b in model.b_decs))
        raise TypeError(f"cannot rescale a {type(model).__name__}")

    def model_to_internal(self, model):
        """Inverse of :meth:`model_to_user`."""
        return Units(1.0 / self.x, 1.0 / self.t).model_to_user(model)
