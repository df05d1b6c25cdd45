"""Preprocessing: train/test split, and prior networks matched to the genes."""

from ._net import PriorNet, prepare_net
from ._split import split

__all__ = ["PriorNet", "prepare_net", "split"]
