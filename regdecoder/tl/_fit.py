"""Fit a decoder without an encoder, and infer latents of new cells: validate, read once,
call :mod:`regdecoder.train`, write once."""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy.stats import norm as stats_norm

from .. import _anndata
from .._settings import Stages, settings
from ..metrics._load import decoder_load
from ..nn import COUNT_LIKELIHOODS, Decoder, DecoderConfig, likelihood_output
from ..pp._net import PriorNet, prepare_net
from ..train import (
    INFER_ALS,
    INFER_GRADIENT,
    Recipe,
    fit,
    orient_decoder,
    resolve_device,
    resolve_recipe,
    solve_latents,
)
from ..train import infer as infer_latents
from ..train._fit import seeded_module, size_factor_reference
from ..train._latents import latent_standard_errors
from ..train._score import marginal_t
from ..train._source import gather_rows, world
from ._model import Model
from ._rank import adjust_pvalues

logger = logging.getLogger("regdecoder")


@dataclass
class _Spec:
    """Everything a fit needs that can be checked without reading the data."""

    config: DecoderConfig
    prior: PriorNet | None
    latent_names: list[str]
    recipe: object
    soft_mask: float
    fixed_weights: bool

    def decoder(self, seed: int, device: torch.device) -> Decoder:
        rows = cols = None
        if self.prior is not None:
            rows, cols = torch.as_tensor(self.prior.rows), torch.as_tensor(self.prior.cols)
        return seeded_module(Decoder, self.config, rows, cols, seed=seed, device=device)

    def params(self, *, tmin, n_extra, collinear, **given) -> dict:
        """Every setting that changed the result (for ``uns[key]['params']``)."""
        out = {
            **given, "n_latent": self.config.n_latent, "hidden": list(self.config.hidden),
            "soft_mask": self.soft_mask, "weights": "prior" if self.fixed_weights else "fit",
            "recipe": self.recipe.to_dict(),
        }  # fmt: skip
        if self.prior is not None:
            out.update(tmin=tmin, n_extra=n_extra, collinear=collinear, n_edges=len(self.prior.edges),
                       signed_prior=self.prior.prior is not None)  # fmt: skip
        return out

    def net_fields(self) -> dict:
        """What the fit records about the network in ``uns[key]``."""
        if self.prior is None:
            return {}
        groups = self.prior.collinear.items()
        out = {  # tables, not dicts keyed by TF names: h5ad and zarr store any name as a value
            "collinear": pd.DataFrame(
                [(k, tf) for k, tfs in groups for tf in tfs], columns=["latent", "tf"], dtype=object
            ),
            "identifiability": self.prior.overlap().reset_index(),
        }
        if self.soft_mask:
            out["net"] = self.prior.edges
        return out

    def prior_sign(self, device: torch.device) -> torch.Tensor | None:
        sign = None if self.prior is None else self.prior.sign_matrix()
        return None if sign is None else torch.as_tensor(sign, device=device)


_WEIGHTS = ("auto", "fit", "prior")

#: weights='auto' fixes the weights at the prior's signs below this many cells per free
#: parameter of a gene's weights (median over targeted genes of N / (regulators + 1)).
MIN_GENE_LOAD = 2.0


def _spec(
    var_names: Sequence[str],
    n_obs: int,
    *,
    net,
    n_latent,
    hidden,
    bias,
    tmin,
    collinear,
    weights,
    gene_likelihood,
    n_extra,
    soft_mask,
    recipe,
    seed,
) -> _Spec:
    """Check every argument of :func:`fit_decoder` (before any data is read)."""
    likelihood, output = likelihood_output(gene_likelihood)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        msg = f"`seed` must be a non-negative integer, got {seed!r}."
        raise TypeError(msg)
    if seed < 0:
        msg = f"`seed` must be a non-negative integer, got {seed!r}."
        raise ValueError(msg)
    soft_mask = 0.1 if soft_mask is True else float(soft_mask)
    if not np.isfinite(soft_mask) or soft_mask < 0:
        msg = f"`soft_mask` is the L1 strength on weights off the prior and must be >= 0 (0: a hard mask), got {soft_mask}."
        raise ValueError(msg)
    prior = None
    if net is not None:
        if n_latent is not None:
            msg = "Give either `net` (one latent per TF) or `n_latent`, not both."
            raise ValueError(msg)
        if hidden:
            msg = "A decoder masked by `net` has one layer: leave `hidden` empty."
            raise ValueError(msg)
        prior = prepare_net(net, var_names, tmin=tmin).resolve_identical(collinear).with_extra(n_extra)
        latent_names = prior.latent_names
    else:
        if n_latent is None or int(n_latent) < 1:
            msg = "Without `net`, give the number of latents: `n_latent=` (a positive integer)."
            raise ValueError(msg)
        if n_extra or soft_mask:
            msg = "`n_extra` and `soft_mask` extend a network decoder: give `net=` (without one, raise `n_latent`)."
            raise ValueError(msg)
        latent_names = [f"latent_{i}" for i in range(int(n_latent))]
    if weights not in _WEIGHTS:
        msg = f"`weights` must be one of {_WEIGHTS}, got {weights!r}."
        raise ValueError(msg)
    signed = prior is not None and prior.prior is not None and bool((prior.prior != 0).any())
    if weights == "prior" and not signed:
        msg = "weights='prior' fixes the weights at the prior's signs: give a `net` with a signed `weight` column."
        raise ValueError(msg)
    if weights == "auto":
        load = prior.median_load(n_obs) if signed else float("inf")
        weights = "prior" if load < MIN_GENE_LOAD and likelihood == "mse" and not soft_mask else "fit"
        if weights == "prior":
            logger.warning(
                "Too few cells to learn the weights (median %.2f cells per free weight of a gene, below %g): the "
                "weights are fixed at the prior's signs and only the activities (and gene offsets) are fitted "
                "(weights='prior'; pass weights='fit' to learn them anyway).",
                load, MIN_GENE_LOAD,
            )  # fmt: skip
    one_layer = not hidden
    rec = resolve_recipe(recipe, one_layer=one_layer, likelihood=likelihood, soft_mask=bool(soft_mask))
    if weights == "prior" and rec.solver != "als":
        msg = "weights='prior' runs on the ALS solver (one-layer decoders, gene_likelihood='mse' or 'normal', a hard mask)."
        raise ValueError(msg)
    if rec.solver == "als" and (not one_layer or likelihood != "mse" or soft_mask):
        msg = (
            "The ALS solver fits one-layer decoders with gene_likelihood='mse' or 'normal' and a hard mask; use "
            "recipe={'solver': 'gradient'} (or the default) for hidden layers, count likelihoods or soft_mask."
        )
        raise ValueError(msg)
    if rec.solver != "als" and world()[1] > 1:
        msg = "Only the ALS solver runs across processes (torch.distributed); use the default recipe there."
        raise ValueError(msg)
    if bias and n_obs == 1:
        logger.warning(
            "A single sample cannot determine a per-gene offset: the decoder is fitted without offsets (bias=False). "
            "Its activities are ulm's statistic of the profile on the prior's weights, its latents the least-squares "
            "fit of the profile on them (pass several samples to fit offsets)."
        )
    config = DecoderConfig(
        n_genes=len(var_names),
        n_latent=len(latent_names),
        hidden=tuple(hidden),
        bias=bias and n_obs > 1,
        output=output,
        masked=prior is not None,
        likelihood=likelihood,
    )
    return _Spec(config, prior, latent_names, rec, soft_mask, weights == "prior")


#: fit_decoder's keywords of regdecoder 0.1 and their spelling since 0.2; accepted, with a
#: FutureWarning, until 0.3.
_OLD_KEYWORDS = {
    "progress": "rd.settings.progress = {!r} (before the call)",
    "loss": "gene_likelihood={!r}",
    "callback": "recipe={{'callback': f}}",
    "max_epochs": "recipe={{'max_epochs': {!r}}}",
    "solver": "recipe={{'solver': {!r}}}",
    "preset": "recipe={{'preset': {!r}}}",
    "batch_size": "recipe={{'batch_size': {!r}}}",
    "tol": "recipe={{'tol': {!r}}}",
    "early_stopping": "recipe={{'early_stopping': {!r}}}",
}
#: 0.1's keywords of fit_decoder that have no one-to-one spelling since 0.2: refused, naming the fix.
_REMOVED_KEYWORDS = {
    "source": "name the net's TF column `source`: `net = net.rename(columns={{{!r}: 'source'}})`",
    "target": "name the net's gene column `target`: `net = net.rename(columns={{{!r}: 'target'}})`",
    "weight": "name the net's sign column `weight` (or `mor`): `net = net.rename(columns={{{!r}: 'weight'}})`",
    "output": "the output follows gene_likelihood: 'mse' is the ReLU model, 'normal' the linear one (got {!r})",
    "l1": "soft_mask= takes the L1 strength itself: `soft_mask={!r}`",
    "impl": "leave it out (got {!r}): the sparse kernel is chosen for the device",
}


def _accept_old_keywords(func):
    """``fit_decoder`` that also takes 0.1's ``progress=``, ``loss=`` and the recipe's fields
    (``callback=``, ``max_epochs=``, ``solver=``, ...; a FutureWarning names the new spelling), as
    scanpy and anndata deprecate, and refuses 0.1's keywords that have no one-to-one spelling
    (``source=``, ``l1=``, ...) with a TypeError naming the fix."""

    @functools.wraps(func)
    def wrapper(adata, **kwargs):
        removed = [k for k in kwargs if k in _REMOVED_KEYWORDS]
        if removed:  # before any data is read
            fixes = "; ".join(f"`{k}=`: {_REMOVED_KEYWORDS[k].format(kwargs[k])}" for k in removed)
            msg = f"fit_decoder has no {', '.join(f'`{k}=`' for k in removed)} since regdecoder 0.2. {fixes}."
            raise TypeError(msg)
        old = {k: kwargs.pop(k) for k in list(kwargs) if k in _OLD_KEYWORDS}
        if not old:
            return func(adata, **kwargs)
        for k, v in old.items():
            msg = (
                f"fit_decoder's `{k}=` is regdecoder 0.1's spelling and goes in 0.3; use "
                f"`{_OLD_KEYWORDS[k].format(v)}` instead."
            )
            warnings.warn(msg, FutureWarning, stacklevel=2)
        if "loss" in old:
            _not_both("loss", "`gene_likelihood=`", "gene_likelihood" in kwargs)
            kwargs["gene_likelihood"] = old["loss"]
        moved = {k: v for k, v in old.items() if _OLD_KEYWORDS[k].startswith("recipe=")}
        if moved:
            kwargs["recipe"] = _recipe_with(kwargs.get("recipe"), moved)
        before = settings.progress
        settings.progress = bool(old.get("progress", before))
        try:
            return func(adata, **kwargs)
        finally:
            settings.progress = before

    return wrapper


def _not_both(old: str, new: str, both: bool) -> None:
    if both:
        msg = f"Give {new} only: `{old}=` is its 0.1 spelling."
        raise TypeError(msg)


def _recipe_with(recipe, fields: dict):
    """``recipe`` (None, a preset name, a dict or a Recipe) with 0.1's recipe keywords added."""
    if isinstance(recipe, Recipe):
        return recipe.updated(fields)
    out = {"preset": recipe} if isinstance(recipe, str) else dict(recipe or {})
    for k in fields:
        _not_both(k, f"`recipe={{{k!r}: ...}}`", k in out)
    return {**out, **fields}


@_accept_old_keywords
def fit_decoder(
    adata: AnnData,
    *,
    net: pd.DataFrame | None = None,
    n_latent: int | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    hidden: Sequence[int] = (),
    bias: bool = True,
    tmin: int = 5,
    collinear: str = "merge",
    weights: str = "auto",
    gene_likelihood: str = "mse",
    library_size: str | None = None,
    n_extra: int = 0,
    soft_mask: float = 0.0,
    recipe: str | dict | None = None,
    seed: int = 0,
    device: str | None = None,
    key_added: str = "regdecoder",
) -> Model:
    """Train a decoder and every cell's latent vector, with no encoder.

    Each cell's latent ``z`` is a free parameter learned jointly with the decoder, the
    decoder-only training of Schuster & Krogh, "A Manifold Learning Perspective on
    Representation Learning: Learning Decoder and Representations without an Encoder",
    Entropy 23 (2021) 1403. With a prior ``net`` the decoder is one
    :class:`~regdecoder.nn.SparseLinear` layer masked by the network,
    ``x = ReLU(W z + b)`` (the paper's eq. 6), and ``z`` holds TF activities. Without
    ``net``, a dense one-layer decoder (or an MLP with ``hidden``) with ``n_latent``
    latents.

    Parameters
    ----------
    adata
        Cells x genes; expression in ``X``, ``layers[layer]`` or ``raw.X``, dense, sparse
        or backed (``backed='r'``). Never modified except for the results written below.
    net
        Prior network in decoupler's long format: ``source`` (TF), ``target`` (gene),
        optional ``weight`` (its sign marks activation/repression); or the path of such
        a CSV/TSV. Genes are matched by ``var_names``.
    n_latent
        Number of latents when no ``net`` is given.
    layer
        Layer holding the expression; ``None`` uses ``X``.
    use_raw
        Read ``adata.raw`` (with its own ``var_names``), e.g. scanpy's log-normalised
        expression kept before ``sc.pp.scale``.
    hidden
        Hidden layer widths of an MLP decoder (no ``net``).
    bias
        Learn an offset per gene (default), so genes no TF targets are predicted by their
        mean rather than 0, and the activities need not explain each gene's level.
    tmin
        TFs with fewer targets among the genes are dropped (a warning lists them).
    collinear
        TFs whose regulons are identical among the genes (same targets and signs) cannot
        be told apart. ``'merge'`` (default): one latent per group, named by joining the
        names with ``'|'`` (e.g. ``'RFX5|RFXANK|RFXAP'``); ``'drop'``: the first TF of each
        group stays; ``'keep'``: fit them as they are. One warning lists the groups.
        Overlapping and nested regulons are reported per TF in ``uns[key]['identifiability']``
        (and in detail by :func:`net_diagnostics`).
    weights
        ``'fit'``: learn the weights, shrunk toward the prior's signs (the default recipe's
        ``shrink=0.1``); ``'prior'``: keep them at the prior's signs and fit only the
        activities and gene offsets (the censored least squares with ``W`` fixed: a
        ReLU-aware multivariate linear model); ``'auto'`` (default): ``'prior'`` when the
        data cannot determine the weights, i.e. the median over targeted genes of
        ``N / (regulators + 1)`` is below 2 (e.g. bulk data with a handful of samples; a
        warning says so), else ``'fit'``.
    gene_likelihood
        ``'mse'`` (default; log-normalised data; the zeros of the ReLU output are censored
        values); ``'normal'`` for signed data (contrasts such as log fold changes, t- or
        z-statistics of a differential expression, KO minus WT, perturbation signatures of
        -1/0/+1, pseudobulk contrasts, ``sc.pp.scale``'d values): Gaussian errors on a
        linear output ``W z + b``, nothing censored, and the marginal t of the profile as
        it is (no centre); or for raw counts (non-negative integers) ``'poisson'`` or
        ``'nb'`` (negative binomial with a learned dispersion per gene): the mean count is
        then ``size_factor * softplus(W z + b)`` and the fit runs on the gradient engine.
        With one sample (one contrast vector, one cell, one bulk profile) the weights are
        the prior's (``weights='auto'``) and no offsets are fitted: the activities are
        ulm's statistic per TF, with its p-value (over every gene, zeros included: decoupler's
        ``ulm(..., empty=False)``).
    library_size
        Count likelihoods: ``obs`` column with each cell's library size; None uses the
        cells' total counts. Size factors are library sizes over a reference stored in
        the model (the training mean, scaled so that typical non-zero rates are >= 10).
    n_extra
        With ``net``: this many unannotated latents (``extra_0``...) connected to every
        gene, to absorb variation no TF explains (batch, cell cycle).
    soft_mask
        With ``net``: > 0 allows weights off the prior under an L1 penalty of this
        strength per cell (``True``: 0.1); the decoder is then dense and fit on the
        gradient engine. List the strongest new edges with :func:`regdecoder.get.new_edges`.
    recipe
        How to fit: None or ``'fast'`` (one-layer decoders: censored ALS from the prior's
        signed weights, weights shrunk toward the prior's signs with ``lambda * N * ||w_g -
        s_g||^2``, ``lambda = 0.1``, at most 50 epochs, stop below a 1e-4 relative loss
        decrease, latents centred; the gradient engine's fast recipe otherwise),
        ``'v010'`` (regdecoder 0.1.0's ALS: a seeded masked-PCA start, no shrinkage), ``'paper'`` (the paper's recipe exactly: batch 32, Adam 1e-3 on
        the weights, SGD 1e-2 momentum 0.9 on the latents with a summed squared error,
        weight decay 1e-5, 500 epochs, random start), a dict of
        :class:`~regdecoder.train.Recipe` fields overriding the default (e.g.
        ``{'max_epochs': 20}``, ``{'solver': 'gradient'}``, ``{'preset': 'paper',
        'max_epochs': 5}``, ``{'callback': f}``), or a Recipe. The callback is called
        after every epoch with a dict (``epoch``, ``loss``, ``seconds`` of training,
        ``z`` and ``model``: an oriented copy of the current model); returning True stops.
    seed
        Seed of every random choice; the same seed gives the same result.
    device
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``...; None:
        ``rd.settings.device``.
    key_added
        Where results are written.

    Returns
    -------
    The fitted :class:`~regdecoder.tl.Model`. Writes to ``adata``:

    ``obsm[key_added]``
        The TF activities, cells x TFs, a float32 DataFrame with the TF names as columns
        (``sc.pp.neighbors(use_rep=key_added)`` takes it). With a ``net``, whatever the
        solver: each TF's marginal t-value, decoupler's ulm statistic on the learned weights
        (the t-value of the slope, intercept included, of the cell's profile regressed on
        the TF's weights over all ``G`` genes, ``G - 2`` degrees of freedom; the profile is
        the expression minus each gene's training mean, or as it is for a linear output or
        a single sample), on a common unitless scale (about N(0, 1) where the TF is
        inactive; :mod:`regdecoder.train._score`). Without a ``net``, or with a count
        likelihood: the latents.
    ``obsm[key_added + '_z']``
        With a ``net``: the decoder's latents (its representation: ``x ~ ReLU(W z + b)``),
        solved for the final weights by the solver :func:`infer` uses (the minimiser of the
        censored loss plus a small ridge, by :func:`regdecoder.train.solve_latents`, to a
        relative KKT residual of 1e-3), started at the fit's last latents. Their standard
        errors cost one ``k x k`` inverse per cell and are computed only when asked:
        ``rd.tl.infer(adata, model, standard_errors=True, key_added=...)`` solves the same cells
        to the same latents (to that tolerance) and adds them.
    ``obsm[key_added + '_pvals']``, ``obsm[key_added + '_padj']``
        Two-sided p-values of the t-values (``G - 2`` degrees of freedom), and the same
        adjusted by Benjamini-Hochberg over the TFs of each cell (decoupler's convention
        for its per-cell ``padj_<method>``; NaN stays NaN).
    ``varm[key_added + '_weights']``
        Learned weights, genes x latents (one-layer decoders), when the model's genes are
        ``var_names``; else (``use_raw=True`` with other genes in ``raw``) the tidy table
        ``uns[key_added]['weights']`` (``source``, ``target``, ``weight``). Read either
        with :func:`regdecoder.get.weights`.
    ``uns[key_added]``
        ``latent_names``, ``statistic`` (``'t'`` or ``'z'``: what ``obsm[key_added]``
        holds), ``params`` (every setting that changed the result, the seed included),
        ``history`` (loss per epoch, training seconds), ``load`` (the decoder load
        alpha_d), ``orientation`` (sign rule per latent); with a ``net`` also
        ``collinear`` (a table ``latent``, ``tf`` of the identical regulons merged) and
        ``identifiability`` (per TF: targets, largest overlap with another TF's targets,
        and which); with ``soft_mask`` also ``net``, the prior used (read by
        :func:`regdecoder.get.new_edges`).

    Raises
    ------
    TypeError
        ``adata`` is not an AnnData; ``net`` is not a DataFrame or path.
    KeyError
        Missing layer, ``net`` column or ``library_size`` column.
    ValueError
        Before any training: bad arguments (each naming the fix); an empty AnnData;
        NaN, infinite or absurdly large values (with their position); negative values
        (the ReLU model) or non-integers (count likelihoods); a network that matches no
        gene or leaves no TF with ``tmin`` targets; duplicate genes or edges.
    """
    clock = Stages()
    settings.apply_threads()
    _anndata.check_key_name(key_added)
    _, where, var_names = _anndata.matrix(adata, layer, use_raw)
    _anndata.check_writable(adata)
    spec = _spec(
        list(map(str, var_names)), adata.n_obs, net=net, n_latent=n_latent, hidden=hidden, bias=bias, tmin=tmin,
        collinear=collinear, weights=weights, gene_likelihood=gene_likelihood, n_extra=n_extra,
        soft_mask=soft_mask, recipe=recipe, seed=seed,
    )  # fmt: skip
    rec, cfg = spec.recipe, spec.config
    dev = resolve_device(settings.device if device is None else device)
    stream = rec.solver == "als" and _anndata.streamed(adata, layer, use_raw)
    source = _anndata.read(adata, layer=layer, use_raw=use_raw, likelihood=gene_likelihood, shard=stream)
    if gene_likelihood == "mse":
        _anndata.warn_if_counts(source)
    data = source if stream else source.dense(dev)
    clock.done(
        "read %d cells x %d genes from %s (%s)",
        adata.n_obs,
        len(var_names),
        where,
        "in chunks" if stream else "at once",
    )
    sf, library_ref = _size_factors(adata, source, data, library_size, cfg, dev)
    prior_sign = spec.prior_sign(dev)
    names = (list(map(str, var_names)), spec.latent_names)
    logger.info("fitting a decoder with %d latents on %d cells: %s on %s", cfg.n_latent, adata.n_obs, rec.solver, dev)
    decoder, z, history = fit(
        spec.decoder(seed, dev), data, rec, prior_sign=prior_sign, size_factors=sf, soft_mask=spec.soft_mask,
        fixed_weights=spec.fixed_weights, seed=seed, progress=settings.progress,
        callback=_callback(rec.callback, prior_sign, names),
    )  # fmt: skip
    clock.done("%s fit, %d epochs", rec.solver, len(history["loss"]))
    _warn_unconverged(rec, history, learned=not spec.fixed_weights or cfg.bias)
    model, z, stats = _finish(decoder, z, history, data, prior_sign, names, library_ref, source.n_total, stream)
    params = spec.params(
        layer=layer, use_raw=use_raw, bias=cfg.bias, gene_likelihood=gene_likelihood, library_size=library_size,
        seed=seed, device=str(dev), tmin=tmin, n_extra=n_extra, collinear=collinear,
    )  # fmt: skip
    _write(
        adata, key_added, model, z, stats, params, weights=model.weights if decoder.one_layer else None,
        history=_history(history), load=decoder_load(decoder, adata.n_obs), orientation=model.orientation,
        **spec.net_fields(),
    )  # fmt: skip
    logger.info("finished fit_decoder in %.1f s: added obsm[%r], uns[%r]", clock.total, key_added, key_added)
    return model


def _size_factors(adata, source, data, library_size, cfg, dev):
    """Count likelihoods: the cells' size factors and the model's reference library size."""
    if cfg.likelihood not in COUNT_LIKELIHOODS:
        return None, None
    lib = _anndata.library_sizes(adata, source, library_size)
    library_ref = size_factor_reference(lib, lambda s: _nonzero_normalised(data, s), cfg.output)
    return torch.as_tensor(lib / library_ref, dtype=torch.float32, device=dev), library_ref


def _finish(decoder, z, history, data, prior_sign, names, library_ref, n_total, stream):
    """Orient the fitted decoder, wrap it in a Model and solve the training cells' latents and
    statistics as :func:`infer` solves new cells (gathered over processes when sharded)."""
    center = _center(decoder, history.pop("gene_mean", None), data, n_total)
    detected = history.pop("gene_detected", None)
    z, orientation = orient_decoder(decoder, z, prior_sign)
    decoder.eval()
    model = Model(decoder, var_names=names[0], latent_names=names[1], orientation=orientation, history=history,
                  library_ref=library_ref, n_obs=n_total, gene_mean=center,
                  gene_detected=None if detected is None else detected.cpu())  # fmt: skip
    # from the ALS's last latents (converged with the weights): 1.7x fewer solver steps than infer's
    # start on the scale benchmark's cells, the same latents to the solver's tolerance
    stats = _statistics(model, data, z0=z if detected is not None else None)
    z = stats.pop("z") if stats else z.cpu()
    stats.pop("steps", None)
    stats = {k: gather_rows(torch.as_tensor(v), n_total) if stream and v is not None else v for k, v in stats.items()}
    z = gather_rows(torch.as_tensor(z), n_total) if stream else torch.as_tensor(z)
    model.z_mean = z.mean(0)
    return model, z, stats


def _center(decoder, gene_mean, data, n_total: int) -> torch.Tensor | None:
    """The centre of the marginal t (:mod:`regdecoder.train._score`), whatever the solver: each
    gene's training mean for the ReLU model (a cell's activity is relative to the average
    training cell); zeros for the linear decoder (signed data are relative already: contrasts,
    scaled values) and for a single training sample (ulm on the profile as it is). None for
    decoders that report no marginal t."""
    cfg = decoder.config
    if not (decoder.one_layer and cfg.masked and cfg.likelihood == "mse"):
        return None
    if cfg.output == "linear" or n_total == 1:
        return torch.zeros(cfg.n_genes)
    if gene_mean is None:  # the gradient engine (data in memory) does not compute it
        gene_mean = torch.as_tensor(data).mean(0, dtype=torch.float64)
    return gene_mean.to(torch.float32).cpu()


def _warn_unconverged(rec, history: dict, learned: bool = True) -> None:
    """``learned``: the epochs fit weights or offsets (with neither, the final latents are solved
    exactly for the prior's weights and the t-values do not depend on them: no advice to run more)."""
    if not learned:
        return
    if rec.solver == "als" and rec.tol > 0 and not history.get("converged", True) and rec.callback is None:
        logger.warning(
            "fit_decoder stopped at max_epochs=%d before the loss settled (an epoch still lowered it by more than "
            "tol=%g); the activities may change with more epochs: recipe={'max_epochs': %d}.",
            rec.max_epochs, rec.tol, 2 * rec.max_epochs,
        )  # fmt: skip


def _check_standard_errors(standard_errors) -> None:
    if not isinstance(standard_errors, (bool, np.bool_)):
        msg = f"`standard_errors` must be True or False, got {standard_errors!r}."
        raise TypeError(msg)


def _statistics(
    model: Model,
    data,
    *,
    max_iter: int | None = None,
    tol: float | None = None,
    standard_errors: bool = False,
    z0: torch.Tensor | None = None,
) -> dict:
    """What a masked squared-error decoder reports per cell (one-layer, ReLU, with a net): the
    latents (and their standard errors when asked), and the marginal t of each TF with its
    p-value. Empty for other decoders (their latents are the activities)."""
    dec = model.decoder
    # gene_mean (the centre) is set by every fit of such a decoder, whatever the solver; None: 0.1.0's models
    if not (dec.one_layer and dec.config.masked and model.likelihood == "mse" and model.gene_mean is not None):
        return {}
    w, b = dec.get_weight(), dec.get_bias()
    relu = dec.config.output == "relu"
    clock = Stages()
    logger.info("solving the latents of every cell, the decoder frozen ...")
    z, info = solve_latents(
        data, w, b, relu=relu, max_iter=INFER_ALS["max_iter"] if max_iter is None else max_iter,
        tol=INFER_ALS["tol"] if tol is None else tol, detected=model.gene_detected, z0=z0,
        progress=settings.progress,
    )  # fmt: skip
    steps = int(info["n_iter"].max()) if len(info["n_iter"]) else 0
    clock.done(
        "latents of %d cells (conjugate gradients: %d steps at most; exact Newton method: %d cell(s))",
        len(z), steps, int(info["exact"].sum()),
    )  # fmt: skip
    se = None
    if standard_errors:
        se = latent_standard_errors(data, w, b, z, relu=relu, progress=settings.progress)
        clock.done("standard errors of the latents of %d cells", len(z))
    t, p = marginal_t(data, w, model.gene_mean)
    clock.done("marginal t-values and p-values of %d TFs", t.shape[1])
    none = np.isnan(t).all(1) if t.shape[1] else np.zeros(t.shape[0], dtype=bool)
    empty = int(none.sum())
    if empty and se is not None:  # no expression identifies no latent: no standard errors (z_t, z_pvals NaN too)
        se[torch.from_numpy(none)] = float("nan")
    if empty:
        logger.warning(
            "%d cell(s) have no expression at all: their activities and the standard errors of their latents are NaN (an empty cell says nothing about "
            "its TFs). Remove empty cells first, e.g. `sc.pp.filter_cells(adata, min_genes=1)`.",
            empty,
        )
    return {"z": z, "z_se": se, "t": t, "pvals": p, "steps": steps}


#: What ``obsm[key]`` holds for a decoder that reports statistics (one layer, masked by a network,
#: squared error), for every solver: ``'t'``, each TF's marginal t (ulm's statistic on the learned
#: weights, :mod:`regdecoder.train._score`), or ``'z'``, the decoder's latents. The one switch.
ACTIVITY = "t"


def _report(z, stats: dict) -> tuple[dict, str]:
    """The tables of the results record a fit or an inference writes, and the statistic
    ``obsm[key]`` holds (:data:`ACTIVITY`; the latents for decoders without statistics). The
    p-values come with their Benjamini-Hochberg adjustment within each cell, over its TFs
    (decoupler's convention for its per-cell ``padj_<method>``). The latents' standard errors
    are in the record only when asked for (``infer(standard_errors=True)``)."""
    if not stats:
        return {"activity": z}, "z"
    tables = {"z": z} if stats.get("z_se") is None else {"z": z, "z_se": stats["z_se"]}
    if ACTIVITY == "t":
        tables, statistic = {**tables, "activity": stats["t"], "pvals": stats["pvals"]}, "t"
    else:  # the latents' p-values need their standard errors: NaN where not asked for
        se = stats.get("z_se")
        z_t = np.asarray(z) / (np.asarray(se) if se is not None else np.nan)
        tables, statistic = {**tables, "activity": z, "pvals": 2 * stats_norm.sf(np.abs(z_t))}, "z"
    return {**tables, "padj": adjust_pvalues(tables["pvals"], axis=1)}, statistic


def _write(adata, key: str, model: Model, z, stats: dict, params: dict, **fields) -> None:
    """Write a fit's or an inference's results once, through the record (:mod:`regdecoder._anndata`)."""
    tables, statistic = _report(z, stats)
    _anndata.write(adata, key, tables=tables, latent_names=model.latent_names, params=params,
                   genes=model.var_names, statistic=statistic, **fields)  # fmt: skip


def _nonzero_normalised(x: torch.Tensor, sf: np.ndarray) -> np.ndarray:
    """Non-zero entries of the size-normalised counts."""
    vals = (x.cpu().numpy() / sf[:, None]).ravel()
    return vals[vals > 0]


def _history(history: dict) -> dict:
    return {"loss": np.asarray(history["loss"]), "seconds": np.asarray(history["seconds"])}


def _callback(user, prior_sign, names):
    """fit_decoder's callback contract: the state plus an oriented copy of the current model."""
    if user is None:
        return None

    def cb(decoder: Decoder, state: dict) -> bool | None:
        dec = deepcopy(decoder)
        z, orientation = orient_decoder(dec, state["z"], prior_sign)
        dec.eval()
        snap = Model(dec, var_names=names[0], latent_names=names[1], orientation=orientation, z_mean=z.mean(0).cpu())
        return user({**state, "model": snap})

    return cb


def infer(
    adata: AnnData,
    model: Model,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    method: str = "auto",
    max_iter: int | None = None,
    tol: float | None = None,
    library_size: str | None = None,
    standard_errors: bool = False,
    key_added: str = "regdecoder",
    copy: bool = False,
) -> AnnData | None:
    """Latents (TF activities) of new cells with the decoder frozen.

    Every cell is an independent problem, solved all at once. For one-layer decoders (the
    default ``method``) the latents minimise the censored least-squares loss plus a small
    ridge (``1e-3`` times a TF's mean squared weight norm, which makes them unique where the
    expressed genes leave a latent undetermined), found by the one latent solver,
    :func:`regdecoder.train.solve_latents` (preconditioned conjugate gradients whose cost per
    step follows the network's edges; ``tol`` the relative KKT residual at which a cell stops,
    default 1e-3, and ``max_iter`` its steps at most, default 100, after which a cell is
    finished by the exact active-set Newton method), exactly as :func:`fit_decoder` solves
    the training cells. For a decoder masked by a network the activities reported are the
    marginal t-values of each TF's learned regulon (:mod:`regdecoder.train._score`), as
    :func:`fit_decoder` reports them. ``method='gradient'`` (the default for MLP decoders)
    runs full-batch Adam on the latents (defaults: 500 iterations, relative loss change
    1e-6). Count models infer with their likelihood (gradient method).

    Parameters
    ----------
    adata
        New cells, with the model's genes (any order).
    model
        A fitted :class:`~regdecoder.tl.Model`.
    layer, use_raw
        Where the expression is: ``layers[layer]``, ``raw.X``, or ``X`` (default).
    method
        ``'auto'``, ``'als'`` or ``'gradient'``.
    max_iter, tol
        Iteration cap and convergence tolerance.
    library_size
        Count models: ``obs`` column with library sizes (None: total counts).
    standard_errors
        Masked decoders: also the latents' standard errors (``obsm[key_added + '_z_se']``; one
        ``k x k`` inverse per cell, so only when asked; see :func:`fit_decoder`).
    key_added
        Where results are written. A key that holds a fit's results is refused (the
        fit's history, load and weights would no longer match ``obsm``).
    copy
        Return a copy instead of writing to ``adata``.

    Returns
    -------
    ``None``, or a copy when ``copy=True``. Writes ``obsm[key_added]`` (cells x
    latents, float32 DataFrame: the activities, as fit_decoder writes them), for masked
    decoders also ``obsm[key_added + '_z']``, ``'_pvals'``, ``'_padj'`` and, when asked,
    ``'_z_se'`` (see
    :func:`fit_decoder`), and ``uns[key_added]`` (``latent_names``, ``params``,
    ``n_iter``, ``statistic``).

    Raises
    ------
    TypeError
        ``model`` is not a Model.
    ValueError
        The data's genes differ from the model's; ``key_added`` holds a fit's results;
        bad values (as :func:`fit_decoder`).
    """
    adata = adata.copy() if copy else adata
    if not isinstance(model, Model):
        msg = f"`model` must be a regdecoder Model (from rd.tl.fit_decoder or Model.load), got {type(model).__name__}."
        raise TypeError(msg)
    clock = Stages()
    settings.apply_threads()
    _anndata.check_free(adata, _anndata.check_key_name(key_added), by="rd.tl.infer")
    _check_standard_errors(standard_errors)
    _anndata.check_writable(adata)
    count = model.likelihood != "mse"
    stream = (
        not count
        and method in ("auto", "als")
        and model.decoder.one_layer
        and _anndata.streamed(adata, layer, use_raw, distributed=False)
    )
    likelihood = model.likelihood if count or model.config.output == "relu" else None
    source = _anndata.read(adata, layer=layer, use_raw=use_raw, genes=model.var_names, likelihood=likelihood)
    sf = None
    if count:
        sf = torch.as_tensor(
            _anndata.library_sizes(adata, source, library_size) / model.library_ref, dtype=torch.float32
        )
    data = source if stream else source.dense(model.device)
    clock.done("read %d cells x %d genes (%s)", adata.n_obs, len(model.var_names), "in chunks" if stream else "at once")
    stats = (
        _statistics(model, data, max_iter=max_iter, tol=tol, standard_errors=standard_errors)
        if method in ("auto", "als")
        else {}
    )
    if stats:  # the latent solver (standard errors when asked), marginal t
        z, n_iter = stats.pop("z"), stats.pop("steps")
    else:
        z, n_iter = infer_latents(
            model.decoder, data, method=method, max_iter=max_iter, tol=tol, size_factors=sf, z_start=model.z_mean,
            detected=model.gene_detected, progress=settings.progress,
        )  # fmt: skip
        gradient = not model.decoder.one_layer or method == "gradient" or count  # the solver never stops unconverged
        cap = max_iter if max_iter is not None else INFER_GRADIENT["max_iter"]
        if gradient and tol != 0 and int(n_iter) >= cap:
            logger.warning(
                "infer stopped at its cap of %d iterations before the latents converged; raise `max_iter` "
                "(or loosen `tol`) for exact activities.",
                cap,
            )
    params = {
        "layer": layer, "use_raw": use_raw, "method": method, "max_iter": max_iter, "tol": tol,
        "standard_errors": standard_errors,
    }  # fmt: skip
    _write(adata, key_added, model, z, stats, params, n_iter=int(n_iter))
    logger.info("finished infer in %.1f s (%d iterations): added obsm[%r]", clock.total, n_iter, key_added)
    return adata if copy else None
