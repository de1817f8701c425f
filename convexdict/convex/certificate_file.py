"""The certificate file: one self-contained ``.npz`` that anyone can check (CONTRACTS.md).

Schema ``convexdict-certificate/1``. Arrays (float64):

* the explicit model: ``W_enc (d, K)``, ``b_enc (K,)`` and ``W_dec (K, p)``, ``b_dec (p,)``
  for an SAE or a transcoder; ``W_dec_0, b_dec_0, W_dec_1, b_dec_1, ...`` (one pair per
  target layer) for a crosscoder; absent when the certificate has no model;
* ``R (N, p)``: the final dual point exactly as used for the lower bound (the verifier
  never rescales it);
* ``frame_origin (d,)`` and ``frame_basis (d, r)``: the finder's float affine frame
  (informational: the verifier recomputes the affine hull exactly);
* ``meta``: a 0-d byte array holding UTF-8 JSON with ``schema``, ``kind`` (``"sae"``,
  ``"transcoder"``, ``"crosscoder"``), ``lam``, ``tol``, ``upper_bound``, ``lower_bound``,
  ``certified``, ``data_sha256``, ``width``, ``width_needed``, ``n_samples``, ``d``,
  ``target_dims``, ``rank``, ``frame_scale``, ``has_model``, ``message``, ``version`` and
  ``fixed_width`` (``null``, or what a fixed-width claim rests on and which parts of it the
  verifier can re-check). Non-finite floats are written as the strings ``"inf"``,
  ``"-inf"``, ``"nan"``.

``data_sha256`` is the SHA-256 of, for ``X`` and then each target in order, the array's
shape written as text (``repr`` of the tuple of ints, e.g. ``"(200, 2)"``, UTF-8) followed
by its float64 C-order bytes (:func:`data_sha256`).

This module is shared by the finder (:meth:`convexdict.Certificate.save`) and the
independent verifier (:mod:`convexdict.verification`); it imports neither.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "convexdict-certificate/1"
KINDS = ("sae", "transcoder", "crosscoder")
_REQUIRED = ("schema", "kind", "lam", "tol", "upper_bound", "lower_bound", "data_sha256",
             "width", "target_dims", "has_model")


def data_sha256(X: np.ndarray, targets: Sequence[np.ndarray] = ()) -> str:
    """SHA-256 of the data a certificate is about.

    Parameters
    ----------
    X : ndarray of shape (N, d)
        The encoder's input.
    targets : sequence of ndarray of shape (N, p_l)
        ``[]`` for an SAE, ``[Y]`` for a transcoder, the layers for a crosscoder.

    Returns
    -------
    str
        Hex digest of ``repr(shape)`` (UTF-8) then the float64 C-order bytes, for ``X``
        and then each target.
    """
    h = hashlib.sha256()
    for A in (X, *targets):
        A = np.ascontiguousarray(np.asarray(A, dtype=np.float64))
        h.update(repr(tuple(int(s) for s in A.shape)).encode("utf-8"))
        h.update(A.tobytes(order="C"))
    return h.hexdigest()


def _json_float(value: float) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _read_float(meta: dict[str, Any], key: str) -> float:
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"meta field {key!r} must be a number. Got {value!r}.")
    try:
        return float(value)
    except ValueError as exc:
        raise ValueError(f"meta field {key!r} must be a number. Got {value!r}.") from exc


def _model_arrays(kind: str, model: Any) -> dict[str, np.ndarray]:
    arrays = {"W_enc": model.W_enc, "b_enc": model.b_enc}
    if kind == "crosscoder":
        for i, (W, b) in enumerate(zip(model.W_decs, model.b_decs, strict=True)):
            arrays[f"W_dec_{i}"], arrays[f"b_dec_{i}"] = W, b
    else:
        arrays["W_dec"], arrays["b_dec"] = model.W_dec, model.b_dec
    return {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}


def _fixed_width_meta(cert: Any) -> dict[str, Any] | None:
    if not (getattr(cert, "search", None) or {}).get("fixed_width"):
        return None
    search = {k: v for k, v in cert.search.items() if isinstance(v, (int, float, str, bool))}
    return {
        "claimed_lower_bound": _json_float(cert.lower_bound),
        "lower_bound_valid_for": f"every SAE of width <= {cert.width}",
        "checkable": ["upper_bound: the loss of the width-K SAE in this file",
                      "wide lower bound: the dual point R (valid at every width)"],
        "not_checkable": "the branch-and-bound tree (pruned nodes and their dual points) "
                         "is not stored: a lower_bound above the wide bound cannot be "
                         "re-checked from this file",
        "search": {k: _json_float(v) if isinstance(v, float) else v for k, v in search.items()},
    }


def certificate_payload(cert: Any) -> dict[str, np.ndarray]:
    """The arrays (``meta`` included) that :func:`save_certificate` writes.

    Parameters
    ----------
    cert : Certificate
        From :func:`convexdict.certify`; it must carry ``data_sha256`` and ``dual_point``.
    """
    digest = getattr(cert, "data_sha256", "")
    if not digest:
        raise ValueError(
            "The 'cert' parameter must carry the hash of its data (data_sha256). Got a "
            "certificate without one; re-run convexdict.certify to obtain a savable one."
        )
    R = np.asarray(getattr(cert, "dual_point", np.empty((0, 0))), dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != cert.n_samples:
        raise ValueError(
            f"The 'cert' parameter must carry its dual point of shape ({cert.n_samples}, p). "
            f"Got shape {R.shape}."
        )
    model = cert.sae
    arrays = _model_arrays(cert.kind, model) if model is not None else {}
    arrays["R"] = np.ascontiguousarray(R)
    frame = getattr(cert, "frame", None)
    if frame is not None:
        arrays["frame_origin"] = np.asarray(frame.origin, dtype=np.float64)
        arrays["frame_basis"] = np.asarray(frame.basis, dtype=np.float64)
    if model is None:
        dims = [R.shape[1]]  # a crosscoder's layer split is not known without its model
    elif cert.kind == "crosscoder":
        dims = [int(W.shape[1]) for W in model.W_decs]
    else:
        dims = [int(model.W_dec.shape[1])]
    from convexdict import __version__

    meta = {
        "schema": SCHEMA,
        "kind": cert.kind,
        "lam": float(cert.lam),
        "tol": float(cert.tol),
        "upper_bound": _json_float(cert.upper_bound),
        "lower_bound": _json_float(cert.lower_bound),
        "certified": bool(cert.certified),
        "data_sha256": digest,
        "width": int(model.W_enc.shape[1]) if model is not None else cert.width,
        "width_needed": int(cert.width_needed),
        "n_samples": int(cert.n_samples),
        "d": int(cert.d),
        "target_dims": dims,
        "rank": int(cert.rank),
        "frame_scale": float(frame.scale) if frame is not None else None,
        "has_model": model is not None,
        "message": str(cert.message),
        "version": __version__,
        "fixed_width": _fixed_width_meta(cert),
    }
    arrays["meta"] = np.array(json.dumps(meta, allow_nan=False).encode("utf-8"))
    return arrays


def save_certificate(cert: Any, path: str | os.PathLike) -> Path:
    """Write ``cert`` to ``path`` as one ``.npz`` certificate file, atomically.

    Parameters
    ----------
    cert : Certificate
    path : str or PathLike
        Written exactly as given (no suffix is added); its folder must exist.

    Returns
    -------
    Path
    """
    from convexdict_solvers.atomic import atomic_write

    arrays = certificate_payload(cert)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, write)


@dataclass(frozen=True)
class CertificateFile:
    """A loaded certificate file: the decoded ``meta`` and the arrays.

    Attributes
    ----------
    meta : dict
    arrays : dict of str to ndarray
    """

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    def number(self, key: str) -> float:
        """A numeric meta field (``"inf"`` strings decoded)."""
        return _read_float(self.meta, key)

    def decoders(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(W_dec (K, p_l), b_dec (p_l,)), ...]``: one pair per target layer."""
        if self.kind != "crosscoder":
            return [(self.arrays["W_dec"], self.arrays["b_dec"])]
        n = len(self.meta["target_dims"])
        return [(self.arrays[f"W_dec_{i}"], self.arrays[f"b_dec_{i}"]) for i in range(n)]


def _model_names(kind: str, n_layers: int) -> list[str]:
    if kind == "crosscoder":
        return ["W_enc", "b_enc"] + [f"{w}_{i}" for i in range(n_layers) for w in ("W_dec",
                                                                                   "b_dec")]
    return ["W_enc", "b_enc", "W_dec", "b_dec"]


def _check_meta(meta: Any, where: str) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: meta must be a JSON object. Got {type(meta).__name__}.")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"{where}: meta lacks the field(s) {missing}.")
    if meta["schema"] != SCHEMA:
        raise ValueError(f"{where}: schema must be {SCHEMA!r}. Got {meta['schema']!r}.")
    if meta["kind"] not in KINDS:
        raise ValueError(f"{where}: kind must be one of {KINDS}. Got {meta['kind']!r}.")
    dims = meta["target_dims"]
    if not isinstance(dims, list) or not dims or not all(isinstance(p, int) for p in dims):
        raise ValueError(f"{where}: target_dims must be a non-empty list of ints. Got {dims!r}.")
    for key in ("lam", "tol", "upper_bound", "lower_bound"):
        _read_float(meta, key)
    return meta


def load_certificate(path: str | os.PathLike) -> CertificateFile:
    """Read and validate a certificate file (no verification).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a certificate file of schema ``convexdict-certificate/1``.
    """
    where = f"The certificate file {str(path)!r}"
    if not Path(path).exists():
        raise FileNotFoundError(f"{where} does not exist.")
    if Path(path).is_dir():
        raise ValueError(f"{where} is a directory; expected a .npz file.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{where} is not a readable .npz archive ({type(exc).__name__}).") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{where} holds a single array, not a .npz certificate archive.")
    try:
        with loaded as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{where} is not a readable .npz archive ({type(exc).__name__}).") from exc
    if "meta" not in arrays:
        raise ValueError(f"{where} has no 'meta' entry; expected a {SCHEMA} file.")
    raw = arrays.pop("meta")
    try:
        text = raw.item()
        meta = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{where}: meta is not UTF-8 JSON ({exc}).") from exc
    meta = _check_meta(meta, where)
    names = ["R"]
    if meta["has_model"]:
        names += _model_names(meta["kind"], len(meta["target_dims"]))
    for name in names:
        if name not in arrays:
            raise ValueError(f"{where} lacks the array {name!r}.")
        if arrays[name].dtype != np.float64:
            raise ValueError(
                f"{where}: array {name!r} must be float64. Got {arrays[name].dtype}."
            )
    return CertificateFile(meta, arrays)
