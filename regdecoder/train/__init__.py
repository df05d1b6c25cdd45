"""Pure-PyTorch training (no AnnData): one censored ALS, one gradient engine, one warm start,
the recipes, the losses, the orientation of latents and the chunk-source protocol."""

from ._als import censored_loss, fit_als
from ._common import RowAdam, RowSGD, resolve_device
from ._engine import fit_gradient, infer_gradient
from ._fit import INFER_ALS, INFER_GRADIENT, fit, infer, warm_start
from ._images import infer_images, init_latents, mean_loss, nearest_start, reconstruct
from ._latents import solve_latents
from ._losses import get_loss, register_loss
from ._orient import orient, orient_decoder
from ._recipes import (
    ALS,
    AUTOENCODER_PAPER,
    CIFAR_PAPER,
    COUNTS,
    ENCODER_FAST,
    ENCODER_PAPER,
    FAST,
    MNIST_PAPER,
    PAPER,
    Recipe,
    resolve_recipe,
)
from ._source import CSRSource, TensorSource

__all__ = [
    "ALS",
    "AUTOENCODER_PAPER",
    "CSRSource",
    "CIFAR_PAPER",
    "COUNTS",
    "ENCODER_FAST",
    "ENCODER_PAPER",
    "FAST",
    "INFER_ALS",
    "INFER_GRADIENT",
    "MNIST_PAPER",
    "PAPER",
    "Recipe",
    "RowAdam",
    "RowSGD",
    "TensorSource",
    "censored_loss",
    "fit",
    "fit_als",
    "fit_gradient",
    "get_loss",
    "infer",
    "infer_gradient",
    "infer_images",
    "init_latents",
    "mean_loss",
    "nearest_start",
    "orient",
    "orient_decoder",
    "register_loss",
    "reconstruct",
    "resolve_device",
    "resolve_recipe",
    "solve_latents",
    "warm_start",
]
