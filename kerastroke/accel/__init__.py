"""Accelerated paths for weights in host memory (Numba loops), behind the engine's seam."""
