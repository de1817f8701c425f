"""Converting the losses SAELens, dictionary_learning and sparsify log into the canonical
``(1/N) sum_n [1/2 ||x_n - xhat_n||^2 + lam sum_k ||W_dec[k]|| Z[n,k]]`` (THEORY section 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from convexdict._validation import check_choice, check_int, check_matrix, check_positive
from convexdict.data.formats import LOSS_SOURCES
from convexdict.models.loss_terms import LossTerms

# --------------------------------------------------------------------------- loss units


def total_variance(X: np.ndarray) -> float:
    """``sum_n ||x_n - mean(X)||^2``: sparsify's FVU denominator for a batch ``X (N, d)``."""
    X = check_matrix("X", X)
    centred = X - X.mean(axis=0)
    return float(np.einsum("ij,ij->", centred, centred))


def saelens_to_canonical(
    mse_loss: float,
    l1_loss: float = 0.0,
    *,
    l1_coefficient: float,
    lam: float | None = None,
    norm_scaling_factor: float = 1.0,
) -> LossTerms:
    """Convert SAELens' logged ``mse_loss`` and ``l1_loss`` to canonical terms.

    SAELens (standard architecture, ``mse_loss_normalization=None``, ``lp_norm=1``) logs

    - ``mse_loss = mean_n sum_d (x - xhat)^2``: squared error summed over features and
      averaged over the batch, without the 1/2;
    - ``l1_loss = mean_n [c * sum_k ||W_dec[k]|| f_nk]`` with ``c = l1_coefficient``
      (``scale_sparsity_penalty_by_decoder_norm=True``; with it False the weights
      ``||W_dec[k]||`` are 1, which matches only for unit-norm decoder rows).

    Both are computed on the inputs the SAE saw, ``s * x`` under
    ``normalize_activations: "expected_average_only_in"`` (``s = norm_scaling_factor``,
    1 otherwise). The canonical loss is that of the SAE :func:`load_sae` returns, which
    acts on raw ``x``: its residuals are ``1/s`` times SAELens' and its decoder rows
    ``1/s`` times SAELens' (codes unchanged). Hence

    - ``reconstruction = mse_loss / (2 s^2)``,
    - ``penalty = lam * l1_loss / (c s)``,

    and with the default ``lam = c / (2 s)`` the canonical total is SAELens' total divided
    by ``2 s^2``, so both objectives have the same minimisers.

    Parameters
    ----------
    mse_loss, l1_loss : float
        Values SAELens logged for one batch.
    l1_coefficient : float
        SAELens' ``l1_coefficient`` (after warm-up), ``> 0``.
    lam : float, optional
        Canonical penalty weight; defaults to ``l1_coefficient / (2 s)``.
    norm_scaling_factor : float, default=1.0
        The input scaling ``s`` (the value passed to :func:`load_sae`).
    """
    c = check_positive("l1_coefficient", l1_coefficient)
    s = check_positive("norm_scaling_factor", norm_scaling_factor)
    lam = c / (2.0 * s) if lam is None else check_positive("lam", lam, allow_zero=True)
    return LossTerms(float(mse_loss) / (2.0 * s * s), lam * float(l1_loss) / (c * s))


def dictionary_learning_to_canonical(
    mse_loss: float,
    sparsity_loss: float = 0.0,
    *,
    l1_penalty: float,
    lam: float | None = None,
) -> LossTerms:
    """Convert dictionary_learning's logged ``mse_loss`` and ``sparsity_loss``.

    Its ``StandardTrainer`` logs ``mse_loss = (x - x_hat).pow(2).sum(dim=-1).mean()`` and
    ``sparsity_loss = f.norm(p=1, dim=-1).mean()`` and minimises
    ``mse_loss + l1_penalty * sparsity_loss``, with the decoder columns kept at unit norm
    (``ConstrainedAdam``), so ``||W_dec[k]|| = 1`` and the plain L1 is the canonical
    weighted L1. Hence ``reconstruction = mse_loss / 2``, ``penalty = lam *
    sparsity_loss``, and with the default ``lam = l1_penalty / 2`` the canonical total is
    half the logged ``loss``. (Older versions logged ``loss = l2_loss + ...`` with the
    unsquared ``l2_loss = ||x - x_hat||.mean()``; use ``mse_loss`` from those logs.)

    Parameters
    ----------
    mse_loss, sparsity_loss : float
        Logged values for one batch.
    l1_penalty : float
        The trainer's ``l1_penalty``, ``> 0``.
    lam : float, optional
        Canonical penalty weight; defaults to ``l1_penalty / 2``.
    """
    p = check_positive("l1_penalty", l1_penalty)
    lam = p / 2 if lam is None else check_positive("lam", lam, allow_zero=True)
    return LossTerms(float(mse_loss) / 2.0, lam * float(sparsity_loss))


def sparsify_to_canonical(fvu: float, *, total_variance: float, n_samples: int) -> LossTerms:
    """Convert sparsify's FVU (fraction of variance unexplained) to canonical terms.

    sparsify logs ``fvu = sum_n ||x_n - xhat_n||^2 / total_variance`` with
    ``total_variance = sum_n ||x_n - mean||^2`` over the same batch (see
    :func:`total_variance`), and trains TopK SAEs without an L1 term. Hence
    ``reconstruction = fvu * total_variance / (2 N)`` and ``penalty = 0``; the canonical
    objective at any ``lam > 0`` needs the codes, which FVU does not carry.

    Parameters
    ----------
    fvu : float
    total_variance : float
        FVU's denominator for the batch, ``>= 0``.
    n_samples : int
        Batch size ``N``.
    """
    tv = check_positive("total_variance", total_variance, allow_zero=True)
    n = check_int("n_samples", n_samples, minimum=1)
    return LossTerms(float(fvu) * tv / (2.0 * n), 0.0)


def to_canonical_loss(losses: Mapping[str, float], *, source: str, **params: Any) -> LossTerms:
    """Convert a library's logged losses to canonical terms, dispatching on ``source``.

    Parameters
    ----------
    losses : mapping
        The logged values, keyed as the library logs them: ``{"mse_loss", "l1_loss"}``
        for ``"saelens"``, ``{"mse_loss", "sparsity_loss"}`` for
        ``"dictionary_learning"``, ``{"fvu"}`` for ``"sparsify"``. Penalty keys may be
        omitted (taken as 0).
    source : {"saelens", "dictionary_learning", "sparsify"}
    **params
        Passed on: ``l1_coefficient`` / ``l1_penalty`` and optional ``lam``, or
        ``total_variance`` and ``n_samples``.

    Returns
    -------
    LossTerms
        ``(reconstruction, penalty)`` of THEORY's objective, both already divided by N.

    Examples
    --------
    >>> to_canonical_loss({"mse_loss": 0.5, "l1_loss": 0.2}, source="saelens",
    ...                   l1_coefficient=2.0).total
    0.35
    """
    source = check_choice("source", source, LOSS_SOURCES)
    if source == "saelens":
        return saelens_to_canonical(losses["mse_loss"], losses.get("l1_loss", 0.0), **params)
    if source == "dictionary_learning":
        return dictionary_learning_to_canonical(
            losses["mse_loss"], losses.get("sparsity_loss", 0.0), **params
        )
    return sparsify_to_canonical(losses["fvu"], **params)
