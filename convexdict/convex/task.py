"""What is being certified: an SAE, a transcoder or a crosscoder, as one target matrix.

Every model family reduces to the same group lasso (P) with target ``T (N, p)`` and,
for a crosscoder, column groups (one per layer). :class:`Task` holds that reduction and
its inverse (weights -> model), so every stage treats the three families alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convexdict._validation import check_matrix
from convexdict.convex.bounds import centred_row_norm_bound, joint_bound
from convexdict.models.family import Crosscoder, Transcoder, crosscoder_loss, transcoder_loss
from convexdict.models.sae import SAE, sae_loss
from convexdict.units import Units


@dataclass(frozen=True)
class Task:
    """Encoder input ``X (N, d)``, target ``T (N, p)``, its column ``groups`` and ``lam``.

    ``kind`` is ``"sae"`` (``T is X``), ``"transcoder"`` or ``"crosscoder"``.
    """

    kind: str
    X: np.ndarray
    T: np.ndarray
    groups: list[slice] | None
    lam: float

    def scaled(self, units: Units) -> Task:
        """The same task in internal units (``X / x``, ``T / t``, ``lam / t``; exact)."""
        X = self.X / units.x
        T = X if self.kind == "sae" else self.T / units.t
        return Task(self.kind, X, T, self.groups, self.lam / units.t)

    def model(self, W_enc, b_enc, G, b):
        """The model with encoder ``(W_enc, b_enc)`` and stacked decoder ``(G (K, p), b)``."""
        if self.kind == "sae":
            return SAE(W_enc, b_enc, G, b) if len(G) else SAE.zeros(b)
        if self.kind == "transcoder":
            return Transcoder(W_enc, b_enc, G, b)
        return Crosscoder(
            W_enc, b_enc, tuple(G[:, g] for g in self.groups), tuple(b[g] for g in self.groups)
        )

    def decoder(self, model) -> tuple[np.ndarray, np.ndarray]:
        """The model's decoder as one ``(K, p)`` matrix and ``(p,)`` bias."""
        if self.kind == "crosscoder":
            return np.hstack(model.W_decs), np.concatenate(model.b_decs)
        return model.W_dec, model.b_dec

    def loss_and_residual(self, model) -> tuple[float, np.ndarray]:
        """Canonical loss recomputed from the weights, and the residual ``T - prediction``."""
        if self.kind == "sae":
            return sae_loss(model, self.X, self.lam), self.X - model.reconstruct(self.X)
        if self.kind == "transcoder":
            loss = transcoder_loss(model, self.X, self.T, self.lam)
            return loss, self.T - model.predict(self.X)
        layers = [self.T[:, g] for g in self.groups]
        loss = crosscoder_loss(model, self.X, layers, self.lam)
        return loss, self.T - np.hstack(model.predict(self.X))

    def joint_bound(self) -> float:
        """The joint wide-limit lower bound (summed over a crosscoder's layers)."""
        if self.groups is None:
            return joint_bound(self.T, self.lam)
        return sum(joint_bound(self.T[:, g], self.lam) for g in self.groups)

    def lam_max_bound(self) -> float:
        """``sum_groups max_n ||t_n - mean||``: an upper bound on ``lam_max`` at any size
        (``||T_c^T e||`` is a norm of a convex combination of centred rows)."""
        return centred_row_norm_bound(self.T, self.groups)

    def padded(self, model, width: int, k: int):
        """``model`` (width ``k``) padded with dead latents to ``width``."""
        if self.kind == "sae":
            return model.padded(width)
        d, pad = self.X.shape[1], width - k
        G, b = self.decoder(model)
        W = np.hstack([model.W_enc, np.zeros((d, pad))])
        G = np.vstack([G, np.zeros((pad, G.shape[1]))])
        return self.model(W, np.concatenate([model.b_enc, -np.ones(pad)]), G, b)


def make_task(X: np.ndarray, lam: float, target, targets) -> Task:
    """Validate ``target`` / ``targets`` against ``X`` and build the :class:`Task`."""
    if target is not None and targets is not None:
        raise ValueError(
            "The 'target' and 'targets' parameters are exclusive: pass target=Y for a "
            "transcoder or targets=[Y_1, ...] for a crosscoder. Got both."
        )
    if target is not None:
        T = check_matrix("target", target)
        if T.shape[0] != X.shape[0]:
            raise ValueError(
                f"The 'target' parameter must have {X.shape[0]} rows like X. Got shape {T.shape}."
            )
        return Task("transcoder", X, T, None, lam)
    if targets is not None:
        if isinstance(targets, np.ndarray) or len(targets) == 0:
            raise ValueError(
                "The 'targets' parameter must be a non-empty list of (N, d_l) arrays. "
                f"Got {type(targets).__name__}."
            )
        layers = [check_matrix(f"targets[{i}]", Y) for i, Y in enumerate(targets)]
        for i, Y in enumerate(layers):
            if Y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"The 'targets[{i}]' parameter must have {X.shape[0]} rows. "
                    f"Got shape {Y.shape}."
                )
        bounds = np.cumsum([0] + [Y.shape[1] for Y in layers])
        groups = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return Task("crosscoder", X, np.hstack(layers), groups, lam)
    return Task("sae", X, X, None, lam)
