"""One entry point to fit a decoder and one to infer latents, for every solver and likelihood.

:func:`fit` dispatches a :class:`~regdecoder.train.Recipe` to the censored ALS or to the
gradient engine, after the one warm start (:func:`warm_start`); :func:`infer` finds the
latents of new cells with the decoder frozen. Both work on tensors and sources only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..nn import Decoder, DecoderConfig
from ._als import _latents, _ridge_factor, fit_als, masked_pca_init
from ._engine import fit_gradient, infer_gradient
from ._latents import MAX_ITER, TOL, solve_latents
from ._recipes import Recipe

#: Count likelihoods: rates are expressed in units where a typical non-zero rate is at least
#: this, so that softplus(p) ~ ReLU(p) (a rate near 0 is cheap to reach).
RATE_SCALE = 10.0

#: Inference defaults, for every caller: the latent solver of one-layer decoders
#: (:func:`~regdecoder.train.solve_latents`: steps at most, relative KKT tolerance) and full-batch
#: Adam (MLPs and count likelihoods).
INFER_ALS = {"max_iter": MAX_ITER, "tol": TOL}
INFER_GRADIENT = {"max_iter": 500, "tol": 1e-6}


def seeded_module(cls, *args, seed: int, device: torch.device):
    """``cls(*args)`` initialised from ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(*args).to(device)


def size_factor_reference(lib: np.ndarray, nonzero_values: Callable[[np.ndarray], np.ndarray], output: str) -> float:
    """The reference library size of a count model (size factor = library size / reference).

    The training mean, scaled up (softplus link) so that typical non-zero rates, the
    non-zero size-normalised counts, are at least :data:`RATE_SCALE`.
    """
    ref = float(np.mean(lib))
    if output == "softplus":
        vals = nonzero_values(lib / ref)
        typical = float(np.median(vals)) if vals.size else 1.0
        ref *= max(1.0, RATE_SCALE / max(typical, 1e-12))
    return ref


def _count_targets(x: torch.Tensor, size_factors: torch.Tensor, output: str) -> torch.Tensor:
    """Counts per unit size factor (log1p for the exp link): the scale of the decoder's rate."""
    y = x / size_factors.reshape(-1, 1)
    return torch.log1p(y) if output == "exp" else y


@torch.no_grad()
def warm_start(
    decoder: Decoder,
    x: torch.Tensor,
    recipe: Recipe,
    *,
    prior_sign: torch.Tensor | None,
    size_factors: torch.Tensor | None,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The one warm start of the gradient engine: ``(z0, weight, bias)``.

    ``recipe.start``: ``'random'`` (latents N(0, ``z_init_std``^2), the decoder's own
    initial weights: the paper's), ``'pca'`` (the ALS start: per-TF principal directions,
    then least-squares latents), ``'als'`` (``start_epochs`` epochs of censored ALS on
    the data, or on counts per unit size factor). Decoders with hidden layers always start
    at random. Returns the weights and bias to set (None: keep the decoder's).
    """
    gen = torch.Generator().manual_seed(seed)
    if recipe.start == "random" or not decoder.one_layer:
        std = recipe.z_init_std if recipe.start == "random" else 1.0
        return (torch.randn(x.shape[0], decoder.config.n_latent, generator=gen) * std).to(x.device), None, None
    mask = decoder.get_mask()
    if recipe.start == "pca":
        w0 = masked_pca_init(x, mask, prior_sign=prior_sign, n_iter=10, generator=gen, dtype=x.dtype)
        z0 = _latents(x, w0, None, _ridge_factor(w0.T @ w0, 1e-6))  # the ALS start's least-squares step
        return z0, w0, None
    cfg = decoder.config
    y = x if size_factors is None else _count_targets(x, size_factors, cfg.output)
    init_cfg = DecoderConfig(
        n_genes=cfg.n_genes,
        n_latent=cfg.n_latent,
        bias=cfg.bias,
        output="linear" if cfg.output in ("linear", "exp") else "relu",
        masked=True,
        impl="dense",
    )
    rows, cols = torch.nonzero(mask, as_tuple=True)
    init = seeded_module(Decoder, init_cfg, rows.cpu(), cols.cpu(), seed=seed, device=x.device)
    z0, _ = fit_als(init, y, prior_sign=prior_sign, max_epochs=recipe.start_epochs, seed=seed, progress=False)
    return z0, init.get_weight(), init.get_bias()


def fit(
    decoder: Decoder,
    data,
    recipe: Recipe,
    *,
    prior_sign: torch.Tensor | None = None,
    size_factors: torch.Tensor | None = None,
    soft_mask: float = 0.0,
    fixed_weights: bool = False,
    seed: int = 0,
    progress: bool = True,
    callback: Callable[[Decoder, dict], bool | None] | None = None,
) -> tuple[Decoder, torch.Tensor, dict]:
    """Fit a decoder and the training latents.

    Parameters
    ----------
    decoder
        The decoder to train, on the compute device; its ``config.likelihood`` is the loss.
    data
        Cells x genes: a tensor, or (ALS only) a source read in chunks.
    recipe
        ``recipe.solver`` ``'als'`` (one-layer, ``'mse'``) or ``'gradient'``.
    prior_sign
        Genes x latents, +-1 on signed edges (orients the start).
    size_factors
        Count likelihoods: one per cell (mean count = size factor x rate).
    soft_mask
        > 0: the masked decoder is replaced by a dense one and weights off the mask pay
        ``soft_mask * batch size * sum |w|`` (an L1 penalty per cell).
    fixed_weights
        ALS: keep the weights at the prior's signs (fit the bias and the latents only).
    seed
        Seed of the start and of the batch order.
    progress
        Progress bar.
    callback
        ``callback(decoder, state)`` after every epoch; True stops.

    Returns
    -------
    The trained decoder (a new, dense one with ``soft_mask``), the latents and the history.
    """
    cb = None if callback is None else (lambda state: callback(decoder, state))
    if recipe.solver == "als":
        signed = prior_sign is not None and bool((prior_sign != 0).any())
        z, history = fit_als(
            decoder, data, prior_sign=prior_sign, max_epochs=recipe.max_epochs, tol=recipe.tol,
            start=recipe.start if signed else "pca", shrink=recipe.shrink if signed else 0.0,
            fixed_weights=fixed_weights, center=recipe.center, seed=seed, progress=progress, callback=cb,
        )  # fmt: skip
        return decoder, z, history
    x = data
    z0, w0, b0 = warm_start(decoder, x, recipe, prior_sign=prior_sign, size_factors=size_factors, seed=seed)
    loss = decoder.nll
    if soft_mask:
        mask = decoder.get_mask()
        dense_cfg = DecoderConfig(**{**decoder.config.to_dict(), "masked": False})
        decoder = seeded_module(Decoder, dense_cfg, seed=seed, device=x.device)
        off = (~mask).to(torch.float32)
        w_param = decoder.layers[0].weight
        base = decoder.nll

        def loss(xhat, xb, eb):  # L1 on weights off the prior, soft_mask per cell of the batch
            return base(xhat, xb, eb) + soft_mask * xhat.shape[0] * (w_param.abs() * off).sum()

        cb = None if callback is None else (lambda state: callback(decoder, state))
    if w0 is not None:
        decoder.set_weight(w0, b0)
    z, history = fit_gradient(
        decoder, x, z0.clone(), recipe, loss=loss, extra=None if size_factors is None else size_factors.reshape(-1, 1),
        seed=seed, early_stopping=recipe.early_stopping, patience=recipe.patience, min_delta=recipe.tol,
        progress=progress, callback=cb,
    )  # fmt: skip
    return decoder, z, history


def infer(
    decoder: Decoder,
    data,
    *,
    method: str = "auto",
    max_iter: int | None = None,
    tol: float | None = None,
    size_factors: torch.Tensor | None = None,
    z_start: torch.Tensor | None = None,
    detected: torch.Tensor | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, int]:
    """Latents of new cells with the decoder frozen.

    ``method='als'`` (one-layer decoders with the ``'mse'`` likelihood; their default): the
    censored least-squares latents with the ridge, by the one latent solver
    (:func:`~regdecoder.train.solve_latents`; ``data`` may be a source read in chunks;
    ``detected``: the training cells' per-gene detection rate, for its preconditioner).
    ``'gradient'``: full-batch Adam on the latents from ``z_start`` (MLPs). Count likelihoods
    always use their likelihood on the gradient method, from the censored least-squares
    latents of the counts per unit size factor (one-layer) or ``z_start``. Defaults:
    :data:`INFER_ALS`, :data:`INFER_GRADIENT`.

    Returns the latents and the largest number of iterations (steps) a cell took.
    """
    cfg = decoder.config
    if method not in ("auto", "als", "gradient"):
        msg = f"Unknown inference method {method!r}; use 'auto', 'als' or 'gradient'."
        raise ValueError(msg)
    if method == "auto":
        method = "als" if decoder.one_layer else "gradient"
    dev = next(decoder.parameters()).device
    if cfg.likelihood != "mse":
        if size_factors is None:
            msg = "A count model needs the cells' size factors; use `rd.tl.infer(adata, model)`, which computes them."
            raise ValueError(msg)
        sf = size_factors.reshape(-1, 1).to(data.device, torch.float32)
        if decoder.one_layer:
            y = _count_targets(data, sf, cfg.output)
            z0, _ = solve_latents(y, decoder.get_weight(), decoder.get_bias(), relu=cfg.output != "exp")
        else:
            z0 = z_start.to(dev).expand(data.shape[0], -1)
        return infer_gradient(
            decoder, data, z0, loss=decoder.nll, extra=sf,
            max_iter=INFER_GRADIENT["max_iter"] if max_iter is None else max_iter,
            tol=INFER_GRADIENT["tol"] if tol is None else tol,
        )  # fmt: skip
    if method == "als":
        z, info = solve_latents(
            data, decoder.get_weight(), decoder.get_bias(), relu=cfg.output == "relu",
            max_iter=INFER_ALS["max_iter"] if max_iter is None else max_iter,
            tol=INFER_ALS["tol"] if tol is None else tol, detected=detected, progress=progress,
        )  # fmt: skip
        return z, int(info["n_iter"].max()) if len(info["n_iter"]) else 0
    z0 = z_start.to(dev).expand(data.shape[0], -1)
    return infer_gradient(
        decoder, data, z0,
        max_iter=INFER_GRADIENT["max_iter"] if max_iter is None else max_iter,
        tol=INFER_GRADIENT["tol"] if tol is None else tol,
    )  # fmt: skip
