"""A census of where SGD lands: many starts, polished and classified (THEORY sections 4-6).

:func:`census` trains ``n_starts`` ReLU SAEs of one width ``K`` by SGD
(:func:`convexdict.train_sae`, seeds ``seed, seed + 1, ...``), polishes each to a partial
minimum of paper B's piecewise-biconvex structure (:func:`convexdict.polish`), classifies
each end point against the certified optimum (:func:`convexdict.compare`: verdicts
``certified_global``, ``spurious_partial_minimum``, ``partial_minimum``, ``not_converged``,
``undetermined``) and groups equal end points (:func:`group_minima`): the same canonical
loss within a relative tolerance **and** the same multiset of activation patterns up to a
permutation of the latents (each latent's firing set on ``X``,
:func:`convexdict.diagnostics.active_mask`; dead latents contribute an empty set).

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
:mod:`convexdict.fixed_width`), whose lower bound holds for every SAE of width ``<= K`` and
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

from ._validation import check_choice, check_int, check_matrix, check_positive
from .certify import Certificate, certify
from .compare import VERDICTS, Comparison, _check_certificate, compare, jsonable
from .diagnostics import active_mask
from .pieces import PieceSolveError, polish
from .sae import SAE, sae_loss
from .tolerance import within_tol
from .train import train_sae
from .width_incumbents import bracket_line

# Training options a census sets itself, or that would make the starts interfere.
_RESERVED = {
    "quiet": "the census trains quietly (use progress=True for a display over starts)",
    "return_history": "the census keeps only the weights",
    "checkpoint_dir": "every start would write to the same checkpoints",
    "resume": "every start would resume from the same checkpoints",
}


@dataclass(frozen=True, eq=False)
class CensusStart:
    """One SGD start of a census.

    Attributes
    ----------
    seed : int
        The training seed.
    sgd_loss : float
        Canonical loss of the SGD end point (before polishing).
    loss : float
        Canonical loss after :func:`convexdict.polish` (``<= sgd_loss``).
    verdict : str
        :func:`convexdict.compare`'s verdict of the polished SAE (one of
        :data:`convexdict.compare.VERDICTS`).
    group : int
        Index into :attr:`Census.groups`.
    polish_failed : bool
        Every solver failed while polishing; ``loss`` is then the SGD end point's.
    """

    seed: int
    sgd_loss: float
    loss: float
    verdict: str
    group: int
    polish_failed: bool = False


@dataclass(frozen=True, eq=False)
class CensusGroup:
    """A set of starts that ended at the same minimum (see :func:`group_minima`).

    Attributes
    ----------
    loss : float
        Canonical loss of the representative (the group's lowest-loss member).
    loss_spread : float
        Largest minus smallest loss over the members (within the grouping tolerance).
    count : int
        Number of starts that landed here; ``fraction = count / n_starts``.
    fraction : float
    verdict : str
        The representative's verdict; ``verdict_counts`` counts every member's (members of
        one group agree unless a member sits at the edge of a tolerance).
    verdict_counts : dict of str to int
    n_dead : int
        Number of dead latents (the same for every member: dead latents are the empty
        patterns of the shared multiset).
    gap, relative_gap : float
        ``loss - lower_bound`` and ``gap / loss``.
    seeds : list of int
        The training seeds of the members, in increasing order of loss.
    sae : SAE
        The representative polished SAE (width ``K``).
    comparison : Comparison
        :func:`convexdict.compare` of the representative.
    """

    loss: float
    loss_spread: float
    count: int
    fraction: float
    verdict: str
    verdict_counts: dict[str, int]
    n_dead: int
    gap: float
    relative_gap: float
    seeds: list[int]
    sae: SAE = field(repr=False)
    comparison: Comparison = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (weights excluded; a few fields of the comparison)."""
        cmp = self.comparison
        return jsonable({
            "loss": self.loss,
            "loss_spread": self.loss_spread,
            "count": self.count,
            "fraction": self.fraction,
            "verdict": self.verdict,
            "verdict_counts": dict(self.verdict_counts),
            "n_dead": self.n_dead,
            "gap": self.gap,
            "relative_gap": self.relative_gap,
            "seeds": list(self.seeds),
            "representative": {
                "seed": self.seeds[0],
                "width": self.sae.width,
                "reconstruction": cmp.reconstruction,
                "penalty": cmp.penalty,
                "l0": cmp.l0,
                "explained_variance": cmp.explained_variance,
                "dead_latents": cmp.dead_latents,
                "improve_decoder": cmp.improve_decoder,
                "improve_encoder": cmp.improve_encoder,
                "sae_dual_bound": cmp.sae_dual_bound,
                "message": cmp.message,
            },
        })


@dataclass(frozen=True, eq=False)
class Census:
    """Where ``n_starts`` SGD runs of width ``K`` land (see :func:`census`).

    Attributes
    ----------
    lam, tol : float
        Penalty and the verdicts' relative tolerance.
    width, width_needed : int
        ``K`` of the census and ``K*`` of the certified optimum.
    n_samples, d : int
        Shape of ``X``.
    n_starts, steps, seed : int
        Number of starts, Adam steps per start and the first seed.
    lr : float
        Adam's learning rate.
    lower_bound : float
        The certificate's verified lower bound: ``P*`` (every SAE, every width), or with
        ``fixed_width`` the branch and bound's bound on every SAE of width ``<= K``.
    certificate_upper_bound : float
        Loss of the certificate's explicit optimum (width ``K*``, or ``K`` with
        ``fixed_width``; nan without one).
    certificate_certified : bool
        Whether the certificate closed its own gap.
    best_loss : float
        The lowest polished loss: an upper bound on the width-``K`` optimum, attained by
        ``groups[0].sae``.
    bound_gap : float
        ``best_loss - lower_bound``.
    width_certified : bool
        ``within_tol(best_loss, lower_bound, tol)``: the width-``K`` optimum is
        certified by the explicit SAE ``groups[0].sae``. False means only
        ``lower_bound <= optimum at width K <= best_loss`` is known.
    groups : list of CensusGroup
        Distinct end points by increasing loss.
    starts : list of CensusStart
        One record per start, in seed order.
    message : str
        The fixed-width conclusion in words.
    time_train, time_polish, time_compare, time_total : float
        Seconds.
    fixed_width : bool
        The bounds come from the fixed-width branch and bound (``width < K*``).
    """

    lam: float
    tol: float
    width: int
    width_needed: int
    n_samples: int
    d: int
    n_starts: int
    steps: int
    lr: float
    seed: int
    lower_bound: float
    certificate_upper_bound: float
    certificate_certified: bool
    best_loss: float
    bound_gap: float
    width_certified: bool
    groups: list[CensusGroup]
    starts: list[CensusStart]
    message: str
    time_train: float = 0.0
    time_polish: float = 0.0
    time_compare: float = 0.0
    time_total: float = 0.0
    fixed_width: bool = False

    @property
    def verdict_fractions(self) -> dict[str, float]:
        """Fraction of the starts with each verdict (every verdict of
        :data:`convexdict.compare.VERDICTS`, zeros included)."""
        counts = Counter(s.verdict for s in self.starts)
        return {v: counts.get(v, 0) / self.n_starts for v in VERDICTS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (arrays as lists, non-finite floats as strings, no weights)."""
        out = {
            name: getattr(self, name)
            for name in (
                "lam", "tol", "width", "width_needed", "n_samples", "d", "n_starts", "steps",
                "lr", "seed", "lower_bound", "certificate_upper_bound", "certificate_certified",
                "best_loss", "bound_gap", "width_certified", "message", "time_train",
                "time_polish", "time_compare", "time_total",
            )
        }
        out["verdict_fractions"] = self.verdict_fractions
        out["groups"] = [g.to_dict() for g in self.groups]
        out["starts"] = [
            {"seed": s.seed, "sgd_loss": s.sgd_loss, "loss": s.loss, "verdict": s.verdict,
             "group": s.group, "polish_failed": s.polish_failed}
            for s in self.starts
        ]
        return jsonable(out)

    def summary(self) -> str:
        """A plain-text table of the groups followed by the bounds and the conclusion."""
        head = (
            f"census of {self.n_starts} SGD starts at width K={self.width} (K* = "
            f"{self.width_needed}) on N={self.n_samples}, d={self.d}, lam={self.lam:.6g}"
        )
        columns = f"{'#':>3}  {'loss':>16}  {'gap':>10}  {'count':>5}  {'fraction':>8}  " \
                  f"{'verdict':<24}  {'dead':>4}"
        lines = [head, columns, "-" * len(columns)]
        for i, g in enumerate(self.groups):
            lines.append(
                f"{i:>3}  {g.loss:>16.10g}  {g.gap:>10.3g}  {g.count:>5}  {g.fraction:>8.1%}  "
                f"{g.verdict:<24}  {g.n_dead:>4}"
            )
        lines += [
            f"lower bound {self.lower_bound:.10g} <= width-{self.width} optimum <= best "
            f"{self.best_loss:.10g} (gap {self.bound_gap:.3g}); width certified: "
            f"{'yes' if self.width_certified else 'no'}",
        ]
        if self.width < self.width_needed:
            known = [self.best_loss] + [g.comparison.optimum_loss for g in self.groups]
            if self.fixed_width:
                known.append(self.certificate_upper_bound)
            upper = min((v for v in known if v == v), default=float("nan"))
            lines.append(bracket_line(self.width, self.lower_bound, upper))
        lines.append(self.message)
        return "\n".join(lines)


# --------------------------------------------------------------------------- grouping


def activation_signature(sae: SAE, X: np.ndarray) -> tuple[bytes, ...]:
    """The multiset of the latents' activation patterns on ``X``, as a hashable key.

    Each latent's column of :func:`convexdict.diagnostics.active_mask` (the samples it is
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


def _progress(enabled: bool, total: int) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    display = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn())
    task = display.add_task("census: train, polish, classify", total=total)
    display.start()
    return display, task


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
    if certificate is None:
        cert = certify(X, lam, width=width, tol=tol, time_limit=time_limit)
    else:
        cert = _check_certificate(certificate, X, lam)
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
        optimum_loss = cert.upper_bound
    else:
        optimum_loss = (
            sae_loss(cert.optimum_sae, X, lam) if cert.optimum_sae is not None else float("nan")
        )

    polished: list[SAE] = []
    comparisons: list[Comparison] = []
    sgd_losses: list[float] = []
    failed: list[bool] = []
    t_train = t_polish = t_compare = 0.0
    display, task = _progress(progress, n_starts)
    try:
        for i in range(n_starts):
            t0 = time.perf_counter()
            sae = train_sae(X, lam, width, steps=steps, lr=lr, seed=seed + i, quiet=True,
                            **train_kwargs)
            t1 = time.perf_counter()
            try:
                end = polish(sae, X, lam, max_iter=polish_max_iter)
                failed.append(False)
            except PieceSolveError:
                end = sae
                failed.append(True)
            t2 = time.perf_counter()
            comparisons.append(compare(end, X, lam, cert, tol=tol))
            t3 = time.perf_counter()
            t_train += t1 - t0
            t_polish += t2 - t1
            t_compare += t3 - t2
            sgd_losses.append(sae_loss(sae, X, lam))
            polished.append(end)
            if display is not None:
                display.advance(task)
    finally:
        if display is not None:
            display.stop()

    losses = [c.loss for c in comparisons]
    keys = [activation_signature(sae, X) for sae in polished]
    members_of = _group(losses, keys, group_rtol)
    group_of = {i: g for g, members in enumerate(members_of) for i in members}
    groups = []
    for members in members_of:
        rep = members[0]
        cmp = comparisons[rep]
        groups.append(CensusGroup(
            loss=cmp.loss,
            loss_spread=max(losses[i] for i in members) - cmp.loss,
            count=len(members),
            fraction=len(members) / n_starts,
            verdict=cmp.verdict,
            verdict_counts=dict(Counter(comparisons[i].verdict for i in members)),
            n_dead=len(cmp.dead_latents),
            gap=cmp.gap,
            relative_gap=cmp.relative_gap,
            seeds=[seed + i for i in members],
            sae=polished[rep],
            comparison=cmp,
        ))
    starts = [
        CensusStart(seed + i, sgd_losses[i], losses[i], comparisons[i].verdict, group_of[i],
                    failed[i])
        for i in range(n_starts)
    ]
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
        time_train=t_train,
        time_polish=t_polish,
        time_compare=t_compare,
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
