"""Pure-PyTorch training: censored ALS for one-layer decoders and the gradient engine."""

from ._als import censored_loss, fit_als, solve_latents
from ._common import RowAdam, RowSGD, resolve_device
from ._engine import FAST, PAPER, Recipe, fit_gradient, infer_gradient
from ._images import CIFAR_PAPER, MNIST_PAPER, infer_images, init_latents, mean_loss, nearest_start, reconstruct
from ._likelihoods import nb_nll, negative_binomial, poisson_nll
from ._losses import get_loss, register_loss
from ._orient import orient

__all__ = [
    "CIFAR_PAPER",
    "FAST",
    "MNIST_PAPER",
    "PAPER",
    "Recipe",
    "RowAdam",
    "RowSGD",
    "censored_loss",
    "fit_als",
    "fit_gradient",
    "get_loss",
    "infer_gradient",
    "nb_nll",
    "negative_binomial",
    "infer_images",
    "init_latents",
    "mean_loss",
    "nearest_start",
    "orient",
    "poisson_nll",
    "reconstruct",
    "register_loss",
    "resolve_device",
    "solve_latents",
]
