"""Identifiability of a prior network on a data set, before fitting.

A TF's activity is identified through its targets. Two TFs with the same target set
cannot be told apart: any mix of their activities fits equally well (the weights
re-mix to compensate). The same holds when one TF's targets all lie inside another's
(the smaller TF's activity can absorb part of the larger one's). These checks need
only the network and the genes, so they run before any fitting.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from ..datasets._collectri import read_net
from ..pp._net import prepare_net

logger = logging.getLogger("regdecoder")

_HOWS = ("merge", "drop")


def net_diagnostics(
    adata: AnnData,
    *,
    net: pd.DataFrame,
    tmin: int = 5,
    max_jaccard: float = 0.9,
    source: str = "source",
    target: str = "target",
    weight: str | None = "weight",
    n_extra: int = 0,
) -> pd.DataFrame:
    """Per-TF report of how well the network identifies each activity on these genes.

    Parameters
    ----------
    adata
        The cells to fit (only ``var_names`` and ``n_obs`` are used).
    net
        Prior network in decoupler's long format (or a path to a CSV/TSV).
    tmin
        TFs with fewer targets among the genes are dropped by the fit (as here).
    max_jaccard
        TFs whose target sets have a Jaccard index at or above this are flagged
        ``collinear`` and grouped; a warning is logged.
    source, target, weight
        Column names of ``net``.
    n_extra
        Unannotated latents the fit will add (they enter the decoder load).

    Returns
    -------
    DataFrame indexed by TF (the TFs kept with ``tmin``), columns:

    ``n_targets``
        Targets present among the genes.
    ``n_targets_net``
        Targets in the network.
    ``load``
        Per-TF load ``N t / (t + N)`` (cells ``N``, targets ``t``): observations per
        free parameter of the TF's own block of the model.
    ``max_jaccard``, ``most_similar``
        Largest Jaccard index of the target set with another TF's, and that TF.
    ``max_containment``, ``contained_in``
        Largest fraction of this TF's targets that are targets of one other TF
        (1 = nested: the activity is only weakly identified), and that TF.
    ``collinear``, ``group``
        Flag (``max_jaccard >= max_jaccard``) and the collinear group (connected TFs
        share a group id; -1 when not collinear).

    ``df.attrs`` holds ``alpha_d`` (the whole decoder's load counting only the
    network's weights), ``n_cells``, ``n_genes``, ``n_edges`` and ``n_dropped``.
    """
    if not 0 < max_jaccard <= 1:
        msg = f"`max_jaccard` must be in (0, 1], got {max_jaccard}."
        raise ValueError(msg)
    var_names = list(map(str, adata.var_names))
    full = prepare_net(net, var_names, source=source, target=target, weight=weight, tmin=1).edges
    prior = prepare_net(net, var_names, source=source, target=target, weight=weight, tmin=tmin)
    used, tf_names, rows = prior.edges, prior.latent_names, prior.rows
    net_counts = _net_counts(net, source, target)
    n_cells, n_genes, m = adata.n_obs, len(var_names), len(tf_names)
    ov = prior.overlap()
    size, j_max, c_max = (ov[c].to_numpy() for c in ("n_targets", "max_jaccard", "max_containment"))
    similar, contained = ov["most_similar"].to_numpy(), ov["contained_in"].to_numpy()
    jac = prior.similarity()[0]
    collinear = j_max >= max_jaccard
    group = _groups(jac >= max_jaccard)
    group[~collinear] = -1
    df = pd.DataFrame(
        {
            "n_targets": size.astype(int),
            "n_targets_net": [int(net_counts.get(t, 0)) for t in tf_names],
            "load": n_cells * size / (size + n_cells),
            "max_jaccard": j_max,
            "most_similar": similar,
            "max_containment": c_max,
            "contained_in": contained,
            "collinear": collinear,
            "group": group,
        },
        index=pd.Index(tf_names, name="tf"),
    )
    n_w = len(rows) + n_extra * n_genes
    df.attrs.update(
        alpha_d=n_cells * n_genes / (n_w + n_cells * (m + n_extra)),
        n_cells=n_cells,
        n_genes=n_genes,
        n_edges=len(used),
        n_dropped=int(full["source"].nunique() - m),
    )
    if collinear.any():
        bad = df.loc[collinear]
        groups = [sorted(bad.index[bad["group"] == g]) for g in sorted(set(bad["group"]))]
        ex = "; ".join("/".join(g) for g in groups[:5])
        logger.warning(
            "%d TFs in %d groups have nearly identical target sets among these genes (Jaccard >= %.2f), "
            "so their activities cannot be told apart (e.g. %s). Merge or drop them with "
            "`net = rd.tl.resolve_collinear(net, report, how='merge')` (or how='drop').",
            int(collinear.sum()),
            len(groups),
            max_jaccard,
            ex,
        )
    return df


def resolve_collinear(net: pd.DataFrame, report: pd.DataFrame, *, how: str = "merge") -> pd.DataFrame:
    """A new network with each collinear group of TFs merged into one or reduced to one.

    Parameters
    ----------
    net
        The network given to :func:`net_diagnostics` (source/target/weight columns).
    report
        The output of :func:`net_diagnostics`.
    how
        ``'merge'``: each group becomes one TF named ``'A|B|...'`` whose targets are the
        union of the group's (weight: the mean of the group's weights on that target,
        its sign when the weights were +-1). ``'drop'``: keep the group's TF with the
        most targets (ties: the first name) and drop the others.

    Returns
    -------
    The new network (the input is not modified).
    """
    if how not in _HOWS:
        msg = f"`how` must be one of {_HOWS}, got {how!r}."
        raise ValueError(msg)
    need = {"collinear", "group", "n_targets"}
    if not isinstance(report, pd.DataFrame) or not need <= set(report.columns):
        msg = "`report` must be the DataFrame returned by `rd.tl.net_diagnostics(adata, net=net)`."
        raise ValueError(msg)
    net = net.copy()
    bad = report.loc[report["collinear"]]
    if bad.empty:
        return net
    rename: dict[str, str | None] = {}
    for _, g in bad.groupby("group"):
        tfs = sorted(g.index)
        if how == "merge":
            name = "|".join(tfs)
            rename.update(dict.fromkeys(tfs, name))
        else:
            keep = g.sort_values("n_targets", ascending=False, kind="stable").index[0]
            rename.update({t: (t if t == keep else None) for t in tfs})
    src = net["source"].astype(str)
    new_src = src.map(lambda s: rename.get(s, s))
    net = net.loc[new_src.notna()].assign(source=new_src[new_src.notna()])
    if how == "merge" and "weight" in net.columns:
        signs_only = bool(np.isin(net["weight"].to_numpy(), (-1.0, 1.0)).all())
        net = net.groupby(["source", "target"], as_index=False, sort=False).agg({"weight": "mean"})
        if signs_only:
            w = np.sign(net["weight"].to_numpy())
            net["weight"] = np.where(w == 0, 1.0, w)
    elif how == "merge":
        net = net.drop_duplicates(["source", "target"])
    return net.reset_index(drop=True)


def _net_counts(net, source: str, target: str) -> pd.Series:
    if not isinstance(net, pd.DataFrame):
        net = read_net(net)
    return net.drop_duplicates([source, target])[source].astype(str).value_counts()


def _groups(adj: np.ndarray) -> np.ndarray:
    """Connected components of a boolean adjacency matrix (ids 0..k-1)."""
    _, labels = connected_components(sparse.csr_matrix(adj), directed=False)
    # renumber so that ids follow the first TF of each component
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[labels]
