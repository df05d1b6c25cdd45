"""AnnData front end: fit a decoder without an encoder, and infer latents of new cells."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from functools import partial

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from ..nn import Decoder, DecoderConfig
from ..train import FAST, PAPER, fit_als, fit_gradient, orient, resolve_device, solve_latents
from ..train._als import masked_pca_init
from ._counts import COUNT_LOSSES, COUNTS, add_extra_latents, fit_extended, infer_size_factors
from ._load import load_values
from ._model import Model
from ._scale import fit_als_adata, infer_adata, require_in_memory, streamable
from ._validate import check_genes, get_matrix, prepare_net, to_dense

logger = logging.getLogger("regdecoder")

_SOLVERS = ("auto", "als", "gradient")
_PRESETS = (None, "fast", "paper")


def fit_decoder(
    adata: AnnData,
    *,
    net: pd.DataFrame | None = None,
    n_latent: int | None = None,
    layer: str | None = None,
    hidden: Sequence[int] = (),
    bias: bool = False,
    output: str = "relu",
    tmin: int = 5,
    source: str = "source",
    target: str = "target",
    weight: str | None = "weight",
    loss: str = "mse",
    library_size: str | None = None,
    n_extra: int = 0,
    soft_mask: bool = False,
    l1: float = 0.1,
    solver: str = "auto",
    preset: str | None = None,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    tol: float = 1e-3,
    early_stopping: bool = False,
    recipe: dict | None = None,
    impl: str = "auto",
    seed: int = 0,
    device: str = "auto",
    key_added: str = "regdecoder",
    progress: bool = True,
    callback: Callable[[dict], bool | None] | None = None,
) -> Model:
    """Train a decoder and every cell's latent vector, with no encoder.

    Each cell's latent ``z`` is a free parameter learned jointly with the decoder.
    With a prior ``net`` the decoder is one :class:`~regdecoder.nn.SparseLinear`
    layer masked by the network, ``x = ReLU(W z + b)``, and ``z`` holds TF
    activities. Without ``net``, a dense one-layer decoder (or an MLP with
    ``hidden``) with ``n_latent`` latents.

    Parameters
    ----------
    adata
        Cells x genes; expression in ``X`` or ``layers[layer]``, dense or sparse.
        Never modified except for the results written below.
    net
        Prior network in decoupler's long format (``source``, ``target``, optional
        ``weight`` whose sign marks activation/repression). Genes are matched by
        ``var_names``; TFs with fewer than ``tmin`` targets in the data are dropped
        (logged).
    n_latent
        Number of latents when no ``net`` is given.
    layer
        Layer holding the expression; ``None`` uses ``X``.
    hidden
        Hidden layer widths of an MLP decoder (no ``net``).
    bias
        Learn a bias per gene. Off by default, as in the paper's eq. 6; with a bias,
        activities are identified only up to an offset.
    output
        ``'relu'`` (zeros are censored values) or ``'linear'``.
    tmin
        Minimum number of targets of a TF in the data.
    source, target, weight
        Column names of ``net``.
    loss
        ``'mse'`` (default; log-normalised data), or a count likelihood for raw
        counts (non-negative integers): ``'poisson'`` or ``'nb'`` (negative binomial
        with a learned dispersion per gene). With a count loss the mean count is
        ``size_factor * link(W z + b)`` (link: ``output='softplus'``, used in place of
        the default ``'relu'``, or ``'exp'``) and the fit runs on the gradient engine.
    library_size
        Count losses: ``obs`` column with each cell's library size; None uses the
        cells' total counts. Size factors are library sizes over a reference stored in
        the model (the training mean, scaled so that typical non-zero rates are >= 10).
    n_extra
        With ``net``: this many unannotated latents (``extra_0``...) connected to
        every gene, to absorb variation no TF explains (batch, cell cycle).
    soft_mask
        With ``net``: allow weights off the prior under an L1 penalty ``l1`` (per
        cell); the decoder is then dense and fit on the gradient engine. List the
        strongest new edges with :func:`regdecoder.get.new_edges`.
    l1
        Strength of the soft mask's L1 penalty on weights off the prior.
    solver
        ``'als'``: censored alternating least squares (one-layer decoders; exact
        block updates, the fast default). ``'gradient'``: the gradient engine (per-
        sample latent table, row-wise optimiser); for a one-layer decoder it starts
        where ALS starts (masked PCA) unless ``preset='paper'``, which starts at random
        as the paper does. ``'auto'`` picks ``'als'`` for a one-layer decoder, else
        ``'gradient'``.
    preset
        ``'paper'`` runs the paper's recipe exactly (gradient engine, batch 32,
        Adam 1e-3 on weights, SGD 1e-2 momentum 0.9 on latents with a summed
        squared error, weight decay 1e-5, 500 epochs). ``'fast'`` or None: the
        fast default for the solver.
    max_epochs
        Cap on epochs (ALS: 50; gradient: the recipe's, 500 for the paper, 200 fast).
    batch_size
        Batch size of the gradient engine (overrides the recipe).
    tol
        ALS stops when an epoch lowers the loss by less than this fraction.
    early_stopping
        Gradient engine: stop when the epoch loss plateaus (10 epochs without a
        relative improvement of 1e-4).
    recipe
        Further overrides of the gradient recipe (:class:`~regdecoder.train.Recipe`
        field names, e.g. ``{'lr_z': 0.05}``).
    impl
        SparseLinear kernel: ``'auto'``, ``'dense'`` or ``'sparse'``.
    seed
        Seed of every random choice; the same seed gives the same result.
    device
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``...
    key_added
        Where results are written.
    progress
        Show a progress bar.
    callback
        Called after every epoch with a dict (``epoch``, ``loss``, ``seconds`` of
        training, ``z`` and ``model``: an oriented copy of the current model);
        returning True stops training. Its time is not counted in ``seconds``.

    Returns
    -------
    The fitted :class:`~regdecoder.tl.Model`. Writes to ``adata``:

    ``obsm[key_added]``
        Latents (TF activities), cells x latents, float32.
    ``varm[key_added + '_weights']``
        Learned weights, genes x latents (one-layer decoders).
    ``uns[key_added]``
        ``latent_names``, ``params`` (every setting that changed the result),
        ``history`` (loss per epoch, training seconds), ``load`` (the decoder load
        alpha_d) and ``orientation`` (sign rule per latent); with ``soft_mask``
        also ``net``, the prior used (read by :func:`regdecoder.get.new_edges`).
    """
    t0 = time.perf_counter()
    if solver not in _SOLVERS:
        msg = f"`solver` must be one of {_SOLVERS}, got {solver!r}."
        raise ValueError(msg)
    if preset not in _PRESETS:
        msg = f"`preset` must be one of {_PRESETS}, got {preset!r}."
        raise ValueError(msg)
    if preset == "paper" and solver == "als":
        msg = "preset='paper' is the paper's gradient recipe; use solver='gradient' or 'auto' with it."
        raise ValueError(msg)
    stream = streamable(adata, layer)  # sparse, backed or multi-process: ALS reads chunks of cells
    mat = None if stream else get_matrix(adata, layer)
    dev = resolve_device(device)
    var_names = list(map(str, adata.var_names))

    rows = cols = prior = None
    if net is not None:
        if n_latent is not None:
            msg = "Give either `net` (one latent per TF) or `n_latent`, not both."
            raise ValueError(msg)
        if hidden:
            msg = "A decoder masked by `net` has one layer: leave `hidden` empty."
            raise ValueError(msg)
        net_used, latent_names, rows, cols, prior = prepare_net(
            net, var_names, source=source, target=target, weight=weight, tmin=tmin
        )
        rows, cols, prior, latent_names = add_extra_latents(rows, cols, prior, latent_names, len(var_names), n_extra)
        masked = True
    else:
        if n_latent is None or int(n_latent) < 1:
            msg = "Without `net`, give the number of latents: `n_latent=` (a positive integer)."
            raise ValueError(msg)
        if n_extra or soft_mask:
            msg = "`n_extra` and `soft_mask` extend a network decoder: give `net=` (without one, raise `n_latent`)."
            raise ValueError(msg)
        latent_names = [f"latent_{i}" for i in range(int(n_latent))]
        net_used = None
        masked = False
    extended = loss != "mse" or soft_mask
    if loss in COUNT_LOSSES and output in ("relu", "linear"):
        if output == "linear":
            msg = f"loss={loss!r} needs a positive link: output='softplus' (the default for counts) or 'exp'."
            raise ValueError(msg)
        output = "softplus"
    if extended and (solver == "als" or preset == "paper"):
        msg = f"loss={loss!r}/soft_mask={soft_mask} run on the gradient engine: use solver='auto' or 'gradient'."
        raise ValueError(msg)
    config = DecoderConfig(
        n_genes=len(var_names),
        n_latent=len(latent_names),
        hidden=tuple(hidden),
        bias=bias,
        output=output,
        masked=masked,
        impl=impl,
    )
    decoder = new_decoder(config, rows, cols, seed, dev)
    if solver == "auto":
        solver = "gradient" if (preset == "paper" or not decoder.one_layer) else "als"
    if solver == "als" and not decoder.one_layer:
        msg = "solver='als' needs a one-layer decoder; use solver='gradient' with `hidden`."
        raise ValueError(msg)

    if stream and (solver != "als" or extended):  # the gradient engine holds the data on the device
        require_in_memory(adata, layer, "solver='gradient'" if not extended else f"loss={loss!r}/soft_mask")
        stream, mat = False, get_matrix(adata, layer)
    x = None if stream else torch.as_tensor(to_dense(mat), device=dev)
    prior_sign = prior_sign_matrix(config, rows, cols, prior, dev)

    logger.info(
        "fitting %s decoder (%d latents, %d genes, %d cells) with solver=%r on %s",
        "masked" if masked else "dense" if decoder.one_layer else "MLP",
        config.n_latent,
        config.n_genes,
        adata.n_obs,
        solver,
        dev,
    )
    user_callback = None
    if callback is not None:

        def user_callback(state: dict) -> bool | None:
            snap = _snapshot(decoder, state["z"], prior_sign, var_names, latent_names)
            return callback({**state, "model": snap})

    params: dict = {
        "layer": layer,
        "n_latent": config.n_latent,
        "hidden": list(config.hidden),
        "bias": bias,
        "output": output,
        "solver": solver,
        "preset": preset or "fast",
        "seed": seed,
        "device": str(dev),
        "impl": impl,
    }
    if masked:
        params.update(tmin=tmin, n_edges=len(net_used), signed_prior=prior is not None, n_extra=n_extra)
    fields: dict = {}
    if extended:  # count likelihoods and the soft mask: tl/_counts.py
        decoder, z, history, extra = fit_extended(
            decoder, x, mat=mat, adata=adata, layer=layer, prior_sign=prior_sign, loss=loss,
            library_size=library_size, soft_mask=soft_mask, l1=l1,
            recipe=(COUNTS if loss in COUNT_LOSSES else FAST).updated(recipe, max_epochs=max_epochs, batch_size=batch_size),
            early_stopping=early_stopping, seed=seed, progress=progress, callback=callback,
            names=(var_names, latent_names),
        )  # fmt: skip
        params.update(extra["params"], solver="gradient")
        fields = extra["fields"]
    elif solver == "als":
        epochs = 50 if max_epochs is None else int(max_epochs)
        z, history = (partial(fit_als_adata, decoder, adata, layer) if stream else partial(fit_als, decoder, x))(
            prior_sign=prior_sign,
            max_epochs=epochs,
            tol=tol,
            seed=seed,
            progress=progress,
            callback=user_callback,
        )
        params.update(max_epochs=epochs, tol=tol)
    else:
        base = PAPER if preset == "paper" else FAST
        rec = base.updated(recipe, max_epochs=max_epochs, batch_size=batch_size)
        gen = torch.Generator().manual_seed(seed)
        if preset != "paper" and decoder.one_layer:
            # Same start as the ALS solver: per-TF principal directions, then least-squares
            # latents. From a random start the gradient engine often settles in poor optima.
            with torch.no_grad():
                w0 = masked_pca_init(x, decoder.get_mask(), prior_sign=prior_sign, n_iter=10, generator=gen)
                decoder.set_weight(w0)
                z0, _ = solve_latents(x, w0, None, relu=False)
        else:  # the paper's recipe: random latents and PyTorch's default weight init
            z0 = (torch.randn(x.shape[0], config.n_latent, generator=gen) * rec.z_init_std).to(dev)
        z, history = fit_gradient(
            decoder,
            x,
            z0,
            rec,
            seed=seed,
            early_stopping=early_stopping,
            progress=progress,
            callback=user_callback,
        )
        params.update(recipe=rec.to_dict(), early_stopping=early_stopping)

    model, z = _oriented_model(decoder, z, prior_sign, var_names, latent_names, history)
    for name, value in fields.items():
        setattr(model, name, value)
    _write(adata, model, z, key_added, params, history, adata.n_obs)
    if soft_mask:
        adata.uns[key_added]["net"] = net_used
    logger.info(
        "finished fit_decoder in %.1fs: added obsm[%r], uns[%r]%s",
        time.perf_counter() - t0,
        key_added,
        key_added,
        f", varm[{key_added + '_weights'!r}]" if decoder.one_layer else "",
    )
    return model


def new_decoder(config: DecoderConfig, rows, cols, seed: int, dev: torch.device) -> Decoder:
    """A decoder initialised from ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Decoder(
            config,
            None if rows is None else torch.as_tensor(rows),
            None if cols is None else torch.as_tensor(cols),
        ).to(dev)


def prior_sign_matrix(config: DecoderConfig, rows, cols, prior, dev: torch.device) -> torch.Tensor | None:
    """The prior's signs as a genes x latents matrix (0 off the network), or None without signs."""
    if prior is None:
        return None
    sign = torch.zeros(config.n_genes, config.n_latent, device=dev)
    sign[torch.as_tensor(rows, device=dev), torch.as_tensor(cols, device=dev)] = torch.as_tensor(
        prior, dtype=torch.float32, device=dev
    )
    return sign


def _oriented_model(
    decoder: Decoder, z: torch.Tensor, prior_sign, var_names, latent_names, history: dict | None = None
) -> tuple[Model, torch.Tensor]:
    """Fix each latent's scale and sign (one-layer decoders) and wrap the decoder in a Model.

    The decoder is modified in place; returns the model and the re-oriented latents.
    """
    orientation: list[str] = []
    z = z.detach()
    if decoder.one_layer:
        with torch.no_grad():
            w, z, orientation = orient(
                decoder.get_weight(),
                z,
                decoder.get_mask(),
                prior_sign=prior_sign,
                has_bias=decoder.get_bias() is not None,
            )
            decoder.set_weight(w)
    decoder.eval()
    model = Model(
        decoder,
        var_names=var_names,
        latent_names=latent_names,
        orientation=orientation,
        z_mean=z.mean(0).cpu(),
        history=history,
    )
    return model, z


def _snapshot(decoder: Decoder, z: torch.Tensor, prior_sign, var_names, latent_names) -> Model:
    """An oriented copy of the current model (for callbacks during training)."""
    return _oriented_model(deepcopy(decoder), z, prior_sign, var_names, latent_names)[0]


def _write(adata, model, z, key, params, history, n_cells) -> None:
    dec = model.decoder
    adata.obsm[key] = z.detach().cpu().numpy().astype(np.float32)
    if dec.one_layer:
        adata.varm[key + "_weights"] = model.weights.astype(np.float32)
    adata.uns[key] = {
        "latent_names": np.asarray(model.latent_names, dtype=object),
        "params": _h5ad_safe(params),
        "history": {"loss": np.asarray(history["loss"]), "seconds": np.asarray(history["seconds"])},
        "load": load_values(
            n_cells,
            dec.config.n_genes,
            dec.config.n_latent,
            n_weights=dec.n_weights + dec.n_bias,
            n_weights_all=dec.n_weights_dense + dec.n_bias,
        ),
        "orientation": np.asarray(model.orientation, dtype=object),
    }


def _h5ad_safe(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if v is None:
            out[k] = "None"
        elif isinstance(v, dict):
            out[k] = _h5ad_safe(v)
        elif isinstance(v, (list, tuple)):
            out[k] = np.asarray(v)
        else:
            out[k] = v
    return out


def infer(
    adata: AnnData,
    model: Model,
    *,
    layer: str | None = None,
    method: str = "auto",
    max_iter: int | None = None,
    tol: float | None = None,
    library_size: str | None = None,
    key_added: str = "regdecoder",
    copy: bool = False,
) -> AnnData | None:
    """Latents (TF activities) of new cells with the decoder frozen.

    Every cell is an independent problem, solved all at once. For a one-layer
    decoder (``method='als'``, the default) the censored least-squares problem is
    solved with one factorisation shared by all cells, iterating the imputation of
    zeros until the relative change of the latents is below ``tol`` (default 1e-5)
    or ``max_iter`` rounds (default 100). ``method='gradient'`` (the default for MLP
    decoders) runs full-batch Adam on the latents (defaults: 500 iterations,
    relative loss change 1e-6).

    Parameters
    ----------
    adata
        New cells, with the model's genes (any order).
    model
        A fitted :class:`~regdecoder.tl.Model`.
    layer
        Layer holding the expression; ``None`` uses ``X``.
    method
        ``'auto'``, ``'als'`` or ``'gradient'``.
    max_iter, tol
        Iteration cap and convergence tolerance.
    library_size
        Count models: ``obs`` column with library sizes (None: total counts). Count
        models always infer with their likelihood on the gradient method.
    key_added
        Where results are written.
    copy
        Return a copy instead of writing to ``adata``.

    Returns
    -------
    ``None``, or a copy when ``copy=True``. Writes ``obsm[key_added]`` (cells x
    latents, float32) and ``uns[key_added]`` (``latent_names``, ``params``,
    ``n_iter``).
    """
    adata = adata.copy() if copy else adata
    if not isinstance(model, Model):
        msg = f"`model` must be a regdecoder Model (from rd.tl.fit_decoder or Model.load), got {type(model).__name__}."
        raise TypeError(msg)
    t0 = time.perf_counter()
    order = check_genes(adata.var_names, model.var_names)
    count_model = model.likelihood != "mse"
    if (
        not count_model
        and streamable(adata, layer, distributed=False)
        and method in ("auto", "als")
        and model.decoder.one_layer
    ):
        z, n_iter = infer_adata(adata, model, layer=layer, order=order, max_iter=max_iter, tol=tol)  # in chunks
    else:
        require_in_memory(adata, layer, f"infer(method={method!r})", distributed=False)
        mat = get_matrix(adata, layer)
        dense = to_dense(mat)[:, order]
        x = torch.as_tensor(np.ascontiguousarray(dense), device=model.device)
        sf = infer_size_factors(adata, mat, model, library_size, layer) if count_model else None
        z, n_iter = model.infer_latents(x, method=method, max_iter=max_iter, tol=tol, size_factors=sf)
    adata.obsm[key_added] = z.cpu().numpy().astype(np.float32)
    adata.uns[key_added] = {
        "latent_names": np.asarray(model.latent_names, dtype=object),
        "params": _h5ad_safe({"layer": layer, "method": method, "max_iter": max_iter, "tol": tol}),
        "n_iter": int(n_iter),
    }
    logger.info("finished infer in %.2fs (%d iterations): added obsm[%r]", time.perf_counter() - t0, n_iter, key_added)
    return adata if copy else None
