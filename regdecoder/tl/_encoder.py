"""Encoders: trained on a frozen decoder, or jointly with it as an autoencoder (the baseline)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from .. import _anndata
from .._settings import settings
from ..metrics._load import decoder_load
from ..nn import Decoder, DecoderConfig, Encoder, EncoderConfig
from ..nn._encoder import OUTPUTS
from ..pp._net import prepare_net
from ..train import AUTOENCODER_PAPER, ENCODER_FAST, ENCODER_PAPER, Recipe, fit_gradient, orient_decoder, resolve_device
from ..train._fit import seeded_module
from ._model import Model

logger = logging.getLogger("regdecoder")

_OBJECTIVES = ("reconstruct", "latent")
_PRESETS = (None, "fast", "paper")


def _recipe(preset: str | None, paper: Recipe, max_epochs, batch_size, lr, recipe) -> Recipe:
    if preset not in _PRESETS:
        msg = f"`preset` must be one of {_PRESETS}, got {preset!r}."
        raise ValueError(msg)
    base = paper if preset == "paper" else ENCODER_FAST
    return base.updated(recipe, max_epochs=max_epochs, batch_size=batch_size, lr_encoder=lr)


def _check_noise(noise: float) -> float:
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        msg = f"`noise` is the standard deviation of the Gaussian input corruption and must be >= 0, got {noise}."
        raise ValueError(msg)
    return noise


def _new_encoder(
    n_genes: int, n_latent: int, hidden: Sequence[int], seed: int, device, *, x_mean: torch.Tensor | None = None
) -> Encoder:
    """The paper's encoder (LeakyReLU output); with ``x_mean``, a linear output on input centred at ``x_mean``."""
    cfg = EncoderConfig(
        n_genes=n_genes, n_latent=n_latent, hidden=tuple(hidden), output="leaky_relu" if x_mean is None else "linear",
        center=x_mean is not None,
    )  # fmt: skip
    encoder = seeded_module(Encoder, cfg, seed=seed, device=device)
    if x_mean is not None:
        encoder.x_mean.copy_(x_mean)
    return encoder


def _output(output: str, decoder: Decoder) -> str:
    """``output='auto'``: the paper's LeakyReLU only where the latents are levels with a fixed origin."""
    if output not in ("auto", *OUTPUTS):
        msg = f"`output` must be 'auto', 'leaky_relu' or 'linear', got {output!r}."
        raise ValueError(msg)
    if output != "auto":
        return output
    return "leaky_relu" if decoder.one_layer and not decoder.config.bias else "linear"


def _write(adata: AnnData, model: Model, z: torch.Tensor, key: str, params: dict, history: dict, **fields) -> None:
    _anndata.write(
        adata, key, tables={"activity": z}, latent_names=model.latent_names, params=params,
        history={"loss": np.asarray(history["loss"]), "seconds": np.asarray(history["seconds"])},
        load=decoder_load(model.decoder, model.n_obs, n_weights_encoder=model.encoder.n_weights), **fields,
    )  # fmt: skip


def fit_encoder(
    adata: AnnData,
    model: Model,
    *,
    objective: str = "reconstruct",
    noise: float = 0.0,
    hidden: Sequence[int] = (),
    output: str = "auto",
    latent_key: str = "regdecoder",
    layer: str | None = None,
    preset: str | None = None,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    recipe: dict | None = None,
    early_stopping: bool = False,
    seed: int = 0,
    device: str | None = None,
    key_added: str = "regdecoder_encoder",
) -> Model:
    """Train an encoder on a frozen decoder, for one-pass latents of new cells.

    The decoder (from :func:`~regdecoder.tl.fit_decoder`) is not changed. The encoder
    is one ``Linear`` layer (an MLP with ``hidden``), ending in a LeakyReLU (the paper's
    Table 3) or linear on centred input (``output``).

    Parameters
    ----------
    adata
        Training cells, with the model's genes (any order).
    model
        The fitted decoder :class:`~regdecoder.tl.Model`.
    objective
        ``'reconstruct'``: minimise the error of ``decoder(encoder(x))`` against
        ``x`` (an autoencoder whose decoder is fixed). ``'latent'``: regress onto the
        decoder's own latents of these cells, ``adata.obsm[latent_key]`` (summed
        squared error).
    noise
        Standard deviation of Gaussian noise added to the encoder's input in every
        batch while the target (``x`` or the latents) stays clean: the paper's
        proposed denoising variant. 0 trains on clean inputs.
    hidden
        Hidden layer widths of an MLP encoder.
    output
        The encoder's last layer. ``'leaky_relu'``: the paper's (Table 3), for latents
        that are levels >= 0, as the paper's decoder without a per-gene offset
        (``fit_decoder(bias=False)``, eq. 6) learns them. ``'linear'``: the input is
        centred at these cells' gene means and the last layer has no nonlinearity, for
        latents of either sign: a decoder with an offset (fit_decoder's default) has
        latents whose origin is not identified, and fit_decoder centres them, so half
        are negative, which a LeakyReLU (slope 0.01) can barely output (signed PCC 0.84
        against 0.99 on new cells in the paper's setting at N = 2,000). ``'auto'``:
        ``'leaky_relu'`` for a one-layer decoder without an offset, else ``'linear'``.
    latent_key
        ``obsm`` key of the decoder's latents (``objective='latent'``).
    layer
        Layer holding the expression; ``None`` uses ``X``.
    preset
        ``'paper'``: Adam lr 1e-4, batch 32, weight decay 1e-5, 500 epochs.
        ``'fast'`` or None: Adam lr 1e-3, batch 128, 200 epochs.
    max_epochs, batch_size, lr
        Override the preset's epochs, batch size and Adam step.
    recipe
        Further :class:`~regdecoder.train.Recipe` overrides.
    early_stopping
        Stop when the epoch loss plateaus (10 epochs, relative 1e-4).
    seed
        Seed of the initial weights, batch order and noise.
    device
        Where to train; None: the model's device (the model is moved otherwise).
    key_added
        Where results are written, and :func:`~regdecoder.tl.encode`'s default key.

    Returns
    -------
    A :class:`~regdecoder.tl.Model` (``kind='encoder'``) holding the encoder and the
    decoder it was trained on (the same module, not a copy). Writes to ``adata``:

    ``obsm[key_added]``
        The encoder's latents of the training cells (clean input), float32.
    ``uns[key_added]``
        ``latent_names``, ``params``, ``history`` and ``load`` (``alpha_e``, and the
        decoder's ``alpha_d`` for these cells; see :func:`~regdecoder.tl.load`).
    """
    t0 = time.perf_counter()
    if not isinstance(model, Model):
        msg = (
            f"`model` must be the fitted decoder (a regdecoder Model from rd.tl.fit_decoder or Model.load), "
            f"got {type(model).__name__}. Fit one first: `model = rd.tl.fit_decoder(adata, net=...)`."
        )
        raise TypeError(msg)
    if objective not in _OBJECTIVES:
        msg = f"`objective` must be one of {_OBJECTIVES}, got {objective!r}."
        raise ValueError(msg)
    noise = _check_noise(noise)
    output = _output(output, model.decoder)
    _anndata.check_key_name(key_added)
    rec = _recipe(preset, ENCODER_PAPER, max_epochs, batch_size, lr, recipe)
    if device is not None:
        model.to(device)
    dev = model.device
    x = _anndata.read(adata, layer=layer, genes=model.var_names).dense(dev)
    z_target = None
    if objective == "latent":
        if latent_key not in adata.obsm:
            msg = (
                f"objective='latent' regresses onto the decoder's latents, but adata.obsm[{latent_key!r}] is missing. "
                "Run `rd.tl.fit_decoder` (or `rd.tl.infer`) on these cells first, or pass `latent_key=`."
            )
            raise KeyError(msg)
        zt = np.asarray(adata.obsm[_anndata.decoder_latents_key(adata, latent_key)], dtype=np.float32)
        names = adata.uns.get(latent_key, {}).get("latent_names")
        if zt.shape != (adata.n_obs, model.config.n_latent) or (
            names is not None and list(map(str, names)) != model.latent_names
        ):
            msg = (
                f"adata.obsm[{latent_key!r}] ({zt.shape[1] if zt.ndim == 2 else '?'} latents) does not hold this "
                f"model's {model.config.n_latent} latents; pass the `latent_key` that fit_decoder/infer wrote with it."
            )
            raise ValueError(msg)
        z_target = torch.as_tensor(zt, device=dev)
    cfg = model.config
    x_mean = x.mean(0) if output == "linear" else None
    encoder = _new_encoder(cfg.n_genes, cfg.n_latent, hidden, seed, dev, x_mean=x_mean)
    logger.info(
        "fitting encoder (objective=%r, noise=%g, output=%r) on a frozen decoder, %d cells", objective, noise, output,
        len(x),
    )  # fmt: skip
    _, history = fit_gradient(
        model.decoder, x, None, rec, kind="encoder", encoder=encoder, objective=objective, z_target=z_target,
        noise=noise, seed=seed, early_stopping=early_stopping, progress=settings.progress,
    )  # fmt: skip
    result = Model(
        model.decoder, var_names=model.var_names, latent_names=model.latent_names, orientation=model.orientation,
        z_mean=model.z_mean, history=history, library_ref=model.library_ref, gene_mean=model.gene_mean,
        encoder=encoder, kind="encoder",
        key=key_added, n_obs=len(x),
    )  # fmt: skip
    params = {
        "objective": objective, "noise": noise, "hidden": list(encoder.config.hidden), "output": output,
        "latent_key": latent_key if objective == "latent" else None, "layer": layer, "preset": preset or "fast",
        "recipe": rec.to_dict(), "early_stopping": early_stopping, "seed": seed, "device": str(dev),
    }  # fmt: skip
    _write(adata, result, result.encode_tensor(x), key_added, params, history)
    logger.info(
        "finished fit_encoder in %.1fs: added obsm[%r], uns[%r]", time.perf_counter() - t0, key_added, key_added
    )
    return result


def fit_autoencoder(
    adata: AnnData,
    *,
    net: pd.DataFrame | None = None,
    n_latent: int | None = None,
    hidden: Sequence[int] = (),
    decoder_hidden: Sequence[int] = (),
    layer: str | None = None,
    bias: bool = False,
    output: str = "relu",
    tmin: int = 5,
    noise: float = 0.0,
    preset: str | None = None,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    recipe: dict | None = None,
    early_stopping: bool = False,
    seed: int = 0,
    device: str | None = None,
    key_added: str = "regdecoder_autoencoder",
) -> Model:
    """The baseline: encoder and decoder trained jointly from scratch to reconstruct x.

    The same encoder as :func:`fit_encoder` and the same decoder as
    :func:`~regdecoder.tl.fit_decoder` (one :class:`~regdecoder.nn.SparseLinear`
    layer masked by ``net``, or dense with ``n_latent`` latents), from PyTorch's
    default random start, trained with Adam on both. Afterwards each latent is
    oriented as fit_decoder orients its latents (scale, then sign by the prior or by
    the mean; see :mod:`regdecoder.train._orient`) and the encoder's output is
    rescaled to match, so signed correlations mean the same for both.

    Parameters
    ----------
    adata
        Training cells x genes.
    net
        Prior network (decoupler format), as in :func:`~regdecoder.tl.fit_decoder`.
    n_latent
        Number of latents when no ``net`` is given.
    hidden
        Hidden widths of the encoder.
    decoder_hidden
        Hidden widths of an MLP decoder (no ``net``).
    layer
        Layer holding the expression; ``None`` uses ``X``.
    bias
        Learn a bias per gene in the decoder.
    output
        Decoder output, ``'relu'`` or ``'linear'``.
    tmin
        Minimum number of targets of a TF in the data.
    noise
        Gaussian noise sd on the encoder's input (a denoising autoencoder); 0: none.
    preset
        ``'paper'``: Adam lr 1e-4, batch 32, weight decay 1e-5, 1000 epochs.
        ``'fast'`` or None: Adam lr 1e-3, batch 128, 200 epochs.
    max_epochs, batch_size, lr
        Override the preset's epochs, batch size and Adam step.
    recipe
        Further :class:`~regdecoder.train.Recipe` overrides.
    early_stopping
        Stop when the epoch loss plateaus.
    seed
        Seed of the initial weights, batch order and noise.
    device
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``...; None: ``rd.settings.device``.
    key_added
        Where results are written, and :func:`~regdecoder.tl.encode`'s default key.

    Returns
    -------
    A :class:`~regdecoder.tl.Model` (``kind='autoencoder'``, usable with
    :func:`~regdecoder.tl.infer` and :func:`encode`). Writes to ``adata``:

    ``obsm[key_added]``
        Oriented latents of the training cells, float32.
    ``varm[key_added + '_weights']``
        Decoder weights, genes x latents (one-layer decoders).
    ``uns[key_added]``
        ``latent_names``, ``params``, ``history``, ``load`` (``alpha_d``,
        ``alpha_e``, ``alpha_ae``) and ``orientation``.
    """
    t0 = time.perf_counter()
    noise = _check_noise(noise)
    _anndata.check_key_name(key_added)
    rec = _recipe(preset, AUTOENCODER_PAPER, max_epochs, batch_size, lr, recipe)
    _, _, var_names = _anndata.matrix(adata, layer)
    var_names = list(map(str, var_names))
    prior = None
    if net is not None:
        if n_latent is not None or decoder_hidden:
            msg = "A decoder masked by `net` has one latent per TF and one layer: leave `n_latent` and `decoder_hidden` unset."
            raise ValueError(msg)
        prior = prepare_net(net, var_names, tmin=tmin)
        latent_names = prior.latent_names
    else:
        if n_latent is None or int(n_latent) < 1:
            msg = "Without `net`, give the number of latents: `n_latent=` (a positive integer)."
            raise ValueError(msg)
        latent_names = [f"latent_{i}" for i in range(int(n_latent))]
    config = DecoderConfig(
        n_genes=len(var_names), n_latent=len(latent_names), hidden=tuple(decoder_hidden), bias=bias, output=output,
        masked=prior is not None,
    )  # fmt: skip
    dev = resolve_device(settings.device if device is None else device)
    x = _anndata.read(adata, layer=layer).dense(dev)
    rows = None if prior is None else torch.as_tensor(prior.rows)
    cols = None if prior is None else torch.as_tensor(prior.cols)
    decoder = seeded_module(Decoder, config, rows, cols, seed=seed, device=dev)
    encoder = _new_encoder(config.n_genes, config.n_latent, hidden, seed + 1, dev)
    sign = None if prior is None else prior.sign_matrix()
    prior_sign = None if sign is None else torch.as_tensor(sign, device=dev)
    logger.info(
        "fitting autoencoder (%d genes, %d latents, %d cells) on %s", config.n_genes, config.n_latent, len(x), dev
    )
    _, history = fit_gradient(
        decoder, x, None, rec, kind="autoencoder", encoder=encoder, noise=noise, seed=seed,
        early_stopping=early_stopping, progress=settings.progress,
    )  # fmt: skip
    with torch.no_grad():
        encoder.eval()
        z = encoder(x)
        w_before = decoder.get_weight().clone() if decoder.one_layer else None
        z, orientation = orient_decoder(decoder, z, prior_sign)
        if w_before is not None:
            # orient() replaced (w, z) by (w / c, z * c) per latent; apply the same c to the encoder.
            w_after = decoder.get_weight()
            c = (w_before * w_after).sum(0) / (w_after * w_after).sum(0).clamp(min=1e-30)
            c = torch.where((w_after != 0).any(0), c, torch.ones_like(c))
            encoder.scale.mul_(c)
    decoder.eval()
    result = Model(
        decoder, var_names=var_names, latent_names=latent_names, orientation=orientation, z_mean=z.mean(0).cpu(),
        history=history, encoder=encoder, kind="autoencoder", key=key_added, n_obs=len(x),
    )  # fmt: skip
    params = {
        "layer": layer, "n_latent": config.n_latent, "hidden": list(encoder.config.hidden),
        "decoder_hidden": list(config.hidden), "bias": bias, "output": output, "noise": noise,
        "preset": preset or "fast", "recipe": rec.to_dict(), "early_stopping": early_stopping, "seed": seed,
        "device": str(dev),
    }  # fmt: skip
    if prior is not None:
        params.update(tmin=tmin, n_edges=len(prior.edges), signed_prior=prior.prior is not None)
    _anndata.write(
        adata, key_added, tables={"activity": result.encode_tensor(x)}, latent_names=latent_names, params=params,
        weights=result.weights if decoder.one_layer else None,
        history={"loss": np.asarray(history["loss"]), "seconds": np.asarray(history["seconds"])},
        load=decoder_load(decoder, len(x), n_weights_encoder=encoder.n_weights), orientation=orientation,
    )  # fmt: skip
    logger.info(
        "finished fit_autoencoder in %.1fs: added obsm[%r], uns[%r]", time.perf_counter() - t0, key_added, key_added
    )
    return result


def encode(
    adata: AnnData,
    model: Model,
    *,
    layer: str | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Latents of new cells in one pass through a trained encoder.

    Parameters
    ----------
    adata
        Cells with the model's genes (any order).
    model
        A :class:`~regdecoder.tl.Model` with an encoder, from :func:`fit_encoder` or
        :func:`fit_autoencoder` (or :meth:`Model.load`).
    layer
        Layer holding the expression; ``None`` uses ``X``.
    key_added
        Where results are written; None: the key the encoder was fitted under
        (``'regdecoder_encoder'`` or ``'regdecoder_autoencoder'`` by default).
    copy
        Return a copy instead of writing to ``adata``.

    Returns
    -------
    ``None``, or a copy when ``copy=True``. Writes ``obsm[key_added]`` (cells x
    latents, float32) and ``uns[key_added]`` (``latent_names``, ``params``).
    """
    if not isinstance(model, Model):
        msg = f"`model` must be a Model with an encoder (from rd.tl.fit_encoder or rd.tl.fit_autoencoder), got {type(model).__name__}."
        raise TypeError(msg)
    if model.encoder is None:
        model.encode_tensor(None)  # the error that names the fix
    adata = adata.copy() if copy else adata
    t0 = time.perf_counter()
    key = _anndata.check_key_name(model.key if key_added is None else key_added)
    x = _anndata.read(adata, layer=layer, genes=model.var_names).dense(model.device)
    _anndata.write(
        adata, key, tables={"activity": model.encode_tensor(x)}, latent_names=model.latent_names,
        params={"layer": layer, "kind": model.kind},
    )  # fmt: skip
    logger.info("finished encode in %.2fs: added obsm[%r]", time.perf_counter() - t0, key)
    return adata if copy else None
