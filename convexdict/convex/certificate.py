"""The :class:`Certificate`: what :func:`convexdict.certify` proves, in the user's units."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from convexdict_solvers.colgen.loop import CGRound

from convexdict.models.sae import SAE
from convexdict.tolerance import relative_gap


def lam_max_line(lam: float, lam_max: float) -> str:
    """``lam_max`` and ``lam / lam_max`` for summaries (``lam_max`` nan: not priced)."""
    if not lam_max == lam_max:
        return "lam_max not priced (exact pricing out of reach; lam_max_bound bounds it)"
    ratio = lam / lam_max if lam_max > 0 else float("inf")
    text = f"lam_max {lam_max:.6g}, lam / lam_max = {ratio:.4g}"
    if ratio >= 1:
        text += " (lam >= lam_max: the optimum is the mean alone, K* = 0)"
    return text


@dataclass
class Certificate:
    """The result of :func:`convexdict.certify`.

    Every number is in the units of the data as given (internally the data are scaled by
    a power of two to unit RMS, which is exact; the bounds are then re-verified in the
    user's units).

    Attributes
    ----------
    lower_bound : float
        Verified lower bound on the canonical loss of every SAE of any width (of width
        ``<= width`` when ``search`` is set).
    upper_bound : float
        Canonical loss of ``sae`` recomputed from its weights (``inf`` without an SAE).
    gap : float
        ``upper_bound - lower_bound`` (absolute, in loss units).
    certified : bool
        ``within_tol(upper_bound, lower_bound, tol)``, i.e. ``gap <= tol * upper_bound``.
    sae : SAE, Transcoder, Crosscoder or None
        The explicit model attaining ``upper_bound`` (width ``width``), or None.
    width_needed : int
        ``K*``: number of latents of the optimal SAE found (nonzero groups of (P));
        ``0`` when ``lam >= lam_max`` (the optimum is the mean).
    joint_bound : float
        The joint wide-limit lower bound (weaker, valid for any ``d``).
    n_atoms : int
        ``2 C(N, r)``: the number of (hyperplane, orientation) candidates spanning ``E0``
        (an upper bound on ``|E0|``; not the active groups, not ``K*``).
    lam_max : float
        ``max_(e in E0) ||(T - mean T)^T e||``: the smallest ``lam`` at which the mean
        alone is optimal (exactly priced; ``nan`` when not computed).
    dual_point : ndarray of shape (N, p)
        The dual point ``R`` exactly as used for ``lower_bound``: centred, scaled so that
        ``||R^T e|| <= lam`` on all of ``E0``, and
        ``lower_bound = (<R, T - mean T> - ||R||^2 / 2) / N``.
    search : dict or None
        ``budget_exhausted`` (``""``, ``"time"``, ``"rounds"``, ``"nodes"`` or
        ``"patterns"``) and, when the fixed-width branch and bound ran (``width < K*``,
        :attr:`fixed_width`), its statistics: ``lower_bound`` then bounds every SAE of
        width ``<= width`` (not every width).
    data_sha256 : str
        Hash of the data (:func:`convexdict.convex.certificate_file.data_sha256`), for :meth:`save`.
    frame : AffineFrame or None
        The affine frame of the data in the user's units (saved for information).
    """

    lower_bound: float
    upper_bound: float
    gap: float
    certified: bool
    sae: SAE | None
    width_needed: int
    joint_bound: float
    n_atoms: int
    lam: float
    tol: float
    width: int | None
    method: str
    solver: str
    status: str
    message: str
    kind: str = "sae"
    optimum_sae: SAE | None = None
    n_samples: int = 0
    d: int = 0
    rank: int = 0
    n_active_atoms: int = 0
    lam_max: float = float("nan")
    active_hyperplanes: np.ndarray = field(default_factory=lambda: np.empty((0, 1)), repr=False)
    dual_point: np.ndarray = field(default_factory=lambda: np.empty((0, 0)), repr=False)
    max_price_ratio: float = float("nan")
    pricing_method: str = ""
    solver_statuses: list[str] = field(default_factory=list)
    rounds: list[CGRound] = field(default_factory=list)
    time_total: float = 0.0
    time_master: float = 0.0
    time_pricing: float = 0.0
    time_verify: float = 0.0
    search: dict[str, Any] | None = None
    data_sha256: str = ""
    frame: Any = field(default=None, repr=False)

    def save(self, path: str | os.PathLike) -> Path:
        """Write this certificate as one ``.npz`` file that :func:`convexdict.verify` checks.

        The schema (``convexdict-certificate/1``) is in :mod:`convexdict.convex.certificate_file`;
        the write is atomic.

        Parameters
        ----------
        path : str or PathLike
            Written exactly as given (conventionally ``*.npz``).

        Returns
        -------
        Path
        """
        from convexdict.convex.certificate_file import save_certificate

        return save_certificate(self, path)

    @property
    def relative_gap(self) -> float:
        """``gap / upper_bound`` (``0`` when ``upper_bound == 0``): the gap as a fraction of
        the explicit SAE's loss, the quantity compared with ``tol``."""
        return relative_gap(self.upper_bound, self.lower_bound)

    @property
    def fixed_width(self) -> bool:
        """True when the fixed-width branch and bound ran (``width < K*``): the bounds are
        then about SAEs of width ``<= width``."""
        return bool(self.search and self.search.get("fixed_width"))

    @property
    def lam_ratio(self) -> float:
        """``lam / lam_max`` (``>= 1``: the optimum is the mean alone, ``K* = 0``)."""
        return self.lam / self.lam_max if self.lam_max > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (weights and the dual point excluded)."""
        skip = ("sae", "optimum_sae", "rounds", "active_hyperplanes", "dual_point", "frame")
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        out["relative_gap"] = self.relative_gap
        out["lam_ratio"] = self.lam_ratio
        out["rounds"] = [asdict(r) for r in self.rounds]
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = str(value)
        return out

    def lam_line(self) -> str:
        """``lam_max`` and ``lam / lam_max`` in one line, explaining ``K* = 0``."""
        return lam_max_line(self.lam, self.lam_max)

    def summary(self) -> str:
        """A few human-readable lines."""
        verdict = "CERTIFIED" if self.certified else "NOT certified"
        if self.fixed_width and not self.certified:
            return (
                f"{verdict}: width-{self.width} optimum in the bracket [{self.lower_bound:.10g}, "
                f"{self.upper_bound:.10g}] (relative width {self.relative_gap:.3g}, tol "
                f"{self.tol:g}); K* = {self.width_needed}; {self.lam_line()}; {self.message}"
            )
        return (
            f"{verdict}: lower {self.lower_bound:.10g} <= optimum <= upper {self.upper_bound:.10g} "
            f"(gap {self.gap:.3g}, relative gap {self.relative_gap:.3g}, tol {self.tol:g}); "
            f"K* = {self.width_needed}; {self.lam_line()}; {self.message}"
        )
