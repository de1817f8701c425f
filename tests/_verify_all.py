"""Opt-in audit: every ``cd.certify`` call of the test suite checked by the exact verifier.

Run any test files with ``CONVEXDICT_VERIFY_CERTIFICATES=1`` (``tests/conftest.py``
installs :func:`audited` around ``convexdict.certify``). Each certificate with a model is
saved and verified, exactly and in float64, when ``C(N, d) N`` is at most ``CAP``; above
the cap the verifier must answer ``out_of_reach``. A failure means the finder claimed
something the independent verifier cannot confirm, or the two verdicts disagree.
"""

from __future__ import annotations

import functools
import tempfile
from math import comb
from pathlib import Path

CAP = 3_000_000


def _layers(kwargs):
    if kwargs.get("target") is not None:
        return {"target": kwargs["target"]}
    if kwargs.get("targets") is not None:
        return {"targets": kwargs["targets"]}
    return {}


def check(cert, X, kwargs) -> None:
    """Save ``cert`` and assert the verifier agrees with it (see the module docstring)."""
    import numpy as np

    from convexdict.verification import verify

    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cert.npz"
        cert.save(path)
        if comb(n, min(d, n)) * n > CAP:
            result = verify(path, X, max_predicates=CAP, **_layers(kwargs))
            assert result.status in ("out_of_reach", "refuted"), result.reason
            assert "data_sha256" not in result.reason
            return
        exact = verify(path, X, **_layers(kwargs))
        loose = verify(path, X, exact=False, **_layers(kwargs))
    assert exact.status == loose.status, (exact.reason, loose.reason)
    if cert.certified:
        assert exact.status != "refuted", exact.reason


def audited(certify):
    """``certify`` followed by :func:`check` on its result."""

    @functools.wraps(certify)
    def wrapper(X, *args, **kwargs):
        cert = certify(X, *args, **kwargs)
        check(cert, X, kwargs)
        return cert

    return wrapper
