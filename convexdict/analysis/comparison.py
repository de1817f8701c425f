"""What :func:`convexdict.compare` reports: the :class:`Comparison` record, the verdicts,
Hungarian matchings of latents, and JSON conversion (shared by the certificate path and the
streamed path of :mod:`convexdict.analysis.scale_compare`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from convexdict._validation import check_choice, check_matrix
from convexdict.analysis.diagnostics import Stationarity, active_mask
from convexdict.convex.certificate import lam_max_line
from convexdict.fixed_width.width_incumbents import bracket_line
from convexdict.models.sae import SAE

VERDICTS = (
    "certified_global",
    "spurious_partial_minimum",
    "partial_minimum",
    "not_converged",
    "undetermined",
)


def jsonable(value: Any) -> Any:
    """``value`` with arrays as lists, numpy scalars as Python numbers and non-finite floats as
    strings (``"nan"``, ``"inf"``, the convention of :meth:`Certificate.to_dict`)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching of an SAE's latents to reference atoms (Hungarian algorithm).

    Attributes
    ----------
    criterion : {"cosine", "jaccard"}
        ``"cosine"``: cosine of decoder rows (all-zero rows score 0). ``"jaccard"``:
        ``|A_k & B_j| / |A_k | B_j|`` of the sets of samples each latent is active on
        (:func:`convexdict.analysis.diagnostics.active_mask`; 0 when both are empty).
    matched_latent : ndarray of shape (K_ref,) of int
        The SAE latent matched to each reference atom, ``-1`` when the SAE has fewer
        latents than the reference.
    quality : ndarray of shape (K_ref,)
        The criterion's score of each match (0 for an unmatched atom).
    """

    criterion: str
    matched_latent: np.ndarray
    quality: np.ndarray

    @property
    def mean_quality(self) -> float:
        """Mean of ``quality`` over the reference atoms (1 for a perfect match; nan if none)."""
        return float(self.quality.mean()) if self.quality.size else float("nan")


def _cosine_matrix(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(A, axis=1, keepdims=True)
    nb = np.linalg.norm(B, axis=1, keepdims=True)
    return (A / np.where(na > 0, na, 1.0)) @ (B / np.where(nb > 0, nb, 1.0)).T


def _jaccard_matrix(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    A = A.astype(np.float64)
    B = B.astype(np.float64)
    inter = A.T @ B
    union = A.sum(axis=0)[:, None] + B.sum(axis=0)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_latents(
    sae: SAE, reference: SAE, X: np.ndarray | None = None, *, criterion: str = "cosine"
) -> Matching:
    """Match the latents of ``sae`` to those of ``reference`` maximising the total score.

    Parameters
    ----------
    sae, reference : SAE
        Same input dimension ``d``; widths ``K`` and ``K_ref``.
    X : ndarray of shape (N, d), optional
        Required by ``criterion="jaccard"`` (the samples the firing sets are taken on).
    criterion : {"cosine", "jaccard"}

    Returns
    -------
    Matching
    """
    criterion = check_choice("criterion", criterion, ("cosine", "jaccard"))
    if reference.d_in != sae.d_in:
        raise ValueError(
            f"The 'reference' parameter must have d_in={sae.d_in} like 'sae'. "
            f"Got d_in={reference.d_in}."
        )
    if criterion == "cosine":
        score = _cosine_matrix(sae.W_dec, reference.W_dec)
    else:
        if X is None:
            raise ValueError("The 'X' parameter is required with criterion='jaccard'. Got None.")
        X = check_matrix("X", X, n_cols=sae.d_in)
        score = _jaccard_matrix(active_mask(sae, X), active_mask(reference, X))
    matched = np.full(reference.width, -1, dtype=np.int64)
    quality = np.zeros(reference.width)
    if score.size:
        rows, cols = linear_sum_assignment(score, maximize=True)
        matched[cols] = rows
        quality[cols] = score[rows, cols]
    return Matching(criterion, matched, quality)


# --------------------------------------------------------------------------- comparison


def known(value: float) -> bool:
    """A finite number (``nan`` marks what a path could not compute)."""
    return math.isfinite(value)


@dataclass(frozen=True)
class Comparison:
    """One SAE measured against the certified optimum (see :func:`compare`).

    Attributes
    ----------
    lam, tol : float
        Penalty and the verdict's relative tolerance.
    n_samples, d : int
        Shape of ``X``.
    loss, reconstruction, penalty : float
        Canonical loss and its two parts (:func:`convexdict.sae_loss_terms`).
    l0 : float
        Mean number of active latents per sample
        (:func:`~convexdict.analysis.diagnostics.active_mask`:
        activations below ``1e-9`` of the data's scale do not count).
    explained_variance : float
        ``1 - ||X - Xhat||^2 / ||X - mean(X)||^2`` (nan for constant data).
    dead_latents : list of int
        Latents active on no sample of ``X``; ``dead_fraction`` their share of ``width``.
    width, width_needed : int
        ``K`` of the SAE and ``K*`` of the certified optimum.
    lower_bound : float
        The certificate's verified lower bound on every SAE's loss at every width, or below
        ``K*`` on 2-D data the larger joint bound J_K (:mod:`convexdict.fixed_width.joint_width`),
        valid
        for every SAE of width ``<= K``.
    optimum_loss : float
        Loss of the best explicit SAE of width ``<= K`` known: the certificate's optimum at
        ``K >= K*``; below ``K*`` see the bracket below (nan when none is known).
    gap, relative_gap : float
        ``loss - lower_bound`` and ``gap / loss`` (:func:`~convexdict.relative_gap`).
    sae_dual_bound : float
        The lower bound certified by this SAE's own residual
        (:func:`convexdict.dual_bound`); ``loss - sae_dual_bound`` bounds its suboptimality
        without any certificate.
    improve_decoder, improve_encoder : float
        Loss decrease of one exact step of each convex block (nan if it failed).
    verdict : str
        One of :data:`VERDICTS` (see the module docstring); ``message`` says why.
    decoder_matching, activation_matching : Matching or None
        Hungarian matchings to the optimal atoms by decoder cosine and by Jaccard overlap
        of firing sets (None without an optimum).
    stationarity : Stationarity
    improve_decoder_bound, improve_encoder_bound : float
        Upper bounds on what each convex block could still gain (from the decoder block's
        duality gap and the encoder block's free-code relaxation, docs/theory.md "Bounds
        for the two convex blocks"); nan where none was computed.
    loss_units : dict
        The loss in canonical, SAELens, dictionary_learning and sparsify units
        (:func:`convexdict.analysis.scale_compare.loss_units`).
    dense_latents : list of int
        Latents active on at least half of the samples.
    firing_rate : ndarray of shape (K,) or None
        Fraction of samples each latent is active on.
    decoder_shift : ndarray of shape (K,) or None
        ``||W_dec'[k] - W_dec[k]||`` of the decoder block's solution (streamed path).
    subsample : dict or None
        ``{"n_total", "n_used", "seed", "note"}`` when only a seeded subsample was used:
        every number and bound then describes the subsample.
    method : str
        ``"certificate"`` (exact pricing, d small) or ``"streamed"`` (any size, no
        certificate: :func:`convexdict.analysis.scale_compare.compare_streamed`).
    better_sae : SAE or None
        An explicit SAE of width ``<= width`` whose loss, recomputed in float64, is below
        ``loss`` by more than the tolerance (the certified optimum at ``width >= K*``, a
        fixed-width certificate's SAE, or an explicit width-``K`` incumbent of
        :func:`convexdict.fixed_width.width_incumbents.width_incumbents`); None otherwise.
    better_loss : float
        ``sae_loss(better_sae, X, lam)`` (nan when ``better_sae`` is None).
    incumbents : dict or None
        Streamed path with ``incumbents=True``: what the width-``K`` search
        (:mod:`convexdict.analysis.scale_incumbents`) found: ``polished_loss`` (the SAE
        polished), ``best_loss`` and ``best_source`` (the best restart), ``restart_losses``,
        ``seconds``, ``out_of_time``; None when it did not run.

    Below ``K*`` (or with a fixed-width certificate) ``[lower_bound, optimum_loss]`` is the
    **bracket** of the width-``K`` optimum: ``optimum_loss`` is then the best loss of an
    explicit SAE of width ``<= K`` that compare knows, the compared SAE included.
    """

    lam: float
    tol: float
    n_samples: int
    d: int
    width: int
    width_needed: int
    loss: float
    reconstruction: float
    penalty: float
    l0: float
    explained_variance: float
    dead_latents: list[int]
    dead_fraction: float
    lower_bound: float
    optimum_loss: float
    gap: float
    relative_gap: float
    sae_dual_bound: float
    improve_decoder: float
    improve_encoder: float
    verdict: str
    message: str
    decoder_matching: Matching | None
    activation_matching: Matching | None
    stationarity: Stationarity
    improve_decoder_bound: float = float("nan")
    improve_encoder_bound: float = float("nan")
    loss_units: dict[str, Any] = field(default_factory=dict)
    dense_latents: list[int] = field(default_factory=list)
    firing_rate: np.ndarray | None = None
    decoder_shift: np.ndarray | None = None
    subsample: dict[str, Any] | None = None
    method: str = "certificate"
    better_sae: SAE | None = None
    better_loss: float = float("nan")
    lam_max: float = float("nan")
    incumbents: dict[str, Any] | None = None

    def lam_line(self) -> str:
        """``lam_max`` and ``lam / lam_max`` (the mean alone is optimal when ``>= 1``)."""
        return lam_max_line(self.lam, self.lam_max)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (arrays as lists, non-finite floats as strings)."""
        out = asdict(self)
        for name in ("decoder_matching", "activation_matching"):
            match = getattr(self, name)
            if match is not None:
                out[name]["mean_quality"] = match.mean_quality
        out["stationarity"]["max_code_violation"] = self.stationarity.max_code_violation
        out["stationarity"]["max_atom_residual"] = self.stationarity.max_atom_residual
        return jsonable(out)

    def summary(self) -> str:
        """A few human-readable lines."""
        st = self.stationarity
        lines = [
            f"SAE width {self.width} (K* = {self.width_needed}) on N={self.n_samples}, "
            f"d={self.d}, lam={self.lam:.6g}; {self.lam_line()}",
            f"loss {self.loss:.10g} = reconstruction {self.reconstruction:.6g} + penalty "
            f"{self.penalty:.6g}; L0 {self.l0:.3g}; explained variance "
            f"{self.explained_variance:.4f}; dead {len(self.dead_latents)}/{self.width}",
            f"verified lower bound {self.lower_bound:.10g}"
            + (f" (best known loss {self.optimum_loss:.10g})" if known(self.optimum_loss)
               else " (the joint bound: no certificate at this size)")
            + f": gap {self.gap:.3g}, gap / loss (relative) {self.relative_gap:.3g}",
        ]
        if known(self.sae_dual_bound):
            lines.append(f"own dual bound {self.sae_dual_bound:.10g}: the bound this SAE's own "
                         "residual certifies once priced and scaled (no certificate needed)")
        if (self.width < self.width_needed or self.width_needed < 0) and known(
            self.optimum_loss
        ):
            lines.append(bracket_line(self.width, self.lower_bound, self.optimum_loss))
        if self.better_sae is not None:
            lines.append(f"better explicit SAE: width {self.better_sae.width}, loss "
                         f"{self.better_loss:.10g} (recomputed from its weights)")
        if self.incumbents is not None:
            inc = self.incumbents
            lines.append(f"width-{self.width} incumbents: polished SAE {inc['polished_loss']:.10g}"
                         f", best of {len(inc['restart_losses'])} restarts "
                         f"{inc['best_loss']:.10g} in {inc['seconds']:.1f} s"
                         + (" (out of time)" if inc["out_of_time"] else ""))
        for match in (self.decoder_matching, self.activation_matching):
            if match is not None:
                lines.append(
                    f"matching to the optimal atoms by {match.criterion}: mean quality "
                    f"{match.mean_quality:.4f}"
                )
        lines += [
            f"stationarity: max code violation {st.max_code_violation:.3g}, max atom residual "
            f"{st.max_atom_residual:.3g}, bias residual {st.bias_residual:.3g}",
            f"per-piece test: decoder block improves by {self.improve_decoder:.3g} (at most "
            f"{self.improve_decoder_bound:.3g}), encoder block by {self.improve_encoder:.3g} "
            f"(at most {self.improve_encoder_bound:.3g})",
            f"verdict: {self.verdict} ({self.message})",
        ]
        return "\n".join(lines)
