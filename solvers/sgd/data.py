"""Data access for the SGD trainer: rows of arrays, memory maps or tensors, batches, the
learning-rate schedule (:mod:`convexdict_solvers.sgd.trainer`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_CHUNK_ROWS = 65536
_DEVICE_DATA_LIMIT = 4 * 2**30  # in-memory data up to this size is copied to the device

class Data:
    """Row access to an array, a ``.npy`` memory map or a tensor, without loading a map."""

    def __init__(self, X: Any, dtype: torch.dtype, device: torch.device,
                 name: str = "X") -> None:
        self.name = name
        if isinstance(X, (str, os.PathLike)):
            X = np.load(X, mmap_mode="r")
        if isinstance(X, torch.Tensor):
            X = X.detach()
        elif not isinstance(X, np.ndarray):
            X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(
                f"The '{name}' parameter must be a non-empty 2-D array (N, d). "
                f"Got shape {tuple(X.shape)}."
            )
        self.source = X
        self.n, self.d = int(X.shape[0]), int(X.shape[1])
        self.dtype, self.device = dtype, device
        self.resident: torch.Tensor | None = None
        size = self.n * self.d * torch.empty((), dtype=dtype).element_size()
        if not isinstance(X, np.memmap) and (device.type == "cpu" or size <= _DEVICE_DATA_LIMIT):
            if isinstance(X, np.ndarray):
                # torch needs writeable memory and non-negative strides (e.g. X[:, ::-1])
                X = torch.from_numpy(np.ascontiguousarray(X) if X.flags.writeable else X.copy())
            self.resident = X.to(device=device, dtype=dtype)

    def _host_chunk(self, start: int, stop: int) -> np.ndarray:
        chunk = self.source[start:stop]
        if isinstance(chunk, torch.Tensor):
            return chunk.to("cpu", torch.float64).numpy()
        return np.asarray(chunk, dtype=np.float64)

    def mean(self) -> np.ndarray:
        """Exact float64 column means ``(d,)``, in chunks; checks finiteness on the way."""
        total = np.zeros(self.d)
        for start in range(0, self.n, _CHUNK_ROWS):
            chunk = self._host_chunk(start, min(start + _CHUNK_ROWS, self.n))
            if not np.all(np.isfinite(chunk)):
                raise ValueError(
                    f"The '{self.name}' parameter must contain only finite values. Got NaN or "
                    f"infinite entries in rows [{start}, {start + chunk.shape[0]})."
                )
            total += chunk.sum(axis=0)
        return total / self.n

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":  # pinned + non_blocking: no stream sync per step
            return host.pin_memory().to(self.device, non_blocking=True)
        return host

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` as a ``(len(idx), d)`` tensor of the training dtype and device."""
        if self.resident is not None:
            return self.resident.index_select(0, self._to_device(torch.from_numpy(idx)))
        host = torch.from_numpy(np.asarray(self.source[idx]))
        return self._to_device(host).to(self.dtype)


class Targets:
    """The target layers of a transcoder or crosscoder, read row-aligned with ``X``."""

    def __init__(self, targets: Any, n: int, dtype: torch.dtype, device: torch.device) -> None:
        if isinstance(targets, (np.ndarray, torch.Tensor, str, os.PathLike)) \
                or not isinstance(targets, Sequence) or len(targets) == 0:
            raise ValueError(
                "The 'targets' parameter must be a non-empty list of (N, d_l) arrays, tensors "
                f"or .npy paths (one per layer). Got {type(targets).__name__}."
            )
        self.layers = [Data(T, dtype, device, name=f"targets[{i}]")
                       for i, T in enumerate(targets)]
        for layer in self.layers:
            if layer.n != n:
                raise ValueError(
                    f"The '{layer.name}' parameter must have N={n} rows like X (row i is the "
                    f"target of X[i]). Got {layer.n} rows."
                )
        self.dims = tuple(layer.d for layer in self.layers)

    def mean(self) -> np.ndarray:
        """Exact float64 column means of the concatenated layers, shape ``(D,)``."""
        return np.concatenate([layer.mean() for layer in self.layers])

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` of the concatenated layers, shape ``(len(idx), D)``."""
        parts = [layer.rows(idx) for layer in self.layers]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class Sampler:
    """Shuffled epochs without replacement; every epoch's permutation comes from a seed
    drawn from the shared generator, so the state is two integers."""

    def __init__(self, n: int, batch: int, generator: torch.Generator) -> None:
        self.n, self.batch, self.generator = n, batch, generator
        self.epoch_seed: int | None = None
        self.pos = 0
        self._perm: torch.Tensor | None = None

    def _permute(self) -> None:
        gen = torch.Generator().manual_seed(self.epoch_seed)
        self._perm = torch.randperm(self.n, generator=gen)

    def next(self) -> np.ndarray:
        """Sorted int64 indices of the next global batch."""
        if self.batch >= self.n:
            return np.arange(self.n)
        if self.epoch_seed is None or self.pos + self.batch > self.n:
            self.epoch_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            self.pos = 0
            self._permute()
        idx = self._perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return np.sort(idx.numpy())

    def state_dict(self) -> dict[str, int | None]:
        return {"epoch_seed": self.epoch_seed, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        self.epoch_seed, self.pos = state["epoch_seed"], int(state["pos"])
        if self.epoch_seed is not None:
            self._permute()


@dataclass
class LRSchedule:
    """Learning-rate multiplier for optimiser step ``i`` (0-based)."""

    warmup: int
    total: int
    decay: str

    def __call__(self, i: int) -> float:
        if i < self.warmup:
            return (i + 1) / self.warmup
        if self.decay == "constant":
            return 1.0
        frac = min(1.0, (i - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * frac)) if self.decay == "cosine" else 1.0 - frac
