"""Incumbents of the fixed-width search: explicit width-K SAEs and their recomputed losses.

Starts come from the wide optimum (its top latents, and its best ``K``-subsets with refitted
decoders) and from batched random restarts; every offered SAE is polished by paper B's
alternating convex steps (:func:`convexdict.polish`) when it improves on the incumbent. The
incumbent's loss is always :func:`convexdict.sae_loss` of its weights.
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
from convexdict_solvers.group_lasso.batched_fista import solve_batch

from convexdict.analysis.pieces import PieceSolveError, polish
from convexdict.models.sae import SAE, sae_loss

MAX_SUBSETS = 20_000


def top_latents(sae: SAE, X: np.ndarray, width: int) -> SAE:
    """The ``width`` latents of ``sae`` with the largest ``||W_dec[k]|| * sum_n Z[n, k]``."""
    Z = sae.encode(X)
    mass = sae.decoder_norms() * Z.sum(axis=0)
    keep = np.sort(np.argsort(-mass, kind="stable")[:width])
    small = SAE(sae.W_enc[:, keep], sae.b_enc[keep], sae.W_dec[keep], sae.b_dec)
    return small.padded(width) if small.width < width else small


def best_subsets(sae: SAE, X: np.ndarray, lam: float, width: int, keep: int = 3) -> list[SAE]:
    """The best few width-``K`` subsets of ``sae``'s latents, decoders refitted.

    Every ``K``-subset of the latents (when there are at most ``MAX_SUBSETS``) gets its
    decoder and bias from a batched group lasso over its activations.
    """
    Z = sae.encode(X)
    alive = np.flatnonzero(Z.sum(axis=0) > 0)
    if len(alive) <= width or comb(len(alive), width) > MAX_SUBSETS:
        return []
    E_all = (Z[:, alive] / Z[:, alive].sum(axis=0)).T
    subsets = np.array(list(itertools.combinations(range(len(alive)), width)))
    res = solve_batch(E_all[subsets], X, lam, max_iter=500, rtol=1e-8)
    out = []
    for b in np.argsort(res.primal, kind="stable")[:keep]:
        cols = alive[subsets[b]]
        s = Z[:, cols].sum(axis=0)
        out.append(SAE(sae.W_enc[:, cols] / s, sae.b_enc[cols] / s, res.G[b], res.b[b]))
    return out


class Incumbent:
    """The best width-``K`` SAE so far and its recomputed canonical loss."""

    def __init__(self, X: np.ndarray, lam: float, width: int, solver: str) -> None:
        self.X, self.lam, self.width, self.solver = X, lam, width, solver
        self.sae: SAE | None = None
        self.loss = float("inf")
        self.improvements = 0

    def offer(self, sae: SAE) -> None:
        """Keep ``sae`` (polished first when it beats the incumbent) if its loss is lower."""
        loss = sae_loss(sae, self.X, self.lam)
        if loss < self.loss:
            try:
                sae = polish(sae, self.X, self.lam, max_iter=20, solver=self.solver)
            except PieceSolveError:
                pass
            loss = sae_loss(sae, self.X, self.lam)
        if loss < self.loss:
            self.sae, self.loss = sae, loss
            self.improvements += 1
