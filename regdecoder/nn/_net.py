"""Match a decoupler-format prior network to a list of genes (pandas only, no AnnData)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger("regdecoder")


def unique_genes(var_names: Sequence[str]) -> pd.Index:
    """The gene names as an Index; an error naming the fix when they are not unique."""
    genes = pd.Index(var_names)
    if not genes.is_unique:
        msg = "The gene names (var_names) are not unique; run `adata.var_names_make_unique()` first."
        raise ValueError(msg)
    return genes


def prepare_net(
    net: pd.DataFrame,
    var_names: Sequence[str],
    *,
    source: str = "source",
    target: str = "target",
    weight: str | None = "weight",
    tmin: int = 5,
) -> tuple[pd.DataFrame, list[str], np.ndarray, np.ndarray, np.ndarray | None]:
    """Match a decoupler-format network to the genes of the data.

    Returns the edges kept (a DataFrame with ``source``, ``target``, ``weight``), the
    TF names, the edge list as ``(gene index, TF index)`` arrays and the prior sign of
    each edge (None when the net has no weight column).
    """
    if isinstance(net, (str, os.PathLike)):  # a CSV/TSV file in decoupler's format
        from ..datasets._collectri import read_net

        net = read_net(net)
    if not isinstance(net, pd.DataFrame):
        msg = f"`net` must be a pandas DataFrame in decoupler's long format, got {type(net).__name__}."
        raise TypeError(msg)
    missing = [c for c in (source, target) if c not in net.columns]
    if missing:
        msg = (
            f"`net` has no column(s) {missing}; its columns are {list(net.columns)}. "
            f"Rename them, e.g. `net = net.rename(columns={{'tf': '{source}', 'gene': '{target}'}})`, "
            "or pass `source=` / `target=` with your column names."
        )
        raise KeyError(msg)
    if len(net) == 0:
        msg = "`net` has no edges."
        raise ValueError(msg)
    use_weight = weight is not None and weight in net.columns
    cols = [source, target] + ([weight] if use_weight else [])
    df = net[cols].copy()
    df.columns = ["source", "target"] + (["weight"] if use_weight else [])
    if df["source"].isna().any() or df["target"].isna().any():
        msg = "`net` has missing source or target names; drop those rows first (`net.dropna(subset=[...])`)."
        raise ValueError(msg)
    df["source"] = df["source"].astype(str)
    df["target"] = df["target"].astype(str)
    if use_weight:
        w = pd.to_numeric(df["weight"], errors="coerce")
        if w.isna().any():
            msg = (
                f"`net[{weight!r}]` has {int(w.isna().sum())} missing or non-numeric weights; "
                "fill or drop them, or pass `weight=None` to use the net without weights."
            )
            raise ValueError(msg)
        df["weight"] = w.astype(float)
    dup = df.duplicated(["source", "target"])
    if dup.any():
        ex = df.loc[dup, ["source", "target"]].head(3).to_records(index=False).tolist()
        msg = (
            f"`net` has {int(dup.sum())} duplicate source-target edges (e.g. {ex}). "
            "Keep one per pair, e.g. `net = net.drop_duplicates(['source', 'target'])`."
        )
        raise ValueError(msg)

    genes = unique_genes(var_names)
    in_data = df["target"].isin(genes)
    if not in_data.any():
        ex_net = df["target"].head(3).tolist()
        ex_data = list(genes[:3])
        upper = pd.Index(genes.str.upper())
        if df["target"].str.upper().isin(upper).any():
            msg = (
                f"No target gene of `net` matches the data's var_names exactly, but some do when case is ignored "
                f"(net targets look like {ex_net}, var_names like {ex_data}). Use the same case in both, e.g. "
                "`net['target'] = net['target'].str.upper()` and `adata.var_names = adata.var_names.str.upper()` "
                "(or map mouse/human orthologs properly)."
            )
            raise ValueError(msg)
        if df["source"].isin(genes).any() and not df["target"].isin(genes).any():
            n_src = int(df["source"].isin(genes).sum())
            msg = (
                f"No target gene of `net` is among the data's var_names, but {n_src} `source` entries are: "
                "the columns look swapped. Pass `source=` / `target=` with the right column names "
                "(source = TF, target = regulated gene)."
            )
            raise ValueError(msg)
        msg = (
            f"No target gene of `net` is among the data's var_names (net targets look like {ex_net}, "
            f"var_names like {ex_data}). Use the same gene identifiers in both (symbols vs Ensembl IDs, case)."
        )
        raise ValueError(msg)
    n_case = int((~in_data & df["target"].str.upper().isin(pd.Index(genes.str.upper()))).sum())
    if n_case:
        logger.warning(
            "%d edge target(s) of `net` match var_names only when case is ignored and are not used; "
            "harmonise the case of gene names if they are the same genes.",
            n_case,
        )
    df = df.loc[in_data]
    counts = df["source"].value_counts()
    small = counts.index[counts < tmin]
    if len(small):
        logger.info(
            "Dropped %d TF(s) with fewer than tmin=%d targets in the data: %s%s",
            len(small),
            tmin,
            ", ".join(map(str, small[:10])),
            " ..." if len(small) > 10 else "",
        )
        df = df.loc[~df["source"].isin(small)]
    if len(df) == 0:
        msg = (
            f"No TF has at least tmin={tmin} targets among the data's genes "
            f"(largest regulon: {int(counts.max())} targets). Lower `tmin` or use more genes."
        )
        raise ValueError(msg)
    tf_names = sorted(df["source"].unique())
    tf_index = pd.Index(tf_names)
    rows = genes.get_indexer(df["target"]).astype(np.int64)
    cols = tf_index.get_indexer(df["source"]).astype(np.int64)
    prior_sign = np.sign(df["weight"].to_numpy()) if use_weight else None
    df = df.reset_index(drop=True)
    if not use_weight:
        df["weight"] = 1.0
    return df, tf_names, rows, cols, prior_sign
