"""convexdict: certified global optima of ReLU sparse autoencoders."""

from .atoms import AffineFrame, AtomSet, affine_frame, enumerate_atoms, estimate_n_atoms
from .bounds import (
    DualBound,
    JointWideLimit,
    dual_bound,
    dual_certificate,
    joint_bound,
    joint_wide_limit,
    lam_max,
)
from .certify import Certificate, certify, encoder_from_hyperplanes, sae_from_solution
from .datasets import (
    BENCH_PRESETS,
    LinearRepresentationBench,
    ToyData,
    gt_recovery,
    linear_representation_bench,
    list_toys,
    load_data,
    load_toy,
    mean_max_inner_product,
)
from .family import (
    Crosscoder,
    Transcoder,
    crosscoder_loss,
    crosscoder_loss_terms,
    transcoder_loss,
    transcoder_loss_terms,
)
from .io import (
    dictionary_learning_to_canonical,
    load_sae,
    saelens_to_canonical,
    save_sae,
    sparsify_to_canonical,
    to_canonical_loss,
    total_variance,
)
from .path import certify_path
from .sae import SAE, LossTerms, sae_loss, sae_loss_terms
from .train import TrainResult, train_sae

__all__ = [
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
    "dual_bound",
    "dual_certificate",
    "enumerate_atoms",
    "estimate_n_atoms",
    "joint_bound",
    "joint_wide_limit",
    "lam_max",
    "sae_from_solution",
    "sae_loss",
    "sae_loss_terms",
]
__version__ = "0.1.0"
