"""The inverse reduction: a solution of the group lasso (P) -> an explicit encoder and SAE.

THEORY section 3 (exactness): an atom ``e = relu([X, 1] u) / sum(relu([X, 1] u))`` is the
activation of a latent whose encoder column is the hyperplane ``u`` divided by that sum.
"""

from __future__ import annotations

import numpy as np

from convexdict.convex.atoms import AffineFrame
from convexdict.models.sae import SAE


def encoder_from_hyperplanes(
    X: np.ndarray, frame: AffineFrame, hyperplanes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Encoder ``(W_enc (d, K), b_enc (K,))`` whose latent ``k`` has activation ``e_k``.

    Lift each hyperplane ``u`` to the input space, ``s = sum(relu(Xt u))``,
    ``W_enc[:, k] = u[:d] / s``, ``b_enc[k] = u[d] / s`` (THEORY section 3, exactness).

    Parameters
    ----------
    X : ndarray of shape (N, d)
    frame : AffineFrame
        ``affine_frame(X)``.
    hyperplanes : ndarray of shape (K, r + 1)
        In the frame's reduced coordinates.
    """
    d = X.shape[1]
    k = len(hyperplanes)
    if k == 0:
        return np.zeros((d, 0)), np.zeros(0)
    if frame.rank == 0:
        U = np.zeros((k, d + 1))
        U[:, -1] = 1.0
    else:
        U = frame.lift(hyperplanes)
    s = np.maximum(X @ U[:, :d].T + U[:, d], 0.0).sum(axis=0)
    return (U[:, :d] / s[:, None]).T, U[:, d] / s


def sae_from_solution(
    X: np.ndarray, frame: AffineFrame, hyperplanes: np.ndarray, G: np.ndarray, b: np.ndarray
) -> SAE:
    """Map a solution of (P) back to an explicit SAE: encoder from the atoms'
    hyperplanes (:func:`encoder_from_hyperplanes`), ``W_dec[k] = g_k``, ``b_dec = b``.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    frame : AffineFrame
    hyperplanes : ndarray of shape (K, r + 1)
    G : ndarray of shape (K, d)
    b : ndarray of shape (d,)
    """
    if len(G) == 0:
        return SAE.zeros(b)
    W_enc, b_enc = encoder_from_hyperplanes(X, frame, hyperplanes)
    return SAE(W_enc, b_enc, G, b)
