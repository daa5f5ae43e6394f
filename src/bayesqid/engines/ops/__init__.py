"""Fused PyTensor Ops of the engines, each with numpy, numba and JAX implementations."""
