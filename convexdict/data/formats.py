"""Reading and writing SAE files, and converting other libraries' losses (THEORY section 1).

Every reader returns a :class:`~convexdict.models.sae.SAE` in the canonical form
``Z = relu(X @ W_enc + b_enc)``, ``Xhat = Z @ W_dec + b_dec`` (float64), folding each
library's conventions into the weights:

- ``"saelens"``: ``cfg.json`` + ``sae_weights.safetensors``; folds
  ``apply_b_dec_to_input`` (required in ``cfg.json``), ``finetuning_scaling_factor`` and
  (given the constant) ``normalize_activations: "expected_average_only_in"``. Keys with a
  documented default are listed in :data:`SAELENS_DEFAULTS` (see :func:`load_sae`).
- ``"dictionary_learning"``: ``ae.pt``, a ``state_dict``; folds the encoder input
  ``x - bias``.
- ``"sparsify"``: ``cfg.json`` + ``sae.safetensors``; folds the encoder input ``x - b_dec``.
- ``"npz"``: ``*.npz`` holding ``W_enc, b_enc, W_dec, b_dec`` as they are.

Folding a pre-encoder bias uses ``relu((x - c) @ W + b) = relu(x @ W + (b - c @ W))``.
TopK files (sparsify, SAELens ``"topk"``) load as the ReLU SAE of their pre-TopK codes and
are reported as not certifiable: (P) certifies the L1 objective only (THEORY section 6).

Writers are in :mod:`convexdict.data.writers`, loss conversions in
:mod:`convexdict.data.loss_units`.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from convexdict._validation import check_positive

SAELENS_CFG = "cfg.json"
# cfg.json keys that change the loaded function and have no safe default: missing is an error.
SAELENS_REQUIRED = {
    "apply_b_dec_to_input": "whether b_dec is subtracted from the input changes every code",
}
# cfg.json keys with a documented default (SAELens' own, used for configs written before the
# key existed); each default that is used is reported in the load notes.
SAELENS_DEFAULTS = {
    "architecture": ("standard", "SAELens' default; configs before 3.x were all standard"),
    "activation_fn_str": ("relu", "SAELens' default activation of the standard architecture"),
    "normalize_activations": ("none", "SAELens' default; older configs did not normalise"),
}
SAELENS_WEIGHTS = "sae_weights.safetensors"
SPARSIFY_CFG = "cfg.json"
SPARSIFY_WEIGHTS = "sae.safetensors"
DICTIONARY_LEARNING_WEIGHTS = "ae.pt"
FORMATS = ("saelens", "dictionary_learning", "sparsify", "npz")
LOSS_SOURCES = ("saelens", "dictionary_learning", "sparsify")
SAVE_DTYPES = ("float32", "float64")


# --------------------------------------------------------------------------- helpers


class SAEArrays(NamedTuple):
    """An SAE's weights as plain float64 arrays (SAELens orientation)."""

    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    b_dec: np.ndarray


def _fail(path: Path, expected: str, found: str) -> ValueError:
    return ValueError(f"Cannot read an SAE from '{path}': expected {expected}; found {found}.")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, "a JSON config file", f"unreadable content ({exc})") from exc
    if not isinstance(cfg, dict):
        raise _fail(path, "a JSON object", f"a JSON {type(cfg).__name__}")
    return cfg


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"SAE weights file '{path}' does not exist.")
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise _fail(path, "a safetensors file", f"unreadable content ({exc})") from exc
    return {k: v.detach().to("cpu").double().numpy() for k, v in tensors.items()}


def _take(
    tensors: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...], path: Path
) -> np.ndarray:
    """Return ``tensors[key]`` as finite float64 of the given shape, or raise naming both."""
    if key not in tensors:
        raise _fail(path, f"a tensor named '{key}'", f"keys {sorted(tensors)}")
    arr = np.asarray(tensors[key], dtype=np.float64)
    if arr.shape != shape:
        raise _fail(path, f"'{key}' of shape {shape}", f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise _fail(path, f"finite values in '{key}'", "NaN or infinite entries")
    return arr


def _matrix_shape(tensors: Mapping[str, np.ndarray], key: str, path: Path) -> tuple[int, int]:
    if key not in tensors:
        raise _fail(path, f"a tensor named '{key}'", f"keys {sorted(tensors)}")
    shape = np.shape(tensors[key])
    if len(shape) != 2:
        raise _fail(path, f"a 2-D '{key}'", f"shape {shape}")
    return int(shape[0]), int(shape[1])


def _info(fmt: str, activation: str, k: int | None, notes: list[str]) -> dict[str, Any]:
    return {
        "format": fmt,
        "activation": activation,
        "k": k,
        "certifiable": activation == "relu",
        "notes": notes,
    }


def _detect_format(path: Path) -> tuple[str, Path]:
    """Return ``(format, path)`` where ``path`` is the directory or file to read."""
    if path.is_file():
        name = path.name
        if name in (SAELENS_WEIGHTS, SPARSIFY_WEIGHTS, SAELENS_CFG):
            return _detect_format(path.parent)
        if name.endswith(".npz"):
            return "npz", path
        if name.endswith((".pt", ".pth")):
            return "dictionary_learning", path
        raise _fail(
            path,
            "an SAELens or sparsify directory, an 'ae.pt' state dict or a '.npz' file",
            f"a file with suffix '{path.suffix}'",
        )
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if SAELENS_WEIGHTS in entries:
            return "saelens", path
        if SPARSIFY_WEIGHTS in entries:
            return "sparsify", path
        if DICTIONARY_LEARNING_WEIGHTS in entries:
            return "dictionary_learning", path / DICTIONARY_LEARNING_WEIGHTS
        shown = entries[:10] + (["..."] if len(entries) > 10 else [])
        raise _fail(
            path,
            f"a directory holding '{SAELENS_WEIGHTS}' (SAELens), '{SPARSIFY_WEIGHTS}' "
            f"(sparsify) or '{DICTIONARY_LEARNING_WEIGHTS}' (dictionary_learning)",
            f"entries {shown}",
        )
    raise _fail(path, "a file or directory", "something that is neither")


# --------------------------------------------------------------------------- readers


def _load_saelens(
    path: Path, norm_scaling_factor: float | None
) -> tuple[SAEArrays, dict[str, Any]]:
    cfg_path = path / SAELENS_CFG
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"SAELens directory '{path}' has no '{SAELENS_CFG}'; it is needed to know "
            "whether b_dec is subtracted from the input (apply_b_dec_to_input)."
        )
    cfg = _read_json(cfg_path)
    tensors = _read_safetensors(path / SAELENS_WEIGHTS)
    missing = [key for key in SAELENS_REQUIRED if key not in cfg]
    if missing:
        raise _fail(
            cfg_path,
            f"the key(s) {missing} (no safe default: {SAELENS_REQUIRED[missing[0]]})",
            f"keys {sorted(cfg)}",
        )
    notes: list[str] = []
    for key, (default, why) in SAELENS_DEFAULTS.items():
        if key not in cfg and not (key == "activation_fn_str" and "activation_fn" in cfg):
            notes.append(f"cfg.json has no '{key}': assumed {default!r} ({why})")
    architecture = cfg.get("architecture", "standard")
    if architecture not in ("standard", "topk"):
        raise _fail(
            cfg_path,
            "architecture 'standard' (ReLU) or 'topk'",
            f"architecture {architecture!r}, whose encoder is not a ReLU of an affine map",
        )
    act_fn = cfg.get("activation_fn_str", cfg.get("activation_fn", "relu"))
    if architecture == "standard" and act_fn not in ("relu", None):
        raise _fail(cfg_path, "activation_fn 'relu'", f"{act_fn!r}")

    d, K = _matrix_shape(tensors, "W_enc", path / SAELENS_WEIGHTS)
    for key, value in (("d_in", d), ("d_sae", K)):
        if key in cfg and cfg[key] != value:
            raise _fail(cfg_path, f"{key} = {value} (from W_enc's shape)", f"{key} = {cfg[key]}")
    wpath = path / SAELENS_WEIGHTS
    W_enc = _take(tensors, "W_enc", (d, K), wpath)
    b_enc = _take(tensors, "b_enc", (K,), wpath)
    W_dec = _take(tensors, "W_dec", (K, d), wpath)
    b_dec = _take(tensors, "b_dec", (d,), wpath)
    notes.append(f"cfg dtype {cfg.get('dtype', 'unknown')!r}, converted to float64")

    for key in ("finetuning_scaling_factor", "scaling_factor"):
        if key in tensors:  # decode() multiplies codes by it: fold it into the decoder rows
            W_dec = W_dec * _take(tensors, key, (K,), wpath)[:, None]
            notes.append(f"folded '{key}' into W_dec")
    apply_b_dec = cfg["apply_b_dec_to_input"]
    if not isinstance(apply_b_dec, bool):
        raise _fail(cfg_path, "apply_b_dec_to_input true or false", f"{apply_b_dec!r}")
    if apply_b_dec:
        b_enc = b_enc - b_dec @ W_enc
        notes.append("folded apply_b_dec_to_input into b_enc (b_enc - b_dec @ W_enc)")

    norm = cfg.get("normalize_activations", "none")
    if isinstance(norm, bool):  # SAELens' legacy spelling
        norm = "expected_average_only_in" if norm else "none"
    norm = "none" if norm is None else norm
    if norm == "expected_average_only_in":
        if norm_scaling_factor is None:
            raise ValueError(
                f"Cannot read an SAE from '{path}': cfg.json has normalize_activations="
                "'expected_average_only_in', so the weights act on inputs multiplied by a "
                "constant that is not stored with them. Pass norm_scaling_factor=<that "
                "constant> (SAELens lists it in pretrained_saes.yaml), or 1.0 if your data "
                "are already normalised."
            )
        s = check_positive("norm_scaling_factor", norm_scaling_factor)
        with np.errstate(over="ignore", under="ignore"):
            W_enc, W_dec, b_dec = W_enc * s, W_dec / s, b_dec / s
        if not all(np.all(np.isfinite(a)) for a in (W_enc, W_dec, b_dec)):
            raise ValueError(
                f"The 'norm_scaling_factor' parameter {s!r} makes the folded weights of "
                f"'{path}' overflow or underflow to non-finite values; expected a moderate "
                "constant (SAELens lists it in pretrained_saes.yaml)."
            )
        notes.append(f"folded input scaling factor {s} (expected_average_only_in)")
    elif norm != "none":
        raise ValueError(
            f"Cannot read an SAE from '{path}': cfg.json has normalize_activations={norm!r}, "
            "a per-sample input normalisation that no affine encoder can express. Normalise "
            "the data yourself and re-save the SAE with normalize_activations 'none'."
        )
    elif norm_scaling_factor is not None:
        notes.append("norm_scaling_factor ignored: cfg.json has normalize_activations 'none'")

    if architecture == "topk":
        k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
        notes.append("TopK SAE: loaded as the ReLU SAE of its pre-TopK codes")
        info = _info("saelens", "topk", None if k is None else int(k), notes)
    else:
        info = _info("saelens", "relu", None, notes)
    return SAEArrays(W_enc, b_enc, W_dec, b_dec), info


def _strip_compile_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    prefix = "_orig_mod."
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def _load_dictionary_learning(path: Path) -> tuple[SAEArrays, dict[str, Any]]:
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, struct, runtime)
        text = str(exc)
        if "Weights only load failed" in text:
            found = "a pickled object that torch.load(weights_only=True) refuses to load"
        else:
            first = (text.strip().splitlines() or [""])[0][:200]
            found = f"unreadable content ({type(exc).__name__}{': ' + first if first else ''})"
            if isinstance(exc, EOFError) or (path.is_file() and path.stat().st_size == 0):
                found = "an empty or truncated file"
        raise _fail(
            path, "a tensor state dict saved with torch.save(ae.state_dict(), path)", found
        ) from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise _fail(path, "a state dict of tensors", f"a {type(state).__name__}")
    tensors = {k: v.detach().double().numpy() for k, v in _strip_compile_prefix(state).items()}
    K, d = _matrix_shape(tensors, "encoder.weight", path)
    W_enc = _take(tensors, "encoder.weight", (K, d), path).T
    b_enc = _take(tensors, "encoder.bias", (K,), path)
    W_dec = _take(tensors, "decoder.weight", (d, K), path).T
    notes: list[str] = []
    if "bias" in tensors:  # AutoEncoder: relu(encoder(x - bias)), decoder(f) + bias
        b_dec = _take(tensors, "bias", (d,), path)
        b_enc = b_enc - b_dec @ W_enc
        notes.append("AutoEncoder: folded the pre-encoder bias into b_enc")
    elif "b_dec" in tensors:  # AutoEncoderTopK / BatchTopKSAE: topk(relu(encoder(x - b_dec)))
        b_dec = _take(tensors, "b_dec", (d,), path)
        b_enc = b_enc - b_dec @ W_enc
        k = int(tensors["k"].reshape(-1)[0]) if "k" in tensors else None
        notes.append("TopK-family SAE: loaded as the ReLU SAE of its pre-TopK codes")
        if "threshold" in tensors:
            notes.append("a 'threshold' buffer (BatchTopK inference) was ignored")
        return SAEArrays(W_enc, b_enc, W_dec, b_dec), _info("dictionary_learning", "topk", k, notes)
    elif "decoder.bias" in tensors:  # AutoEncoderNew: relu(encoder(x)), decoder(f)
        b_dec = _take(tensors, "decoder.bias", (d,), path)
        notes.append("AutoEncoderNew layout (decoder.bias, no pre-encoder bias)")
    else:
        raise _fail(
            path,
            "a decoder bias named 'bias' (AutoEncoder), 'b_dec' or 'decoder.bias'",
            f"keys {sorted(tensors)}",
        )
    unknown = set(tensors) - {
        "encoder.weight",
        "encoder.bias",
        "decoder.weight",
        "bias",
        "decoder.bias",
    }
    if unknown:
        raise _fail(
            path,
            "the tensors of dictionary_learning's ReLU AutoEncoder only",
            f"extra keys {sorted(unknown)} (gated or JumpReLU SAEs are not ReLU SAEs)",
        )
    return SAEArrays(W_enc, b_enc, W_dec, b_dec), _info("dictionary_learning", "relu", None, notes)


def _load_sparsify(path: Path) -> tuple[SAEArrays, dict[str, Any]]:
    cfg_path = path / SPARSIFY_CFG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"sparsify directory '{path}' has no '{SPARSIFY_CFG}'.")
    cfg = _read_json(cfg_path)
    wpath = path / SPARSIFY_WEIGHTS
    tensors = _read_safetensors(wpath)
    if cfg.get("transcode", False):
        raise _fail(cfg_path, "an autoencoder", "transcode: true (a transcoder)")
    if cfg.get("skip_connection", False) or "W_skip" in tensors:
        raise _fail(cfg_path, "no skip connection", "a W_skip matrix, which an SAE cannot hold")
    K, d = _matrix_shape(tensors, "encoder.weight", wpath)
    width = cfg.get("num_latents") or (
        cfg["d_in"] * cfg["expansion_factor"] if "d_in" in cfg and "expansion_factor" in cfg else K
    )
    if width != K or cfg.get("d_in", d) != d:
        raise _fail(
            cfg_path,
            f"d_in = {d} and num_latents = {K} (from encoder.weight)",
            f"d_in = {cfg.get('d_in')}, num_latents = {width}",
        )
    W_enc = _take(tensors, "encoder.weight", (K, d), wpath).T
    b_enc = _take(tensors, "encoder.bias", (K,), wpath)
    W_dec = _take(tensors, "W_dec", (K, d), wpath)
    b_dec = _take(tensors, "b_dec", (d,), wpath)
    b_enc = b_enc - b_dec @ W_enc
    activation = str(cfg.get("activation", "topk"))
    k = cfg.get("k")
    notes = [
        "folded the pre-encoder b_dec into b_enc",
        f"{activation} SAE (k={k}): loaded as the ReLU SAE of its pre-{activation} codes; "
        "its training loss was FVU without L1, which (P) does not certify",
    ]
    return SAEArrays(W_enc, b_enc, W_dec, b_dec), _info(
        "sparsify", activation, None if k is None else int(k), notes
    )


def _load_npz(path: Path) -> tuple[SAEArrays, dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            tensors = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _fail(path, "an .npz archive", f"unreadable content ({exc})") from exc
    d, K = _matrix_shape(tensors, "W_enc", path)
    sae = SAEArrays(
        _take(tensors, "W_enc", (d, K), path),
        _take(tensors, "b_enc", (K,), path),
        _take(tensors, "W_dec", (K, d), path),
        _take(tensors, "b_dec", (d,), path),
    )
    return sae, _info("npz", "relu", None, [])


_READERS: dict[str, Callable[..., tuple[SAEArrays, dict[str, Any]]]] = {
    "dictionary_learning": _load_dictionary_learning,
    "sparsify": _load_sparsify,
    "npz": _load_npz,
}


def read_sae(
    path: str | os.PathLike[str], *, norm_scaling_factor: float | None = None
) -> tuple[SAEArrays, dict[str, Any]]:
    """The arrays of an SAE file in the canonical ReLU form, and what was read.

    The reader behind :func:`convexdict.load_sae` and :meth:`convexdict.SAE.load`, which
    wrap the arrays in an :class:`~convexdict.SAE` (this module never builds models).
    See :func:`convexdict.load_sae` for the formats, the ``info`` dict and the errors.

    Returns
    -------
    arrays : SAEArrays
        ``W_enc (d, K)``, ``b_enc (K,)``, ``W_dec (K, d)``, ``b_dec (d,)``, float64.
    info : dict
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            "The 'path' parameter must be a path (str or os.PathLike) to an SAE file or "
            f"directory. Got {type(path).__name__} {path!r}."
        )
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"SAE path '{p}' does not exist.")
    fmt, target = _detect_format(p)
    if fmt == "saelens":
        return _load_saelens(target, norm_scaling_factor)
    return _READERS[fmt](target)


def format_load_notes(info: Mapping[str, Any]) -> list[str]:
    """One line per load note of ``load_sae(..., return_info=True)``, for printing.

    The first line names the format and activation (and says when the SAE is not
    certifiable); each further line is one note (a folded convention or an assumed
    default).
    """
    head = f"loaded {info.get('format')} SAE ({info.get('activation')}"
    head += f", k={info['k']})" if info.get("k") is not None else ")"
    if not info.get("certifiable", True):
        head += ": not certifiable, loaded as the ReLU SAE of its pre-activation codes"
    return [head, *(f"  note: {note}" for note in info.get("notes", []))]
