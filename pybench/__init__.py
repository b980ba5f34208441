"""pybench: one timing protocol for PyTorch and Julia's Flux on the classic vision models."""

__version__ = "0.1.0"
