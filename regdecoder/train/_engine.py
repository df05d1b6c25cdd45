"""The gradient training engine: decoder weights and a per-sample latent table.

Data stay on the device and batches are drawn by index. Each step updates the
decoder weights (``torch.optim.Adam``) and only the latent rows of its batch, with
row-wise optimiser state (:class:`~regdecoder.train._common.RowSGD` /
:class:`~regdecoder.train._common.RowAdam`), so a step costs O(batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ._common import EpochLog, make_row_optimizer, progress_bar


@dataclass(frozen=True)
class Recipe:
    """Optimiser settings of the gradient engine.

    ``reduction='sum'`` sums the squared error over the batch and genes; this is
    what the paper's SGD step on the latents (lr 0.01) needs to move them at all.
    """

    max_epochs: int = 500
    batch_size: int = 32
    lr_weights: float = 1e-3
    weight_decay: float = 1e-5
    z_optimizer: str = "sgd"
    lr_z: float = 1e-2
    momentum_z: float = 0.9
    weight_decay_z: float = 1e-5
    reduction: str = "sum"
    z_init_std: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


#: The paper's recipe for the simulated GRN (sec. 3.3): batch 32, Adam 1e-3 on the
#: weights, SGD lr 1e-2 momentum 0.9 on the latents, weight decay 1e-5, 500 epochs.
PAPER = Recipe()

#: Default for decoders the ALS solver does not cover (MLPs): larger batches and Adam
#: on the latents, which converge in far fewer epochs than the paper's recipe.
FAST = Recipe(max_epochs=200, batch_size=256, lr_weights=1e-3, z_optimizer="adam", lr_z=1e-2, momentum_z=0.0)


def _loss(xhat: torch.Tensor, x: torch.Tensor, reduction: str) -> torch.Tensor:
    return nn.functional.mse_loss(xhat, x, reduction=reduction)


def fit_gradient(
    decoder: nn.Module,
    x: torch.Tensor,
    z: torch.Tensor,
    recipe: Recipe,
    *,
    seed: int = 0,
    early_stopping: bool = False,
    patience: int = 10,
    min_delta: float = 1e-4,
    progress: bool = True,
    callback: Callable[[dict], bool | None] | None = None,
) -> tuple[torch.Tensor, dict]:
    """Train ``decoder`` and the latent table ``z`` (modified in place) on ``x``.

    One epoch visits every sample once in a seeded random order. With
    ``early_stopping``, training stops once the epoch loss has not improved by a
    relative ``min_delta`` for ``patience`` epochs. ``callback(state)`` runs after
    each epoch with ``epoch``, ``loss`` (mean squared error per entry),
    ``seconds`` (training time, callbacks excluded) and ``z``; returning True stops.

    Returns ``z`` and the history (``loss``, ``seconds``, ``epochs``).
    """
    n_cells, n_genes = x.shape
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(decoder.parameters(), lr=recipe.lr_weights, weight_decay=recipe.weight_decay)
    zopt = make_row_optimizer(
        z, recipe.z_optimizer, lr=recipe.lr_z, momentum=recipe.momentum_z, weight_decay=recipe.weight_decay_z
    )
    best, stale = float("inf"), 0
    log = EpochLog(recipe.max_epochs, "fit_decoder (gradient)", progress, callback)
    decoder.train()
    for epoch in range(1, recipe.max_epochs + 1):
        perm = torch.randperm(n_cells, generator=gen).to(x.device)
        total = torch.zeros((), device=x.device)
        for start in range(0, n_cells, recipe.batch_size):
            idx = perm[start : start + recipe.batch_size]
            zb = z[idx].requires_grad_(True)
            xb = x[idx]
            loss = _loss(decoder(zb), xb, recipe.reduction)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            zopt.step(idx, zb.grad)
            sse = loss.detach() if recipe.reduction == "sum" else loss.detach() * xb.numel()
            total += sse
        mse = float(total) / (n_cells * n_genes)
        stop = log.end_epoch(epoch, mse, z)
        if early_stopping:
            if mse < best * (1 - min_delta):
                best, stale = mse, 0
            else:
                stale += 1
                stop = stop or stale >= patience
        if stop:
            break
    history = log.close()
    decoder.eval()
    return z, history


def infer_gradient(
    decoder: nn.Module,
    x: torch.Tensor,
    z0: torch.Tensor,
    *,
    max_iter: int = 500,
    tol: float = 1e-6,
    lr: float = 0.05,
    progress: bool = False,
) -> tuple[torch.Tensor, int]:
    """Latents for new samples with the decoder frozen: full-batch Adam on ``z``.

    All samples are optimised at once (they are independent problems; the summed
    loss keeps their gradients separate). Stops when the relative decrease of the
    loss over an iteration is below ``tol`` or after ``max_iter`` iterations.
    Returns the latents and the number of iterations run.
    """
    for p in decoder.parameters():
        p.requires_grad_(False)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    prev = None
    it = 0
    bar = progress_bar(max_iter, "infer (gradient)", progress)
    try:
        for it in range(1, max_iter + 1):  # noqa: B007
            loss = _loss(decoder(z), x, "sum")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
            cur = float(loss.detach())
            if prev is not None and abs(prev - cur) <= tol * max(prev, 1e-12):
                break
            prev = cur
    finally:
        bar.close()
        for p in decoder.parameters():
            p.requires_grad_(True)
    return z.detach(), it
