"""Loaders for local data files and small pip-shipped examples (nothing downloads)."""

from ._images import balanced_subset, cifar10, mnist, mnist_sample, read_idx

__all__ = ["balanced_subset", "cifar10", "mnist", "mnist_sample", "read_idx"]
