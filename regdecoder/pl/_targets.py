"""One TF's targets: their sign in the prior network, the learned weights and the expression per group."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.patches import Patch
from scipy import sparse

from .._anndata import latents, matrix, read_weights
from ._common import finish, group_order, labels

_SIGNS = {1: ("C3", "activation in the prior"), -1: ("C0", "repression in the prior"), 0: ("0.6", "")}


def targets(
    adata: AnnData,
    tf: str,
    groupby: str | None = None,
    *,
    key: str = "regdecoder",
    net: pd.DataFrame | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    n_top: int = 25,
    show: bool | None = None,
    return_fig: bool = False,
):
    """One TF's targets: the sign the prior network gives each, the weight the decoder learned,
    and the gene's mean expression in each group of cells.

    Left: the learned weights (:func:`regdecoder.get.weights`) of the ``n_top`` targets with
    the largest absolute weight, coloured by their sign in ``net`` (red activation, blue
    repression; hatched where the learned sign differs from the prior's). Right: each
    target's mean expression per group, from the expression the fit read.

    Parameters
    ----------
    adata
        The AnnData ``rd.tl.fit_decoder`` fitted (it holds the weights: ``varm[key +
        '_weights']``, or ``uns[key]['weights']`` after a fit on ``raw``'s genes).
    tf
        The TF (a latent name, e.g. ``'SPI1'`` or a merged ``'RFX5|RFXANK|RFXAP'``).
    groupby
        ``obs`` column with the groups; None: all cells in one column.
    key
        Where the fit wrote its results.
    net
        The prior network (decoupler's ``source``, ``target``, ``weight``), for the signs;
        by default the one a soft-mask fit stored in ``uns[key]['net']``; without either,
        the bars are grey and the legend says so.
    layer, use_raw
        Where the expression is (as given to the fit): ``layers[layer]``, ``raw.X`` or ``X``.
    n_top
        Targets shown.
    show, return_fig
        Show the figure, or return it.

    Raises
    ------
    KeyError
        No weights under ``key`` (``rd.tl.infer`` writes none: plot the fitted AnnData);
        ``tf`` is not a latent; ``groupby`` is not an ``obs`` column; a missing layer.
    """
    edges = read_weights(adata, key)
    names = list(latents(adata, key).columns)
    if tf not in names:
        msg = f"{tf!r} is not a latent in obsm[{key!r}] (e.g. {names[:5]}); see `rd.get.activities(adata).var_names`."
        raise KeyError(msg)
    mine = edges[(edges["source"] == tf) & (edges["weight"] != 0)]
    w = pd.Series(mine["weight"].to_numpy(float), index=mine["target"].astype(str).to_numpy())
    shown = w.iloc[np.argsort(-np.abs(w.to_numpy()), kind="stable")[: max(int(n_top), 1)]].sort_values()
    signs = _prior_signs(adata, key, net, tf, shown.index)
    expr, where, cells = _group_means(adata, shown.index, groupby, layer, use_raw)
    fig, (left, right) = plt.subplots(1, 2, figsize=(4.2 + 0.45 * expr.shape[1], 0.22 * len(shown) + 2.2), sharey=True,
                                      layout="constrained", width_ratios=[1.3, 0.2 * expr.shape[1] + 0.6])  # fmt: skip
    ys = np.arange(len(shown))
    colours = [_SIGNS[int(s)][0] for s in signs]
    differs = signs.to_numpy() * np.sign(shown.to_numpy()) < 0
    left.barh(ys, shown.to_numpy(), color=colours, hatch=["//" if d else "" for d in differs], edgecolor="0.2", lw=0.3)
    left.axvline(0.0, color="0.3", lw=0.6)
    left.set_yticks(ys, list(shown.index), fontsize=7)
    left.set_xlabel("learned weight")
    handles = [Patch(color=c, label=lab) for s, (c, lab) in _SIGNS.items() if lab and (signs == s).any()]
    if differs.any():
        handles.append(Patch(facecolor="white", edgecolor="0.2", hatch="//", label="learned sign differs"))
    if not (signs != 0).any():
        handles = [Patch(color="0.6", label="prior sign unknown: pass net=")]
    left.legend(handles=handles, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.1))
    im = right.imshow(expr.to_numpy(), aspect="auto", cmap="viridis", origin="lower")  # row i at y = i, as the bars
    right.tick_params(axis="y", left=False, labelleft=False)
    right.set_xticks(range(expr.shape[1]), list(map(str, expr.columns)), rotation=90, fontsize=7)
    fig.colorbar(im, ax=right, label=f"mean expression\n({where})", shrink=0.8)
    fig.suptitle(
        f"{tf}: {len(shown)} of its {len(w)} targets among the genes, by |learned weight|\n{cells}", fontsize=9
    )
    return finish(fig, show, return_fig)


def _prior_signs(adata: AnnData, key: str, net, tf: str, genes) -> pd.Series:
    """+1 / -1 per gene from the prior's weights for ``tf`` (a merged name's TFs too); 0 where unknown."""
    if net is None:
        rec = adata.uns.get(key)
        net = rec.get("net") if isinstance(rec, dict) else None
    if net is None:
        return pd.Series(0, index=genes)
    if "weight" not in net.columns:
        msg = "`net` has no `weight` column, so it gives no signs; pass the signed network (decoupler's format)."
        raise KeyError(msg)
    mine = net[net["source"].astype(str).isin(tf.split("|"))]
    sign = np.sign(mine.groupby(mine["target"].astype(str))["weight"].mean())
    return sign.reindex(genes).fillna(0).astype(int)


def _group_means(adata: AnnData, genes, groupby, layer, use_raw) -> tuple[pd.DataFrame, str, str]:
    """Mean expression of ``genes`` (rows) per group (columns), where it was read, and the cells in words."""
    mat, where, var_names = matrix(adata, layer, use_raw)
    idx = pd.Index(var_names.astype(str)).get_indexer(list(genes))
    if (idx < 0).any():
        msg = (
            f"Genes {list(np.asarray(genes)[idx < 0][:5])} are not in {where}: pass the `layer=`/`use_raw=` of the fit."
        )
        raise KeyError(msg)
    sub = mat[:, np.sort(idx)]
    sub = sub.toarray() if sparse.issparse(sub) else np.asarray(sub)
    values = pd.DataFrame(sub, columns=var_names.astype(str)[np.sort(idx)])[list(genes)]
    if groupby is None:
        return values.mean().to_frame("all cells"), where, f"all {adata.n_obs:,} cells"
    column = labels(adata, groupby)
    means = values.groupby(column.to_numpy()).mean().T
    return means[[g for g in group_order(column) if g in means.columns]], where, f"{adata.n_obs:,} cells by {groupby}"
