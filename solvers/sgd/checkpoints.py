"""Checkpoints of the SGD trainer: atomic writes, pruning, and resuming from the newest
readable one (:mod:`convexdict_solvers.sgd.trainer`)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
from convexdict_solvers.atomic import atomic_write

_CKPT = re.compile(r"^ckpt_(\d{8,})\.pt$")


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _CKPT.match(p.name))]
    return sorted(found)


def save_checkpoint(directory: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Atomic write (:func:`solvers.atomic.atomic_write`, fsynced), then prune old ones."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt_{step:08d}.pt"

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)
    for _, old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


_STATE_KEYS = frozenset({"config", "data_shape", "step", "elapsed", "model", "optimizer",
                         "scheduler", "generator", "sampler", "idle", "history"})


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state; ``ValueError`` naming the file when it is unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated: RuntimeError/EOFError/OSError; pickle errors, ...
        lines = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__
        raise ValueError(f"checkpoint {path} is unreadable ({why})") from exc
    if not isinstance(state, dict) or not _STATE_KEYS <= set(state):
        raise ValueError(f"checkpoint {path} is not a convexdict_solvers.sgd.trainer checkpoint")
    return state


def say(message: str, rank: int) -> None:
    if rank == 0:
        print(message, file=sys.stderr, flush=True)


def resume_state(directory: Path, rank: int) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``directory`` (``None`` if there is none).

    Unreadable checkpoints (a kill during a copy, a full disk) are skipped, newest first,
    and renamed to ``<name>.unreadable`` so that pruning never keeps them instead of
    good ones. Prints one line saying which step resumed (or that none exists); raises
    ``ValueError`` when checkpoints exist but none is readable.
    """
    found = list_checkpoints(directory)
    if not found:
        say(f"resume: no checkpoint in {directory}; starting from step 0", rank)
        return None
    skipped: list[tuple[Path, str]] = []
    for _, path in reversed(found):
        try:
            state = read_checkpoint(path)
        except ValueError as exc:
            skipped.append((path, str(exc)))
            continue
        note = ""
        if skipped:
            note = (f"; skipped {len(skipped)} unreadable newer checkpoint(s), renamed to "
                    f"*.unreadable: {'; '.join(why for _, why in skipped)}")
            if rank == 0:
                for bad, _ in skipped:
                    bad.replace(bad.with_name(bad.name + ".unreadable"))
        say(f"resume: resumed from step {int(state['step'])} ({path}){note}", rank)
        state["_path"] = path
        return state
    raise ValueError(
        f"The 'checkpoint_dir' {str(directory)!r} holds {len(found)} checkpoint(s) but none is "
        f"readable ({'; '.join(why for _, why in skipped)}). Delete them or use another "
        "'checkpoint_dir'."
    )
