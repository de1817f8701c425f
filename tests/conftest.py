import os

# Small dense linear algebra is far faster single-threaded than with two BLAS threads per
# xdist worker on a 2-core machine; set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
import pytest


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch intra-op thread for a module (``pytest -n 2`` on two cores: more threads
    would only contend)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def tolerance(dtype=np.float64) -> float:
    """One tolerance per dtype (float64 vs float32 comparisons)."""
    return {np.float64: 1e-9, np.float32: 1e-4}[np.dtype(dtype).type]


def random_sae(rng, d, width, scale=1.0):
    from convexdict import SAE

    return SAE(
        rng.normal(size=(d, width)) * scale,
        rng.normal(size=width) * scale,
        rng.normal(size=(width, d)) * scale,
        rng.normal(size=d),
    )


@pytest.fixture(autouse=True)
def _verify_every_certificate(monkeypatch):
    """With CONVEXDICT_VERIFY_CERTIFICATES=1, every ``cd.certify`` call is checked by the
    independent exact verifier (``tests/_verify_all.py``); off by default (CI budget)."""
    if os.environ.get("CONVEXDICT_VERIFY_CERTIFICATES") == "1":
        from _verify_all import audited

        import convexdict

        monkeypatch.setattr(convexdict, "certify", audited(convexdict.certify))
    yield
