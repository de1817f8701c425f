"""Merge interchangeable latents: the same function and loss with fewer latents.

Two latents ``i, j`` whose decoder rows point the same way and whose pre-activations never
have strictly opposite signs on the data can be replaced by one latent with pre-activation
``u = w_i u_i + w_j u_j`` (``w`` the decoder-row norms, rows made unit) and decoder row the
common unit direction: on every sample ``relu(u_i . x) w_i + relu(u_j . x) w_j =
relu(u . x)``, so reconstruction and penalty are unchanged. Solutions of (P) often spread
one optimal latent over several vertices of its pattern polytope; merging recovers the
smaller width. Callers recompute the loss of the merged model and keep it only if it
does not rise beyond their tolerance.
"""

from __future__ import annotations

import numpy as np

DIRECTION_ATOL = 1e-9
SIGN_RTOL = 1e-12


def merge_parallel_latents(
    W_enc: np.ndarray, b_enc: np.ndarray, W_dec: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedily merge sign-compatible latents with parallel decoder rows.

    Parameters
    ----------
    W_enc : ndarray of shape (d, K)
    b_enc : ndarray of shape (K,)
    W_dec : ndarray of shape (K, p)
        Decoder rows (all nonzero).
    X : ndarray of shape (N, d)
        Data on which the function must be preserved.

    Returns
    -------
    W_enc, b_enc, W_dec
        Of widths ``K' <= K``.
    """
    norms = np.linalg.norm(W_dec, axis=1)
    if W_dec.shape[0] < 2 or np.any(norms == 0):
        return W_enc, b_enc, W_dec
    unit = W_dec / norms[:, None]
    # Absorb the decoder norm into the encoder: latent k = relu(x . u_k) * unit_k.
    U = np.vstack([W_enc * norms, b_enc * norms])  # (d + 1, K)
    Xt = np.hstack([X, np.ones((len(X), 1))])
    pre = Xt @ U  # (N, K)
    scale = SIGN_RTOL * np.maximum(np.abs(pre).max(axis=0), 1e-300)
    sign = np.where(pre > scale, 1, np.where(pre < -scale, -1, 0))
    alive = list(range(U.shape[1]))
    merged = True
    while merged:
        merged = False
        for a in range(len(alive)):
            for c in range(a + 1, len(alive)):
                i, j = alive[a], alive[c]
                if np.abs(unit[i] - unit[j]).max() > DIRECTION_ATOL:
                    continue
                if np.any(sign[:, i] * sign[:, j] < 0):
                    continue
                U[:, i] += U[:, j]
                pre[:, i] = Xt @ U[:, i]
                tol_i = SIGN_RTOL * max(float(np.abs(pre[:, i]).max()), 1e-300)
                sign[:, i] = np.where(pre[:, i] > tol_i, 1, np.where(pre[:, i] < -tol_i, -1, 0))
                alive.pop(c)
                merged = True
                break
            if merged:
                break
    U = U[:, alive]
    return U[:-1], U[-1], unit[alive]
