"""The result records of :func:`convexdict.census`: starts, groups and the census itself."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from convexdict.analysis.comparison import VERDICTS, Comparison, jsonable
from convexdict.fixed_width.width_incumbents import bracket_line
from convexdict.models.sae import SAE


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
