"""The decoder's likelihoods: censored squared error (ReLU), Poisson and negative binomial.

The decoder's output is a rate per unit library size (through a positive link,
``softplus`` or ``exp``); the mean count of a cell is ``mu = s * rate`` with the
cell's size factor ``s`` handed in as ``extra`` (a column, one row per cell). Both
losses return the negative log-likelihood SUMMED over the batch and genes, constants
included, like every loss of the engine.
"""

from __future__ import annotations

import torch

_EPS = 1e-8


def _mean(rate: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    if extra is None:
        msg = "Count losses need the cells' size factors as `extra` (a column with one row per cell)."
        raise ValueError(msg)
    return rate * extra.reshape(-1, 1).to(rate.dtype) + _EPS


def poisson_nll(rate: torch.Tensor, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Summed Poisson negative log-likelihood of counts ``x`` with mean ``extra * rate``."""
    mu = _mean(rate, extra)
    return (mu - x * torch.log(mu) + torch.lgamma(x + 1)).sum()


def nb_nll(rate: torch.Tensor, x: torch.Tensor, extra: torch.Tensor | None, log_theta: torch.Tensor) -> torch.Tensor:
    """Summed negative-binomial NLL; mean ``extra * rate``, inverse dispersion ``exp(log_theta)`` per gene.

    The variance is ``mu + mu^2 / theta`` (``theta = 1 / dispersion``).
    """
    mu = _mean(rate, extra)
    theta = torch.exp(log_theta).reshape(1, -1)
    log_tm = torch.log(theta + mu)
    ll = (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
        + theta * (torch.log(theta) - log_tm)
        + x * (torch.log(mu) - log_tm)
    )
    return -ll.sum()


def squared_error(xhat: torch.Tensor, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Summed squared error (the ``'mse'`` likelihood; with a ReLU output the zeros of ``x``
    are then fitted as censored values by the ALS solver)."""
    return torch.nn.functional.mse_loss(xhat, x, reduction="sum")


def negative_binomial(log_theta: torch.Tensor):
    """An NB loss bound to a (learnable or fixed) per-gene ``log_theta`` tensor."""

    def loss(rate: torch.Tensor, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return nb_nll(rate, x, extra, log_theta)

    return loss
