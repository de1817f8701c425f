"""convexdict: certified global optima of ReLU sparse autoencoders."""

from solvers.anchoring import Anchors, anchors_from_class_means, anchors_from_features

from .atoms import AffineFrame, AtomSet, affine_frame, enumerate_atoms, estimate_n_atoms
from .blocks import PolishResult, polish_at_scale
from .bounds import (
    DualBound,
    JointWideLimit,
    dual_bound,
    dual_certificate,
    joint_bound,
    joint_wide_limit,
    lam_max,
    lam_max_bound,
)
from .census import activation_signature, census, group_minima
from .census_result import Census, CensusGroup, CensusStart
from .certificate import Certificate
from .certificate_file import data_sha256, load_certificate
from .certify import certify, certify_width
from .compare import Comparison, Matching, compare, match_latents
from .datasets import ToyData, list_toys, load_data, load_toy
from .diagnostics import (
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
from .encoders import encoder_from_hyperplanes, sae_from_solution
from .family import (
    Crosscoder,
    Transcoder,
    crosscoder_loss,
    crosscoder_loss_terms,
    transcoder_loss,
    transcoder_loss_terms,
)
from .loss_units import (
    dictionary_learning_to_canonical,
    saelens_to_canonical,
    sparsify_to_canonical,
    to_canonical_loss,
    total_variance,
)
from .lrb import (
    BENCH_PRESETS,
    LinearRepresentationBench,
    gt_recovery,
    linear_representation_bench,
    mean_max_inner_product,
)
from .path import certify_path
from .pattern_tree import SearchStats
from .pieces import (
    BlockStep,
    PieceSolveError,
    activation_pattern,
    block_improvements,
    decoder_step,
    encoder_step,
    partial_minimum_test,
    polish,
)
from .sae import SAE, LossTerms, load_sae, sae_loss, sae_loss_terms
from .sae_writers import save_sae
from .scale_compare import compare_streamed, latent_table
from .sweep import SweepResult, run_sweep
from .sweep_config import SweepConfig, load_config
from .tolerance import relative_gap, within_tol
from .train import train_crosscoder, train_sae, train_transcoder
from .train_result import TrainResult
from .verification import Verification, verify
from .width_incumbents import WidthSearch, width_incumbents

__all__ = [
    "Census",
    "CensusGroup",
    "CensusStart",
    "activation_signature",
    "census",
    "group_minima",
    "Anchors",
    "anchors_from_class_means",
    "anchors_from_features",
    "train_crosscoder",
    "train_transcoder",
    "SweepConfig",
    "SweepResult",
    "load_config",
    "run_sweep",
    "Comparison",
    "Matching",
    "compare",
    "match_latents",
    "Absorption",
    "AntipodalPair",
    "Split",
    "Stationarity",
    "active_mask",
    "antipodal_pairs",
    "dead_latents",
    "feature_absorption",
    "feature_splitting",
    "stationarity",
    "BlockStep",
    "PieceSolveError",
    "activation_pattern",
    "block_improvements",
    "decoder_step",
    "encoder_step",
    "partial_minimum_test",
    "polish",
    "Crosscoder",
    "Transcoder",
    "certify_path",
    "crosscoder_loss",
    "crosscoder_loss_terms",
    "encoder_from_hyperplanes",
    "transcoder_loss",
    "transcoder_loss_terms",
    "BENCH_PRESETS",
    "LinearRepresentationBench",
    "ToyData",
    "TrainResult",
    "dictionary_learning_to_canonical",
    "gt_recovery",
    "linear_representation_bench",
    "list_toys",
    "load_data",
    "load_sae",
    "load_toy",
    "mean_max_inner_product",
    "saelens_to_canonical",
    "save_sae",
    "sparsify_to_canonical",
    "to_canonical_loss",
    "total_variance",
    "train_sae",
    "SAE",
    "AffineFrame",
    "AtomSet",
    "Certificate",
    "DualBound",
    "JointWideLimit",
    "LossTerms",
    "affine_frame",
    "certify",
    "certify_width",
    "data_sha256",
    "load_certificate",
    "verify",
    "Verification",
    "SearchStats",
    "dual_bound",
    "dual_certificate",
    "enumerate_atoms",
    "estimate_n_atoms",
    "joint_bound",
    "joint_wide_limit",
    "lam_max",
    "lam_max_bound",
    "sae_from_solution",
    "sae_loss",
    "sae_loss_terms",
    "PolishResult",
    "polish_at_scale",
    "compare_streamed",
    "latent_table",
    "within_tol",
    "relative_gap",
    "WidthSearch",
    "width_incumbents",
]
__version__ = "0.1.0"
