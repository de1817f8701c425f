"""Numerical engines for convexdict.

These modules work on plain arrays and tensors; they never import :mod:`convexdict`
(the dependency runs one way: ``convexdict -> solvers``).
"""
