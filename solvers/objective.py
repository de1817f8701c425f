"""The canonical objective, written once for every array backend.

For residuals ``r_n = t_n - that_n``, codes ``z_n >= 0`` and decoder row norms ``w_k``:

    L = (1/N) sum_n [ 1/2 ||r_n||^2 + lam sum_k w_k z_nk ].

:func:`per_sample_terms` returns the two per-sample parts; it uses only operations that
numpy arrays and torch tensors share (elementwise products and ``sum`` over trailing
axes), so the numpy float64 losses of :mod:`convexdict` and the torch training losses
(minibatch means, batched restarts) evaluate the same formula. CVXPY problems state it
as an expression of their own variables (:mod:`convexdict.analysis.pieces`).
"""

from __future__ import annotations

from typing import Any


def per_sample_terms(residual: Any, codes: Any, decoder_norms: Any, lam: float) -> tuple[Any, Any]:
    """Per-sample reconstruction and penalty of the canonical objective.

    Parameters
    ----------
    residual : array or tensor of shape (..., N, p)
        ``t_n - that_n``.
    codes : array or tensor of shape (..., N, K)
        Nonnegative codes.
    decoder_norms : array or tensor of shape (..., 1, K) or (K,)
        ``||W_dec[k]||`` (summed over layers for a crosscoder).
    lam : float
        Penalty weight.

    Returns
    -------
    reconstruction, penalty : array or tensor of shape (..., N)
        ``1/2 ||r_n||^2`` and ``lam sum_k w_k z_nk``.
    """
    return 0.5 * (residual * residual).sum(-1), lam * (codes * decoder_norms).sum(-1)


def mean_terms(residual: Any, codes: Any, decoder_norms: Any, lam: float) -> tuple[float, float]:
    """``(reconstruction, penalty)`` of the canonical objective as Python floats (means over
    the ``N`` samples of one batch; see :func:`per_sample_terms`)."""
    recon, penalty = per_sample_terms(residual, codes, decoder_norms, lam)
    return float(recon.mean()), float(penalty.mean())
