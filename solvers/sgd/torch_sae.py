"""A sparse autoencoder as a PyTorch module, for SGD training.

Orientation follows SAELens: ``W_enc (d, K)``, ``b_enc (K,)``, ``W_dec (K, d)``,
``b_dec (d,)``; codes ``z = act(x @ W_enc + b_enc)``, reconstruction
``xhat = z @ W_dec + b_dec``.

Activations
-----------
``"relu"``
    ``z = relu(pre)``. The canonical SAE of THEORY section 1, trained on the canonical
    objective ``mean_n [1/2 ||x_n - xhat_n||^2 + lam * sum_k ||W_dec[k]|| z_nk]``. This is
    the only activation the convex program (P) certifies.
``"topk"``
    Per sample, keep the ``k`` largest pre-activations, then ReLU (at most ``k``
    nonzeros per sample, at train and at inference time).
``"batchtopk"``
    At train time keep the ``k * B`` largest ReLU'd pre-activations over the whole batch
    of ``B`` samples (``k`` nonzeros per sample on average). At inference (``eval()``
    mode) each sample is encoded independently with a single global threshold:
    ``z = pre * (pre > theta)``, where ``theta`` is an exponential moving average
    (momentum 0.99) of the batch thresholds seen in training; so inference L0 is
    ``k`` only on average over data like the training data.
``"jumprelu"``
    ``z = pre * H(pre - theta_k)`` with a learned per-latent threshold
    ``theta = exp(log_threshold) > 0``. The Heaviside step has no useful gradient; the
    threshold is trained with the straight-through estimator of Rajamanoharan et al.
    (2024): a rectangle-kernel pseudo-derivative of width ``bandwidth``,
    ``d/dtheta H(pre - theta) := -(1/eps) 1[|pre - theta| < eps/2]``; gradients with
    respect to ``pre`` pass through ``H`` as a constant.

The convex program does NOT certify ``topk``, ``batchtopk`` or ``jumprelu`` SAEs, and
their training loss has no L1 term: ``topk`` and ``batchtopk`` minimise
``mean_n 1/2 ||x_n - xhat_n||^2`` (``lam`` is ignored); ``jumprelu`` minimises
``mean_n [1/2 ||x_n - xhat_n||^2 + lam * ||z_n||_0]`` (``lam`` weights an L0 count, not
an L1 norm). :meth:`TorchSAE.loss` always evaluates the canonical formula with the
module's own codes, which for those activations is a diagnostic, not their objective.

Transcoders and crosscoders (THEORY section 6)
----------------------------------------------
The same module with ``out_dims`` set decodes into a different space: ``W_dec (K, D)``
and ``b_dec (D,)`` with ``D = sum(out_dims)``, the columns split into one block per
target layer. The codes are still ``act(x @ W_enc + b_enc)`` of the *input* ``x``; the
losses take a ``target (B, D)`` (the layers concatenated) in place of ``x``, and the
decoder-norm weight of latent ``k`` becomes ``sum_l ||W_dec^(l)[k]||`` (one norm per
block). With a single block this is a transcoder, and with ``out_dims=(d_in,)`` and no
target it is the SAE above, operation for operation.

Feature anchoring (paper B)
---------------------------
:class:`convexdict_solvers.sgd.objective.Objective` can add ``lam_anchor * (||W_enc[:, :k] -
A_enc||_F^2 +
||W_dec[:k] - A_dec||_F^2)`` (:meth:`TorchSAE.anchor_distance`) to the training loss of
any activation. It is reported apart (:attr:`TrainOutput.anchor`): it changes the
objective being minimised, and the canonical loss remains the quantity that is reported
and compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from convexdict_solvers.objective import per_sample_terms
from torch import nn

ACTIVATIONS = ("relu", "topk", "batchtopk", "jumprelu")
_BATCHTOPK_MOMENTUM = 0.99


class TrainOutput(NamedTuple):
    """What one training forward pass returns (all tensors keep their graph).

    Attributes
    ----------
    loss : Tensor of shape ()
        The training objective of the activation, averaged over the batch (without the
        anchoring term).
    recon : Tensor of shape (B, D)
        ``D = d`` for an SAE, the concatenated target dimensions otherwise.
    codes : Tensor of shape (B, K)
    anchor : Tensor of shape () or None
        The feature-anchoring term ``lam_anchor * distance`` (``None`` when anchoring is
        off); the objective minimised is ``loss + anchor``.
    """

    loss: torch.Tensor
    recon: torch.Tensor
    codes: torch.Tensor
    anchor: torch.Tensor | None = None


class _JumpReLU(torch.autograd.Function):
    """``pre * H(pre - theta)`` with the rectangle-kernel STE for ``theta``."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        pre, theta = ctx.saved_tensors
        gate = (pre > theta).to(pre.dtype)
        window = ((pre - theta).abs() < ctx.eps / 2).to(pre.dtype)
        grad_theta = (-(theta / ctx.eps) * window * grad).sum(dim=0)
        return grad * gate, grad_theta, None


class _Step(torch.autograd.Function):
    """``H(pre - theta)`` with the rectangle-kernel STE for ``theta`` (none for ``pre``)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        pre, theta = ctx.saved_tensors
        window = ((pre - theta).abs() < ctx.eps / 2).to(pre.dtype)
        return None, (-(1.0 / ctx.eps) * window * grad).sum(dim=0), None


def _global_kth_largest(values: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count``-th largest entry of ``values`` across all ranks (a 0-d tensor)."""
    flat = values.reshape(-1)
    local = flat.topk(min(count, flat.numel())).values
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        sizes = [torch.zeros(1, dtype=torch.long, device=flat.device)
                 for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, torch.tensor([local.numel()], device=flat.device))
        width = int(max(s.item() for s in sizes))
        padded = torch.full((width,), -math.inf, dtype=flat.dtype, device=flat.device)
        padded[: local.numel()] = local
        gathered = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(gathered, padded)
        local = torch.cat(gathered).topk(count).values
    return local[count - 1]


class TorchSAE(nn.Module):
    """A sparse autoencoder with the SAELens parameter layout.

    Parameters
    ----------
    d_in : int
        Input dimension ``d``.
    width : int
        Number of latents ``K``.
    activation : {"relu", "topk", "batchtopk", "jumprelu"}
        See the module docstring.
    k : int, optional
        Nonzeros per sample for ``topk`` (exact) and ``batchtopk`` (average over the
        batch). Required for those two, must be ``None`` otherwise.
    out_dims : sequence of int, optional
        Dimensions ``(d_1, ..., d_L)`` of the target layers (module docstring): ``(d_out,)``
        for a transcoder, several for a crosscoder. Default ``(d_in,)``: an SAE.
    threshold : float
        Initial JumpReLU threshold (all latents).
    bandwidth : float
        Width ``eps`` of the JumpReLU straight-through estimator.
    dtype : torch.dtype
    device : torch.device or str, optional

    Attributes
    ----------
    W_enc : Parameter of shape (d, K)
    b_enc : Parameter of shape (K,)
    W_dec : Parameter of shape (K, D)
        ``D = sum(out_dims)``; the layers' decoders side by side.
    b_dec : Parameter of shape (D,)
    log_threshold : Parameter of shape (K,)
        Only for ``jumprelu``.
    batch_threshold : buffer of shape ()
        Only for ``batchtopk``: the inference threshold.

    Notes
    -----
    Parameters start at zero; :meth:`initialize` or :meth:`from_arrays` sets them.
    """

    def __init__(
        self,
        d_in: int,
        width: int,
        activation: str = "relu",
        k: int | None = None,
        *,
        out_dims: Sequence[int] | None = None,
        threshold: float = 1e-3,
        bandwidth: float = 1e-3,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        dims = (d_in,) if out_dims is None else tuple(out_dims)
        if not dims or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                               and v >= 1 for v in dims):
            raise ValueError(
                "The 'out_dims' parameter must be a non-empty sequence of integers >= 1 (one "
                f"per target layer). Got {out_dims!r}."
            )
        self.out_dims = tuple(int(v) for v in dims)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"The 'activation' parameter must be one of {ACTIVATIONS}. Got {activation!r}."
            )
        if activation in ("topk", "batchtopk"):
            if k is None or not 1 <= k <= width:
                raise ValueError(
                    f"The 'k' parameter must be an integer in [1, width={width}] for "
                    f"activation={activation!r}. Got {k!r}."
                )
        elif k is not None:
            raise ValueError(
                f"The 'k' parameter is only used by 'topk' and 'batchtopk'; leave it None "
                f"for activation={activation!r}. Got {k!r}."
            )
        self.activation = activation
        self.k = k
        self.bandwidth = float(bandwidth)
        opts = {"dtype": dtype, "device": device}
        self.W_enc = nn.Parameter(torch.zeros(d_in, width, **opts))
        self.b_enc = nn.Parameter(torch.zeros(width, **opts))
        self.W_dec = nn.Parameter(torch.zeros(width, self.d_out, **opts))
        self.b_dec = nn.Parameter(torch.zeros(self.d_out, **opts))
        if activation == "jumprelu":
            self.log_threshold = nn.Parameter(torch.full((width,), math.log(threshold), **opts))
        if activation == "batchtopk":
            self.register_buffer("batch_threshold", torch.tensor(-1.0, **opts))

    @property
    def d_in(self) -> int:
        """Input dimension ``d``."""
        return int(self.W_enc.shape[0])

    @property
    def width(self) -> int:
        """Number of latents ``K``."""
        return int(self.W_enc.shape[1])

    @property
    def d_out(self) -> int:
        """Output dimension ``D = sum(out_dims)``."""
        return sum(self.out_dims)

    # ------------------------------------------------------------------ construction
    @torch.no_grad()
    def initialize(self, b_dec: torch.Tensor | np.ndarray, generator: torch.Generator,
                   *, input_mean: torch.Tensor | np.ndarray | None = None) -> None:
        """Unit-norm random decoder rows, ``b_dec`` given, an encoder that starts by
        seeing centred inputs.

        The encoder is tied, ``W_enc = W_dec.T``, when ``d_in == D`` (SAEs; transcoders
        and crosscoders whose input has the targets' shape); otherwise its columns are an
        independent unit-norm Gaussian draw (made after the decoder's). Then
        ``b_enc = -input_mean @ W_enc``.

        Parameters
        ----------
        b_dec : array of shape (D,)
            Usually the target mean (the data mean for an SAE).
        generator : torch.Generator
            A CPU generator; the draw is made in float64 on CPU, so the result does not
            depend on the device or dtype.
        input_mean : array of shape (d_in,), optional
            Centre of the encoder's inputs; default ``b_dec`` (an SAE).
        """
        w_dec = torch.randn(self.width, self.d_out, generator=generator, dtype=torch.float64)
        w_dec /= w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if self.d_in == self.d_out:
            w_enc = w_dec.T
        else:
            w_enc = torch.randn(self.d_in, self.width, generator=generator, dtype=torch.float64)
            w_enc /= w_enc.norm(dim=0, keepdim=True).clamp_min(1e-12)
        bias = torch.as_tensor(np.asarray(b_dec, dtype=np.float64))
        centre = bias if input_mean is None else torch.as_tensor(
            np.asarray(input_mean, dtype=np.float64))
        self.W_dec.copy_(w_dec)
        self.W_enc.copy_(w_enc)
        self.b_dec.copy_(bias)
        self.b_enc.copy_(-(centre @ w_enc))

    @classmethod
    def from_arrays(
        cls,
        W_enc: np.ndarray,
        b_enc: np.ndarray,
        W_dec: np.ndarray,
        b_dec: np.ndarray,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        *,
        activation: str = "relu",
        k: int | None = None,
        threshold: np.ndarray | float | None = None,
        bandwidth: float = 1e-3,
        out_dims: Sequence[int] | None = None,
    ) -> TorchSAE:
        """Build a module holding copies of the given weights.

        Parameters
        ----------
        W_enc : array of shape (d, K)
        b_enc : array of shape (K,)
        W_dec : array of shape (K, D)
        b_dec : array of shape (D,)
        dtype : torch.dtype
        device : torch.device or str, optional
        activation, k, bandwidth, out_dims
            As in the constructor (``D = sum(out_dims)``, default ``d``).
        threshold : array of shape (K,) or float, optional
            ``jumprelu``: the per-latent thresholds (must be > 0). ``batchtopk``: the
            scalar inference threshold.
        """
        w_enc = np.asarray(W_enc, dtype=np.float64)
        if w_enc.ndim != 2:
            raise ValueError(f"The 'W_enc' parameter must be 2-D. Got shape {w_enc.shape}.")
        d, width = w_enc.shape
        model = cls(d, width, activation, k, out_dims=out_dims, bandwidth=bandwidth,
                    dtype=dtype, device=device)
        arrays = {"W_enc": w_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
        with torch.no_grad():
            for name, value in arrays.items():
                param = getattr(model, name)
                arr = np.asarray(value, dtype=np.float64)
                if arr.shape != tuple(param.shape):
                    raise ValueError(
                        f"The '{name}' parameter must have shape {tuple(param.shape)}. "
                        f"Got shape {arr.shape}."
                    )
                param.copy_(torch.from_numpy(arr.copy()))
            if threshold is not None and activation == "jumprelu":
                theta = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (width,))
                if not np.all(theta > 0):
                    raise ValueError("The 'threshold' parameter must be > 0 for jumprelu.")
                model.log_threshold.copy_(torch.from_numpy(np.log(theta)))
            elif threshold is not None and activation == "batchtopk":
                model.batch_threshold.fill_(float(np.asarray(threshold, dtype=np.float64)))
        return model

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the weights as float64 numpy arrays.

        Returns
        -------
        dict
            ``W_enc (d, K)``, ``b_enc (K,)``, ``W_dec (K, D)``, ``b_dec (D,)``; plus
            ``threshold`` of shape ``(K,)`` for ``jumprelu`` and shape ``()`` for
            ``batchtopk``.
        """
        out = {
            name: getattr(self, name).detach().cpu().to(torch.float64).numpy().copy()
            for name in ("W_enc", "b_enc", "W_dec", "b_dec")
        }
        if self.activation == "jumprelu":
            out["threshold"] = self.thresholds().detach().cpu().to(torch.float64).numpy().copy()
        elif self.activation == "batchtopk":
            out["threshold"] = np.asarray(float(self.batch_threshold), dtype=np.float64)
        return out

    # ------------------------------------------------------------------ the function
    def thresholds(self) -> torch.Tensor:
        """JumpReLU thresholds ``exp(log_threshold)``, shape ``(K,)``."""
        return self.log_threshold.exp()

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W_enc + b_enc``: shape ``(B, K)`` for ``x (B, d)``."""
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Codes from pre-activations, shape ``(B, K)`` (see the module docstring)."""
        if self.activation == "relu":
            return torch.relu(pre)
        if self.activation == "topk":
            top = pre.topk(self.k, dim=1)
            return torch.zeros_like(pre).scatter(1, top.indices, torch.relu(top.values))
        if self.activation == "jumprelu":
            return _JumpReLU.apply(pre, self.thresholds(), self.bandwidth)
        if self.training:
            batch = pre.shape[0]
            if dist.is_available() and dist.is_initialized():
                counts = torch.tensor([batch], device=pre.device)
                dist.all_reduce(counts)
                batch = int(counts.item())
            theta = _global_kth_largest(torch.relu(pre.detach()), self.k * batch)
            with torch.no_grad():
                old = self.batch_threshold
                new = torch.where(old < 0, theta, _BATCHTOPK_MOMENTUM * old
                                  + (1 - _BATCHTOPK_MOMENTUM) * theta)
                self.batch_threshold.copy_(new)
            keep = (pre >= theta) & (pre > 0)
        else:
            keep = pre > self.batch_threshold.clamp_min(0)
        return pre * keep.to(pre.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of shape ``(B, K)`` for ``x (B, d)``."""
        return self.activate(self.pre_activation(x))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes @ W_dec + b_dec``: shape ``(B, D)``."""
        return codes @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction ``(B, D)`` and codes ``(B, K)`` of ``x (B, d)``."""
        codes = self.encode(x)
        return self.decode(codes), codes

    def decoder_norms(self) -> torch.Tensor:
        """Penalty weights ``sum_l ||W_dec^(l)[k]||`` of shape ``(K,)`` (one term per
        target layer; ``||W_dec[k]||`` for an SAE or transcoder)."""
        if len(self.out_dims) == 1:
            return self.W_dec.norm(dim=1)
        blocks = torch.split(self.W_dec, self.out_dims, dim=1)
        return torch.stack([block.norm(dim=1) for block in blocks]).sum(dim=0)

    def anchor_distance(self, A_enc: torch.Tensor | None,
                        A_dec: torch.Tensor | None) -> torch.Tensor:
        """``||W_enc[:, :k] - A_enc||_F^2 + ||W_dec[:k] - A_dec||_F^2`` (a missing anchor
        contributes nothing).

        Parameters
        ----------
        A_enc : Tensor of shape (d, k) or None
        A_dec : Tensor of shape (k, D) or None

        Returns
        -------
        Tensor of shape ()
        """
        total = self.W_dec.new_zeros(())
        if A_enc is not None:
            total = total + ((self.W_enc[:, : A_enc.shape[1]] - A_enc) ** 2).sum()
        if A_dec is not None:
            total = total + ((self.W_dec[: A_dec.shape[0]] - A_dec) ** 2).sum()
        return total

    # ------------------------------------------------------------------ objectives
    def loss(self, x: torch.Tensor, lam: float,
             target: torch.Tensor | None = None) -> torch.Tensor:
        """The canonical objective with this module's codes, averaged over the batch.

        ``mean_n [1/2 ||y_n - yhat_n||^2 + lam * sum_k w_k z_nk]`` with ``y = x`` for an
        SAE and ``w`` = :meth:`decoder_norms`; for ``relu`` it equals
        ``convexdict.sae_loss`` / ``transcoder_loss`` / ``crosscoder_loss`` of the same
        weights.

        Parameters
        ----------
        x : Tensor of shape (B, d)
        lam : float
        target : Tensor of shape (B, D), optional
            The target layers concatenated; default ``x`` (an SAE).

        Returns
        -------
        Tensor of shape ()
        """
        recon, codes = self(x)
        resid = (x if target is None else target) - recon
        recon_n, penalty_n = per_sample_terms(resid, codes, self.decoder_norms(), lam)
        return (recon_n + penalty_n).mean()

    def train_loss(self, x: torch.Tensor, lam: float,
                   target: torch.Tensor | None = None) -> TrainOutput:
        """The objective this activation is trained on (module docstring), batch mean.

        Parameters
        ----------
        x : Tensor of shape (B, d)
        lam : float
            L1 weight (``relu``), L0 weight (``jumprelu``), ignored otherwise.
        target : Tensor of shape (B, D), optional
            Default ``x`` (an SAE).
        """
        pre = self.pre_activation(x)
        codes = self.activate(pre)
        recon = self.decode(codes)
        resid = (x if target is None else target) - recon
        per_sample, penalty = per_sample_terms(resid, codes, self.decoder_norms(), lam)
        if self.activation == "relu":
            per_sample = per_sample + penalty
        elif self.activation == "jumprelu" and lam != 0:
            l0 = _Step.apply(pre, self.thresholds(), self.bandwidth).sum(dim=1)
            per_sample = per_sample + lam * l0
        return TrainOutput(per_sample.mean(), recon, codes)
