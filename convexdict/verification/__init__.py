"""The independent exact verifier of certificate files (issue "Certificates anyone can check").

:func:`verify` reads a file written by :meth:`convexdict.Certificate.save` and re-checks
its claims on the data with exact arithmetic: the model's loss (upper bound), the exact
centring and feasibility of the dual point on every vertex of ``E0`` (lower bound), and the
gap. It shares the file format (:mod:`convexdict.convex.certificate_file`) with the finder and
nothing else: no pricing, solver or atom code.
"""

import numpy as np

from convexdict.verification._enumerate import exact_columns
from convexdict.verification._exact import dyadic
from convexdict.verification._result import Verification
from convexdict.verification._verify import CLAIM_RTOL, MAX_LOSS_TERMS, MAX_PREDICATES, verify


def exact_affine_rank(X: np.ndarray) -> int:
    """The exact affine dimension of the float64 points ``X (N, d)`` (integer elimination).

    Examples
    --------
    >>> import numpy as np
    >>> exact_affine_rank(np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 1.0]]))
    1
    """
    Xi, _ = dyadic(np.asarray(X, dtype=np.float64))
    return len(exact_columns(Xi))


__all__ = [
    "CLAIM_RTOL",
    "MAX_LOSS_TERMS",
    "MAX_PREDICATES",
    "Verification",
    "exact_affine_rank",
    "verify",
]
