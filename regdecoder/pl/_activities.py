"""Activities per group of cells: a heatmap of the means and a dot plot."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.lines import Line2D

from .._anndata import latents, read_table, table_key
from ..tl._rank import rank_table
from ._common import finish, group_order, labels, regulon_sizes, small_note, tf_label, warn_small


def group_means(adata: AnnData, key: str, groupby: str) -> pd.DataFrame:
    """Mean activity per group (groups x TFs), groups in their categorical order."""
    column = labels(adata, groupby)
    act = latents(adata, key)
    means = act.groupby(column.to_numpy()).mean()
    return means.loc[[g for g in group_order(column) if g in means.index]]


def group_smd(adata: AnnData, key: str, groupby: str) -> pd.DataFrame:
    """Standardised mean difference of each TF's activity, each group against all other cells.

    ``(mean_group - mean_rest) / pooled_sd`` (Cohen's d, with the pooled standard
    deviation of the two sets of cells; 0 where it is 0). Returns groups x TFs.
    """
    column = labels(adata, groupby)
    act = latents(adata, key)
    z = act.to_numpy(dtype=np.float64)
    values = column.to_numpy()
    rows = {}
    for g in group_order(column):
        inside = values == g
        n1, n2 = int(inside.sum()), int((~inside).sum())
        if n2 == 0:
            rows[g] = np.zeros(z.shape[1])
            continue
        a, b = z[inside], z[~inside]
        var1 = a.var(axis=0, ddof=1) if n1 > 1 else np.zeros(z.shape[1])
        var2 = b.var(axis=0, ddof=1) if n2 > 1 else np.zeros(z.shape[1])
        sd = np.sqrt(((n1 - 1) * var1 + (n2 - 1) * var2) / max(n1 + n2 - 2, 1))
        diff = a.mean(axis=0) - b.mean(axis=0)
        rows[g] = np.divide(diff, sd, out=np.zeros_like(diff), where=sd > 0)
    return pd.DataFrame(rows, index=act.columns).T


def _top(scores: pd.DataFrame, n_top: int) -> list[str]:
    """The ``n_top`` highest-scoring TFs of each group (rows), each TF once, in the groups' order."""
    picks: list[str] = []
    for g in scores.index:
        for tf in scores.loc[g].sort_values(ascending=False, kind="stable").index[:n_top]:
            if tf not in picks:
                picks.append(tf)
    return picks


def _check_tfs(tfs: Sequence[str], names, key: str) -> list[str]:
    missing = [t for t in tfs if t not in names]
    if missing:
        msg = f"TF(s) {missing} are not latents in obsm[{key!r}]; see `rd.get.activities(adata).var_names`."
        raise KeyError(msg)
    return list(tfs)


def _cells(adata: AnnData, groupby: str) -> str:
    return f"{adata.n_obs:,} cells by {groupby}"


def activities(
    adata: AnnData,
    groupby: str,
    *,
    key: str = "regdecoder",
    tfs: Sequence[str] | None = None,
    n_top: int = 3,
    standard_scale: bool = True,
    cmap: str = "RdBu_r",
    ax: plt.Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Heatmap of the mean TF activity per group of cells.

    Each TF is labelled with its number of targets among the data's genes (``'SPI1 (45)'``;
    a star marks fewer than 10, where an activity rests on few genes, and a warning names
    them).

    Parameters
    ----------
    adata
        Cells with activities in ``obsm[key]`` (from ``rd.tl.fit_decoder`` or ``rd.tl.infer``).
    groupby
        ``obs`` column with the groups (e.g. cell types); positional, as in scanpy.
    key
        Where the activities are (keyword-only since 0.2.0; it was the second positional).
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
    chosen = tfs is not None
    tfs = _check_tfs(tfs, means.columns, key) if chosen else _top(group_smd(adata, key, groupby), n_top)
    sizes = regulon_sizes(adata, key)
    warn_small(tfs, sizes, key)
    values = (scaled if standard_scale else means)[tfs]
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(0.36 * len(tfs) + 2.8, 4.5), 0.3 * len(values) + 2.4), layout="constrained")
    else:
        fig = ax.figure
    lim = float(np.nanmax(np.abs(values.to_numpy()))) or 1.0
    im = ax.imshow(values.to_numpy(), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(tfs)), [tf_label(t, sizes) for t in tfs], rotation=90, fontsize=8)
    ax.set_yticks(range(len(values)), list(map(str, values.index)), fontsize=8)
    ax.set_xlabel(small_note(tfs, sizes), fontsize=7)
    label = "mean activity, scaled across groups" if standard_scale else "mean activity"
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    how = "as given" if chosen else f"top {n_top} per group by standardised\nmean difference vs the other cells"
    ax.set_title(f"TF activity, {_cells(adata, groupby)}; TFs {how}", fontsize=9)
    return finish(fig, show, return_fig)


def dotplot(
    adata: AnnData,
    groupby: str,
    *,
    key: str = "regdecoder",
    tfs: Sequence[str] | None = None,
    n_top: int = 3,
    alpha: float = 0.05,
    cmap: str = "RdBu_r",
    ax: plt.Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Dot plot of TF activities per group of cells (groups x TFs).

    A dot's colour is the group's mean activity; its size the share of the group's cells
    in which the TF's activity is significant (``obsm[key + '_padj'] < alpha``: the
    cell's p-value adjusted by Benjamini-Hochberg over its TFs), whatever its sign. TFs
    are labelled with their targets among the genes (a star below 10; see
    :func:`activities`).

    Parameters
    ----------
    adata
        Cells with ``obsm[key]`` and ``obsm[key + '_padj']`` (``rd.tl.fit_decoder`` or
        ``rd.tl.infer`` with a network).
    groupby
        ``obs`` column with the groups.
    key
        Where the activities are.
    tfs
        TFs to show; by default the ``n_top`` TFs of each group ranked by Welch's t
        against the other cells (:func:`regdecoder.tl.rank_activities`), each once.
    n_top
        TFs per group when ``tfs`` is None.
    alpha
        Adjusted p-value below which a cell's activity counts as significant.
    cmap, ax, show, return_fig
        Colour map; Axes to draw in; show the figure, or return it.

    Raises
    ------
    KeyError
        ``groupby``, ``obsm[key]`` or ``obsm[key + '_padj']`` is missing (names the fix);
        a TF in ``tfs`` is not a latent.
    """
    padj = table_key(key, "padj")
    if padj not in adata.obsm:
        msg = (
            f"adata.obsm[{padj!r}] is missing: the dot sizes are the cells' adjusted p-values, which "
            "rd.tl.fit_decoder and rd.tl.infer write for a decoder masked by a `net` (fitted with regdecoder "
            ">= 0.2.0). Use rd.pl.activities for the mean activities alone."
        )
        raise KeyError(msg)
    means = group_means(adata, key, groupby)
    chosen = tfs is not None
    if chosen:
        tfs = _check_tfs(tfs, means.columns, key)
    else:
        ranked = rank_table(adata, groupby, key=key)
        tfs = _top(ranked.pivot(index="group", columns="name", values="stat").loc[list(map(str, means.index))], n_top)
    sizes = regulon_sizes(adata, key)
    warn_small(tfs, sizes, key)
    column = labels(adata, groupby).to_numpy()
    share = (read_table(adata, key, "padj")[tfs] < alpha).groupby(column).mean().loc[means.index]
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(0.4 * len(tfs) + 3.2, 5.0), 0.32 * len(means) + 2.6), layout="constrained")
    else:
        fig = ax.figure
    yy, xx = np.meshgrid(np.arange(len(means)), np.arange(len(tfs)), indexing="ij")
    colour = means[tfs].to_numpy()
    lim = float(np.nanquantile(np.abs(colour), 0.95)) or 1.0  # one extreme TF must not wash out the others
    dots = ax.scatter(xx.ravel(), yy.ravel(), s=_area(share.to_numpy().ravel()), c=colour.ravel(), cmap=cmap,
                      vmin=-lim, vmax=lim, edgecolors="0.3", linewidths=0.4)  # fmt: skip
    ax.set_xticks(range(len(tfs)), [tf_label(t, sizes) for t in tfs], rotation=90, fontsize=8)
    ax.set_yticks(range(len(means)), list(map(str, means.index)), fontsize=8)
    ax.set_xlim(-0.6, len(tfs) - 0.4)
    ax.set_ylim(len(means) - 0.4, -0.6)
    ax.set_xlabel(small_note(tfs, sizes), fontsize=7)
    fig.colorbar(dots, ax=ax, label="mean activity in the group", shrink=0.6, extend="both")
    handles = [Line2D([], [], ls="", marker="o", markersize=np.sqrt(_area(f)), color="0.5") for f in (0.25, 0.5, 1.0)]
    ax.legend(handles, ["25%", "50%", "100%"], title=f"cells with\npadj < {alpha:g}", fontsize=7, title_fontsize=7,
              loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, labelspacing=1.2)  # fmt: skip
    how = "as given" if chosen else f"top {n_top} per group by Welch's t vs the other cells"
    ax.set_title(f"TF activity, {_cells(adata, groupby)}\nTFs {how}", fontsize=9)
    return finish(fig, show, return_fig)


def _area(share) -> np.ndarray:
    """Marker area (points^2) for a share of cells: 0 -> a speck, 1 -> a full dot."""
    return 4.0 + 150.0 * np.asarray(share, dtype=float)
