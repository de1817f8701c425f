"""Sweeps: grids of certify / train / compare cells on Dask."""
