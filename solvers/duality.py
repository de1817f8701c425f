"""The one dual scaling: the best dual-feasible point on the ray of a residual.

For a centred residual ``R`` with ``a = <R, T>`` and ``q = ||R||^2``, the point ``t R`` is
dual feasible for ``0 <= t <= t_max`` (``t_max = lam / max_e ||R^T e||`` after exact or
conservative pricing), and its dual value is ``(t a - t^2 q / 2) / N`` (THEORY section 4).
Every lower bound of convexdict (certificates, batched relaxations, screening, the joint
bound, streamed bounds) takes the best ``t`` with this function.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def best_on_ray(a: Any, q: Any, t_max: Any) -> tuple[np.ndarray, np.ndarray]:
    """``max_{0 <= t <= t_max} (t a - t^2 q / 2)`` and its maximiser ``t``, elementwise.

    Parameters
    ----------
    a, q : float or ndarray
        ``<R, T>`` and ``||R||^2`` (broadcast against each other and ``t_max``).
    t_max : float or ndarray
        Largest dual-feasible scale (``inf`` allowed).

    Returns
    -------
    value, t : ndarray
        ``0`` where ``q <= 0`` or ``a <= 0`` (the zero point is then best). Not divided by
        ``N``.

    Examples
    --------
    >>> best_on_ray(2.0, 1.0, 10.0)
    (array(2.), array(2.))
    >>> best_on_ray(2.0, 1.0, 1.0)
    (array(1.5), array(1.))
    """
    a, q, t_max = (np.asarray(v, dtype=np.float64) for v in (a, q, t_max))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where((q > 0) & (a > 0), a / np.where(q > 0, q, 1.0), 0.0)
    t = np.minimum(t, t_max)
    return t * a - 0.5 * t * t * q, t


def feasible_scale(lam: float, price: Any) -> np.ndarray:
    """``t_max = lam / price`` (``inf`` where ``price <= 0``), elementwise."""
    price = np.asarray(price, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(price > 0, lam / np.where(price > 0, price, 1.0), np.inf)
