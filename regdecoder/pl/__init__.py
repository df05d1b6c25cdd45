"""Plots of what rd.tl wrote (matplotlib; ``ax=``, ``show=``, ``return_fig=``)."""

from ._plots import loss, recovery

__all__ = ["loss", "recovery"]
