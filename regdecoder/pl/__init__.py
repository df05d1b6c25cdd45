"""Plots of what rd.tl wrote (matplotlib; ``ax=``, ``show=``, ``return_fig=``)."""

from ._activities import activities
from ._plots import loss, recovery

__all__ = ["activities", "loss", "recovery"]
