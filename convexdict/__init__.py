"""convexdict: certified global optima of ReLU sparse autoencoders."""

from .sae import SAE, LossTerms, sae_loss, sae_loss_terms

__all__ = ["SAE", "LossTerms", "sae_loss", "sae_loss_terms"]
__version__ = "0.1.0"
