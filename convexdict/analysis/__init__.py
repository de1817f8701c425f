"""Analysis of any SAE: compare, the convex pieces, diagnostics, census, plots."""
