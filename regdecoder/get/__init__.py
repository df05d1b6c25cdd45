"""Results out of an AnnData: an activity AnnData, tidy weight tables."""

from ._get import activities, new_edges, weights

__all__ = ["activities", "new_edges", "weights"]
