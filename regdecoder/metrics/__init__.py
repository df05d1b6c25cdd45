"""Recovery metrics: per-factor PCC (signed and absolute), factor matching, reconstruction error."""

from ._pcc import cross_correlation, match_factors, mse, pearson_columns
from ._recovery import reconstruction_error, recovery

__all__ = ["cross_correlation", "match_factors", "mse", "pearson_columns", "reconstruction_error", "recovery"]
