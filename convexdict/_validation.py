"""Argument checks that produce messages naming the argument, the expectation and the value."""

from __future__ import annotations

from typing import Any

import numpy as np


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def check_matrix(
    name: str, value: Any, *, n_cols: int | None = None, min_rows: int = 1
) -> np.ndarray:
    """Return ``value`` as a finite float64 array of shape ``(n, n_cols)``.

    Raises
    ------
    ValueError
        If ``value`` is not two-dimensional, has the wrong number of columns, too few
        rows, or contains NaN or infinity.
    """
    if np.iscomplexobj(value):
        raise ValueError(
            f"The '{name}' parameter must be a real-valued 2-D array. Got a complex array; "
            "pass its real part (or stack real and imaginary parts as columns) explicitly."
        )
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"The '{name}' parameter must be a numeric 2-D array. Got {_describe(value)}."
        ) from exc
    if arr.ndim != 2:
        raise ValueError(
            f"The '{name}' parameter must be a 2-D array of shape (n_samples, n_features). "
            f"Got an array with shape {arr.shape}."
        )
    if n_cols is not None and arr.shape[1] != n_cols:
        raise ValueError(
            f"The '{name}' parameter must have {n_cols} columns. Got shape {arr.shape}."
        )
    if arr.shape[0] < min_rows:
        raise ValueError(
            f"The '{name}' parameter must have at least {min_rows} row(s). Got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"The '{name}' parameter must contain only finite values. Got {bad} NaN or "
            "infinite entries."
        )
    return arr


def check_vector(name: str, value: Any, *, length: int) -> np.ndarray:
    """Return ``value`` as a finite float64 vector of shape ``(length,)``."""
    if np.iscomplexobj(value):
        raise ValueError(f"The '{name}' parameter must be real-valued. Got a complex array.")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"The '{name}' parameter must be a numeric 1-D array. Got {_describe(value)}."
        ) from exc
    if arr.shape != (length,):
        raise ValueError(
            f"The '{name}' parameter must have shape ({length},). Got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"The '{name}' parameter must contain only finite values.")
    return arr


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float that is > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool):
        raise ValueError(f"The '{name}' parameter must be a number. Got {value!r}.")
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"The '{name}' parameter must be a number. Got {_describe(value)}."
        ) from exc
    ok = out >= 0 if allow_zero else out > 0
    if not (np.isfinite(out) and ok):
        interval = "[0, inf)" if allow_zero else "(0, inf)"
        raise ValueError(
            f"The '{name}' parameter must be a float in the range {interval}. "
            f"Got {value!r} instead."
        )
    return out


def check_int(name: str, value: Any, *, minimum: int = 0) -> int:
    """Return ``value`` as an int that is at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"The '{name}' parameter must be an integer. Got {_describe(value)}.")
    if value < minimum:
        raise ValueError(
            f"The '{name}' parameter must be an integer >= {minimum}. Got {value!r} instead."
        )
    return int(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(
            f"The '{name}' parameter must be one of {', '.join(map(repr, choices))}. "
            f"Got {value!r} instead."
        )
    return value
