"""Column generation loops (CVXPY master and torch master)."""
