"""The independent exact verifier of certificate files (issue "Certificates anyone can check").

:func:`verify` reads a file written by :meth:`convexdict.Certificate.save` and re-checks
its claims on the data with exact arithmetic: the model's loss (upper bound), the exact
centring and feasibility of the dual point on every vertex of ``E0`` (lower bound), and the
gap. It shares the file format (:mod:`convexdict.certificate_file`) with the finder and
nothing else: no pricing, solver or atom code.
"""

from ._result import Verification
from ._verify import CLAIM_RTOL, MAX_LOSS_TERMS, MAX_PREDICATES, verify

__all__ = ["CLAIM_RTOL", "MAX_LOSS_TERMS", "MAX_PREDICATES", "Verification", "verify"]
