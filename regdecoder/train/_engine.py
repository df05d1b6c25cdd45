"""The gradient training engine: one loop for decoders (with a per-sample latent
table), encoders on a frozen decoder, and autoencoders.

Data stay on the device and batches are drawn by index. A decoder step updates the
decoder weights (``torch.optim.Adam``) and only the latent rows of its batch, with
row-wise optimiser state (:class:`~regdecoder.train._common.RowSGD` /
:class:`~regdecoder.train._common.RowAdam`), so a step costs O(batch).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._common import EpochLog, make_row_optimizer, progress_bar
from ._losses import LossFn, get_loss
from ._recipes import Recipe

_KINDS = ("decoder", "encoder", "autoencoder")
_OBJECTIVES = ("reconstruct", "latent")


def fit_gradient(
    decoder: nn.Module,
    x: torch.Tensor,
    z: torch.Tensor | None,
    recipe: Recipe,
    *,
    kind: str = "decoder",
    encoder: nn.Module | None = None,
    objective: str = "reconstruct",
    z_target: torch.Tensor | None = None,
    noise: float = 0.0,
    loss: str | LossFn = "mse",
    extra: torch.Tensor | None = None,
    amp: bool = False,
    seed: int = 0,
    early_stopping: bool = False,
    patience: int = 10,
    min_delta: float = 1e-4,
    progress: bool = True,
    callback: Callable[[dict], bool | None] | None = None,
) -> tuple[torch.Tensor | None, dict]:
    """The one training loop, for the three model kinds.

    ``kind='decoder'``
        The decoder and the latent table ``z`` (one row per sample, modified in
        place) are trained together; each step updates the decoder (Adam,
        ``recipe.lr_weights``) and only the batch's rows of ``z`` (row-wise SGD or
        Adam state), so a step costs O(batch).
    ``kind='encoder'``
        ``encoder`` is trained (Adam, ``recipe.lr_encoder``) with the decoder
        frozen, either to reconstruct ``x`` through the decoder
        (``objective='reconstruct'``) or to regress onto ``z_target``
        (``objective='latent'``, summed squared error).
    ``kind='autoencoder'``
        Encoder and decoder are trained jointly (both with ``recipe.lr_encoder``,
        as in the paper) to reconstruct ``x``.

    ``noise`` > 0 feeds the encoder ``x + noise * N(0, 1)`` while the target stays
    clean (the paper's proposed denoising variant). ``loss`` names a summed
    per-sample loss (``'mse'``, ``'bce'`` or one added by
    :func:`~regdecoder.train.register_loss`); ``extra`` is a per-sample tensor
    whose batch rows are handed to it. ``amp`` runs the forward pass under
    autocast (bfloat16) on CUDA; the loss is computed in float32.

    One epoch visits every sample once in a seeded random order. With
    ``early_stopping``, training stops once the epoch loss has not improved by a
    relative ``min_delta`` for ``patience`` epochs. ``callback(state)`` runs after
    each epoch with ``epoch``, ``loss`` (the loss per data entry), ``seconds``
    (training time, callbacks excluded) and ``z`` (``None`` for encoders);
    returning True stops.

    Returns ``z`` (``None`` for encoder kinds) and the history (``loss``,
    ``seconds``, ``epochs``).
    """
    if kind not in _KINDS:
        msg = f"Unknown kind {kind!r}; use one of {_KINDS}."
        raise ValueError(msg)
    if objective not in _OBJECTIVES:
        msg = f"Unknown objective {objective!r}; use one of {_OBJECTIVES}."
        raise ValueError(msg)
    if kind == "decoder" and z is None:
        raise ValueError("kind='decoder' needs the latent table `z` (one row per sample).")
    if kind != "decoder" and encoder is None:
        raise ValueError(f"kind={kind!r} needs an `encoder` module.")
    if objective == "latent" and (kind != "encoder" or z_target is None):
        raise ValueError("objective='latent' is for kind='encoder' and needs `z_target` (one row per sample).")
    if noise < 0:
        msg = f"noise must be >= 0 (the sd of the Gaussian input corruption), got {noise}."
        raise ValueError(msg)
    loss_fn = get_loss(loss, module=decoder)
    n = x.shape[0]
    per_sample = x[0].numel() if objective == "reconstruct" else z_target[0].numel()
    gen = torch.Generator().manual_seed(seed)
    dev_gen = torch.Generator(device=x.device).manual_seed(seed) if noise else None
    use_amp = bool(amp) and x.device.type == "cuda"

    # One kernel per Adam step on CUDA (the steps of batch 32 are launch-bound there); the CPU keeps
    # torch's default implementation, whose results the golden tests pin.
    fused = True if x.device.type == "cuda" else None
    zopt = None
    if kind == "decoder":
        params = list(decoder.parameters())
        opt = torch.optim.Adam(params, lr=recipe.lr_weights, weight_decay=recipe.weight_decay, fused=fused)
        zopt = make_row_optimizer(
            z, recipe.z_optimizer, lr=recipe.lr_z, momentum=recipe.momentum_z, weight_decay=recipe.weight_decay_z
        )
    else:
        groups = [{"params": list(encoder.parameters())}]
        if kind == "autoencoder":
            groups.append({"params": list(decoder.parameters())})
        opt = torch.optim.Adam(groups, lr=recipe.lr_encoder, weight_decay=recipe.weight_decay, fused=fused)
    frozen = kind == "encoder"
    if frozen:
        saved = [p.requires_grad for p in decoder.parameters()]
        for p in decoder.parameters():
            p.requires_grad_(False)
        decoder.eval()
    else:
        decoder.train()
    if encoder is not None:
        encoder.train()

    def forward(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        xb = x[idx]
        zb = None
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
            if kind == "decoder":
                zb = z[idx].requires_grad_(True)
                out = decoder(zb)
            else:
                xin = xb if not noise else xb + noise * torch.randn(xb.shape, generator=dev_gen, device=xb.device)
                out = encoder(xin)
                if objective == "reconstruct":
                    out = decoder(out)
        if objective == "latent":
            value = nn.functional.mse_loss(out.float(), z_target[idx], reduction="sum")
        else:
            value = loss_fn(out.float(), xb, None if extra is None else extra[idx])
        return value, zb

    best, stale = float("inf"), 0
    names = {"decoder": "fit_decoder (gradient)", "encoder": "fit_encoder", "autoencoder": "fit_autoencoder"}
    log = EpochLog(recipe.max_epochs, names[kind], progress, callback)
    try:
        for epoch in range(1, recipe.max_epochs + 1):
            perm = torch.randperm(n, generator=gen).to(x.device)
            total = torch.zeros((), device=x.device)
            for start in range(0, n, recipe.batch_size):
                idx = perm[start : start + recipe.batch_size]
                value, zb = forward(idx)
                batch_loss = value if recipe.reduction == "sum" else value / (len(idx) * per_sample)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                opt.step()
                if zopt is not None:
                    zopt.step(idx, zb.grad)
                total += value.detach()
            mean_loss = float(total) / (n * per_sample)
            stop = log.end_epoch(epoch, mean_loss, z)
            if early_stopping:
                if mean_loss < best * (1 - min_delta):
                    best, stale = mean_loss, 0
                else:
                    stale += 1
                    stop = stop or stale >= patience
            if stop:
                break
    finally:
        history = log.close()
        if frozen:
            for p, r in zip(decoder.parameters(), saved, strict=True):
                p.requires_grad_(r)
        decoder.eval()
        if encoder is not None:
            encoder.eval()
    return z, history


def infer_gradient(
    decoder: nn.Module,
    x: torch.Tensor,
    z0: torch.Tensor,
    *,
    max_iter: int = 500,
    tol: float = 1e-6,
    lr: float = 0.05,
    loss: str | LossFn = "mse",
    extra: torch.Tensor | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, int]:
    """Latents for new samples with the decoder frozen: full-batch Adam on ``z``.

    All samples are optimised at once (they are independent problems; the summed
    loss keeps their gradients separate). The decoder runs in eval mode (batch
    norm uses its running statistics) and is restored afterwards. Stops when the
    relative decrease of the loss over an iteration is below ``tol`` or after
    ``max_iter`` iterations. Returns the latents and the number of iterations run.
    """
    loss_fn = get_loss(loss, module=decoder)
    was_training = decoder.training
    saved = [p.requires_grad for p in decoder.parameters()]
    for p in decoder.parameters():
        p.requires_grad_(False)
    decoder.eval()
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    prev = None
    it = 0
    bar = progress_bar(max_iter, "infer (gradient)", progress)
    try:
        for it in range(1, max_iter + 1):  # noqa: B007
            value = loss_fn(decoder(z), x, extra)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            bar.update(1)
            cur = float(value.detach())
            if prev is not None and abs(prev - cur) <= tol * max(prev, 1e-12):
                break
            prev = cur
    finally:
        bar.close()
        for p, r in zip(decoder.parameters(), saved, strict=True):
            p.requires_grad_(r)
        decoder.train(was_training)
    return z.detach(), it
