"""Exact pricing engines: the hyperplane sweep in numpy/numba and on torch."""
