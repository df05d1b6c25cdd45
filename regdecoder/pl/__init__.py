"""Plots of what rd.tl wrote (matplotlib; ``ax=``, ``show=``, ``return_fig=``)."""

from ._activities import activities, dotplot
from ._load import load_curve
from ._plots import loss, recovery
from ._targets import targets
from ._volcano import volcano

__all__ = ["activities", "dotplot", "load_curve", "loss", "recovery", "targets", "volcano"]
