"""Convex block solvers on torch (decoder, encoder) and the joint wide limit."""
