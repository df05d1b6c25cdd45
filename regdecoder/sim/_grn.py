"""Simulated gene regulatory networks (paper sec. 3.3, eq. 6), on a random network or on the
topology of a real one (a decoupler-format ``net``)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..datasets._collectri import read_net
from ..pp._net import prepare_net

_CHUNK_ELEMENTS = 2**22  # cells x genes values per block of the expression (float64 temporaries)


def grn(
    n_obs: int = 1000,
    n_genes: int | None = None,
    n_tfs: int | None = None,
    *,
    net: pd.DataFrame | None = None,
    tmin: int = 5,
    density: float | None = None,
    tf_shape: float = 2.0,
    tf_scale: float = 1.0,
    weight_low: float | None = None,
    weight_high: float | None = None,
    offset_mean: float = 0.0,
    offset_sd: float = 0.0,
    noise: float = 0.0,
    counts: bool = False,
    library_size: float = 2000.0,
    dispersion: float = 0.1,
    size_sd: float = 0.3,
    seed: int = 0,
) -> AnnData:
    """Simulate TF levels driving gene expression through a sparse bipartite network.

    The model is the paper's eq. 6 (Schuster & Krogh 2021, sec. 3.3), with optional per-gene
    offsets::

        z   ~ Gamma(tf_shape, tf_scale)            (n_obs x n_tfs, non-negative TF levels)
        A   ~ Bernoulli(density)                    (n_genes x n_tfs adjacency)
        W   ~ Uniform(weight_low, weight_high)      (signed regulation strengths)
        b   ~ Normal(offset_mean, offset_sd)        (one offset per gene; 0 by default)
        x   = ReLU((A * W) z + b + eps),  eps ~ N(0, noise)

    Without ``net`` every TF gets at least one target: a TF that the Bernoulli draw left
    without targets is given one gene drawn at random.

    **On a real network's topology** (``net=``): ``A`` and the signs of ``W`` are the
    network's. TFs with fewer than ``tmin`` targets are dropped (as decoupler's and
    :func:`regdecoder.tl.fit_decoder`'s ``tmin``), the genes are the targets of the TFs
    kept (sorted by name), and each edge's weight is ``sign * U(weight_low, weight_high)``
    with the magnitudes' range defaulting to 0.5-1 (an edge without a sign, or a net
    without a ``weight`` column, counts as an activation). On human CollecTRI (tmin 5):
    772 TFs, 6,652 genes, 42,308 edges.

    Parameters
    ----------
    n_obs
        Number of cells.
    n_genes, n_tfs
        Number of genes and TFs of the random network (default 1000 and 100, the paper's).
        With ``net`` they are the network's: giving them is an error.
    net
        A TF -> target network in decoupler's long format: ``source``, ``target`` and
        optional ``weight`` (its sign: activation / repression); or the path of a CSV/TSV.
    tmin
        With ``net``: TFs with fewer targets are dropped.
    density
        Probability of an edge between a TF and a gene of the random network (default 0.1,
        the paper's). With ``net``: an error.
    tf_shape, tf_scale
        Shape and scale of the Gamma distribution of TF levels.
    weight_low, weight_high
        Range of the uniform distribution of edge weights, default -1 and 1 (a negative
        weight is a repression). With ``net``: the range of the weights' magnitudes
        (``0 <= weight_low < weight_high``), default 0.5 and 1; the signs are the net's.
    offset_mean, offset_sd
        Mean and standard deviation of the per-gene offsets ``b`` (default 0: no offsets).
        A negative mean censors more of each gene's values.
    noise
        Standard deviation of the Gaussian noise added before the ReLU.
    counts
        Draw UMI-like counts from the expression: cell ``c`` gets a size factor
        ``s_c ~ LogNormal(0, size_sd)`` and gene ``g`` the mean
        ``mu_cg = s_c * x_cg * library_size / mean_c(sum_g x_cg)``, so the mean total
        count per cell is about ``library_size``; counts are negative binomial with
        variance ``mu + dispersion * mu^2`` (``dispersion=0``: Poisson).
    library_size
        Mean total count per cell (counts mode).
    dispersion
        Negative-binomial dispersion (counts mode), ``>= 0``.
    size_sd
        Standard deviation of the log size factors (counts mode), ``>= 0``.
    seed
        Seed of the random number generator; the same seed gives the same data.

    Returns
    -------
    A new :class:`~anndata.AnnData` with

    ``X``
        Expression, float32, ``n_obs x n_genes`` (dense).
    ``obsm['tf_activity']``
        True TF levels, a DataFrame with TF names as columns.
    ``varm['true_weights']``
        True weights ``A * W``, a DataFrame (genes x TFs), zero off the network.
    ``var['true_offset']``
        The per-gene offsets ``b`` (float32; zeros unless asked for).
    ``layers['expression']``, ``obs['size_factor']``
        Counts mode only: ``X`` holds the counts (float32, integer-valued), the clean
        expression ``x`` moves to this layer, and the true size factors to ``obs``.
    ``uns['sim']``
        The parameters and ``net``, the true network in decoupler's long format
        (``source``, ``target``, ``weight``: the weights drawn), sorted by source and target.

    Raises
    ------
    ValueError
        A size, range or spread out of bounds; ``n_genes``, ``n_tfs`` or ``density`` given
        together with ``net``; a ``net`` that :func:`regdecoder.pp.prepare_net` refuses
        (e.g. duplicate edges) or that leaves no TF with ``tmin`` targets.
    TypeError, KeyError
        ``net`` is not a DataFrame or path, or lacks ``source`` / ``target``.
    """
    _check_positive_int(n_obs=n_obs)
    if net is not None:
        given = [name for name, v in (("n_genes", n_genes), ("n_tfs", n_tfs), ("density", density)) if v is not None]
        if given:
            msg = f"With `net`, the genes, TFs and edges are the network's: drop {', '.join(f'`{g}`' for g in given)}."
            raise ValueError(msg)
        low, high = 0.5 if weight_low is None else weight_low, 1.0 if weight_high is None else weight_high
        if not 0 <= low < high:
            msg = f"With `net`, weight_low and weight_high bound the weights' magnitudes: need 0 <= {low} < {high}."
            raise ValueError(msg)
    else:
        n_genes, n_tfs = 1000 if n_genes is None else n_genes, 100 if n_tfs is None else n_tfs
        density = 0.1 if density is None else density
        low, high = -1.0 if weight_low is None else weight_low, 1.0 if weight_high is None else weight_high
        _check_positive_int(n_genes=n_genes, n_tfs=n_tfs)
        if not 0 < density <= 1:
            msg = f"`density` must be in (0, 1], got {density}."
            raise ValueError(msg)
        if low >= high:
            msg = f"`weight_low` ({low}) must be smaller than `weight_high` ({high})."
            raise ValueError(msg)
    if tf_shape <= 0 or tf_scale <= 0:
        msg = f"`tf_shape` and `tf_scale` must be positive, got {tf_shape} and {tf_scale}."
        raise ValueError(msg)
    if noise < 0 or offset_sd < 0:
        msg = f"`noise` and `offset_sd` are standard deviations and must be >= 0, got {noise} and {offset_sd}."
        raise ValueError(msg)
    if counts and (library_size <= 0 or dispersion < 0 or size_sd < 0):
        msg = (
            f"Counts mode needs library_size > 0, dispersion >= 0 and size_sd >= 0; got {library_size}, "
            f"{dispersion} and {size_sd}."
        )
        raise ValueError(msg)

    rng = np.random.default_rng(seed)
    if net is None:
        weights, var_names, tf_names = _random_network(rng, n_genes, n_tfs, density, low, high)
    else:
        weights, var_names, tf_names = _network_from(net, tmin, rng, low, high)
        n_genes, n_tfs = weights.shape
    z = rng.gamma(tf_shape, tf_scale, size=(n_obs, n_tfs))
    offsets = np.zeros(n_genes)
    if offset_sd > 0 or offset_mean != 0:
        offsets = rng.normal(offset_mean, offset_sd, size=n_genes) if offset_sd > 0 else offsets + offset_mean
    x = _expression(rng, z, weights, offsets, noise)
    if counts:
        size = rng.lognormal(0.0, size_sd, size=n_obs) if size_sd > 0 else np.ones(n_obs)
        umi = _counts(rng, x, size, library_size, dispersion)

    obs_names = [f"cell{i}" for i in range(n_obs)]
    w = weights.tocoo() if sparse.issparse(weights) else sparse.coo_matrix(weights)
    net_true = pd.DataFrame(
        {"source": np.asarray(tf_names)[w.col], "target": np.asarray(var_names)[w.row], "weight": w.data}
    ).sort_values(["source", "target"], ignore_index=True)

    adata = AnnData(
        X=umi if counts else x,
        obs=pd.DataFrame(index=pd.Index(obs_names)),
        var=pd.DataFrame({"true_offset": offsets.astype(np.float32)}, index=pd.Index(var_names)),
    )
    if counts:
        adata.layers["expression"] = x
        adata.obs["size_factor"] = size.astype(np.float32)
    adata.obsm["tf_activity"] = pd.DataFrame(z, index=adata.obs_names, columns=tf_names)
    dense = weights.toarray() if sparse.issparse(weights) else weights
    adata.varm["true_weights"] = pd.DataFrame(dense, index=adata.var_names, columns=tf_names)
    params = {
        "n_obs": n_obs, "n_genes": n_genes, "n_tfs": n_tfs,
        "density": density if net is None else w.nnz / (n_genes * n_tfs),
        "n_edges": int(w.nnz), "from_net": net is not None, "tmin": tmin if net is not None else None,
        "tf_shape": tf_shape, "tf_scale": tf_scale, "weight_low": low, "weight_high": high,
        "offset_mean": offset_mean, "offset_sd": offset_sd, "noise": noise, "counts": counts,
        "library_size": library_size, "dispersion": dispersion, "size_sd": size_sd, "seed": seed,
    }  # fmt: skip
    adata.uns["sim"] = {"model": "grn", "params": {k: v for k, v in params.items() if v is not None}, "net": net_true}
    return adata


def _random_network(rng, n_genes: int, n_tfs: int, density: float, low: float, high: float):
    """The paper's Bernoulli network with uniform weights (dense genes x TFs), and names."""
    adjacency = rng.random((n_genes, n_tfs)) < density
    for j in np.flatnonzero(~adjacency.any(axis=0)):
        adjacency[rng.integers(n_genes), j] = True
    weights = rng.uniform(low, high, size=(n_genes, n_tfs)) * adjacency
    var_names = [f"G{i:0{len(str(n_genes - 1))}d}" for i in range(n_genes)]
    tf_names = [f"TF{j:0{len(str(n_tfs - 1))}d}" for j in range(n_tfs)]
    return weights, var_names, tf_names


def _network_from(net, tmin: int, rng, low: float, high: float):
    """A real network's topology and signs, TFs with >= tmin targets, magnitudes ~ U(low, high):
    sparse genes x TFs weights (genes: the kept TFs' targets), and names."""
    net = read_net(net) if isinstance(net, (str, os.PathLike)) else net
    ok = isinstance(net, pd.DataFrame) and "target" in net.columns
    targets = sorted(pd.Index(net["target"]).astype(str).unique()) if ok else []  # prepare_net names the problem
    prior = prepare_net(net, targets, tmin=tmin)
    genes = np.unique(prior.rows)  # the targets of the TFs kept
    rows = np.searchsorted(genes, prior.rows)
    sign = np.ones(len(rows)) if prior.prior is None else np.where(prior.prior < 0, -1.0, 1.0)
    mag = rng.uniform(low, high, size=len(rows))
    weights = sparse.csr_matrix((sign * mag, (rows, prior.cols)), shape=(len(genes), prior.n_latent))
    return weights, [targets[g] for g in genes], prior.latent_names


def _expression(rng, z: np.ndarray, weights, offsets: np.ndarray, noise: float) -> np.ndarray:
    """``ReLU(z W' + b + eps)`` as float32, in blocks of cells (float64 temporaries of one block);
    the noise is drawn block by block in the same order as one draw of the whole matrix."""
    n_obs, n_genes = z.shape[0], offsets.shape[0]
    x = np.empty((n_obs, n_genes), dtype=np.float32)
    step = max(1, _CHUNK_ELEMENTS // max(1, n_genes))
    wt = weights.T.tocsr() if sparse.issparse(weights) else weights.T
    for s in range(0, n_obs, step):
        pre = np.asarray(z[s : s + step] @ wt) + offsets
        if noise > 0:
            pre += rng.normal(0.0, noise, size=pre.shape)
        x[s : s + step] = np.maximum(pre, 0.0)
    return x


def _counts(rng, x: np.ndarray, size: np.ndarray, library_size: float, dispersion: float) -> np.ndarray:
    """UMI-like negative-binomial (gamma-Poisson) counts around ``size * x``, scaled to the depth."""
    scale = library_size / max(float(x.sum(1).mean()), 1e-12)
    mu = size[:, None] * x.astype(np.float64) * scale
    if dispersion > 0:  # gamma-Poisson mixture: variance mu + dispersion * mu^2
        pos = mu > 0
        lam = np.zeros_like(mu)
        lam[pos] = rng.gamma(1.0 / dispersion, dispersion * mu[pos])
        mu = lam
    return rng.poisson(mu).astype(np.float32)


def _check_positive_int(**kwargs: int) -> None:
    for name, value in kwargs.items():
        if int(value) != value or value < 1:
            msg = f"`{name}` must be a positive integer, got {value!r}."
            raise ValueError(msg)
