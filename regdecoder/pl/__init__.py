"""Plots of what rd.tl wrote (matplotlib; ``ax=``, ``show=``, ``return_fig=``)."""

from ._activities import activities
from ._load import load_curve
from ._plots import loss, recovery

__all__ = ["activities", "load_curve", "loss", "recovery"]
