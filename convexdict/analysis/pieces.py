"""Paper B's piecewise biconvexity: the two convex blocks on a fixed pattern (THEORY section 6).

Fix the activation pattern ``S = (X @ W_enc + b_enc > 0)`` of shape ``(N, K)``. On that
piece the canonical loss

    L = (1/N) [ 1/2 ||X - Z W_dec - 1 b_dec^T||_F^2 + lam sum_k ||W_dec[k]|| sum_n Z[n, k] ]

is convex in each block with the other fixed:

* **decoder block** (:func:`decoder_step`): codes ``Z`` fixed, an SOCP in ``(W_dec, b_dec)``
  (least squares plus row norms weighted by ``c_k = sum_n Z[n, k]``);
* **encoder block** (:func:`encoder_step`): decoder fixed, ``Z = S * (X W_enc + 1 b_enc^T)``
  is linear in ``(W_enc, b_enc)`` and the loss is a convex QP under the pattern's linear
  inequalities ``X W_enc + b_enc >= 0`` on ``S`` and ``<= 0`` off ``S``. The penalty
  ``lam ||W_dec[k]|| Z[n, k]`` is linear in ``Z`` there.

A point where neither block improves is a *partial minimum*
(:func:`partial_minimum_test`); :func:`polish` alternates the blocks until one is reached.

Scale invariance: both steps first rescale every latent to a unit decoder row
(:meth:`SAE.normalized`, the same function and loss), which keeps the programs well
conditioned. Latents whose pattern column is empty (dead) and, in the encoder block,
latents with an all-zero decoder row do not change the loss; they are left as they are.

Solver: Clarabel, then SCS as the fallback (the settings of
:data:`convexdict_solvers.group_lasso.cvxpy_solve.SOLVERS`). Every returned SAE's loss is recomputed
with
:func:`convexdict.sae_loss` in float64 and a step that does not lower it returns the input
SAE unchanged, so no step ever increases the loss.
"""

from __future__ import annotations

from typing import NamedTuple

import cvxpy as cp
import numpy as np
from convexdict_solvers.group_lasso.cvxpy_solve import SOLVERS, SolverFailure, solve_with_fallback

from convexdict._validation import check_choice, check_int, check_matrix, check_positive
from convexdict.models.sae import SAE, sae_loss

# Decoder rows this much smaller than the largest (unit-scale) row are set to exactly zero:
# rescaling such a row to unit norm would blow its encoder weights down to rounding level.
ZERO_ROW_RTOL = 1e-9
# polish() streams the data (convexdict.analysis.blocks) above this many activations N * K.
STREAMED_ENTRIES = 200_000


class PieceSolveError(RuntimeError):
    """Every solver failed on a block program."""


class BlockStep(NamedTuple):
    """The result of one block step.

    Attributes
    ----------
    sae : SAE
        The improved SAE (the input SAE itself when nothing improved).
    improvement : float
        ``L(input) - L(sae) >= 0`` (canonical loss, float64).
    """

    sae: SAE
    improvement: float


def activation_pattern(sae: SAE, X: np.ndarray) -> np.ndarray:
    """The pattern ``S = X @ W_enc + b_enc > 0``: boolean array of shape ``(N, K)``."""
    X = check_matrix("X", X, n_cols=sae.d_in)
    return X @ sae.W_enc + sae.b_enc > 0


def _solve(problem: cp.Problem, solver: str) -> None:
    """Solve with ``solver``, then the other installed solvers; raise if all fail."""
    try:
        solve_with_fallback(problem, solver)  # "inaccurate" is fine: every step is re-scored
    except SolverFailure as exc:
        raise PieceSolveError(str(exc)) from exc


def _keep_better(old: SAE, new: SAE, X: np.ndarray, lam: float, old_loss: float) -> BlockStep:
    new_loss = sae_loss(new, X, lam)
    if new_loss < old_loss:
        return BlockStep(new, old_loss - new_loss)
    return BlockStep(old, 0.0)


def _check(sae: SAE, X: np.ndarray, lam: float, solver: str) -> tuple[np.ndarray, float]:
    if not isinstance(sae, SAE):
        raise ValueError(f"The 'sae' parameter must be a convexdict.SAE. Got {type(sae).__name__}.")
    X = check_matrix("X", X, n_cols=sae.d_in)
    lam = check_positive("lam", lam)
    check_choice("solver", solver, tuple(SOLVERS))
    return X, lam


def decoder_step(sae: SAE, X: np.ndarray, lam: float, *, solver: str = "clarabel") -> BlockStep:
    """Minimise the loss over ``(W_dec, b_dec)`` with the codes ``Z = sae.encode(X)`` fixed.

    The SOCP ``min (1/N)[1/2 ||X - Z W - 1 b^T||^2 + lam sum_k c_k ||W[k]||]`` with
    ``c_k = sum_n Z[n, k]``; rows of dead latents (``c_k = 0``) are kept as they are, and
    solved rows below ``ZERO_ROW_RTOL`` times the largest are set to exactly zero.

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    lam : float
        Penalty weight (> 0).
    solver : {"clarabel", "scs"}
        First solver to try (the other is the fallback).

    Returns
    -------
    BlockStep
        ``(sae, improvement)``.

    Raises
    ------
    PieceSolveError
        If every solver fails.
    """
    X, lam = _check(sae, X, lam, solver)
    loss0 = sae_loss(sae, X, lam)
    base = sae.normalized()
    n, d = X.shape
    Z = base.encode(X)
    live = Z.sum(axis=0) > 0
    W = cp.Variable((int(live.sum()), d), name="W_dec")
    b = cp.Variable(d, name="b_dec")
    fit = X - np.ones((n, 1)) @ cp.reshape(b, (1, d), order="C")
    penalty = 0.0
    if live.any():
        fit = fit - Z[:, live] @ W
        penalty = Z[:, live].sum(axis=0) @ cp.norm(W, 2, axis=1)
    problem = cp.Problem(cp.Minimize((0.5 * cp.sum_squares(fit) + lam * penalty) / n))
    _solve(problem, solver)
    W_dec = np.array(base.W_dec)
    if live.any():
        W_new = np.asarray(W.value, dtype=np.float64)
        norms = np.linalg.norm(W_new, axis=1)
        W_new[norms <= ZERO_ROW_RTOL * max(1.0, norms.max())] = 0.0  # solver noise, not atoms
        W_dec[live] = W_new
    candidate = SAE(base.W_enc, base.b_enc, W_dec, np.asarray(b.value))
    return _keep_better(sae, candidate, X, lam, loss0)


def encoder_step(sae: SAE, X: np.ndarray, lam: float, *, solver: str = "clarabel") -> BlockStep:
    """Minimise the loss over ``(W_enc, b_enc)`` on the current piece, decoder fixed.

    With ``P = X W_enc + 1 b_enc^T`` and the current pattern ``S``, the codes are
    ``Z = S * P`` (linear) under ``P >= 0`` on ``S`` and ``P <= 0`` off ``S``; the
    objective ``(1/N)[1/2 ||X - Z W_dec - 1 b_dec^T||^2 + lam sum_nk ||W_dec[k]|| Z[n,k]]``
    is a convex QP. Only latents that fire somewhere and have a nonzero decoder row are
    free; the others cannot change the loss and are left as they are.

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    lam : float
    solver : {"clarabel", "scs"}

    Returns
    -------
    BlockStep
        ``(sae, improvement)``.

    Raises
    ------
    PieceSolveError
        If every solver fails.
    """
    X, lam = _check(sae, X, lam, solver)
    loss0 = sae_loss(sae, X, lam)
    base = sae.normalized()
    n, d = X.shape
    S = activation_pattern(base, X)
    norms = base.decoder_norms()
    free = S.any(axis=0) & (norms > 0)
    if not free.any():
        return BlockStep(sae, 0.0)
    kf = int(free.sum())
    Z = base.encode(X)
    U = cp.Variable((d, kf), name="W_enc")
    c = cp.Variable(kf, name="b_enc")
    P = X @ U + np.ones((n, 1)) @ cp.reshape(c, (1, kf), order="C")
    Sf = S[:, free].astype(np.float64)
    Zf = cp.multiply(Sf, P)
    fixed = X - Z[:, ~free] @ base.W_dec[~free] - base.b_dec
    fit = fixed - Zf @ base.W_dec[free]
    penalty = cp.sum(Zf @ norms[free])
    constraints = [cp.multiply(2.0 * Sf - 1.0, P) >= 0]
    problem = cp.Problem(cp.Minimize((0.5 * cp.sum_squares(fit) + lam * penalty) / n), constraints)
    _solve(problem, solver)
    W_enc = np.array(base.W_enc)
    b_enc = np.array(base.b_enc)
    W_enc[:, free] = U.value
    b_enc[free] = c.value
    candidate = SAE(W_enc, b_enc, base.W_dec, base.b_dec)
    return _keep_better(sae, candidate, X, lam, loss0)


def block_improvements(
    sae: SAE, X: np.ndarray, lam: float, *, solver: str = "clarabel"
) -> tuple[float, float]:
    """How much each block alone lowers the loss from ``sae``: ``(decoder, encoder)``.

    Both are absolute decreases of the canonical loss (``>= 0``), each computed from
    ``sae`` itself (not one after the other).
    """
    return (
        decoder_step(sae, X, lam, solver=solver).improvement,
        encoder_step(sae, X, lam, solver=solver).improvement,
    )


def partial_minimum_test(
    sae: SAE, X: np.ndarray, lam: float, tol: float = 1e-6, *, solver: str = "clarabel"
) -> tuple[bool, bool]:
    """Paper B's per-piece test: can either convex block still improve the loss?

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    lam : float
    tol : float
        A block *improves* when it lowers the loss by more than ``tol * L`` (the relative rule
        of :func:`~convexdict.within_tol`).

    Returns
    -------
    (improve_dec, improve_enc) : tuple of bool
        Both False means ``sae`` is a partial minimum to within ``tol``.
    """
    tol = check_positive("tol", tol)
    dec, enc = block_improvements(sae, X, lam, solver=solver)
    scale = tol * sae_loss(sae, X, lam)
    return dec > scale, enc > scale


def polish(
    sae: SAE,
    X: np.ndarray,
    lam: float,
    *,
    max_iter: int = 50,
    tol: float = 1e-9,
    solver: str = "clarabel",
    streamed: bool | None = None,
    **options,
) -> SAE:
    """Alternate the decoder and encoder blocks until a partial minimum (block coordinate descent).

    Beyond toy sizes (more than ``STREAMED_ENTRIES`` activations ``N K``, or ``X`` a
    memory-mapped ``.npy`` or a path to one), or with ``streamed=True``, the blocks run on
    data streamed in chunks on a torch device
    (:func:`convexdict.analysis.blocks.polish_at_scale`, ``max_iter`` rounds; ``**options`` are
    its ``device``, ``dtype``, ``batch_size``, ``encoder_iters``, ...).

    Each round re-reads the pattern from the current weights, takes the decoder step and
    then the encoder step; it stops when a round lowers the loss by at most
    ``tol * L`` or after ``max_iter`` rounds. The loss never increases (each step
    is kept only if its recomputed loss is lower).

    Parameters
    ----------
    sae : SAE
    X : ndarray of shape (N, d)
    lam : float
    max_iter : int
        Maximum number of rounds (``>= 1``).
    tol : float
        Relative stopping tolerance.
    solver : {"clarabel", "scs"}

    Returns
    -------
    SAE
        Same width; ``sae_loss(result) <= sae_loss(sae)``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.1], [0.9, -0.1], [0.0, 1.0], [0.1, 1.1]])
    >>> sae = SAE(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> bool(sae_loss(polish(sae, X, 0.1), X, 0.1) <= sae_loss(sae, X, 0.1))
    True
    """
    if streamed is None:
        streamed = not isinstance(X, np.ndarray) or isinstance(X, np.memmap) or (
            X.ndim == 2 and X.shape[0] * getattr(sae, "width", 0) > STREAMED_ENTRIES)
    if streamed:
        from convexdict.analysis.blocks import polish_at_scale

        return polish_at_scale(sae, X, lam, rounds=max_iter, tol=max(tol, 1e-12),
                               **options).sae
    if options:
        raise ValueError(f"Unexpected keyword arguments {sorted(options)}: they apply only to "
                         "the streamed path (streamed=True).")
    X, lam = _check(sae, X, lam, solver)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    tol = check_positive("tol", tol)
    current = sae
    for _ in range(max_iter):
        loss = sae_loss(current, X, lam)
        current, dec = decoder_step(current, X, lam, solver=solver)
        current, enc = encoder_step(current, X, lam, solver=solver)
        if dec + enc <= tol * loss:
            break
    return current
