"""Group-lasso engines: CVXPY, batched FISTA, torch FISTA, Newton polish."""
