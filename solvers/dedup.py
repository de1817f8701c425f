"""The one rule for duplicate atoms: equal after rounding to a fixed number of decimals.

Normalised activation vectors ``e`` (entries in ``[0, 1]``, summing to 1) that agree to
``DECIMALS`` decimals are the same atom for every purpose in convexdict: the master keeps
one column per atom, column generation adds only new ones. Keeping a duplicate would only
cost time; dropping a distinct atom is impossible at this resolution for float64 data
(``1e-12`` is far below any difference the pricing tolerance can see). The rule works on
numpy arrays and torch tensors alike; torch in float32 rounds to 6 decimals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DECIMALS = 12
_TORCH_DECIMALS = {"torch.float64": 12, "torch.float32": 6, "torch.float16": 3}


def first_unique_rows(A: Any, start: int = 0) -> Any:
    """Sorted indices ``>= start`` of the rows of ``A`` that are the first of their kind.

    Parameters
    ----------
    A : ndarray or tensor of shape (m, n)
    start : int
        Rows before ``start`` count as already kept (their duplicates are dropped) but their
        indices are not returned: e.g. the current active set followed by new atoms.

    Returns
    -------
    ndarray or tensor of int of shape (k,)
    """
    if isinstance(A, np.ndarray):
        if len(A) == 0:
            return np.zeros(0, dtype=np.intp)
        # Equal rounded rows have equal bytes (``+ 0.0`` maps -0.0 to 0.0): one hash per
        # row, O(m N), where np.unique(axis=0) sorts m rows of N fields (slow for large N).
        rounded = np.ascontiguousarray(np.round(A, DECIMALS) + 0.0)
        seen: dict[bytes, int] = {}
        for i, row in enumerate(rounded):
            seen.setdefault(row.tobytes(), i)
        first = np.fromiter(sorted(seen.values()), dtype=np.intp, count=len(seen))
        return first[first >= start]
    import torch

    if len(A) == 0:
        return torch.zeros(0, dtype=torch.long, device=A.device)
    rounded = torch.round(A, decimals=_TORCH_DECIMALS.get(str(A.dtype), 6))
    _, inverse = torch.unique(rounded, dim=0, return_inverse=True)
    idx = torch.arange(len(A), device=A.device)
    first = torch.full((int(inverse.max()) + 1,), len(A), dtype=torch.long, device=A.device)
    first = first.scatter_reduce(0, inverse, idx, reduce="amin")
    return idx[(first[inverse] == idx) & (idx >= start)]
