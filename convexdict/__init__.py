"""convexdict: certified global optima of ReLU sparse autoencoders.

The public API, grouped by pipeline stage (data -> atoms -> convex program ->
certificate -> comparison). Names are imported lazily on first use (PEP 562), so
``import convexdict`` and the command line start fast; torch, numba and CVXPY load
only when a function that needs them is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # models and the objective
    "Crosscoder": "convexdict.models.family",
    "crosscoder_loss": "convexdict.models.family",
    "crosscoder_loss_terms": "convexdict.models.family",
    "load_sae": "convexdict.models.sae",
    "LossTerms": "convexdict.models.sae",
    "SAE": "convexdict.models.sae",
    "sae_loss": "convexdict.models.sae",
    "sae_loss_terms": "convexdict.models.sae",
    "Transcoder": "convexdict.models.family",
    "transcoder_loss": "convexdict.models.family",
    "transcoder_loss_terms": "convexdict.models.family",
    # data and files
    "BENCH_PRESETS": "convexdict.data.lrb",
    "dictionary_learning_to_canonical": "convexdict.data.loss_units",
    "gt_recovery": "convexdict.data.lrb",
    "linear_representation_bench": "convexdict.data.lrb",
    "LinearRepresentationBench": "convexdict.data.lrb",
    "list_toys": "convexdict.data.datasets",
    "load_data": "convexdict.data.datasets",
    "load_toy": "convexdict.data.datasets",
    "mean_max_inner_product": "convexdict.data.lrb",
    "saelens_to_canonical": "convexdict.data.loss_units",
    "save_sae": "convexdict.data.writers",
    "sparsify_to_canonical": "convexdict.data.loss_units",
    "to_canonical_loss": "convexdict.data.loss_units",
    "total_variance": "convexdict.data.loss_units",
    "ToyData": "convexdict.data.datasets",
    # the convex certificate
    "affine_frame": "convexdict.convex.atoms",
    "AffineFrame": "convexdict.convex.atoms",
    "AtomSet": "convexdict.convex.atoms",
    "Certificate": "convexdict.convex.certificate",
    "certify": "convexdict.convex._certify",
    "certify_path": "convexdict.convex.path",
    "certify_width": "convexdict.convex._certify",
    "data_sha256": "convexdict.convex.certificate_file",
    "dual_bound": "convexdict.convex.bounds",
    "dual_certificate": "convexdict.convex.bounds",
    "DualBound": "convexdict.convex.bounds",
    "encoder_from_hyperplanes": "convexdict.convex.encoders",
    "enumerate_atoms": "convexdict.convex.atoms",
    "estimate_n_atoms": "convexdict.convex.atoms",
    "joint_bound": "convexdict.convex.bounds",
    "joint_wide_limit": "convexdict.convex.bounds",
    "JointWideLimit": "convexdict.convex.bounds",
    "lam_max": "convexdict.convex.bounds",
    "lam_max_bound": "convexdict.convex.bounds",
    "load_certificate": "convexdict.convex.certificate_file",
    "sae_from_solution": "convexdict.convex.encoders",
    # fixed width
    "SearchStats": "convexdict.fixed_width.pattern_tree",
    "width_incumbents": "convexdict.fixed_width.width_incumbents",
    "WidthSearch": "convexdict.fixed_width.width_incumbents",
    # analysis
    "Absorption": "convexdict.analysis.diagnostics",
    "activation_pattern": "convexdict.analysis.pieces",
    "activation_signature": "convexdict.analysis._census",
    "active_mask": "convexdict.analysis.diagnostics",
    "antipodal_pairs": "convexdict.analysis.diagnostics",
    "AntipodalPair": "convexdict.analysis.diagnostics",
    "block_improvements": "convexdict.analysis.pieces",
    "BlockStep": "convexdict.analysis.pieces",
    "census": "convexdict.analysis._census",
    "Census": "convexdict.analysis.census_result",
    "CensusGroup": "convexdict.analysis.census_result",
    "CensusStart": "convexdict.analysis.census_result",
    "compare": "convexdict.analysis._compare",
    "compare_streamed": "convexdict.analysis.scale_compare",
    "Comparison": "convexdict.analysis.comparison",
    "dead_latents": "convexdict.analysis.diagnostics",
    "decoder_step": "convexdict.analysis.pieces",
    "encoder_step": "convexdict.analysis.pieces",
    "feature_absorption": "convexdict.analysis.diagnostics",
    "feature_splitting": "convexdict.analysis.diagnostics",
    "group_minima": "convexdict.analysis._census",
    "latent_table": "convexdict.analysis.scale_compare",
    "match_latents": "convexdict.analysis.comparison",
    "Matching": "convexdict.analysis.comparison",
    "partial_minimum_test": "convexdict.analysis.pieces",
    "PieceSolveError": "convexdict.analysis.pieces",
    "polish": "convexdict.analysis.pieces",
    "polish_at_scale": "convexdict.analysis.blocks",
    "PolishResult": "convexdict.analysis.blocks",
    "Split": "convexdict.analysis.diagnostics",
    "Stationarity": "convexdict.analysis.diagnostics",
    "stationarity": "convexdict.analysis.diagnostics",
    # training
    "train_crosscoder": "convexdict.training.train",
    "train_sae": "convexdict.training.train",
    "train_transcoder": "convexdict.training.train",
    "TrainResult": "convexdict.training.result",
    # sweeps
    "load_config": "convexdict.sweeps.config",
    "run_sweep": "convexdict.sweeps.grid",
    "SweepConfig": "convexdict.sweeps.config",
    "SweepResult": "convexdict.sweeps.grid",
    # independent verification
    "Verification": "convexdict.verification",
    "verify": "convexdict.verification",
    # tolerance and units
    "relative_gap": "convexdict.tolerance",
    "within_tol": "convexdict.tolerance",
    # engines re-exported
    "Anchors": "convexdict_solvers.anchoring",
    "anchors_from_class_means": "convexdict_solvers.anchoring",
    "anchors_from_features": "convexdict_solvers.anchoring",
}

if TYPE_CHECKING:  # the same names, statically (type checkers, docs tools)
    from convexdict_solvers.anchoring import (
        Anchors,
        anchors_from_class_means,
        anchors_from_features,
    )

    from convexdict.analysis._census import activation_signature, census, group_minima
    from convexdict.analysis._compare import compare
    from convexdict.analysis.blocks import PolishResult, polish_at_scale
    from convexdict.analysis.census_result import Census, CensusGroup, CensusStart
    from convexdict.analysis.comparison import Comparison, Matching, match_latents
    from convexdict.analysis.diagnostics import (
        Absorption,
        AntipodalPair,
        Split,
        Stationarity,
        active_mask,
        antipodal_pairs,
        dead_latents,
        feature_absorption,
        feature_splitting,
        stationarity,
    )
    from convexdict.analysis.pieces import (
        BlockStep,
        PieceSolveError,
        activation_pattern,
        block_improvements,
        decoder_step,
        encoder_step,
        partial_minimum_test,
        polish,
    )
    from convexdict.analysis.scale_compare import compare_streamed, latent_table
    from convexdict.convex._certify import certify, certify_width
    from convexdict.convex.atoms import (
        AffineFrame,
        AtomSet,
        affine_frame,
        enumerate_atoms,
        estimate_n_atoms,
    )
    from convexdict.convex.bounds import (
        DualBound,
        JointWideLimit,
        dual_bound,
        dual_certificate,
        joint_bound,
        joint_wide_limit,
        lam_max,
        lam_max_bound,
    )
    from convexdict.convex.certificate import Certificate
    from convexdict.convex.certificate_file import data_sha256, load_certificate
    from convexdict.convex.encoders import encoder_from_hyperplanes, sae_from_solution
    from convexdict.convex.path import certify_path
    from convexdict.data.datasets import ToyData, list_toys, load_data, load_toy
    from convexdict.data.loss_units import (
        dictionary_learning_to_canonical,
        saelens_to_canonical,
        sparsify_to_canonical,
        to_canonical_loss,
        total_variance,
    )
    from convexdict.data.lrb import (
        BENCH_PRESETS,
        LinearRepresentationBench,
        gt_recovery,
        linear_representation_bench,
        mean_max_inner_product,
    )
    from convexdict.data.writers import save_sae
    from convexdict.fixed_width.pattern_tree import SearchStats
    from convexdict.fixed_width.width_incumbents import WidthSearch, width_incumbents
    from convexdict.models.family import (
        Crosscoder,
        Transcoder,
        crosscoder_loss,
        crosscoder_loss_terms,
        transcoder_loss,
        transcoder_loss_terms,
    )
    from convexdict.models.sae import SAE, LossTerms, load_sae, sae_loss, sae_loss_terms
    from convexdict.sweeps.config import SweepConfig, load_config
    from convexdict.sweeps.grid import SweepResult, run_sweep
    from convexdict.tolerance import relative_gap, within_tol
    from convexdict.training.result import TrainResult
    from convexdict.training.train import train_crosscoder, train_sae, train_transcoder
    from convexdict.verification import Verification, verify

__all__ = [
    # models and the objective
    "Crosscoder",
    "crosscoder_loss",
    "crosscoder_loss_terms",
    "load_sae",
    "LossTerms",
    "SAE",
    "sae_loss",
    "sae_loss_terms",
    "Transcoder",
    "transcoder_loss",
    "transcoder_loss_terms",
    # data and files
    "BENCH_PRESETS",
    "dictionary_learning_to_canonical",
    "gt_recovery",
    "linear_representation_bench",
    "LinearRepresentationBench",
    "list_toys",
    "load_data",
    "load_toy",
    "mean_max_inner_product",
    "saelens_to_canonical",
    "save_sae",
    "sparsify_to_canonical",
    "to_canonical_loss",
    "total_variance",
    "ToyData",
    # the convex certificate
    "affine_frame",
    "AffineFrame",
    "AtomSet",
    "Certificate",
    "certify",
    "certify_path",
    "certify_width",
    "data_sha256",
    "dual_bound",
    "dual_certificate",
    "DualBound",
    "encoder_from_hyperplanes",
    "enumerate_atoms",
    "estimate_n_atoms",
    "joint_bound",
    "joint_wide_limit",
    "JointWideLimit",
    "lam_max",
    "lam_max_bound",
    "load_certificate",
    "sae_from_solution",
    # fixed width
    "SearchStats",
    "width_incumbents",
    "WidthSearch",
    # analysis
    "Absorption",
    "activation_pattern",
    "activation_signature",
    "active_mask",
    "antipodal_pairs",
    "AntipodalPair",
    "block_improvements",
    "BlockStep",
    "census",
    "Census",
    "CensusGroup",
    "CensusStart",
    "compare",
    "compare_streamed",
    "Comparison",
    "dead_latents",
    "decoder_step",
    "encoder_step",
    "feature_absorption",
    "feature_splitting",
    "group_minima",
    "latent_table",
    "match_latents",
    "Matching",
    "partial_minimum_test",
    "PieceSolveError",
    "polish",
    "polish_at_scale",
    "PolishResult",
    "Split",
    "Stationarity",
    "stationarity",
    # training
    "train_crosscoder",
    "train_sae",
    "train_transcoder",
    "TrainResult",
    # sweeps
    "load_config",
    "run_sweep",
    "SweepConfig",
    "SweepResult",
    # independent verification
    "Verification",
    "verify",
    # tolerance and units
    "relative_gap",
    "within_tol",
    # engines re-exported
    "Anchors",
    "anchors_from_class_means",
    "anchors_from_features",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'convexdict' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
