"""Training SAEs, transcoders and crosscoders (Adam on the canonical loss)."""
