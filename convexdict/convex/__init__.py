"""The convex certificate: atoms, bounds, the master program, refinement, verification, the
certificate file, the regularisation path."""
