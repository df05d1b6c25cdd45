"""A volcano plot of one contrast's TF activities."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.text import Text

from ..tl._rank import rank_table
from ._common import finish, labels, regulon_sizes, small_note, tf_label, warn_small

_TESTS = {"t-test": "Welch's t-test", "wilcoxon": "Wilcoxon rank-sum test"}


def volcano(
    adata: AnnData,
    groupby: str,
    group: str,
    *,
    reference: str = "rest",
    key: str = "regdecoder",
    method: str = "t-test",
    alpha: float = 0.05,
    n_labels: int = 10,
    ax: plt.Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Volcano plot of a contrast: each TF's mean activity difference against its adjusted p-value.

    The contrast is ``group`` against ``reference`` (by default all other cells) as
    :func:`regdecoder.tl.rank_activities` computes it: x is ``meanchange`` (mean activity in
    ``group`` minus in ``reference``), y is ``-log10(padj)`` (Benjamini-Hochberg over the
    TFs). TFs with ``padj < alpha`` are coloured (red: higher in ``group``, blue: lower);
    the ``n_labels`` most significant are named, with their targets among the genes
    (a star below 10: an activity from few genes; a warning names them).

    Parameters
    ----------
    adata
        Cells with activities in ``obsm[key]``.
    groupby
        ``obs`` column with the groups.
    group
        The group of the contrast.
    reference
        ``'rest'`` or another group.
    key
        Where the activities are.
    method
        ``'t-test'`` (Welch) or ``'wilcoxon'``, as in :func:`regdecoder.tl.rank_activities`.
    alpha
        Adjusted p-value below which a TF is coloured (a dashed line marks it).
    n_labels
        TFs named, the most significant first.
    ax, show, return_fig
        Axes to draw in; show the figure, or return it.

    Raises
    ------
    KeyError
        ``groupby`` or ``obsm[key]`` is missing; ``group`` or ``reference`` is not a group.
    """
    column = labels(adata, groupby).to_numpy()
    table = rank_table(adata, groupby, key=key, groups=[group], reference=reference, method=method)
    table = table.dropna(subset=["padj"]).reset_index(drop=True)
    x = table["meanchange"].to_numpy(float)
    p = table["padj"].to_numpy(float)
    y = -np.log10(np.clip(p, 1e-300, None))
    up, down = (p < alpha) & (x > 0), (p < alpha) & (x < 0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.4, 4.4), layout="constrained")
    else:
        fig = ax.figure
    ax.scatter(x[~(up | down)], y[~(up | down)], s=10, color="0.65", linewidths=0, label=f"padj >= {alpha:g}")
    ax.scatter(x[up], y[up], s=14, color="C3", linewidths=0, label=f"higher in {group} ({int(up.sum())})")
    ax.scatter(x[down], y[down], s=14, color="C0", linewidths=0, label=f"lower in {group} ({int(down.sum())})")
    ax.axhline(-np.log10(alpha), color="0.4", lw=0.8, ls="--")
    ax.axvline(0.0, color="0.4", lw=0.8)
    sizes = regulon_sizes(adata, key)
    named = list(table["name"].astype(str)[: max(int(n_labels), 0)])  # sorted by padj, pval, stat
    warn_small(named, sizes, key)
    middle = 0.5 * (np.nanmin(x) + np.nanmax(x)) if len(x) else 0.0
    right = [xi > middle for xi in x[: len(named)]]  # labels point inwards, so that they stay inside the axes
    texts = [
        ax.annotate(
            tf_label(name, sizes),
            (x[i], y[i]),
            xytext=(-5 if right[i] else 5, 0),
            textcoords="offset points",
            fontsize=7,
            va="center",
            ha="right" if right[i] else "left",
            arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.4},
        )
        for i, name in enumerate(named)
    ]
    n_ref = int((column != group).sum()) if reference == "rest" else int((column == reference).sum())
    versus = "all other cells" if reference == "rest" else str(reference)
    ax.set_xlabel(f"mean activity difference ({group} - {'rest' if reference == 'rest' else reference})")
    ax.set_ylabel("-log10 adjusted p-value (BH)")
    ax.set_title(
        f"TF activity of {int((column == group).sum()):,} {group} cells vs {versus} ({n_ref:,} cells)\n"
        f"{_TESTS[method]} per TF, Benjamini-Hochberg over {len(table)} TFs",
        fontsize=9,
    )
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.supxlabel(small_note(named, sizes), fontsize=7)
    _spread(fig, texts)
    return finish(fig, show, return_fig)


def _spread(fig, texts) -> None:
    """Move labels down, most significant first, until none overlaps one placed before it."""
    for text in texts:
        text.set_in_layout(False)  # labels near the edge must not squeeze the axes
    if not texts:
        return
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for text in texts:
        box = Text.get_window_extent(text, renderer)  # the text alone, not its leader line
        for _ in range(len(texts) + 1):
            if not any(box.overlaps(other) for other in placed):
                break
            dx, dy = text.get_position()
            text.set_position((dx, dy - 1.2 * text.get_fontsize()))  # one line down, in points
            box = Text.get_window_extent(text, renderer)
        placed.append(box)
