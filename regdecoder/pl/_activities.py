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
        TFs to show; by default the ``n_top`` TFs with the highest scaled mean in each
        group (each TF once).
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
    if tfs is None:
        picks: list[str] = []
        for g in scaled.index:
            for tf in scaled.loc[g].sort_values(ascending=False).index[:n_top]:
                if tf not in picks:
                    picks.append(tf)
        tfs = picks
    missing = [t for t in tfs if t not in means.columns]
    if missing:
        msg = f"TF(s) {missing} are not latents in obsm[{key!r}]; see `rd.get.activities(adata).var_names`."
        raise KeyError(msg)
    values = (scaled if standard_scale else means)[list(tfs)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.32 * len(tfs) + 2.5, 0.3 * len(values) + 1.5), layout="constrained")
    else:
        fig = ax.figure
    lim = float(np.nanmax(np.abs(values.to_numpy()))) or 1.0
    im = ax.imshow(values.to_numpy(), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(tfs)), list(tfs), rotation=90, fontsize=8)
    ax.set_yticks(range(len(values)), list(map(str, values.index)), fontsize=8)
    fig.colorbar(im, ax=ax, label="scaled mean activity" if standard_scale else "mean activity", shrink=0.8)
    return _finish(fig, show, return_fig)
