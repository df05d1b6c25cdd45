"""Simulated gene regulatory networks (paper sec. 3.3, eq. 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData


def grn(
    n_obs: int = 1000,
    n_genes: int = 1000,
    n_tfs: int = 100,
    *,
    density: float = 0.1,
    tf_shape: float = 2.0,
    tf_scale: float = 1.0,
    weight_low: float = -1.0,
    weight_high: float = 1.0,
    noise: float = 0.0,
    counts: bool = False,
    library_size: float = 2000.0,
    dispersion: float = 0.1,
    size_sd: float = 0.3,
    seed: int = 0,
) -> AnnData:
    """Simulate TF levels driving gene expression through a sparse bipartite network.

    The model is the paper's eq. 6::

        z   ~ Gamma(tf_shape, tf_scale)            (n_obs x n_tfs, non-negative TF levels)
        A   ~ Bernoulli(density)                    (n_genes x n_tfs adjacency)
        W   ~ Uniform(weight_low, weight_high)      (signed regulation strengths)
        x   = ReLU((A * W) z + eps),  eps ~ N(0, noise)

    Every TF gets at least one target: a TF that the Bernoulli draw left without
    targets is given one gene drawn at random.

    Parameters
    ----------
    n_obs, n_genes, n_tfs
        Number of cells, genes and TFs. The paper uses ``n_genes=1000, n_tfs=100``.
    density
        Probability of an edge between a TF and a gene (paper: 0.1).
    tf_shape, tf_scale
        Shape and scale of the Gamma distribution of TF levels.
    weight_low, weight_high
        Range of the uniform distribution of edge weights; a negative weight is a
        repression.
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
        Expression, float32, ``n_obs x n_genes``.
    ``obsm['tf_activity']``
        True TF levels, a DataFrame with TF names as columns.
    ``varm['true_weights']``
        True weights ``A * W``, a DataFrame (genes x TFs), zero off the network.
    ``layers['expression']``, ``obs['size_factor']``
        Counts mode only: ``X`` holds the counts (float32, integer-valued), the clean
        expression ``x`` moves to this layer, and the true size factors to ``obs``.
    ``uns['sim']``
        The parameters and ``net``, the true network in decoupler's long format
        (``source``, ``target``, ``weight``).
    """
    _check_positive_int(n_obs=n_obs, n_genes=n_genes, n_tfs=n_tfs)
    if not 0 < density <= 1:
        msg = f"`density` must be in (0, 1], got {density}."
        raise ValueError(msg)
    if tf_shape <= 0 or tf_scale <= 0:
        msg = f"`tf_shape` and `tf_scale` must be positive, got {tf_shape} and {tf_scale}."
        raise ValueError(msg)
    if weight_low >= weight_high:
        msg = f"`weight_low` ({weight_low}) must be smaller than `weight_high` ({weight_high})."
        raise ValueError(msg)
    if noise < 0:
        msg = f"`noise` is a standard deviation and must be >= 0, got {noise}."
        raise ValueError(msg)

    if counts and (library_size <= 0 or dispersion < 0 or size_sd < 0):
        msg = (
            f"Counts mode needs library_size > 0, dispersion >= 0 and size_sd >= 0; got {library_size}, "
            f"{dispersion} and {size_sd}."
        )
        raise ValueError(msg)

    rng = np.random.default_rng(seed)
    adjacency = rng.random((n_genes, n_tfs)) < density
    for j in np.flatnonzero(~adjacency.any(axis=0)):
        adjacency[rng.integers(n_genes), j] = True
    weights = rng.uniform(weight_low, weight_high, size=(n_genes, n_tfs)) * adjacency
    z = rng.gamma(tf_shape, tf_scale, size=(n_obs, n_tfs))
    pre = z @ weights.T
    if noise > 0:
        pre += rng.normal(0.0, noise, size=pre.shape)
    x = np.maximum(pre, 0.0).astype(np.float32)
    if counts:
        size = rng.lognormal(0.0, size_sd, size=n_obs) if size_sd > 0 else np.ones(n_obs)
        scale = library_size / max(float(x.sum(1).mean()), 1e-12)
        mu = size[:, None] * x.astype(np.float64) * scale
        if dispersion > 0:  # gamma-Poisson mixture: variance mu + dispersion * mu^2
            pos = mu > 0
            lam = np.zeros_like(mu)
            lam[pos] = rng.gamma(1.0 / dispersion, dispersion * mu[pos])
            mu = lam
        umi = rng.poisson(mu).astype(np.float32)

    obs_names = [f"cell{i}" for i in range(n_obs)]
    var_names = [f"G{i:0{len(str(n_genes - 1))}d}" for i in range(n_genes)]
    tf_names = [f"TF{j:0{len(str(n_tfs - 1))}d}" for j in range(n_tfs)]

    genes, tfs = np.nonzero(adjacency)
    net = pd.DataFrame(
        {
            "source": np.asarray(tf_names)[tfs],
            "target": np.asarray(var_names)[genes],
            "weight": weights[genes, tfs],
        }
    ).sort_values(["source", "target"], ignore_index=True)

    adata = AnnData(
        X=umi if counts else x,
        obs=pd.DataFrame(index=pd.Index(obs_names)),
        var=pd.DataFrame(index=pd.Index(var_names)),
    )
    if counts:
        adata.layers["expression"] = x
        adata.obs["size_factor"] = size.astype(np.float32)
    adata.obsm["tf_activity"] = pd.DataFrame(z, index=adata.obs_names, columns=tf_names)
    adata.varm["true_weights"] = pd.DataFrame(weights, index=adata.var_names, columns=tf_names)
    adata.uns["sim"] = {
        "model": "grn",
        "params": {
            "n_obs": n_obs,
            "n_genes": n_genes,
            "n_tfs": n_tfs,
            "density": density,
            "tf_shape": tf_shape,
            "tf_scale": tf_scale,
            "weight_low": weight_low,
            "weight_high": weight_high,
            "noise": noise,
            "counts": counts,
            "library_size": library_size,
            "dispersion": dispersion,
            "size_sd": size_sd,
            "seed": seed,
        },
        "net": net,
    }
    return adata


def _check_positive_int(**kwargs: int) -> None:
    for name, value in kwargs.items():
        if int(value) != value or value < 1:
            msg = f"`{name}` must be a positive integer, got {value!r}."
            raise ValueError(msg)
