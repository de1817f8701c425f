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
from .certify import Certificate, certify, sae_from_solution
from .sae import SAE, LossTerms, sae_loss, sae_loss_terms

__all__ = [
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
