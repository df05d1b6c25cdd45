from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from .._anndata import TABLES, read_table, read_weights, result_tables


def activities(adata: AnnData, key: str = "regdecoder", *, statistic: str = "activity") -> AnnData:
    """Activities (or their uncertainty) as a new AnnData (cells x TFs) that scanpy plots as it is.

    Like decoupler's ``dc.pp.get_obsm``: the cells keep their ``obs``, their embeddings
    in ``obsm`` (``X_umap``, ``X_pca``...) and the colours of their ``obs`` columns in
    ``uns`` (``bulk_labels_colors``...), so ``sc.pl.umap(acts, color='SPI1')`` and
    ``sc.pl.matrixplot(acts, acts.var_names, groupby='bulk_labels')`` work on it. Left
    out: regdecoder's own cells x TFs tables (they are ``X`` here, or other statistics
    of it), everything else in ``uns`` and ``obsp`` (the neighbour graph of the genes,
    not of the activities). Everything is copied: changing the result leaves ``adata``
    as it was.

    Parameters
    ----------
    adata
        Cells fitted by :func:`regdecoder.tl.fit_decoder` or :func:`regdecoder.tl.infer`.
    key
        Where they wrote their results.
    statistic
        ``'activity'``: ``obsm[key]`` (with a network: each TF's marginal t-value);
        ``'pvals'``: its two-sided p-values; ``'padj'``: those p-values adjusted by
        Benjamini-Hochberg over the TFs of each cell; ``'z'``: the decoder's latents;
        ``'z_se'``: their standard errors (curvature of the censored loss at the
        solution; written only by ``rd.tl.infer(..., standard_errors=True)``); ``'z_t'``: ``z / z_se``; ``'z_pvals'``: two-sided normal
        p-values of ``z_t`` (as decoupler's mlm reports for its coefficients).

    Returns
    -------
    AnnData with ``X`` the chosen statistic (cells x TFs, float32), ``var_names`` the
    TF names, ``obs``, ``obsm`` and the ``*_colors`` entries of ``uns`` as described.

    Raises
    ------
    KeyError
        The results are missing (names the call to run).
    ValueError
        An unknown ``statistic``, or an array without TF names.
    """
    if statistic in ("z_t", "z_pvals"):
        zt = read_table(adata, key, "z") / read_table(adata, key, "z_se")
        z = zt if statistic == "z_t" else pd.DataFrame(2 * stats.norm.sf(np.abs(zt)), zt.index, zt.columns)
    elif statistic in TABLES:
        z = read_table(adata, key, statistic)
    else:
        msg = f"`statistic` must be one of {[*TABLES, 'z_t', 'z_pvals']}, got {statistic!r}."
        raise ValueError(msg)
    results = result_tables(adata)
    return AnnData(
        X=z.to_numpy(dtype=np.float32, copy=True),
        obs=adata.obs.copy(),
        var=pd.DataFrame(index=pd.Index(z.columns)),
        obsm={k: v.copy() for k, v in adata.obsm.items() if k not in results},  # of a view too: real copies
        uns={
            k: np.array(adata.uns[k], dtype=object)
            for k in (f"{c}_colors" for c in adata.obs.columns)
            if k in adata.uns
        },
    )


def weights(adata: AnnData, key: str = "regdecoder") -> pd.DataFrame:
    """Learned decoder weights as a tidy table (``source``, ``target``, ``weight``), non-zero edges only,
    sorted by decreasing absolute weight.

    Read from ``varm[key + '_weights']``, or from ``uns[key]['weights']`` where the model's genes
    are not ``var_names`` (a fit on ``adata.raw``'s genes: scanpy's layout with the highly
    variable genes in ``X``)."""
    df = read_weights(adata, key)
    return df.iloc[np.argsort(-np.abs(df["weight"].to_numpy()), kind="stable")].reset_index(drop=True)


def new_edges(
    adata: AnnData, key: str = "regdecoder", *, net: pd.DataFrame | None = None, n_top: int = 50, min_abs: float = 0.0
) -> pd.DataFrame:
    """The strongest learned edges absent from the prior network (soft-mask fits).

    Parameters
    ----------
    adata
        Data fitted by ``rd.tl.fit_decoder(..., soft_mask=True)``.
    key
        Where the fit wrote its results.
    net
        The prior network; by default the one the soft-mask fit stored in
        ``uns[key]['net']``.
    n_top
        Number of edges to return.
    min_abs
        Keep only edges with an absolute weight above this.

    Returns
    -------
    DataFrame with ``source`` (TF), ``target`` (gene), ``weight`` and ``rank_in_tf``
    (rank of the edge among the TF's weights by absolute value, 1 = strongest),
    sorted by decreasing absolute weight.
    """
    if net is None:
        stored = adata.uns.get(key, {}).get("net")
        if stored is None:
            msg = (
                f"No prior network stored in adata.uns[{key!r}]['net']: fit with "
                "`rd.tl.fit_decoder(adata, net=net, soft_mask=True)` or pass `net=`."
            )
            raise KeyError(msg)
        net = stored
    missing = [c for c in ("source", "target") if c not in net.columns]
    if missing:
        msg = f"`net` has no column(s) {missing}; it needs `source` and `target`."
        raise KeyError(msg)
    table = weights(adata, key)
    table["rank_in_tf"] = table.groupby("source")["weight"].transform(lambda w: w.abs().rank(ascending=False))
    prior = pd.MultiIndex.from_arrays([net["source"].astype(str), net["target"].astype(str)])
    pairs = pd.MultiIndex.from_arrays([table["source"], table["target"]])
    names = set(map(str, net["source"]))
    keep = ~pairs.isin(prior) & table["source"].isin(names).to_numpy() & (table["weight"].abs() > min_abs).to_numpy()
    out = table.loc[keep].head(int(n_top)).reset_index(drop=True)
    out["rank_in_tf"] = out["rank_in_tf"].astype(int)
    return out
