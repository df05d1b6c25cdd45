"""Pure array metrics: per-factor Pearson correlation, factor matching, reconstruction error."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def _as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        msg = f"`{name}` must be a 1-D or 2-D array, got {a.ndim} dimensions."
        raise ValueError(msg)
    return a


def pearson_columns(a, b) -> np.ndarray:
    """Pearson correlation of each column of ``a`` with the same column of ``b``.

    A column with zero variance gives NaN.
    """
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if a.shape != b.shape:
        msg = f"`a` and `b` must have the same shape, got {a.shape} and {b.shape}."
        raise ValueError(msg)
    constant = (np.ptp(a, axis=0) == 0) | (np.ptp(b, axis=0) == 0)
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    ok = ~constant & (den > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, (a * b).sum(0) / np.where(ok, den, 1.0), np.nan)


def cross_correlation(a, b) -> np.ndarray:
    """Pearson correlation of every column of ``a`` (rows of the result) with every column of ``b``.

    A constant column correlates 0 with everything here (not NaN), so that matching
    (:func:`match_factors`) can still assign it.
    """
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if a.shape[0] != b.shape[0]:
        msg = f"`a` and `b` must have the same number of rows, got {a.shape[0]} and {b.shape[0]}."
        raise ValueError(msg)
    a = a - a.mean(0)
    b = b - b.mean(0)
    na = np.sqrt((a * a).sum(0))
    nb = np.sqrt((b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (a.T @ b) / np.outer(na, nb)
    return np.nan_to_num(c, nan=0.0)


def match_factors(true, est) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of estimated to true factors (Hungarian, on |PCC|).

    The sign is free: a factor that correlates negatively can still be matched.
    Returns ``(true_index, est_index)``; with fewer estimated than true factors some
    true factors stay unmatched.
    """
    c = np.abs(cross_correlation(true, est))
    return linear_sum_assignment(-c)


def mse(x, xhat) -> float:
    """Mean squared error over all entries."""
    x, xhat = np.asarray(x, dtype=np.float64), np.asarray(xhat, dtype=np.float64)
    if x.shape != xhat.shape:
        msg = f"Shapes differ: {x.shape} and {xhat.shape}."
        raise ValueError(msg)
    return float(np.mean((x - xhat) ** 2))
