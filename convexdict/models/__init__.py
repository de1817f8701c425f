"""Models and the objective: SAE, transcoder, crosscoder, the canonical loss."""
