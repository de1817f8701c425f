"""Writing SAE files: SAELens directories and ``.npz`` (atomic, umask permissions)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from convexdict_solvers.atomic import atomic_write

from convexdict._validation import check_choice
from convexdict.data.formats import SAELENS_CFG, SAELENS_WEIGHTS, SAVE_DTYPES, SAEArrays

# Writers take any object with the SAE's weights (``W_enc``, ``b_enc``, ``W_dec``,
# ``b_dec``, ``d_in``, ``width``): this module never imports the model classes, so
# ``SAE.save`` can call it without an import circle.
SAE = Any

# --------------------------------------------------------------------------- writers


def _atomic_write(target: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(file_object)`` with :func:`solvers.atomic.atomic_write`."""

    def to_file(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(target, to_file)


def _make_dir(folder: Path, target: Path) -> None:
    """``folder.mkdir(parents=True, exist_ok=True)``; a file in the way is a ValueError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ValueError(
            f"Cannot write an SAE to '{target}': a file is in the way of the folder "
            f"'{folder}' ({type(exc).__name__}). Choose another path."
        ) from exc


def saelens_config(sae: SAE, dtype: str = "float64") -> dict[str, Any]:
    """The ``cfg.json`` written by :func:`save_sae` for a standard (ReLU) SAELens SAE.

    It uses the flat pre-6.0 layout, which every SAELens version reads (6.x converts it
    and moves the model fields into ``metadata``). The encoder bias is already folded,
    so ``apply_b_dec_to_input`` is false; ``model_name`` and ``hook_name`` are
    placeholders because convexdict data need not come from a language model.
    """
    dtype = check_choice("dtype", dtype, SAVE_DTYPES)
    return {
        "architecture": "standard",
        "d_in": sae.d_in,
        "d_sae": sae.width,
        "dtype": dtype,
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "finetuning_scaling_factor": False,
        "activation_fn_str": "relu",
        "activation_fn_kwargs": {},
        "reshape_activations": "none",
        "model_name": "convexdict",
        "hook_name": "convexdict.input",
        "hook_layer": 0,
        "hook_head_index": None,
        "context_size": 1,
        "prepend_bos": False,
        "dataset_path": "",
        "dataset_trust_remote_code": False,
        "sae_lens_training_version": None,
        "neuronpedia_id": None,
        "model_from_pretrained_kwargs": {},
        "seqpos_slice": [None],
    }


def save_sae(
    sae: SAE,
    path: str | os.PathLike[str],
    *,
    dtype: str = "float64",
    format: str | None = None,
) -> None:
    """Write an SAE: the SAELens layout by default, or ``.npz``.

    Parameters
    ----------
    sae : SAE
    path : str or path-like
        Directory for the SAELens layout (created if missing; ``cfg.json`` and
        ``sae_weights.safetensors`` inside are replaced), or a file ending in ``.npz``.
    dtype : {"float64", "float32"}, default="float64"
        Storage precision. ``float64`` makes ``load_sae(save_sae(sae))`` exact.
    format : {"saelens", "npz"}, optional
        Defaults to ``"npz"`` when ``path`` ends in ``.npz``, else ``"saelens"``.

    Notes
    -----
    Each file is written to a temporary file in the same directory and moved into place
    with :func:`os.replace` (:func:`solvers.atomic.atomic_write`), so a crash never leaves
    a half-written file under the final name; files get the umask's permissions. A file
    in the way of the destination folder is a ``ValueError``. The safetensors keys are
    ``W_enc (d, K)``, ``b_enc (K,)``, ``W_dec (K, d)``, ``b_dec (d,)``; see
    :func:`saelens_config` for ``cfg.json``.
    """
    if not all(hasattr(sae, name) for name in SAEArrays._fields):
        raise ValueError(f"The 'sae' parameter must be a convexdict SAE. Got {type(sae).__name__}.")
    dtype = check_choice("dtype", dtype, SAVE_DTYPES)
    p = Path(path)
    fmt = format if format is not None else ("npz" if p.name.endswith(".npz") else "saelens")
    fmt = check_choice("format", fmt, ("saelens", "npz"))
    arrays = {
        "W_enc": sae.W_enc,
        "b_enc": sae.b_enc,
        "W_dec": sae.W_dec,
        "b_dec": sae.b_dec,
    }
    arrays = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in arrays.items()}
    if fmt == "npz":
        if p.is_dir():
            raise ValueError(f"Cannot write an .npz file to '{p}': it is a directory.")
        _make_dir(p.parent, p)
        _atomic_write(p, lambda fh: np.savez(fh, **arrays))
        return
    if p.exists() and not p.is_dir():
        raise ValueError(
            f"Cannot write the SAELens layout to '{p}': it is a file, and the layout is a "
            "directory. Pass a directory path, or a path ending in '.npz'."
        )
    _make_dir(p, p)
    from safetensors.numpy import save

    blob = save(arrays, metadata={"format": "pt"})
    _atomic_write(p / SAELENS_WEIGHTS, lambda fh: fh.write(blob))
    text = json.dumps(saelens_config(sae, dtype), indent=2).encode()
    _atomic_write(p / SAELENS_CFG, lambda fh: fh.write(text))


