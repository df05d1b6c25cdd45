"""Per-sample reconstruction losses of the gradient engine, all summed over the batch.

Each loss takes the model's output, the data and optional per-sample extras
(``extra``, the batch's rows of a tensor the caller supplies, e.g. library sizes)
and returns the SUM over the batch and features, so the latent gradient of a
sample does not shrink with the batch size (the paper's SGD step on z needs it).
Register more with :func:`register_loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _mse(xhat: torch.Tensor, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    return nn.functional.mse_loss(xhat, x, reduction="sum")


def _bce(xhat: torch.Tensor, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    # Outputs of a sigmoid; binary_cross_entropy clamps log(0) at -100 as torch does.
    return nn.functional.binary_cross_entropy(xhat, x, reduction="sum")


_LOSSES: dict[str, LossFn] = {"mse": _mse, "bce": _bce}


def register_loss(name: str, fn: LossFn) -> None:
    """Make ``loss=name`` available to the engine; ``fn(xhat, x, extra) -> summed loss``."""
    _LOSSES[name] = fn


def get_loss(loss: str | LossFn) -> LossFn:
    """The loss function for a name (``'mse'``, ``'bce'``, or a registered one) or a callable."""
    if callable(loss):
        return loss
    try:
        return _LOSSES[loss]
    except KeyError:
        msg = f"Unknown loss {loss!r}; use one of {sorted(_LOSSES)} or register one with register_loss."
        raise ValueError(msg) from None
