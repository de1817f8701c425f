"""The result of training: weights, activation, thresholds and history (:class:`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from convexdict_solvers.objective import per_sample_terms

from convexdict._validation import check_matrix, check_positive
from convexdict.models.family import Crosscoder, Transcoder
from convexdict.models.sae import SAE

Model = SAE | Transcoder | Crosscoder


def _decoder(model: Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W (K, D)``, ``b (D,)`` with the layers side by side, and the penalty weights
    ``sum_l ||W^(l)[k]||`` of shape ``(K,)``."""
    if isinstance(model, Crosscoder):
        norms = np.sum([np.linalg.norm(W, axis=1) for W in model.W_decs], axis=0)
        return np.hstack(model.W_decs), np.concatenate(model.b_decs), norms
    return model.W_dec, model.b_dec, np.linalg.norm(model.W_dec, axis=1)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A trained SAE, transcoder or crosscoder with its activation and training history.

    Attributes
    ----------
    sae : SAE, Transcoder or Crosscoder
        The weights (float64); also available as :attr:`model`. Its ``encode`` is ReLU
        whatever ``activation`` is.
    activation : str
        The activation the weights were trained with.
    k : int or None
        TopK / BatchTopK ``k``.
    threshold : ndarray of shape (K,) or (), or None
        JumpReLU thresholds ``(K,)`` or the BatchTopK inference threshold ``()``.
    history : dict of ndarray
        Per record (every ``log_every`` steps and at the end): ``step``, ``loss``
        (the activation's training objective on the batch, without anchoring),
        ``anchor_penalty`` (the anchoring term, 0 without anchoring), ``l0``,
        ``explained_variance`` (of the targets), ``dead_fraction``, ``lr``, ``lam``,
        ``time`` (seconds).
    steps : int
        Optimiser steps completed.
    kind : {"sae", "transcoder", "crosscoder"}
    anchored : int
        Number of anchored latents (the first ones); 0 without anchoring.
    """

    sae: Model
    activation: str
    k: int | None
    threshold: np.ndarray | None
    history: dict[str, np.ndarray] = field(repr=False)
    steps: int
    kind: str = "sae"
    anchored: int = 0

    @property
    def model(self) -> Model:
        """The trained weights (same object as :attr:`sae`)."""
        return self.sae

    @property
    def certifiable(self) -> bool:
        """Whether the convex program applies (ReLU activation with an L1 penalty).

        An anchored run is certifiable in this sense too: :func:`convexdict.certify`
        bounds the canonical loss of any weights, however they were trained.
        """
        return self.activation == "relu"

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes ``(N, K)`` of ``X (N, d)`` with the trained activation (inference mode:
        BatchTopK uses its global threshold, TopK keeps ``k`` per row)."""
        X = check_matrix("X", X, n_cols=self.sae.W_enc.shape[0])
        return self._activate(X @ self.sae.W_enc + self.sae.b_enc)

    def _activate(self, pre: np.ndarray) -> np.ndarray:
        if self.activation == "relu":
            return np.maximum(pre, 0.0)
        if self.activation == "topk":
            keep = np.argpartition(-pre, self.k - 1, axis=1)[:, : self.k]
            out = np.zeros_like(pre)
            np.put_along_axis(out, keep, np.maximum(np.take_along_axis(pre, keep, 1), 0), 1)
            return out
        theta = np.maximum(self.threshold, 0.0)
        return np.where(pre > theta, pre, 0.0)

    def evaluate(self, X: np.ndarray, lam: float, *, target: np.ndarray | None = None,
                 targets: list[np.ndarray] | None = None, max_rows: int = 100_000,
                 chunk: int = 4096) -> dict[str, float]:
        """Metrics of the trained function on ``X`` (float64, in chunks).

        Parameters
        ----------
        X : ndarray of shape (N, d) or memory map
            The encoder's input.
        lam : float
        target : ndarray of shape (N, d_out), optional
            Required for a transcoder (and only then).
        targets : list of ndarray of shape (N, d_l), optional
            Required for a crosscoder (and only then).
        max_rows : int
            At most this many rows are used: all of them if ``N <= max_rows``, else a
            fixed random subset (seed 0).

        Returns
        -------
        dict
            ``loss`` (the canonical formula with the trained codes: for ``relu`` exactly
            :func:`convexdict.sae_loss` / ``transcoder_loss`` / ``crosscoder_loss`` on
            those rows, otherwise a diagnostic that nothing certifies),
            ``reconstruction``, ``penalty``, ``l0`` (mean nonzeros per row),
            ``explained_variance`` (1 - SSE / SST of the targets about their rows' mean),
            ``dead_fraction`` (latents that never fire on these rows), ``rows``.
        """
        lam = check_positive("lam", lam, allow_zero=True)
        d_in = self.sae.W_enc.shape[0]
        if not isinstance(X, np.ndarray):
            X = check_matrix("X", X, n_cols=d_in)
        layers = self._evaluation_targets(X.shape[0], target, targets)
        n = X.shape[0]
        rows = np.arange(n) if n <= max_rows else np.sort(
            np.random.default_rng(0).choice(n, max_rows, replace=False))
        W_dec, b_dec, norms = _decoder(self.sae)
        sse = pen = nnz = sq = 0.0
        total = np.zeros(W_dec.shape[1])
        fired = np.zeros(self.sae.width, dtype=bool)
        for start in range(0, rows.size, chunk):
            idx = rows[start : start + chunk]
            part = check_matrix("X", X[idx], n_cols=d_in)
            goal = part if layers is None else np.hstack([
                check_matrix(name, T[idx], n_cols=W.shape[1]) for name, T, W in layers])
            codes = self._activate(part @ self.sae.W_enc + self.sae.b_enc)
            half_sq, weighted = per_sample_terms(goal - (codes @ W_dec + b_dec), codes, norms, 1.0)
            sse += 2.0 * float(half_sq.sum())
            pen += float(weighted.sum())
            nnz += float(np.count_nonzero(codes))
            fired |= (codes > 0).any(axis=0)
            total += goal.sum(axis=0)
            sq += float(np.einsum("ij,ij->", goal, goal))
        m = rows.size
        sst = sq - float(total @ total) / m
        return {
            "loss": 0.5 * sse / m + lam * pen / m,
            "reconstruction": 0.5 * sse / m,
            "penalty": lam * pen / m,
            "l0": nnz / m,
            "explained_variance": 1.0 - sse / sst if sst > 0 else float("nan"),
            "dead_fraction": float(1.0 - fired.mean()),
            "rows": int(m),
        }

    def _evaluation_targets(self, n: int, target: Any, targets: Any) -> list | None:
        """``[(name, array (N, d_l), W_dec^(l)), ...]`` for the model's kind, or None."""
        expected = {"sae": "neither 'target' nor 'targets'", "transcoder": "'target'",
                    "crosscoder": "'targets'"}[self.kind]
        given = (target is not None, targets is not None)
        if given != (self.kind == "transcoder", self.kind == "crosscoder"):
            raise ValueError(
                f"The 'target'/'targets' parameters: a {self.kind} is evaluated with "
                f"{expected}. Got target={'given' if given[0] else None}, "
                f"targets={'given' if given[1] else None}."
            )
        if self.kind == "sae":
            return None
        if self.kind == "transcoder":
            named = [("target", target, self.sae.W_dec)]
        else:
            if isinstance(targets, np.ndarray) or len(targets) != len(self.sae.W_decs):
                raise ValueError(
                    f"The 'targets' parameter must be a list of {len(self.sae.W_decs)} arrays "
                    f"(one per layer). Got {type(targets).__name__}."
                )
            named = [(f"targets[{i}]", T, W)
                     for i, (T, W) in enumerate(zip(targets, self.sae.W_decs, strict=True))]
        out = []
        for name, T, W in named:
            if not hasattr(T, "shape") or len(T.shape) != 2:
                T = check_matrix(name, T, n_cols=W.shape[1])
            if T.shape[0] != n:
                raise ValueError(
                    f"The '{name}' parameter must have {n} rows like X. Got shape {T.shape}."
                )
            out.append((name, T, W))
        return out
