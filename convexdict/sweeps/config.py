"""Sweep configuration: the TOML grid, its cells, and the checks before a run starts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convexdict._validation import check_int, check_positive

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the API-compatible backport, when installed
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

ROW_FIELDS = (
    "cell_id", "data", "lam", "width", "seed", "trainer", "activation", "k", "steps", "lr",
    "batch_size", "status", "loss", "reconstruction", "penalty", "lower_bound", "bound", "gap",
    "relative_gap", "verdict", "optimum_loss", "k_star", "certified", "l0", "dead_fraction",
    "explained_variance", "n_samples", "d", "time_certify", "time_train", "time_compare",
    "worker", "error_stage", "error_type", "error_message",
)
TEXT_FIELDS = {"cell_id", "data", "trainer", "activation", "status", "bound", "verdict",
                "certified", "worker", "error_stage", "error_type", "error_message"}
CERTIFY_KEYS = ("solver", "tol", "method", "max_rounds", "atoms_per_round")
# Settings a sweep cell does not take from the TOML (lam_anchor needs anchor arrays,
# which a TOML grid cannot carry).
NOT_TRAINER = {"lam", "width", "seed", "device", "quiet", "checkpoint_dir", "checkpoint_every",
                "keep_checkpoints", "lam_anchor"}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:80]


def number_label(value: float) -> str:
    """``f"{value:g}"`` without the ``+`` of a positive exponent (``1e+300`` -> ``1e300``),
    which :func:`slug` would turn into a minus sign (``1e-300``)."""
    return f"{value:g}".replace("e+", "e")


@dataclass(frozen=True)
class DataSpec:
    """A data set: a :func:`convexdict.load_data` spec, optionally cut to ``max_samples``
    rows (a fixed random subset, seed 0), shown as ``name`` (default: the spec)."""

    spec: str
    max_samples: int | None = None
    name: str = ""

    @property
    def label(self) -> str:
        cut = "" if self.max_samples is None else f"[{self.max_samples}]"
        return self.name or self.spec + cut


@dataclass(frozen=True)
class Cell:
    """One grid point; ``train`` holds :func:`convexdict.train_sae` keyword arguments."""

    data: DataSpec
    lam: float
    width: int
    seed: int
    trainer: str
    train: Mapping[str, Any]
    certify: Mapping[str, Any]

    def describe(self) -> dict[str, Any]:
        """Everything that determines the cell's result, as plain data."""
        return {"data": dataclasses.asdict(self.data), "lam": self.lam, "width": self.width,
                "seed": self.seed, "trainer": self.trainer, "train": dict(self.train),
                "certify": dict(self.certify)}

    @property
    def cell_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode())
        words = (f"{self.data.label}_lam{number_label(self.lam)}_w{self.width}_s{self.seed}_"
                 f"{self.trainer}")
        return f"{slug(words)}_{digest.hexdigest()[:10]}"


@dataclass(frozen=True)
class SweepConfig:
    """The grid ``data x lams x widths x seeds x trainers`` and the certify settings."""

    data: tuple[DataSpec, ...]
    lams: tuple[float, ...]
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    trainers: Mapping[str, Mapping[str, Any]]
    certify: Mapping[str, Any] = field(default_factory=dict)
    torch_threads: int = 1

    def cells(self) -> list[Cell]:
        """All cells, data-major (then lam, width, seed, trainer)."""
        return [Cell(dat, lam, w, s, name, self.trainers[name], self.certify)
                for dat in self.data for lam in self.lams for w in self.widths
                for s in self.seeds for name in self.trainers]


# --------------------------------------------------------------------------- config


def _bad(source: str, key: str, expected: str, got: Any = None) -> ValueError:
    found = "it is missing" if got is None else f"Got {got!r}"
    return ValueError(f"Sweep config {source}: '{key}' must be {expected}; {found}.")


def _values(table: Mapping, key: str, source: str, check: Callable[[str, Any], Any]) -> tuple:
    values = table.get(key)
    if not isinstance(values, list) or not values:
        raise _bad(source, f"sweep.{key}", "a non-empty list", values)
    try:
        out = tuple(check(f"sweep.{key}[{i}]", v) for i, v in enumerate(values))
    except ValueError as exc:
        raise ValueError(f"Sweep config {source}: {exc}") from None
    if len(set(out)) != len(out):
        raise _bad(source, f"sweep.{key}", "a list without duplicates", values)
    return out


def _data_spec(item: Any, source: str, key: str) -> DataSpec:
    if isinstance(item, str):
        return DataSpec(item)
    keys = {"spec", "max_samples", "name"}
    if not isinstance(item, dict) or not isinstance(item.get("spec"), str) or set(item) - keys:
        raise _bad(source, key, "a spec string or a table {spec, max_samples, name}", item)
    n = item.get("max_samples")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise _bad(source, f"{key}.max_samples", "a positive integer", n)
    return DataSpec(item["spec"], n, str(item.get("name", "")))


def parse_config(raw: Mapping[str, Any], source: str = "<dict>") -> SweepConfig:
    """Validate a parsed TOML document into a :class:`SweepConfig`.

    Tables: ``[sweep]`` (``data``, ``lams``, ``widths``, ``seeds``; optional ``device``,
    default ``"cpu"``, and ``torch_threads``, default 1), ``[trainers.NAME]`` (keyword
    arguments of :func:`convexdict.train_sae`: ``activation``, ``steps``, ``lr``,
    ``batch_size``, ``k``, ...) and optionally ``[certify]`` (``tol``, ``solver``, ...).

    Raises
    ------
    ValueError
        One line naming the file, the key, the expectation and the value received.
    """
    from convexdict_solvers.sgd.trainer import TrainConfig

    from convexdict.training.train import ACTIVATIONS

    if set(raw) - {"sweep", "trainers", "certify"}:
        raise _bad(source, "top-level tables", "[sweep], [trainers.NAME] or [certify]",
                   sorted(set(raw) - {"sweep", "trainers", "certify"}))
    sweep = raw.get("sweep")
    if not isinstance(sweep, dict):
        raise _bad(source, "[sweep]", "a table with data, lams, widths, seeds", sweep)
    extra = sorted(set(sweep) - {"data", "lams", "widths", "seeds", "device", "torch_threads"})
    if extra:
        raise _bad(source, "[sweep] keys", "data, lams, widths, seeds, device, torch_threads",
                   extra)
    data = [sweep["data"]] if isinstance(sweep.get("data"), str) else sweep.get("data")
    if not isinstance(data, list) or not data:
        raise _bad(source, "sweep.data", "a non-empty list of data specs", data)
    specs = tuple(_data_spec(item, source, f"sweep.data[{i}]") for i, item in enumerate(data))
    if len({s.label for s in specs}) != len(specs):
        raise _bad(source, "sweep.data", "distinct data sets (give each a 'name')", data)
    threads = sweep.get("torch_threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise _bad(source, "sweep.torch_threads", "a positive integer", threads)
    trainers = raw.get("trainers")
    if not isinstance(trainers, dict) or not trainers:
        raise _bad(source, "[trainers.NAME]", "at least one trainer table", trainers)
    allowed = set(TrainConfig.__dataclass_fields__) - NOT_TRAINER
    for name, table in trainers.items():
        if not isinstance(table, dict):
            raise _bad(source, f"trainers.{name}", "a table of train_sae settings", table)
        if sorted(set(table) - allowed):
            raise _bad(source, f"trainers.{name} keys", f"among {sorted(allowed)}",
                       sorted(set(table) - allowed))
        if table.get("activation", "relu") not in ACTIVATIONS:
            raise _bad(source, f"trainers.{name}.activation", f"one of {ACTIVATIONS}",
                       table["activation"])
    cert = raw.get("certify", {})
    if not isinstance(cert, dict) or set(cert) - set(CERTIFY_KEYS):
        raise _bad(source, "[certify]", f"a table with keys among {list(CERTIFY_KEYS)}", cert)
    device = sweep.get("device", "cpu")
    return SweepConfig(
        specs, _values(sweep, "lams", source, check_positive),
        _values(sweep, "widths", source, lambda n, v: check_int(n, v, minimum=1)),
        _values(sweep, "seeds", source, check_int),
        {name: {**table, "device": device} for name, table in trainers.items()}, dict(cert),
        threads)


def check_data(config: SweepConfig, *, files: bool = True) -> None:
    """Check every data spec before a run starts: toy names, and (``files=True``) that
    each data file exists here and has a known extension.

    Pass ``files=False`` when the workers read the data on another machine (a remote
    scheduler): only toy names are checked then.

    Raises
    ------
    ValueError
        Naming ``sweep.data[i]``, what was expected and the spec received.
    """
    from convexdict.data.datasets import DATA_SUFFIXES, TOYS

    for i, spec in enumerate(config.data):
        key, text = f"sweep.data[{i}]", spec.spec
        if text.startswith("toy:"):
            if text[4:] not in TOYS:
                raise ValueError(f"Sweep config: '{key}' must name a built-in toy "
                                 f"({', '.join(TOYS)}); got {text!r}.")
            continue
        if not files:
            continue
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"Sweep config: '{key}' must be 'toy:NAME' or an existing data "
                             f"file; got {text!r}, which "
                             f"{'is a directory' if path.is_dir() else 'does not exist'}.")
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise ValueError(f"Sweep config: '{key}' must be a {', '.join(DATA_SUFFIXES)} file; "
                             f"got {text!r}.")


def load_config(path: str | os.PathLike[str]) -> SweepConfig:
    """Read and validate a sweep TOML file (``tomllib``; ``tomli`` on Python 3.10)."""
    if tomllib is None:
        raise ModuleNotFoundError("Reading sweep configs on Python 3.10 needs 'tomli' "
                                  "(pip install tomli); Python >= 3.11 has tomllib built in.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Sweep config '{path}' does not exist or is not a file.")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"Sweep config '{path}' is not valid TOML: {exc}") from None
    return parse_config(raw, f"'{path}'")
