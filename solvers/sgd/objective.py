"""The training objective module of the SGD trainer (what DDP wraps)."""

from __future__ import annotations

import torch
from convexdict_solvers.sgd.torch_sae import TorchSAE, TrainOutput
from torch import nn


class Objective(nn.Module):
    """Wraps :meth:`TorchSAE.train_loss` as ``forward`` so DDP can wrap it, and adds the
    feature-anchoring term when anchors are given and ``lam_anchor > 0``.

    Parameters
    ----------
    sae : TorchSAE
    A_enc : Tensor of shape (d, k), optional
    A_dec : Tensor of shape (k, D), optional
    lam_anchor : float
        Anchoring is off when it is 0 or both anchors are ``None``.
    """

    def __init__(self, sae: TorchSAE, A_enc: torch.Tensor | None = None,
                 A_dec: torch.Tensor | None = None, lam_anchor: float = 0.0) -> None:
        super().__init__()
        self.sae = sae
        self.lam_anchor = float(lam_anchor)
        self.anchored = self.lam_anchor > 0 and (A_enc is not None or A_dec is not None)
        # Not persistent: checkpoints identify the anchors by a fingerprint instead.
        self.register_buffer("A_enc", A_enc, persistent=False)
        self.register_buffer("A_dec", A_dec, persistent=False)

    def forward(self, x: torch.Tensor, lam: float,
                target: torch.Tensor | None = None) -> TrainOutput:
        out = self.sae.train_loss(x, lam, target)
        if not self.anchored:
            return out
        return out._replace(anchor=self.lam_anchor * self.sae.anchor_distance(self.A_enc,
                                                                               self.A_dec))
