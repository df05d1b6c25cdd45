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

from ..nn import negative_binomial, poisson_nll

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _mse(xhat: torch.Tensor, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    return nn.functional.mse_loss(xhat, x, reduction="sum")


def _bce(xhat: torch.Tensor, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    # Outputs of a sigmoid; binary_cross_entropy clamps log(0) at -100 as torch does.
    return nn.functional.binary_cross_entropy(xhat, x, reduction="sum")


_LOSSES: dict[str, LossFn] = {"mse": _mse, "bce": _bce, "poisson": poisson_nll}
#: Losses with a parameter that the model owns: built from the module being trained.
_MODULE_LOSSES = {"nb": lambda module: negative_binomial(module.log_theta)}


def register_loss(name: str, fn: LossFn) -> None:
    """Make ``loss=name`` available to the engine; ``fn(xhat, x, extra) -> summed loss``."""
    _LOSSES[name] = fn


def get_loss(loss: str | LossFn, module: nn.Module | None = None) -> LossFn:
    """The loss function for a name or a callable.

    Names: ``'mse'``, ``'bce'``, ``'poisson'`` (``extra``: size factors), ``'nb'``
    (negative binomial whose per-gene ``log_theta`` belongs to ``module``, e.g. a
    :class:`~regdecoder.nn.Decoder` built with ``likelihood='nb'``), or one added with
    :func:`register_loss`.

    Raises
    ------
    ValueError
        An unknown name, or ``'nb'`` without a module that has ``log_theta``.
    """
    if callable(loss):
        return loss
    if loss in _MODULE_LOSSES:
        if module is None or not hasattr(module, "log_theta"):
            msg = (
                f"loss={loss!r} needs the module that owns its dispersion (`log_theta`): pass `module=`, e.g. a "
                "Decoder built with DecoderConfig(likelihood='nb', output='softplus')."
            )
            raise ValueError(msg)
        return _MODULE_LOSSES[loss](module)
    try:
        return _LOSSES[loss]
    except KeyError:
        names = sorted([*_LOSSES, *_MODULE_LOSSES])
        msg = f"Unknown loss {loss!r}; use one of {names} or register one with register_loss."
        raise ValueError(msg) from None
