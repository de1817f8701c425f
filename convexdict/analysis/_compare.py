"""Compare any SAE with the certified optimum (THEORY sections 4-6).

:func:`compare` reports, for one SAE on data ``X`` at penalty ``lam``: its canonical loss
(reconstruction + penalty), L0, explained variance and dead latents; its gap to the
certified lower bound ``P*``; the lower bound its own residual certifies; a Hungarian
matching of its latents to the optimal atoms (:func:`match_latents`); paper A's
stationarity residuals per latent (:func:`convexdict.analysis.diagnostics.stationarity`); and
paper B's per-piece test (:mod:`convexdict.analysis.pieces`) with a verdict. With
``scale = tol * L`` (the relative rule of :func:`~convexdict.within_tol`, the same in every
unit of the data):

* ``"certified_global"``: ``L - lower_bound <= scale``: globally optimal at every width;
* ``"not_converged"``: a convex block still lowers the loss by more than ``scale``;
* ``"spurious_partial_minimum"``: neither block improves, and an explicit SAE of width
  ``<= K`` has a loss lower than ``L`` by more than ``scale`` (recomputed in float64 from
  its weights; returned as ``better_sae``): the certified optimum when ``K >= K*`` (padded
  with dead latents it is an SAE of the same width), a fixed-width certificate's SAE, or
  below ``K*`` an explicit width-``K`` incumbent (:mod:`convexdict.fixed_width.width_incumbents`:
  greedy subsets and merges of the optimum's atoms, batched multi-start, each polished):
  certifiably a non-global partial minimum;
* with a fixed-width certificate (``certify(X, lam, width=K)`` below ``K*``, which bounds
  SAEs of width ``<= K``) the same verdicts use its lower bound in place of ``P*``;
* ``"partial_minimum"``: neither block improves and ``L`` is above the lower bound, but
  nothing found beats it: below ``K*`` the width-``K`` optimum then lies in the bracket
  ``[lower_bound, optimum_loss]`` (printed with its relative width), or the certificate's
  own gap covers ``L``;
* ``"undetermined"``: a block program failed in every solver.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convexdict._validation import check_matrix, check_positive
from convexdict.analysis.comparison import Comparison, match_latents
from convexdict.analysis.diagnostics import active_mask, stationarity
from convexdict.analysis.pieces import PieceSolveError, block_improvements
from convexdict.convex._certify import Certificate, certify
from convexdict.convex.bounds import dual_bound
from convexdict.fixed_width.width_incumbents import KnownBetter, bracket_line, known_better
from convexdict.models.sae import SAE, sae_loss, sae_loss_terms
from convexdict.tolerance import relative_gap, within_tol


def check_certificate(cert: Any, X: np.ndarray, lam: float) -> Certificate:
    if not isinstance(cert, Certificate):
        raise ValueError(
            f"The 'certificate' parameter must be a convexdict.Certificate or None. "
            f"Got {type(cert).__name__}."
        )
    n, d = X.shape
    same_lam = math.isclose(cert.lam, lam, rel_tol=1e-12, abs_tol=0.0)
    if not same_lam or cert.n_samples != n or cert.d != d:
        raise ValueError(
            f"The 'certificate' parameter must be computed on this X and lam (N={n}, d={d}, "
            f"lam={lam!r}). Got one for N={cert.n_samples}, d={cert.d}, lam={cert.lam!r}."
        )
    return cert


def _check_width(cert: Certificate, sae: Any) -> None:
    """A fixed-width certificate bounds only SAEs up to its width."""
    if cert.fixed_width and cert.width is not None and sae.width > cert.width:
        raise ValueError(
            f"The 'certificate' parameter is a fixed-width certificate (its lower bound holds "
            f"for widths <= {cert.width}); the SAE has width {sae.width}. Certify at "
            f"width={sae.width} or without a width."
        )


def _verdict(
    loss: float, cert: Certificate, width: int, better: KnownBetter, dec: float, enc: float,
    tol: float,
) -> tuple[str, str]:
    scale = tol * loss  # within_tol(loss, x, tol) is loss - x <= scale
    lower = max(cert.lower_bound, better.lower)
    if within_tol(loss, lower, tol):
        return "certified_global", "loss within tolerance of the certified lower bound"
    if math.isnan(dec) or math.isnan(enc):
        return "undetermined", "a block program failed in every solver"
    if dec > scale or enc > scale:
        block = "decoder" if dec >= enc else "encoder"
        return "not_converged", f"the {block} block still lowers the loss"
    if better.sae is not None:
        return (
            "spurious_partial_minimum",
            f"neither block improves, but {better.what} has a lower loss "
            f"({better.loss:.10g}, recomputed from its weights)",
        )
    if cert.fixed_width or width < cert.width_needed:
        why = "nothing found beats it; " + bracket_line(width, lower, better.optimum_loss)
    else:
        why = "the certificate's own gap covers the loss"
    return "partial_minimum", f"neither block improves; not certifiably spurious ({why})"


def compare(
    sae: SAE,
    X: np.ndarray,
    lam: float,
    certificate: Certificate | None = None,
    *,
    tol: float = 1e-6,
    streamed: bool | None = None,
    search_time: float | None = 10.0,
    **options: Any,
) -> Comparison:
    """Measure ``sae`` against the certified optimum of the canonical objective.

    Without a certificate, when exact pricing is out of reach (or ``X`` is a memory-mapped
    ``.npy`` or a path to one), no certificate is computed: the SAE is compared at any size
    by :func:`convexdict.analysis.scale_compare.compare_streamed` (joint lower bound, stationarity,
    both convex blocks with their bounds, data streamed in chunks).

    Parameters
    ----------
    sae : SAE
        Any ReLU SAE with ``d_in = d``.
    X : ndarray of shape (N, d)
    lam : float
        L1 penalty (> 0).
    certificate : Certificate, optional
        From ``convexdict.certify(X, lam)``; computed here when omitted.
    tol : float
        Relative tolerance of the verdict (:func:`~convexdict.within_tol`).
    streamed : bool, optional
        Force (True) or forbid (False) the streamed path; by default it is taken when no
        certificate is given and exact pricing is out of reach.
    search_time : float or None
        Seconds for the explicit width-``K`` incumbents below ``K*``
        (:func:`convexdict.fixed_width.width_incumbents.width_incumbents`, memoised per data,
        ``lam``
        and width); ``0`` skips them; ``None`` gives them a fixed work budget instead of a
        time budget, so the result is deterministic and the same in every unit of the data
        (the work runs in exact internal units). An incumbent that beats the SAE by more
        than the tolerance makes the verdict ``spurious_partial_minimum`` (``better_sae``).
    **options
        For the streamed path: ``device``, ``dtype``, ``batch_size``, ``max_samples``,
        ``seed``, ``blocks``, ``encoder_iters``, ``progress``, and ``incumbents=True``
        (with ``incumbent_time``, ``incumbent_restarts``, ``incumbent_steps``) to search
        explicit width-``K`` SAEs that could beat ``sae``: off by default, as they train
        SAEs (see :func:`~convexdict.analysis.scale_compare.compare_streamed`).

    Returns
    -------
    Comparison

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.2]])
    >>> cert = certify(X, 0.1)
    >>> compare(cert.optimum_sae, X, 0.1, cert).verdict
    'certified_global'
    """
    if not isinstance(sae, SAE):
        raise ValueError(f"The 'sae' parameter must be a convexdict.SAE. Got {type(sae).__name__}.")
    from convexdict.analysis.scale_compare import compare_streamed, priceable, streamed_extras

    if streamed is None:
        streamed = certificate is None and not priceable(X)
    if streamed:
        if certificate is not None:
            raise ValueError("The 'certificate' parameter must be None with streamed=True "
                             "(the streamed path compares without a certificate).")
        return compare_streamed(sae, X, lam, tol=tol, **options)
    if options:
        raise ValueError(f"Unexpected keyword arguments {sorted(options)}: they apply only to "
                         "the streamed path (streamed=True).")
    X = check_matrix("X", X, n_cols=sae.d_in)
    lam = check_positive("lam", lam)
    tol = check_positive("tol", tol)
    cert = certify(X, lam) if certificate is None else check_certificate(certificate, X, lam)
    _check_width(cert, sae)
    n, d = X.shape
    terms = sae_loss_terms(sae, X, lam)
    loss = terms.total
    fires = active_mask(sae, X)
    resid = X - sae.reconstruct(X)
    sst = float(np.sum((X - X.mean(axis=0)) ** 2))
    ev = 1.0 - float(np.sum(resid**2)) / sst if sst > 0 else float("nan")
    dead = [int(k) for k in np.flatnonzero(~fires.any(axis=0))]
    optimum = cert.optimum_sae
    if lam >= cert.lam_max:
        # The mean alone is optimal. With the codes fixed, the decoder block's optimum is the
        # zero decoder: each normalised code column is a realizable activation e, so
        # ||X_c^T e|| <= lam_max <= lam (docs/theory.md, section 10). The improvement is in
        # closed form; no solver runs at such a lam. The encoder block is not searched
        # (improvement found 0): once the decoder is zero the encoder changes nothing.
        dec, enc = max(loss - sae_loss(SAE.zeros(X.mean(axis=0), sae.width), X, lam), 0.0), 0.0
    else:
        try:
            dec, enc = block_improvements(sae, X, lam)
        except PieceSolveError:
            dec = enc = float("nan")
    better = known_better(sae, X, lam, cert, loss, tol, search_time)
    verdict, message = _verdict(loss, cert, sae.width, better, dec, enc, tol)
    lower = max(cert.lower_bound, better.lower)  # the 2-D joint bound J_K can be larger
    gap = loss - lower
    return Comparison(
        lam_max=cert.lam_max,
        lam=lam,
        tol=tol,
        n_samples=n,
        d=d,
        width=sae.width,
        width_needed=cert.width_needed,
        loss=loss,
        reconstruction=terms.reconstruction,
        penalty=terms.penalty,
        l0=float(fires.sum(axis=1).mean()),
        explained_variance=ev,
        dead_latents=dead,
        dead_fraction=len(dead) / sae.width if sae.width else 0.0,
        lower_bound=lower,
        optimum_loss=better.optimum_loss,
        gap=gap,
        relative_gap=relative_gap(loss, lower),
        sae_dual_bound=dual_bound(X, lam, resid),
        improve_decoder=dec,
        improve_encoder=enc,
        verdict=verdict,
        message=message,
        decoder_matching=None if optimum is None else match_latents(sae, optimum),
        activation_matching=None
        if optimum is None
        else match_latents(sae, optimum, X, criterion="jaccard"),
        stationarity=stationarity(sae, X, lam),
        **streamed_extras(sae, X, lam),
        better_sae=better.sae,
        better_loss=better.loss,
    )
