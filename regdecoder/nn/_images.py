"""Convolutional decoders and their mirrored encoders for the paper's image experiments.

The architectures follow the paper's appendix tables (sec. 3.1-3.2):

* MNIST: latent 20 -> ``Linear(20, 128*7*7)`` ReLU -> ``ConvTranspose2d(128, 64, 4, 2, 1)``
  ReLU (14x14) -> ``ConvTranspose2d(64, 1, 4, 2, 1)`` Sigmoid (28x28). The encoder mirrors
  it: ``Conv2d(1, 64, 4, 2, 1)`` ReLU -> ``Conv2d(64, 128, 4, 2, 1)`` ReLU -> ``Linear(128*7*7, 20)``.
* CIFAR10 "1x1": latent 256x1x1 -> ``ConvTranspose2d(256, 128, 4, 2, 0)`` (4x4) -> 128 (8x8)
  -> 64 (16x16) -> 64 (32x32), each ``(4, 2, 1)`` after the first and each followed by batch
  norm and ReLU, -> ``ConvTranspose2d(64, 3, 1, 1, 0)`` Sigmoid.
* CIFAR10 "4x4": latent 64x4x4 -> 64 (8x8) -> 32 (16x16) -> 16 (32x32), each
  ``ConvTranspose2d(., ., 4, 2, 1)`` + batch norm + ReLU, -> ``ConvTranspose2d(16, 3, 1, 1, 0)`` Sigmoid.

Convolutions followed by batch norm have no bias (the norm's shift replaces it); the
others have one. The encoders' last layer is linear (no activation): the latent is
unconstrained, as the decoder's free latent table is.
"""

from __future__ import annotations

import math

from torch import nn

#: The image models: name -> (latent shape, image shape).
IMAGE_MODELS: dict[str, tuple[tuple[int, ...], tuple[int, int, int]]] = {
    "mnist": ((20,), (1, 28, 28)),
    "cifar_1x1": ((256, 1, 1), (3, 32, 32)),
    "cifar_4x4": ((64, 4, 4), (3, 32, 32)),
}


def _up(c_in: int, c_out: int, k: int = 4, s: int = 2, p: int = 1) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, k, s, p, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def _down(c_in: int, c_out: int, k: int = 4, s: int = 2, p: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, s, p, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class MNISTDecoder(nn.Sequential):
    """The paper's MNIST decoder: latent ``(N, 20)`` -> images ``(N, 1, 28, 28)`` in (0, 1)."""

    latent_shape = (20,)
    image_shape = (1, 28, 28)

    def __init__(self, n_latent: int = 20) -> None:
        super().__init__(
            nn.Linear(n_latent, 128 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 4, 2, 1),
            nn.Sigmoid(),
        )
        self.latent_shape = (n_latent,)


class MNISTEncoder(nn.Sequential):
    """The mirror of :class:`MNISTDecoder`: images ``(N, 1, 28, 28)`` -> latent ``(N, 20)``."""

    latent_shape = (20,)
    image_shape = (1, 28, 28)

    def __init__(self, n_latent: int = 20) -> None:
        super().__init__(
            nn.Conv2d(1, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, n_latent),
        )
        self.latent_shape = (n_latent,)


class CIFARDecoder1x1(nn.Sequential):
    """The paper's CIFAR10 "1x1" decoder: latent ``(N, 256, 1, 1)`` -> ``(N, 3, 32, 32)``."""

    latent_shape = (256, 1, 1)
    image_shape = (3, 32, 32)

    def __init__(self, capacity: int = 64) -> None:
        c = capacity
        super().__init__(
            *_up(256, 2 * c, 4, 2, 0),  # 4x4
            *_up(2 * c, 2 * c),  # 8x8
            *_up(2 * c, c),  # 16x16
            *_up(c, c),  # 32x32
            nn.ConvTranspose2d(c, 3, 1, 1, 0),
            nn.Sigmoid(),
        )


class CIFAREncoder1x1(nn.Sequential):
    """The mirror of :class:`CIFARDecoder1x1`: ``(N, 3, 32, 32)`` -> ``(N, 256, 1, 1)``."""

    latent_shape = (256, 1, 1)
    image_shape = (3, 32, 32)

    def __init__(self, capacity: int = 64) -> None:
        c = capacity
        super().__init__(
            *_down(3, c, 1, 1, 0),  # 32x32
            *_down(c, c),  # 16x16
            *_down(c, 2 * c),  # 8x8
            *_down(2 * c, 2 * c),  # 4x4
            nn.Conv2d(2 * c, 256, 4, 2, 0),  # 1x1
        )


class CIFARDecoder4x4(nn.Sequential):
    """The paper's CIFAR10 "4x4" decoder: latent ``(N, 64, 4, 4)`` -> ``(N, 3, 32, 32)``."""

    latent_shape = (64, 4, 4)
    image_shape = (3, 32, 32)

    def __init__(self) -> None:
        super().__init__(
            *_up(64, 64),  # 8x8
            *_up(64, 32),  # 16x16
            *_up(32, 16),  # 32x32
            nn.ConvTranspose2d(16, 3, 1, 1, 0),
            nn.Sigmoid(),
        )


class CIFAREncoder4x4(nn.Sequential):
    """The mirror of :class:`CIFARDecoder4x4`: ``(N, 3, 32, 32)`` -> ``(N, 64, 4, 4)``."""

    latent_shape = (64, 4, 4)
    image_shape = (3, 32, 32)

    def __init__(self) -> None:
        super().__init__(
            *_down(3, 16, 1, 1, 0),  # 32x32
            *_down(16, 32),  # 16x16
            *_down(32, 64),  # 8x8
            nn.Conv2d(64, 64, 4, 2, 1),  # 4x4
        )


_BUILDERS = {
    "mnist": (MNISTDecoder, MNISTEncoder),
    "cifar_1x1": (CIFARDecoder1x1, CIFAREncoder1x1),
    "cifar_4x4": (CIFARDecoder4x4, CIFAREncoder4x4),
}


def image_model(name: str) -> tuple[nn.Module, nn.Module]:
    """A fresh ``(decoder, encoder)`` pair for ``'mnist'``, ``'cifar_1x1'`` or ``'cifar_4x4'``.

    Both carry ``latent_shape`` and ``image_shape`` attributes.
    """
    if name not in _BUILDERS:
        msg = f"Unknown image model {name!r}; use one of {sorted(_BUILDERS)}."
        raise ValueError(msg)
    dec, enc = _BUILDERS[name]
    return dec(), enc()


def n_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (batch-norm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def image_loads(decoder: nn.Module, encoder: nn.Module | None, n_samples: int) -> dict[str, float]:
    """The paper's loads for ``n_samples`` training images (eq. 3-5).

    ``alpha_d = N*n / (C_d + N*m)`` and ``alpha_e = m*N / C_e`` with ``n`` the values per
    image, ``m`` the values per latent and ``C`` the trainable parameters (weights, biases
    and batch-norm scales and shifts) of the decoder and the encoder.
    """
    n = math.prod(decoder.image_shape)
    m = math.prod(decoder.latent_shape)
    c_d = n_parameters(decoder)
    out = {"alpha_d": n_samples * n / (c_d + n_samples * m), "n_params_decoder": c_d}
    if encoder is not None:
        c_e = n_parameters(encoder)
        out.update(alpha_e=m * n_samples / c_e, n_params_encoder=c_e)
    return out
