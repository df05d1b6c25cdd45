from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from .._anndata import check_key, latents

_STATISTICS = {"activity": "", "pvals": "_pvals", "z": "_z", "z_se": "_z_se"}
#: The standard errors are computed only when asked: the call that writes them.
_SE_HINT = "rd.tl.fit_decoder(..., standard_errors=True)` or `rd.tl.infer(..., standard_errors=True)"


def activities(adata: AnnData, key: str = "regdecoder", *, statistic: str = "activity") -> AnnData:
    """Activities (or their uncertainty) as a new AnnData (cells x TFs), ``adata.obs`` copied.

    Ready for ``sc.pl.matrixplot``, ``sc.tl.rank_genes_groups`` or a UMAP on activities.

    Parameters
    ----------
    adata
        Cells fitted by :func:`regdecoder.tl.fit_decoder` or :func:`regdecoder.tl.infer`.
    key
        Where they wrote their results.
    statistic
        ``'activity'``: ``obsm[key]`` (with a network: each TF's marginal t-value);
        ``'pvals'``: its two-sided p-values; ``'z'``: the decoder's latents;
        ``'z_se'``: their standard errors (curvature of the censored loss at the
        solution; written only by fits and inferences asked for them with
        ``standard_errors=True``); ``'z_t'``: ``z / z_se``; ``'z_pvals'``: two-sided normal
        p-values of ``z_t`` (as decoupler's mlm reports for its coefficients).

    Raises
    ------
    KeyError
        The results are missing (names the call to run).
    ValueError
        An unknown ``statistic``, or an array without TF names.
    """
    if statistic in ("z_t", "z_pvals"):
        zt = latents(adata, key + "_z") / latents(adata, key + "_z_se", hint=_SE_HINT)
        z = zt if statistic == "z_t" else pd.DataFrame(2 * stats.norm.sf(np.abs(zt)), zt.index, zt.columns)
    elif statistic in _STATISTICS:
        z = latents(adata, key + _STATISTICS[statistic], hint=_SE_HINT if statistic == "z_se" else "rd.tl.fit_decoder")
    else:
        msg = f"`statistic` must be one of {[*_STATISTICS, 'z_t', 'z_pvals']}, got {statistic!r}."
        raise ValueError(msg)
    return AnnData(
        X=z.to_numpy(dtype=np.float32, copy=True),
        obs=adata.obs.copy(),
        var=pd.DataFrame(index=pd.Index(z.columns)),
    )


def weights(adata: AnnData, key: str = "regdecoder") -> pd.DataFrame:
    """Learned decoder weights as a tidy table (``source``, ``target``, ``weight``), non-zero edges only,
    sorted by decreasing absolute weight."""
    check_key(adata, key + "_weights", where="varm")
    w = np.asarray(adata.varm[key + "_weights"])
    genes, lat = np.nonzero(w)
    names = adata.uns.get(key, {}).get("latent_names")
    if names is None or len(names) != w.shape[1]:
        names = latents(adata, key).columns
    names = np.asarray(list(map(str, names)))
    df = pd.DataFrame({"source": names[lat], "target": adata.var_names[genes].to_numpy(), "weight": w[genes, lat]})
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
