"""Loaders for prior networks, local image files and small pip-shipped examples (nothing downloads in tests)."""

from ._collectri import collectri, read_net
from ._images import balanced_subset, cifar10, mnist, mnist_sample, read_idx

__all__ = ["balanced_subset", "cifar10", "collectri", "mnist", "mnist_sample", "read_idx", "read_net"]
