"""The certified regularisation path: certificates along a decreasing ``lam`` grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from convexdict_solvers.progress import Display

from convexdict._validation import check_matrix, check_positive
from convexdict.convex._certify import Certificate, certify


def certify_path(
    X: np.ndarray, lams: Sequence[float], *, progress: bool = False, **certify_kwargs
) -> list[Certificate]:
    """Certify the optimum at every ``lam`` of a grid, warm-starting along the path.

    The grid is processed from the largest ``lam`` down (where optima have few atoms);
    each solve starts column generation from the previous optimum's active atoms. Every
    certificate is verified independently (its own explicit SAE, its own exact pricing),
    so warm starting changes speed, never soundness.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    lams : sequence of float
        Penalties (> 0), any order.
    progress : bool
        Show a progress bar over the grid.
    **certify_kwargs
        Passed to :func:`convexdict.certify` (``method`` defaults to ``"colgen"``,
        ``atoms_per_round`` to 25).

    Returns
    -------
    list of Certificate
        In the order of ``lams``. Together they trace the exact optimal trade-off between
        reconstruction error and penalty (``cert.sae`` gives both parts, its L0 and ``K*``).
    """
    X = check_matrix("X", X)
    if isinstance(lams, (str, bytes)) or not isinstance(lams, (Sequence, np.ndarray)) \
            or np.ndim(lams) != 1:
        hint = " (for one penalty pass [lam], or use convexdict.certify(X, lam))" \
            if isinstance(lams, (int, float, np.number)) else ""
        raise ValueError(
            f"The 'lams' parameter must be a list or 1-D array of penalties > 0{hint}. Got "
            f"{type(lams).__name__} {str(lams)[:60]}."
        )
    values = [check_positive(f"lams[{i}]", lam) for i, lam in enumerate(lams)]
    if not values:
        raise ValueError("The 'lams' parameter must hold at least one penalty. Got none.")
    certify_kwargs.setdefault("method", "colgen")
    # Warm-started masters start larger; adding fewer atoms per round keeps them small.
    certify_kwargs.setdefault("atoms_per_round", 25)
    order = np.argsort(values)[::-1]
    results: dict[int, Certificate] = {}
    previous: Certificate | None = None
    with Display("regularisation path", len(values), enabled=progress) as display:
        for i in order:
            cert = certify(X, values[i], warm_start=previous, **certify_kwargs)
            results[int(i)] = cert
            previous = cert
            display.update(advance=1)
    return [results[i] for i in range(len(values))]
