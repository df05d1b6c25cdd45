"""Results out of an AnnData: an activity AnnData, tidy weight tables."""

from ._get import activities, weights

__all__ = ["activities", "weights"]
