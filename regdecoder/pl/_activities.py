from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData

from ..get import activities as _activities
from ._plots import _finish


def group_means(adata: AnnData, key: str, groupby: str) -> pd.DataFrame:
    """Mean activity per group (groups x TFs)."""
    if groupby not in adata.obs.columns:
        msg = f"`groupby={groupby!r}` is not a column of adata.obs (columns: {list(adata.obs.columns)[:10]})."
        raise KeyError(msg)
    act = _activities(adata, key)
    df = pd.DataFrame(act.X, index=act.obs_names, columns=act.var_names)
    return df.groupby(adata.obs[groupby].to_numpy()).mean()


def group_smd(adata: AnnData, key: str, groupby: str) -> pd.DataFrame:
    """Standardised mean difference of each TF's activity, each group against all other cells.

    ``(mean_group - mean_rest) / pooled_sd`` (Cohen's d, with the pooled standard
    deviation of the two sets of cells; 0 where it is 0). Returns groups x TFs.
    """
    if groupby not in adata.obs.columns:
        msg = f"`groupby={groupby!r}` is not a column of adata.obs (columns: {list(adata.obs.columns)[:10]})."
        raise KeyError(msg)
    act = _activities(adata, key)
    z = np.asarray(act.X, dtype=np.float64)
    labels = adata.obs[groupby].to_numpy()
    groups = pd.unique(labels) if not hasattr(adata.obs[groupby], "cat") else adata.obs[groupby].cat.categories
    rows = {}
    for g in groups:
        inside = labels == g
        n1, n2 = int(inside.sum()), int((~inside).sum())
        if n1 == 0:
            continue
        if n2 == 0:
            rows[g] = np.zeros(z.shape[1])
            continue
        a, b = z[inside], z[~inside]
        var1 = a.var(axis=0, ddof=1) if n1 > 1 else np.zeros(z.shape[1])
        var2 = b.var(axis=0, ddof=1) if n2 > 1 else np.zeros(z.shape[1])
        dof = max(n1 + n2 - 2, 1)
        sd = np.sqrt(((n1 - 1) * var1 + (n2 - 1) * var2) / dof)
        diff = a.mean(axis=0) - b.mean(axis=0)
        rows[g] = np.divide(diff, sd, out=np.zeros_like(diff), where=sd > 0)
    return pd.DataFrame(rows, index=act.var_names).T


def activities(
    adata: AnnData,
    key: str = "regdecoder",
    *,
    groupby: str,
    tfs: Sequence[str] | None = None,
    n_top: int = 3,
    standard_scale: bool = True,
    cmap: str = "RdBu_r",
    ax: plt.Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Heatmap of the mean TF activity per group of cells.

    Parameters
    ----------
    adata
        Cells with activities in ``obsm[key]`` (from ``rd.tl.fit_decoder`` or ``rd.tl.infer``).
    key
        Where the activities are.
    groupby
        ``obs`` column with the groups (e.g. cell types).
    tfs
        TFs to show. By default, for each group, the ``n_top`` TFs with the largest
        standardised mean difference (SMD) of the group against all other cells
        (the difference of the means over the pooled standard deviation, Cohen's d),
        each TF once, in the order of the groups; the title says so.
    n_top
        TFs per group when ``tfs`` is None.
    standard_scale
        Scale each TF's group means to zero mean and unit variance across groups.
    cmap
        Colour map.
    ax, show, return_fig
        Axes to draw in; show the figure, or return it.
    """
    means = group_means(adata, key, groupby)
    scaled = (means - means.mean()) / means.std(ddof=0).replace(0, 1.0)
    title = None
    if tfs is None:
        smd = group_smd(adata, key, groupby)
        picks: list[str] = []
        for g in means.index:  # the rows of the heatmap, in their order
            for tf in smd.loc[g].sort_values(ascending=False, kind="stable").index[:n_top]:
                if tf not in picks:
                    picks.append(tf)
        tfs = picks
        title = f"top {n_top} per group, ranked by\nstandardised mean difference vs the other cells"
    missing = [t for t in tfs if t not in means.columns]
    if missing:
        msg = f"TF(s) {missing} are not latents in obsm[{key!r}]; see `rd.get.activities(adata).var_names`."
        raise KeyError(msg)
    values = (scaled if standard_scale else means)[list(tfs)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(0.32 * len(tfs) + 2.5, 4.0), 0.3 * len(values) + 1.9), layout="constrained")
    else:
        fig = ax.figure
    lim = float(np.nanmax(np.abs(values.to_numpy()))) or 1.0
    im = ax.imshow(values.to_numpy(), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(tfs)), list(tfs), rotation=90, fontsize=8)
    ax.set_yticks(range(len(values)), list(map(str, values.index)), fontsize=8)
    label = "mean activity, scaled across groups" if standard_scale else "mean activity"
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return _finish(fig, show, return_fig)
