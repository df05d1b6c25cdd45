"""The paper's recipes for the image experiments, and small helpers around the engine.

Everything trains through :func:`~regdecoder.train.fit_gradient`; these helpers only
build the latent table, evaluate errors and run test-time inference in chunks.
"""

from __future__ import annotations

import torch
from torch import nn

from ._engine import infer_gradient
from ._losses import LossFn, get_loss


def init_latents(
    n: int, shape: tuple[int, ...], *, std: float = 1.0, seed: int = 0, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """A latent table of ``n`` rows of ``shape``, drawn N(0, std^2) from ``seed`` (on the CPU, then moved)."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn((n, *shape), generator=gen) * std).to(device)


@torch.no_grad()
def reconstruct(
    decoder: nn.Module, *, z: torch.Tensor | None = None, x: torch.Tensor | None = None, encoder=None, chunk: int = 1000
) -> torch.Tensor:
    """Decoder outputs for latents ``z``, or for ``encoder(x)``; eval mode, in chunks."""
    if (z is None) == (x is None):
        raise ValueError("Give either `z` (decoder) or `x` with an `encoder` (autoencoder).")
    if x is not None and encoder is None:
        raise ValueError("Reconstructing from `x` needs the `encoder`.")
    src = z if z is not None else x
    modes = [(m, m.training) for m in (decoder, encoder) if m is not None]
    for m, _ in modes:
        m.eval()
    try:
        outs = []
        for s in range(0, src.shape[0], chunk):
            b = src[s : s + chunk]
            outs.append(decoder(b if z is not None else encoder(b)).float())
    finally:
        for m, mode in modes:
            m.train(mode)
    return torch.cat(outs)


def mean_loss(xhat: torch.Tensor, x: torch.Tensor, loss: str | LossFn = "mse") -> float:
    """The engine's summed loss divided by the number of values (per pixel)."""
    return float(get_loss(loss)(xhat.float(), x, None)) / x.numel()


def infer_images(
    decoder: nn.Module,
    x: torch.Tensor,
    z0: torch.Tensor,
    *,
    loss: str | LossFn = "mse",
    max_iter: int = 300,
    lr: float = 0.05,
    tol: float = 0.0,
    chunk: int = 2000,
) -> torch.Tensor:
    """Test-time inference for images: :func:`~regdecoder.train.infer_gradient` on chunks of ``chunk`` images.

    Each image is an independent problem (the loss is summed), so chunking only bounds
    memory; ``tol=0`` runs exactly ``max_iter`` Adam steps per chunk.
    """
    out = []
    for s in range(0, x.shape[0], chunk):
        zc, _ = infer_gradient(
            decoder, x[s : s + chunk], z0[s : s + chunk], max_iter=max_iter, tol=tol, lr=lr, loss=loss
        )
        out.append(zc)
    return torch.cat(out)


@torch.no_grad()
def nearest_start(
    x_train: torch.Tensor, z_train: torch.Tensor, x_new: torch.Tensor, *, chunk: int = 1000
) -> torch.Tensor:
    """A start for test-time inference: each new image gets the latent of its nearest
    training image (Euclidean distance in pixel space).

    A start near the answer lets far fewer inference steps reach the same loss than a
    start from the mean latent; the result is still optimised with the decoder frozen.
    """
    a = x_train.reshape(x_train.shape[0], -1).float()
    out = []
    for s in range(0, x_new.shape[0], chunk):
        b = x_new[s : s + chunk].reshape(-1, a.shape[1]).float()
        out.append(torch.cdist(b, a).argmin(1))
    return z_train[torch.cat(out)].clone()
