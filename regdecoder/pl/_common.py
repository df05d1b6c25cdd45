"""What the activity plots share: groups of cells, regulon sizes next to TF names, and the
warning for TFs whose activities rest on few genes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from anndata import AnnData

from .._anndata import read_weights

logger = logging.getLogger("regdecoder")

#: TFs with fewer targets among the data's genes than this are flagged in plots: their
#: activity is a statistic over a handful of genes.
SMALL_REGULON = 10


def finish(fig, show: bool | None, return_fig: bool):
    """Return the figure, or show it (``show=None``: when matplotlib is interactive)."""
    if return_fig:
        return fig
    if show or (show is None and plt.isinteractive()):
        plt.show()
    return None


def labels(adata: AnnData, groupby: str) -> pd.Series:
    """The ``obs`` column ``groupby`` (KeyError naming the columns there are)."""
    if not isinstance(groupby, str) or groupby not in adata.obs.columns:
        msg = f"`groupby={groupby!r}` is not a column of adata.obs (columns: {list(adata.obs.columns)[:10]})."
        raise KeyError(msg)
    return adata.obs[groupby]


def group_order(column: pd.Series) -> list:
    """The groups in their categorical order (or order of appearance), only those with cells."""
    present = set(column.dropna().unique())
    order = list(column.cat.categories) if hasattr(column, "cat") else list(pd.unique(column.dropna()))
    return [g for g in order if g in present]


def regulon_sizes(adata: AnnData, key: str) -> pd.Series | None:
    """Targets per TF among the data's genes: from the fit's ``uns[key]['identifiability']``,
    else the non-zero learned weights (``varm[key + '_weights']`` or ``uns[key]['weights']``);
    None if neither is there."""
    rec = adata.uns.get(key)
    table = rec.get("identifiability") if isinstance(rec, dict) else None
    if isinstance(table, pd.DataFrame) and {"source", "n_targets"} <= set(table.columns):
        return pd.Series(table["n_targets"].to_numpy(int), index=table["source"].astype(str))
    try:
        edges = read_weights(adata, key)
    except (KeyError, ValueError):  # no weights under key (an inference, a decoder with hidden layers)
        return None
    return edges[edges["weight"] != 0].groupby("source").size().astype(int)


def tf_label(tf: str, sizes: pd.Series | None, small: int = SMALL_REGULON) -> str:
    """``'SPI1 (45)'``: the TF and its targets among the genes; ``'HES1 (6)*'`` below ``small``."""
    if sizes is None or tf not in sizes.index:
        return tf
    n = int(sizes[tf])
    return f"{tf} ({n}){'*' if n < small else ''}"


def small_note(tfs: Sequence[str], sizes: pd.Series | None, small: int = SMALL_REGULON) -> str:
    """The figure's footnote: what the numbers and the star next to TF names mean."""
    if sizes is None:
        return ""
    note = "(n): the TF's targets among the genes"
    if any(t in sizes.index and sizes[t] < small for t in tfs):
        note += f"; * fewer than {small}: an activity from few genes"
    return note


def warn_small(tfs: Sequence[str], sizes: pd.Series | None, key: str, small: int = SMALL_REGULON) -> None:
    """One warning naming the TFs shown whose regulons are small among the genes."""
    if sizes is None:
        return
    few = [f"{t} ({int(sizes[t])})" for t in tfs if t in sizes.index and sizes[t] < small]
    if few:
        logger.warning(
            "%d of the TFs shown have fewer than %d targets among the data's genes, so their activities rest on "
            "few genes: %s. See adata.uns[%r]['identifiability'], or pass `tfs=` to choose TFs.",
            len(few), small, ", ".join(few), key,
        )  # fmt: skip
