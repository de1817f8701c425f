"""A census of where SGD lands: many starts, polished and classified (THEORY sections 4-6).

:func:`census` trains ``n_starts`` ReLU SAEs of one width ``K`` by SGD
(:func:`convexdict.train_sae`, seeds ``seed, seed + 1, ...``), polishes each to a partial
minimum of paper B's piecewise-biconvex structure (:func:`convexdict.polish`), classifies
each end point against the certified optimum (:func:`convexdict.compare`: verdicts
``certified_global``, ``spurious_partial_minimum``, ``partial_minimum``, ``not_converged``,
``undetermined``) and groups equal end points (:func:`group_minima`): the same canonical
loss within a relative tolerance **and** the same multiset of activation patterns up to a
permutation of the latents (each latent's firing set on ``X``,
:func:`convexdict.analysis.diagnostics.active_mask`; dead latents contribute an empty set).

What it proves at the fixed width ``K``. The certificate's lower bound ``P*`` bounds every
SAE's loss at every width; the best polished loss ``B`` is the loss of an explicit width-``K``
SAE. So

    P* <= min over width-K SAEs of L <= B.

When ``within_tol(B, P*, tol)``
(``B - P* <= tol * B``) the width-``K`` optimum is certified by that explicit
SAE (:attr:`Census.width_certified`). No finite number of SGD starts proves that a lower
partial minimum does not exist at width ``K``, and below ``K*`` the bound ``P*`` may be
unattainable: there the census computes the fixed-width certificate
(``certify(X, lam, width=K)``, branch and bound over activation patterns,
:mod:`convexdict.fixed_width.search`), whose lower bound holds for every SAE of width ``<= K`` and
whose explicit width-``K`` SAE proves an end point above it spurious. The group fractions
estimate how often SGD (with these settings) lands in each basin; they are statistics, not
guarantees.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from convexdict_solvers.progress import Display

from convexdict._validation import check_choice, check_int, check_matrix, check_positive
from convexdict.analysis._compare import check_certificate, compare
from convexdict.analysis.census_result import Census, CensusGroup, CensusStart
from convexdict.analysis.comparison import Comparison
from convexdict.analysis.diagnostics import active_mask
from convexdict.analysis.pieces import PieceSolveError, polish
from convexdict.convex._certify import Certificate, certify
from convexdict.models.sae import SAE, sae_loss
from convexdict.tolerance import within_tol
from convexdict.training.train import train_sae

# Training options a census sets itself, or that would make the starts interfere.
_RESERVED = {
    "quiet": "the census trains quietly (use progress=True for a display over starts)",
    "return_history": "the census keeps only the weights",
    "checkpoint_dir": "every start would write to the same checkpoints",
    "resume": "every start would resume from the same checkpoints",
}


def activation_signature(sae: SAE, X: np.ndarray) -> tuple[bytes, ...]:
    """The multiset of the latents' activation patterns on ``X``, as a hashable key.

    Each latent's column of :func:`convexdict.analysis.diagnostics.active_mask` (the samples it is
    active on; empty for a dead latent) is packed to bytes and the ``K`` columns are
    sorted, so two SAEs that differ by a permutation of their latents get the same key.
    Multiplicities count: one latent split into two copies with the same firing set is a
    different key from that latent plus a dead one, even at the same loss.

    Parameters
    ----------
    sae : SAE
        Width ``K``.
    X : ndarray of shape (N, d)

    Returns
    -------
    tuple of bytes
        ``K`` entries of ``ceil(N / 8)`` bytes each.
    """
    mask = active_mask(sae, X)
    return tuple(sorted(np.packbits(col).tobytes() for col in mask.T))


def _same_loss(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def _group(losses: Sequence[float], keys: Sequence[Any], rtol: float) -> list[list[int]]:
    """Greedy grouping by increasing loss: an item joins the first group whose
    representative (its lowest-loss member) has the same key and a loss within ``rtol``."""
    order = sorted(range(len(losses)), key=lambda i: (losses[i], i))
    groups: list[list[int]] = []
    for i in order:
        for members in groups:
            rep = members[0]
            if keys[rep] == keys[i] and _same_loss(losses[rep], losses[i], rtol):
                members.append(i)
                break
        else:
            groups.append([i])
    return groups


def group_minima(
    saes: Sequence[SAE], X: np.ndarray, lam: float, *, rtol: float = 1e-6
) -> list[list[int]]:
    """Group SAEs that sit at the same minimum.

    Two SAEs are the same minimum when their canonical losses agree within
    ``rtol * max(|L_a|, |L_b|)`` and their :func:`activation_signature` keys are equal
    (the same multiset of firing sets, up to permuting latents). Items are taken by
    increasing loss; each joins the first group whose lowest-loss member matches it, so a
    group's losses span at most that tolerance.

    Parameters
    ----------
    saes : sequence of SAE
        All with ``d_in = d`` (widths may differ; different widths never share a group).
    X : ndarray of shape (N, d)
    lam : float
        Penalty (> 0) of the canonical loss.
    rtol : float
        Relative loss tolerance (> 0).

    Returns
    -------
    list of list of int
        Indices into ``saes``; groups by increasing loss, members by increasing loss.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> a = SAE(np.eye(2), -0.5 * np.ones(2), np.eye(2), np.zeros(2))
    >>> b = SAE(np.eye(2)[:, ::-1], -0.5 * np.ones(2), np.eye(2)[::-1], np.zeros(2))
    >>> group_minima([a, b], X, 0.1)
    [[0, 1]]
    """
    lam = check_positive("lam", lam)
    rtol = check_positive("rtol", rtol)
    saes = list(saes)
    for i, sae in enumerate(saes):
        if not isinstance(sae, SAE):
            raise ValueError(
                f"The 'saes' parameter must hold convexdict.SAE objects. Got "
                f"{type(sae).__name__} at index {i}."
            )
    if not saes:
        return []
    X = check_matrix("X", X, n_cols=saes[0].d_in)
    for i, sae in enumerate(saes):
        if sae.d_in != X.shape[1]:
            raise ValueError(
                f"The 'saes' parameter must hold SAEs with d_in={X.shape[1]} like X. Got "
                f"d_in={sae.d_in} at index {i}."
            )
    losses = [sae_loss(sae, X, lam) for sae in saes]
    keys = [(sae.width, activation_signature(sae, X)) for sae in saes]
    return _group(losses, keys, rtol)


# --------------------------------------------------------------------------- census


def _check_train_kwargs(train_kwargs: dict[str, Any]) -> dict[str, Any]:
    for name, why in _RESERVED.items():
        if name in train_kwargs:
            raise ValueError(f"The '{name}' parameter cannot be passed to census: {why}.")
    if "activation" in train_kwargs:
        check_choice("activation", train_kwargs["activation"], ("relu",))
    return dict(train_kwargs)


def _conclusion(width: int, cert: Certificate, best: float, width_certified: bool) -> str:
    if cert.fixed_width:
        state = (
            "certified" if cert.certified
            else f"not certified ({cert.search.get('budget_exhausted') or 'gap'} budget)"
        )
        head = (
            f"fixed-width branch and bound at width {width} < K* = {cert.width_needed}: "
            f"{cert.lower_bound:.10g} <= width-{width} optimum <= {cert.upper_bound:.10g}, "
            f"{state}"
        )
        if width_certified:
            return f"{head}; the best start (loss {best:.10g}) attains it"
        return f"{head}; the best start ended {best - cert.lower_bound:.3g} above the bound"
    if width_certified:
        return (
            f"width-{width} optimum certified: the best polished SAE (loss {best:.10g}) "
            f"attains the lower bound {cert.lower_bound:.10g} within tolerance, so it is a "
            "global optimum at every width"
        )
    if width >= cert.width_needed and cert.certified and cert.optimum_sae is not None:
        return (
            f"no start reached the optimum: the certificate's optimum (K* = "
            f"{cert.width_needed} <= {width}, padded with dead latents) attains the lower "
            f"bound {cert.lower_bound:.10g} at this width; the best start ended "
            f"{best - cert.lower_bound:.3g} above it"
        )
    if width < cert.width_needed:
        why = (
            f"width {width} < K* = {cert.width_needed}: the lower bound may be unattainable "
            "at this width"
        )
    else:
        why = "the certificate did not close its own gap"
    return (
        f"only bounds at width {width}: {cert.lower_bound:.10g} <= optimum <= {best:.10g} "
        f"({why}); no number of starts excludes a lower partial minimum at this width "
        "(convexdict.certify(X, lam, width=K) runs the branch and bound over activation "
        "patterns)"
    )


def _certificate(X, lam, width, tol, time_limit, certificate) -> tuple[Certificate, float]:
    """Stage 1: the certificate at this width (computed, or the caller's, checked), and the
    loss of its explicit optimum."""
    if certificate is None:
        cert = certify(X, lam, width=width, tol=tol, time_limit=time_limit)
    else:
        cert = check_certificate(certificate, X, lam)
        if cert.kind != "sae":
            raise ValueError(
                f"The 'certificate' parameter must certify an SAE (kind 'sae'). Got kind "
                f"{cert.kind!r}."
            )
    if cert.fixed_width:
        if cert.width != width:
            raise ValueError(
                f"The 'certificate' parameter is a fixed-width certificate for width "
                f"{cert.width}; the census is at width {width}."
            )
        return cert, cert.upper_bound
    if cert.optimum_sae is None:
        return cert, float("nan")
    return cert, sae_loss(cert.optimum_sae, X, lam)


@dataclass
class _Runs:
    """Stage 2's output: per start, the polished SAE, its comparison, the SGD loss."""

    polished: list[SAE] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    sgd_losses: list[float] = field(default_factory=list)
    failed: list[bool] = field(default_factory=list)
    t_train: float = 0.0
    t_polish: float = 0.0
    t_compare: float = 0.0


def _run_starts(X, lam, width, cert, *, n_starts, steps, lr, seed, tol, polish_max_iter,
                progress, train_kwargs) -> _Runs:
    """Stage 2: train each start, polish it (paper B's blocks), compare it."""
    runs = _Runs()
    with Display("census: train, polish, classify", n_starts, enabled=progress) as display:
        for i in range(n_starts):
            t0 = time.perf_counter()
            sae = train_sae(X, lam, width, steps=steps, lr=lr, seed=seed + i, quiet=True,
                            **train_kwargs)
            t1 = time.perf_counter()
            try:
                end = polish(sae, X, lam, max_iter=polish_max_iter)
                runs.failed.append(False)
            except PieceSolveError:
                end = sae
                runs.failed.append(True)
            t2 = time.perf_counter()
            runs.comparisons.append(compare(end, X, lam, cert, tol=tol))
            runs.t_train += t1 - t0
            runs.t_polish += t2 - t1
            runs.t_compare += time.perf_counter() - t2
            runs.sgd_losses.append(sae_loss(sae, X, lam))
            runs.polished.append(end)
            display.update(advance=1)
    return runs


def _classify(X, runs: _Runs, seed: int, group_rtol: float):
    """Stage 3: group the end points (equal loss and activation pattern) and describe them."""
    losses = [c.loss for c in runs.comparisons]
    keys = [activation_signature(sae, X) for sae in runs.polished]
    members_of = _group(losses, keys, group_rtol)
    group_of = {i: g for g, members in enumerate(members_of) for i in members}
    n_starts = len(losses)
    groups = []
    for members in members_of:
        rep = members[0]
        cmp = runs.comparisons[rep]
        groups.append(CensusGroup(
            loss=cmp.loss,
            loss_spread=max(losses[i] for i in members) - cmp.loss,
            count=len(members),
            fraction=len(members) / n_starts,
            verdict=cmp.verdict,
            verdict_counts=dict(Counter(runs.comparisons[i].verdict for i in members)),
            n_dead=len(cmp.dead_latents),
            gap=cmp.gap,
            relative_gap=cmp.relative_gap,
            seeds=[seed + i for i in members],
            sae=runs.polished[rep],
            comparison=cmp,
        ))
    starts = [
        CensusStart(seed + i, runs.sgd_losses[i], losses[i], runs.comparisons[i].verdict,
                    group_of[i], runs.failed[i])
        for i in range(n_starts)
    ]
    return groups, starts


def census(
    X: np.ndarray,
    lam: float,
    width: int,
    *,
    n_starts: int = 20,
    steps: int = 2000,
    lr: float = 1e-3,
    seed: int = 0,
    certificate: Certificate | None = None,
    tol: float = 1e-6,
    group_rtol: float = 1e-6,
    polish_max_iter: int = 50,
    progress: bool = False,
    time_limit: float | None = 60.0,
    **train_kwargs: Any,
) -> Census:
    """Train ``n_starts`` SGD SAEs, polish them to partial minima and count where they land.

    Start ``i`` is ``train_sae(X, lam, width, steps=steps, lr=lr, seed=seed + i,
    quiet=True, **train_kwargs)``, then :func:`convexdict.polish` (block coordinate descent
    to a partial minimum; the loss never rises), then :func:`convexdict.compare` against the
    certificate. Equal end points are grouped by :func:`group_minima`.

    Parameters
    ----------
    X : ndarray of shape (N, d)
        Data, one sample per row.
    lam : float
        L1 penalty (> 0).
    width : int
        Number of latents ``K >= 1`` of every start.
    n_starts : int
        Number of SGD runs (``>= 1``).
    steps : int
        Adam steps per run (``>= 1``).
    lr : float
        Adam's peak learning rate (> 0).
    seed : int
        Seed of the first run (``>= 0``); run ``i`` uses ``seed + i``.
    certificate : Certificate, optional
        ``convexdict.certify(X, lam)`` or ``convexdict.certify(X, lam, width=width)`` on
        this ``X`` and ``lam``; computed when omitted, at the census width, so that below
        ``K*`` the verdicts use the fixed-width branch and bound (its lower bound holds for
        width ``<= width`` and its explicit width-``K`` SAE proves spurious minima).
    tol : float
        Relative tolerance of the verdicts and of :attr:`Census.width_certified`
        (:func:`~convexdict.within_tol`).
    group_rtol : float
        Relative loss tolerance of the grouping (:func:`group_minima`).
    polish_max_iter : int
        Maximum rounds of :func:`convexdict.polish` per start.
    progress : bool
        Show a progress bar over the starts.
    time_limit : float or None
        Seconds for the fixed-width branch and bound when the certificate is computed here
        and ``width < K*``.
    **train_kwargs
        Other :func:`convexdict.train_sae` options (``batch_size``, ``device``,
        ``dtype``, ``anchors``, ...). ``activation`` must be ``"relu"`` (the only
        certifiable one); ``quiet``, ``return_history``, ``checkpoint_dir`` and ``resume``
        are not accepted.

    Returns
    -------
    Census
        Groups by increasing loss, per-start records and the fixed-width bounds.

    Raises
    ------
    ValueError
        For an invalid argument; the message names it.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.repeat(np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]), 4, axis=0)
    >>> c = census(X, 0.2, 3, n_starts=2, steps=100, lr=1e-2, device="cpu")
    >>> sum(g.count for g in c.groups), c.best_loss >= c.lower_bound - 1e-9
    (2, True)
    """
    start_time = time.perf_counter()
    X = check_matrix("X", X)
    lam = check_positive("lam", lam)
    width = check_int("width", width, minimum=1)
    n_starts = check_int("n_starts", n_starts, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    lr = check_positive("lr", lr)
    seed = check_int("seed", seed, minimum=0)
    tol = check_positive("tol", tol)
    group_rtol = check_positive("group_rtol", group_rtol)
    polish_max_iter = check_int("polish_max_iter", polish_max_iter, minimum=1)
    train_kwargs = _check_train_kwargs(train_kwargs)
    cert, optimum_loss = _certificate(X, lam, width, tol, time_limit, certificate)
    runs = _run_starts(X, lam, width, cert, n_starts=n_starts, steps=steps, lr=lr, seed=seed,
                       tol=tol, polish_max_iter=polish_max_iter, progress=progress,
                       train_kwargs=train_kwargs)
    groups, starts = _classify(X, runs, seed, group_rtol)
    best = groups[0].loss
    width_certified = within_tol(best, cert.lower_bound, tol)
    return Census(
        lam=lam,
        tol=tol,
        width=width,
        width_needed=cert.width_needed,
        n_samples=X.shape[0],
        d=X.shape[1],
        n_starts=n_starts,
        steps=steps,
        lr=lr,
        seed=seed,
        lower_bound=cert.lower_bound,
        certificate_upper_bound=optimum_loss,
        certificate_certified=bool(cert.certified),
        best_loss=best,
        bound_gap=best - cert.lower_bound,
        width_certified=width_certified,
        groups=groups,
        starts=starts,
        message=_conclusion(width, cert, best, width_certified),
        time_train=runs.t_train,
        time_polish=runs.t_polish,
        time_compare=runs.t_compare,
        time_total=time.perf_counter() - start_time,
        fixed_width=cert.fixed_width,
    )


__all__ = [
    "Census",
    "CensusGroup",
    "CensusStart",
    "activation_signature",
    "census",
    "group_minima",
]
