"""Fits the ALS solver does not cover, all on the one gradient engine: count likelihoods
(Poisson, negative binomial with per-cell library size) and the soft mask (weights off
the prior allowed under an L1 penalty). Also: unannotated latents (``n_extra``).

Called by :func:`regdecoder.tl.fit_decoder`; the results are written the same way.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from anndata import AnnData
from scipy import sparse
from torch import nn

from ..nn import Decoder, DecoderConfig
from ..train import FAST, Recipe, fit_als, fit_gradient, infer_gradient, solve_latents
from ..train._likelihoods import negative_binomial, poisson_nll

LOSSES = ("mse", "poisson", "nb")
RATE_SCALE = 10.0

#: Gradient recipe of the count likelihoods: FAST with 10x larger steps. From the ALS start,
#: FAST's steps left the NB fit under-converged after 200 epochs (simulated counts, library
#: 1,000, 500 cells: signed PCC 0.855 vs 0.915 with these steps).
COUNTS = FAST.updated(lr_weights=1e-2, lr_z=1e-1)
COUNT_LOSSES = ("poisson", "nb")


def check_counts(mat, where: str, loss: str) -> None:
    """Counts must be non-negative and integer-valued; an error naming the fix otherwise."""
    values = mat.data if sparse.issparse(mat) else np.asarray(mat)
    if values.size and values.min() < 0:
        msg = (
            f"loss={loss!r} models raw counts, but {where} has negative values (min {values.min():g}). "
            "Pass the layer with raw UMI counts (`layer='counts'`), or use loss='mse' for log-normalised data."
        )
        raise ValueError(msg)
    frac = values != np.round(values)
    if frac.any():
        ex = values[frac][:3].tolist()
        msg = (
            f"loss={loss!r} models raw counts, but {where} has {int(frac.sum())} non-integer values (e.g. {ex}); "
            "it looks normalised. Pass the layer with raw counts (`layer='counts'`), or use loss='mse'."
        )
        raise ValueError(msg)


def _nonzero_normalised(mat, sf: np.ndarray) -> np.ndarray:
    """Non-zero entries of the size-normalised counts (one if there are none)."""
    if sparse.issparse(mat):
        m = sparse.csr_matrix(mat)
        vals = m.data / np.repeat(sf, np.diff(m.indptr))
    else:
        vals = (np.asarray(mat) / sf[:, None]).ravel()
    vals = vals[vals > 0]
    return vals if vals.size else np.ones(1)


def library_sizes(adata: AnnData, mat, library_size: str | None) -> np.ndarray:
    """Per-cell library sizes: ``obs[library_size]`` or the cells' total counts."""
    if library_size is None:
        lib = np.asarray(mat.sum(1)).ravel().astype(np.float64)
    else:
        if library_size not in adata.obs.columns:
            msg = f"`library_size={library_size!r}` is not a column of adata.obs; give an obs column or None (totals)."
            raise KeyError(msg)
        lib = adata.obs[library_size].to_numpy(dtype=np.float64)
    if not np.isfinite(lib).all() or (lib <= 0).any():
        msg = (
            f"{int((~np.isfinite(lib) | (lib <= 0)).sum())} cell(s) have a library size <= 0 or not finite; "
            "remove empty cells first (e.g. `sc.pp.filter_cells(adata, min_counts=1)`)."
        )
        raise ValueError(msg)
    return lib


def add_extra_latents(rows, cols, prior, latent_names: list[str], n_genes: int, n_extra: int):
    """Append ``n_extra`` unannotated latents connected to every gene (a dense block)."""
    if n_extra < 0 or int(n_extra) != n_extra:
        msg = f"`n_extra` must be a non-negative integer, got {n_extra!r}."
        raise ValueError(msg)
    if not n_extra:
        return rows, cols, prior, latent_names
    m = len(latent_names)
    names = [f"extra_{i}" for i in range(n_extra)]
    clash = set(names) & set(latent_names)
    if clash:
        msg = f"The network already has TFs named {sorted(clash)}; rename them before using `n_extra`."
        raise ValueError(msg)
    genes = np.tile(np.arange(n_genes, dtype=np.int64), n_extra)
    lat = np.repeat(np.arange(m, m + n_extra, dtype=np.int64), n_genes)
    rows = np.concatenate([rows, genes])
    cols = np.concatenate([cols, lat])
    if prior is not None:
        prior = np.concatenate([prior, np.zeros(len(genes))])
    return rows, cols, prior, latent_names + names


class _WithDispersion(nn.Module):
    """The decoder plus a learnable per-gene log inverse dispersion (NB loss)."""

    def __init__(self, decoder: Decoder, n_genes: int, init: float = math.log(10.0)) -> None:
        super().__init__()
        self.decoder = decoder
        self.log_theta = nn.Parameter(torch.full((n_genes,), init, device=next(decoder.parameters()).device))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def fit_extended(
    decoder: Decoder,
    x: torch.Tensor,
    *,
    mat,
    adata: AnnData,
    layer: str | None,
    prior_sign: torch.Tensor | None,
    loss: str,
    library_size: str | None,
    soft_mask: bool,
    l1: float,
    recipe: Recipe,
    early_stopping: bool,
    seed: int,
    progress: bool,
    callback=None,
    names: tuple[list[str], list[str]] | None = None,
) -> tuple[Decoder, torch.Tensor, dict, dict]:
    """Fit with a count likelihood and/or a soft mask on the gradient engine.

    Starts where the ALS solver ends after a few epochs on the normalised data (one-
    layer decoders), then optimises the chosen likelihood. Returns the trained decoder
    (dense when ``soft_mask``), the latents, the history and extra model fields.
    """
    if loss not in LOSSES:
        msg = f"`loss` must be one of {LOSSES}, got {loss!r}."
        raise ValueError(msg)
    dev = x.device
    n_cells, n_genes = x.shape
    cfg = decoder.config
    extra = None
    fields: dict = {"likelihood": loss}
    y = x
    if loss in COUNT_LOSSES:
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        check_counts(mat, where, loss)
        lib = library_sizes(adata, mat, library_size)
        ref = float(np.mean(lib))
        if cfg.output == "softplus":
            # Express rates in units where a typical non-zero rate is >= RATE_SCALE, so that
            # softplus(p) ~ ReLU(p) (a rate near 0 is cheap to reach); the latents' scale absorbs it.
            sf_unit = lib / ref
            typical = float(np.median(_nonzero_normalised(mat, sf_unit)))
            ref *= max(1.0, RATE_SCALE / max(typical, 1e-12))
        sf = torch.as_tensor(lib / ref, dtype=torch.float32, device=dev)
        extra = sf.reshape(-1, 1)
        y = x / extra  # counts per unit size factor: the scale of the decoder's rate
        fields["library_ref"] = ref
        if cfg.output == "exp":
            y = torch.log1p(y)
    gen = torch.Generator().manual_seed(seed)
    if decoder.one_layer:
        mask = decoder.get_mask()
        init_cfg = DecoderConfig(
            n_genes=n_genes,
            n_latent=cfg.n_latent,
            bias=cfg.bias,
            output="linear" if cfg.output in ("linear", "exp") else "relu",
            masked=True,
            impl="dense",
        )
        rows, cols = torch.nonzero(mask, as_tuple=True)
        with torch.random.fork_rng(devices=[]):  # module init must not touch the global RNG
            torch.manual_seed(seed)
            init = Decoder(init_cfg, rows.cpu(), cols.cpu()).to(dev)
        z0, _ = fit_als(init, y, prior_sign=prior_sign, max_epochs=10, seed=seed, progress=False)
        w0, b0 = init.get_weight(), init.get_bias()
    else:
        mask = None
        z0 = torch.randn(n_cells, cfg.n_latent, generator=gen).to(dev)
        w0 = b0 = None
    if soft_mask:
        if mask is None:
            msg = "`soft_mask=True` needs a network (`net=`): the penalty applies to weights off the prior."
            raise ValueError(msg)
        dense_cfg = DecoderConfig(**{**cfg.to_dict(), "masked": False})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            decoder = Decoder(dense_cfg).to(dev)
    if w0 is not None:
        decoder.set_weight(w0, b0)

    if loss == "nb":
        module: nn.Module = _WithDispersion(decoder, n_genes)
        base = negative_binomial(module.log_theta)
    else:
        module = decoder
        base = poisson_nll if loss == "poisson" else "mse"
    loss_fn = base
    if soft_mask:
        if l1 < 0:
            msg = f"`l1` must be >= 0, got {l1}."
            raise ValueError(msg)
        off = (~mask).to(torch.float32)
        w_param = decoder.layers[0].weight
        from ..train import get_loss

        base_fn = get_loss(base)

        def loss_fn(xhat, xb, eb):  # L1 on weights off the prior, l1 per cell of the batch
            return base_fn(xhat, xb, eb) + l1 * xhat.shape[0] * (w_param.abs() * off).sum()

    cb = None
    if callback is not None:
        from ._fit import _snapshot

        def cb(state: dict) -> bool | None:  # same contract as fit_decoder's callback
            return callback({**state, "model": _snapshot(decoder, state["z"], prior_sign, *names)})

    z, history = fit_gradient(
        module,
        x,
        z0.clone(),
        recipe,
        loss=loss_fn,
        extra=extra,
        seed=seed,
        early_stopping=early_stopping,
        progress=progress,
        callback=cb,
    )
    if loss == "nb":
        fields["log_theta"] = module.log_theta.detach().clone()
    params = {"loss": loss, "library_size": library_size, "soft_mask": soft_mask, "recipe": recipe.to_dict()}
    if soft_mask:
        params["l1"] = l1
    return decoder, z, history, {"fields": fields, "params": params}


def count_latents(model, x: torch.Tensor, size_factors: torch.Tensor | None, *, max_iter=None, tol=None):
    """Latents of new cells under a count model's likelihood (decoder frozen)."""
    if size_factors is None:
        msg = "A count model needs the cells' size factors; use `rd.tl.infer(adata, model)`, which computes them."
        raise ValueError(msg)
    sf = size_factors.reshape(-1, 1).to(x.device, torch.float32)
    dec = model.decoder
    if model.likelihood == "nb":
        loss = negative_binomial(model.log_theta.to(x.device))
    else:
        loss = poisson_nll
    if dec.one_layer:  # start: least squares on the normalised counts
        y = x / sf
        relu = dec.config.output != "exp"
        if not relu:
            y = torch.log1p(y)
        with torch.no_grad():
            z0, _ = solve_latents(y, dec.get_weight(), dec.get_bias(), relu=relu, n_iter=20, tol=1e-4)
    else:
        z0 = model.z_mean.to(x.device).expand(x.shape[0], -1)
    return infer_gradient(
        dec,
        x,
        z0,
        loss=loss,
        extra=sf,
        max_iter=500 if max_iter is None else max_iter,
        tol=1e-6 if tol is None else tol,
    )


def infer_size_factors(adata: AnnData, mat, model, library_size: str | None, layer: str | None) -> torch.Tensor:
    """Size factors of new cells relative to the model's training reference."""
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    check_counts(mat, where, model.likelihood)
    lib = library_sizes(adata, mat, library_size)
    return torch.as_tensor(lib / model.library_ref, dtype=torch.float32)
