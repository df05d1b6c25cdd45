"""AnnData front end for encoders: on a frozen decoder, or trained with it as an autoencoder."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from ..nn import DecoderConfig, Encoder, EncoderConfig
from ..train import PAPER, Recipe, fit_gradient, resolve_device
from ._fit import _h5ad_safe, _oriented_model, new_decoder, prior_sign_matrix
from ._load import load_values
from ._model import Model, read_saved
from ._validate import check_genes, get_matrix, prepare_net, to_dense

logger = logging.getLogger("regdecoder")

_FORMAT = "regdecoder.EncoderModel"
_OBJECTIVES = ("reconstruct", "latent")
_PRESETS = (None, "fast", "paper")

#: Fast default for encoders and autoencoders: larger batches and a 10x larger Adam
#: step than the paper's (batch 32, lr 1e-4, 500 epochs; autoencoder 1000).
ENCODER_FAST = Recipe(max_epochs=200, batch_size=128, lr_encoder=1e-3)
#: The paper's encoder recipe (Adam lr 1e-4, batch 32, weight decay 1e-5, 500 epochs).
ENCODER_PAPER = PAPER
#: The paper's autoencoder recipe: as the encoder's, 1000 epochs.
AUTOENCODER_PAPER = PAPER.updated(max_epochs=1000)


class EncoderModel:
    """An encoder with the decoder it belongs to, its gene and latent names.

    Made by :func:`regdecoder.tl.fit_encoder` (``kind='encoder'``, the decoder frozen
    during training) or :func:`regdecoder.tl.fit_autoencoder` (``kind='autoencoder'``,
    both trained together); used by :func:`regdecoder.tl.encode`. Saves to one file
    with :meth:`save` (the decoder included) and loads with :meth:`EncoderModel.load`
    (``torch.load(weights_only=True)``).

    Attributes
    ----------
    encoder
        The :class:`~regdecoder.nn.Encoder` (a ``torch.nn.Module``).
    decoder
        The decoder's :class:`~regdecoder.tl.Model` (for ``fit_encoder``, the model
        it was trained on, not a copy).
    var_names, latent_names
        Genes (the encoder's input order) and latent names.
    kind
        ``'encoder'`` or ``'autoencoder'``.
    key
        The default ``key_added`` of :func:`~regdecoder.tl.encode`.
    n_obs
        Number of training cells (for :func:`~regdecoder.tl.load`).
    history
        Training loss per epoch and training seconds.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Model,
        *,
        kind: str = "encoder",
        key: str = "regdecoder_encoder",
        n_obs: int = 0,
        history: dict | None = None,
    ) -> None:
        if encoder.config.n_genes != decoder.config.n_genes or encoder.config.n_latent != decoder.config.n_latent:
            msg = (
                f"Encoder ({encoder.config.n_genes} genes -> {encoder.config.n_latent} latents) does not fit the "
                f"decoder ({decoder.config.n_latent} latents -> {decoder.config.n_genes} genes)."
            )
            raise ValueError(msg)
        self.encoder = encoder
        self.decoder = decoder
        self.kind = kind
        self.key = key
        self.n_obs = int(n_obs)
        self.history = history or {}

    @property
    def var_names(self) -> list[str]:
        return self.decoder.var_names

    @property
    def latent_names(self) -> list[str]:
        return self.decoder.latent_names

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device: str | torch.device) -> EncoderModel:
        """Move encoder and decoder to ``device``; returns self."""
        dev = resolve_device(device)
        self.encoder.to(dev)
        self.decoder.to(dev)
        return self

    def __repr__(self) -> str:
        shape = " -> ".join(map(str, [self.config.n_genes, *self.config.hidden, self.config.n_latent]))
        return f"EncoderModel({self.kind}: {shape}, {self.encoder.n_weights} weights; decoder {self.decoder!r})"

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Latents of expression ``x`` (cells x genes, model gene order), one pass."""
        self.encoder.eval()
        return self.encoder(x)

    def save(self, path: str | os.PathLike) -> None:
        """Write encoder and decoder (configs, weights, names) to one file."""
        from .. import __version__

        torch.save(
            {
                "format": _FORMAT,
                "version": __version__,
                "kind": self.kind,
                "key": self.key,
                "n_obs": self.n_obs,
                "config": self.config.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
                "decoder": self.decoder.to_dict(),
                "history": {k: list(map(float, v)) for k, v in self.history.items() if isinstance(v, list)},
            },
            Path(path),
        )

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> EncoderModel:
        """Load a file written by :meth:`save` (safely: ``weights_only=True``)."""
        blob = read_saved(path, _FORMAT, what="encoder", writer="EncoderModel.save")
        encoder = Encoder(EncoderConfig(**blob["config"]))
        encoder.load_state_dict(blob["state_dict"])
        encoder.eval()
        model = cls(
            encoder,
            Model.from_dict(blob["decoder"]),
            kind=blob["kind"],
            key=blob["key"],
            n_obs=blob["n_obs"],
            history=blob.get("history"),
        )
        return model.to(device)


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


def _aligned_x(adata: AnnData, var_names: Sequence[str], layer: str | None, device) -> torch.Tensor:
    mat = get_matrix(adata, layer)
    order = check_genes(adata.var_names, var_names)
    dense = to_dense(mat)[:, order]
    return torch.as_tensor(np.ascontiguousarray(dense), device=device)


def _new_encoder(n_genes: int, n_latent: int, hidden: Sequence[int], seed: int, device) -> Encoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Encoder(EncoderConfig(n_genes=n_genes, n_latent=n_latent, hidden=tuple(hidden))).to(device)


def fit_encoder(
    adata: AnnData,
    model: Model,
    *,
    objective: str = "reconstruct",
    noise: float = 0.0,
    hidden: Sequence[int] = (),
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
    progress: bool = True,
) -> EncoderModel:
    """Train an encoder on a frozen decoder, for one-pass latents of new cells.

    The decoder (from :func:`~regdecoder.tl.fit_decoder`) is not changed. The encoder
    is ``Linear -> LeakyReLU`` (the paper's Table 3) or an MLP with ``hidden``.

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
    progress
        Show a progress bar.

    Returns
    -------
    The :class:`EncoderModel`. Writes to ``adata``:

    ``obsm[key_added]``
        The encoder's latents of the training cells (clean input), float32.
    ``uns[key_added]``
        ``latent_names``, ``params``, ``history`` and ``load`` (``alpha_e``, and the
        decoder's ``alpha_d`` for these cells; see :func:`~regdecoder.tl.load`).
    """
    t0 = time.perf_counter()
    if isinstance(model, EncoderModel):
        model = model.decoder
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
    rec = _recipe(preset, ENCODER_PAPER, max_epochs, batch_size, lr, recipe)
    if device is not None:
        model.to(device)
    dev = model.device
    x = _aligned_x(adata, model.var_names, layer, dev)
    z_target = None
    if objective == "latent":
        if latent_key not in adata.obsm:
            msg = (
                f"objective='latent' regresses onto the decoder's latents, but adata.obsm[{latent_key!r}] is missing. "
                "Run `rd.tl.fit_decoder` (or `rd.tl.infer`) on these cells first, or pass `latent_key=`."
            )
            raise KeyError(msg)
        zt = np.asarray(adata.obsm[latent_key], dtype=np.float32)
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
    encoder = _new_encoder(cfg.n_genes, cfg.n_latent, hidden, seed, dev)
    logger.info(
        "fitting encoder (%s, objective=%r, noise=%g) on a frozen decoder, %d cells", encoder, objective, noise, len(x)
    )
    _, history = fit_gradient(
        model.decoder,
        x,
        None,
        rec,
        kind="encoder",
        encoder=encoder,
        objective=objective,
        z_target=z_target,
        noise=noise,
        seed=seed,
        early_stopping=early_stopping,
        progress=progress,
    )
    result = EncoderModel(encoder, model, kind="encoder", key=key_added, n_obs=len(x), history=history)
    params = {
        "objective": objective,
        "noise": noise,
        "hidden": list(encoder.config.hidden),
        "latent_key": latent_key if objective == "latent" else None,
        "layer": layer,
        "preset": preset or "fast",
        "recipe": rec.to_dict(),
        "early_stopping": early_stopping,
        "seed": seed,
        "device": str(dev),
    }
    z = result.encode_tensor(x)
    _write(adata, result, z, key_added, params, history)
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
    source: str = "source",
    target: str = "target",
    weight: str | None = "weight",
    noise: float = 0.0,
    preset: str | None = None,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    recipe: dict | None = None,
    early_stopping: bool = False,
    impl: str = "auto",
    seed: int = 0,
    device: str = "auto",
    key_added: str = "regdecoder_autoencoder",
    progress: bool = True,
) -> EncoderModel:
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
    source, target, weight
        Column names of ``net``.
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
    impl
        SparseLinear kernel: ``'auto'``, ``'dense'`` or ``'sparse'``.
    seed
        Seed of the initial weights, batch order and noise.
    device
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``...
    key_added
        Where results are written, and :func:`~regdecoder.tl.encode`'s default key.
    progress
        Show a progress bar.

    Returns
    -------
    The :class:`EncoderModel` (``kind='autoencoder'``; its ``decoder`` is a Model
    usable with :func:`~regdecoder.tl.infer`). Writes to ``adata``:

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
    rec = _recipe(preset, AUTOENCODER_PAPER, max_epochs, batch_size, lr, recipe)
    mat = get_matrix(adata, layer)
    dev = resolve_device(device)
    var_names = list(map(str, adata.var_names))
    rows = cols = prior = None
    if net is not None:
        if n_latent is not None or decoder_hidden:
            msg = "A decoder masked by `net` has one latent per TF and one layer: leave `n_latent` and `decoder_hidden` unset."
            raise ValueError(msg)
        net_used, latent_names, rows, cols, prior = prepare_net(
            net, var_names, source=source, target=target, weight=weight, tmin=tmin
        )
    else:
        if n_latent is None or int(n_latent) < 1:
            msg = "Without `net`, give the number of latents: `n_latent=` (a positive integer)."
            raise ValueError(msg)
        latent_names = [f"latent_{i}" for i in range(int(n_latent))]
        net_used = None
    config = DecoderConfig(
        n_genes=len(var_names),
        n_latent=len(latent_names),
        hidden=tuple(decoder_hidden),
        bias=bias,
        output=output,
        masked=net is not None,
        impl=impl,
    )
    decoder = new_decoder(config, rows, cols, seed, dev)
    encoder = _new_encoder(config.n_genes, config.n_latent, hidden, seed + 1, dev)
    x = torch.as_tensor(to_dense(mat), device=dev)
    prior_sign = prior_sign_matrix(config, rows, cols, prior, dev)
    logger.info(
        "fitting autoencoder (%d genes, %d latents, %d cells) on %s", config.n_genes, config.n_latent, len(x), dev
    )
    _, history = fit_gradient(
        decoder,
        x,
        None,
        rec,
        kind="autoencoder",
        encoder=encoder,
        noise=noise,
        seed=seed,
        early_stopping=early_stopping,
        progress=progress,
    )
    with torch.no_grad():
        encoder.eval()
        z = encoder(x)
        w_before = decoder.get_weight().clone() if decoder.one_layer else None
    model, z = _oriented_model(decoder, z, prior_sign, var_names, latent_names, history)
    if w_before is not None:
        # orient() replaced (w, z) by (w / c, z * c) per latent; apply the same c to the encoder.
        w_after = decoder.get_weight()
        c = (w_before * w_after).sum(0) / (w_after * w_after).sum(0).clamp(min=1e-30)
        c = torch.where((w_after != 0).any(0), c, torch.ones_like(c))
        encoder.scale.mul_(c)
    result = EncoderModel(encoder, model, kind="autoencoder", key=key_added, n_obs=len(x), history=history)
    params = {
        "layer": layer,
        "n_latent": config.n_latent,
        "hidden": list(encoder.config.hidden),
        "decoder_hidden": list(config.hidden),
        "bias": bias,
        "output": output,
        "noise": noise,
        "preset": preset or "fast",
        "recipe": rec.to_dict(),
        "early_stopping": early_stopping,
        "impl": impl,
        "seed": seed,
        "device": str(dev),
    }
    if net_used is not None:
        params.update(tmin=tmin, n_edges=len(net_used), signed_prior=prior is not None)
    _write(adata, result, result.encode_tensor(x), key_added, params, history)
    if decoder.one_layer:
        adata.varm[key_added + "_weights"] = model.weights.astype(np.float32)
    adata.uns[key_added]["orientation"] = np.asarray(model.orientation, dtype=object)
    logger.info(
        "finished fit_autoencoder in %.1fs: added obsm[%r], uns[%r]", time.perf_counter() - t0, key_added, key_added
    )
    return result


def _write(adata: AnnData, result: EncoderModel, z: torch.Tensor, key: str, params: dict, history: dict) -> None:
    dec = result.decoder.decoder
    adata.obsm[key] = z.detach().cpu().numpy().astype(np.float32)
    adata.uns[key] = {
        "latent_names": np.asarray(result.latent_names, dtype=object),
        "params": _h5ad_safe(params),
        "history": {"loss": np.asarray(history["loss"]), "seconds": np.asarray(history["seconds"])},
        "load": load_values(
            result.n_obs,
            dec.config.n_genes,
            dec.config.n_latent,
            n_weights=dec.n_weights + dec.n_bias,
            n_weights_all=dec.n_weights_dense + dec.n_bias,
            n_weights_encoder=result.encoder.n_weights,
        ),
    }


def encode(
    adata: AnnData,
    model: EncoderModel,
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
        An :class:`EncoderModel` from :func:`fit_encoder` or :func:`fit_autoencoder`
        (or :meth:`EncoderModel.load`).
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
    if isinstance(model, Model):
        msg = (
            "This Model is a decoder without an encoder: infer latents with `rd.tl.infer(adata, model)`, "
            "or train an encoder on it first with `rd.tl.fit_encoder(adata, model)`."
        )
        raise TypeError(msg)
    if not isinstance(model, EncoderModel):
        msg = f"`model` must be an EncoderModel (from rd.tl.fit_encoder or rd.tl.fit_autoencoder), got {type(model).__name__}."
        raise TypeError(msg)
    adata = adata.copy() if copy else adata
    t0 = time.perf_counter()
    key = model.key if key_added is None else key_added
    x = _aligned_x(adata, model.var_names, layer, model.device)
    z = model.encode_tensor(x)
    adata.obsm[key] = z.cpu().numpy().astype(np.float32)
    adata.uns[key] = {
        "latent_names": np.asarray(model.latent_names, dtype=object),
        "params": _h5ad_safe({"layer": layer, "kind": model.kind}),
    }
    logger.info("finished encode in %.2fs: added obsm[%r]", time.perf_counter() - t0, key)
    return adata if copy else None
