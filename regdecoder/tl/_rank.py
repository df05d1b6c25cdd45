"""Rank TF activities per group of cells, and the Benjamini-Hochberg adjustment of p-values."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from .. import _anndata

logger = logging.getLogger("regdecoder")

#: The tests rank_activities offers: Welch's t (unequal variances) and the Wilcoxon rank-sum
#: test, as decoupler's ``dc.tl.rankby_group`` computes them (``'t-test'``, ``'wilcoxon'``).
METHODS = ("t-test", "wilcoxon")

#: The columns of rank_activities' table, decoupler's ``rankby_group`` columns.
COLUMNS = ["group", "reference", "name", "stat", "meanchange", "pval", "padj"]


def adjust_pvalues(pvals, axis: int = -1, block: int = 2**14) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values along ``axis``; NaN entries are left out of the count.

    ``scipy.stats.false_discovery_control(p, method='bh')`` on the finite p-values of each
    row (``axis=-1``: within each cell of a cells x TFs table, as decoupler adjusts its
    per-cell p-values, ``padj_<method>``); NaN stays NaN. Returned in the input's floating
    dtype (float32 stays float32); rows are adjusted ``block`` at a time, so the temporaries
    stay small next to a table of a million cells.
    """
    p = np.moveaxis(np.asarray(pvals), axis, -1)
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    out = np.full_like(p, np.nan)
    flat, res = p.reshape(-1, p.shape[-1]), out.reshape(-1, p.shape[-1])
    for s in range(0, flat.shape[0], block) if flat.shape[1] else ():
        _adjust_rows(flat[s : s + block], res[s : s + block])
    return np.moveaxis(out, -1, axis)


def _adjust_rows(p: np.ndarray, res: np.ndarray) -> None:
    whole = np.isfinite(p).all(axis=1)
    if whole.any():
        res[whole] = stats.false_discovery_control(p[whole].astype(np.float64), axis=1, method="bh")
    for i in np.flatnonzero(~whole):  # rows with missing p-values (e.g. cells without expression)
        ok = np.isfinite(p[i])
        if ok.any():
            res[i, ok] = stats.false_discovery_control(p[i, ok].astype(np.float64), method="bh")


def rank_activities(
    adata: AnnData,
    groupby: str,
    *,
    key: str = "regdecoder",
    groups: Sequence[str] | None = None,
    reference: str = "rest",
    method: str = "t-test",
    key_added: str = "rank_activities",
) -> pd.DataFrame:
    """Rank each TF's activity between each group of cells and a reference (by default the rest).

    The field's way for signed activities (decoupler's ``dc.tl.rankby_group``, whose
    columns the table has): a two-sample test per TF, the effect as the difference of the
    mean activities (``meanchange``; activities can be negative, so no log fold change as
    ``sc.tl.rank_genes_groups`` computes for expression), and Benjamini-Hochberg adjusted
    p-values over the TFs of each group (``scipy.stats.false_discovery_control``).

    Parameters
    ----------
    adata
        Cells with activities in ``obsm[key]`` (from :func:`fit_decoder` or :func:`infer`).
    groupby
        ``obs`` column with the groups (e.g. cell types).
    key
        The ``obsm`` table to rank: the activities (default), or another table with TF
        names such as ``key + '_z'`` (the latents).
    groups
        Groups to test (default: every group except ``reference``).
    reference
        ``'rest'``: each group against all other cells; or one group's name.
    method
        ``'t-test'``: Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``);
        ``'wilcoxon'``: the Wilcoxon rank-sum test (``scipy.stats.ranksums``, its z as
        ``stat``). Missing activities (NaN, e.g. cells without expression) are left out
        per TF.
    key_added
        ``uns[key_added]`` receives the record: ``params`` and the table as ``results``.

    Returns
    -------
    A DataFrame, one row per group and TF, with the columns ``group``, ``reference``,
    ``name`` (the TF), ``stat`` (Welch's t or the rank-sum z; > 0: higher in the group),
    ``meanchange`` (mean activity in the group minus in the reference), ``pval``
    (two-sided) and ``padj``; within each group sorted by ``padj``, then ``pval``, then
    decreasing ``stat``. A group with fewer than 2 cells cannot be tested: its rows are NaN
    (a warning names it).

    Raises
    ------
    KeyError
        ``groupby`` is not an ``obs`` column; ``obsm[key]`` is missing; a group in
        ``groups`` or ``reference`` is not among the groups.
    ValueError
        An unknown ``method``; ``key_added`` not a string; no reference cells; ``groupby``
        a numeric column that is not categorical (as ``sc.tl.rank_genes_groups`` refuses it).
    """
    _anndata.check_key_name(key_added)
    out = rank_table(adata, groupby, key=key, groups=groups, reference=reference, method=method)
    params = {"groupby": groupby, "key": key, "reference": reference, "method": method}
    _anndata.write_uns(adata, key_added, params={**params, "corr_method": "benjamini-hochberg"}, results=out.copy())
    logger.info("ranked %d TFs in %d group(s) of obs[%r]: added uns[%r]", out["name"].nunique(),
                out["group"].nunique(), groupby, key_added)  # fmt: skip
    return out


def rank_table(
    adata: AnnData,
    groupby: str,
    *,
    key: str = "regdecoder",
    groups: Sequence[str] | None = None,
    reference: str = "rest",
    method: str = "t-test",
) -> pd.DataFrame:
    """:func:`rank_activities`' table, without writing to ``adata`` (for plots)."""
    if method not in METHODS:
        msg = f"`method` must be one of {METHODS}, got {method!r}."
        raise ValueError(msg)
    labels = _labels(adata, groupby)
    present = list(pd.unique(labels[~pd.isna(labels)]))
    if reference != "rest" and reference not in present:
        msg = f"reference={reference!r} is not a group of obs[{groupby!r}] (groups: {present[:20]})."
        raise KeyError(msg)
    chosen = [g for g in present if reference == "rest" or g != reference] if groups is None else list(groups)
    unknown = [g for g in chosen if g not in present]
    if unknown:
        msg = f"groups {unknown} are not groups of obs[{groupby!r}] (groups: {present[:20]})."
        raise KeyError(msg)
    acts = _anndata.latents(adata, key)
    values = acts.to_numpy(dtype=np.float64)
    tests = [_test(values, labels == g, _reference(labels, g, reference), method) for g in chosen]
    small = [g for g, t in zip(chosen, tests, strict=True) if t is None]
    if small:
        logger.warning("Group(s) %s of obs[%r] have fewer than 2 cells and are not tested (NaN).", small, groupby)
    nan = np.full((3, values.shape[1]), np.nan)
    frames = [_table(g, reference, acts.columns, nan if t is None else t) for g, t in zip(chosen, tests, strict=True)]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    for col in ("group", "reference", "name"):
        out[col] = out[col].astype(str).astype("category")
    return out


def _labels(adata: AnnData, groupby: str) -> np.ndarray:
    if not isinstance(groupby, str) or groupby not in adata.obs.columns:
        msg = f"`groupby={groupby!r}` is not a column of adata.obs (columns: {list(adata.obs.columns)[:10]})."
        raise KeyError(msg)
    col = adata.obs[groupby]
    if pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
        msg = (
            f"obs[{groupby!r}] is numeric ({col.nunique()} distinct values), not groups of cells; pass a "
            f"categorical column, or make this one so if its numbers are labels: "
            f"adata.obs[{groupby!r}] = adata.obs[{groupby!r}].astype('category')."
        )
        raise ValueError(msg)
    return col.to_numpy(dtype=object)


def _reference(labels: np.ndarray, group, reference: str) -> np.ndarray:
    ref = (labels != group) & ~pd.isna(labels) if reference == "rest" else labels == reference
    if not ref.any():
        msg = f"No reference cells for group {group!r} (reference={reference!r}): give another reference."
        raise ValueError(msg)
    return ref


def _test(values: np.ndarray, inside: np.ndarray, ref: np.ndarray, method: str) -> np.ndarray | None:
    """(stat, meanchange, pval) per TF, each a row; None when the group has fewer than 2 cells."""
    a, b = values[inside], values[ref]
    if len(a) < 2 or len(b) < 2:
        return None
    if method == "t-test":
        stat, pval = stats.ttest_ind(a, b, axis=0, equal_var=False, nan_policy="omit")
    else:
        stat, pval = stats.ranksums(a, b, axis=0, nan_policy="omit")
    change = _mean(a) - _mean(b)
    return np.vstack([np.asarray(stat, dtype=np.float64), change, np.asarray(pval, dtype=np.float64)])


def _mean(x: np.ndarray) -> np.ndarray:
    """Mean over the cells of each column's finite values (NaN where there are none)."""
    ok = np.isfinite(x)
    n, total = ok.sum(axis=0), np.where(ok, x, 0.0).sum(axis=0)
    return np.divide(total, n, out=np.full(total.shape, np.nan), where=n > 0)


def _table(group, reference: str, names, t: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({"group": str(group), "reference": reference, "name": list(map(str, names)),
                       "stat": t[0], "meanchange": t[1], "pval": t[2]})  # fmt: skip
    df["padj"] = adjust_pvalues(df["pval"].to_numpy())
    order = np.lexsort((-df["stat"].to_numpy(), df["pval"].to_numpy(), df["padj"].to_numpy()))
    return df.iloc[order][COLUMNS]
