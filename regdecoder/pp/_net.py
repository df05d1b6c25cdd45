"""Match a decoupler-format prior network to a list of genes (pandas only, no AnnData)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import sparse

from .._anndata import unique_genes
from ..datasets._collectri import read_net

logger = logging.getLogger("regdecoder")

_COLLINEAR = ("merge", "drop", "keep")


@dataclass
class PriorNet:
    """A prior network matched to the genes of the data: what a masked decoder is built from.

    Attributes
    ----------
    edges
        The edges kept: DataFrame with ``source``, ``target``, ``weight`` (1.0 when the
        network had no weights).
    latent_names
        One name per latent, in decoder order (TF names, then ``extra_i``).
    rows, cols
        The decoder's edges: gene index and latent index, int64 arrays of equal length.
    prior
        Sign of each edge (+1 activation, -1 repression, 0 for ``extra`` latents), or
        None when the network has no weights.
    n_genes
        Number of genes (the decoder's outputs).
    dropped
        TFs dropped for having fewer than ``tmin`` targets among the genes.
    """

    edges: pd.DataFrame
    latent_names: list[str]
    rows: np.ndarray
    cols: np.ndarray
    prior: np.ndarray | None
    n_genes: int
    dropped: list[str] = field(default_factory=list)
    collinear: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_latent(self) -> int:
        return len(self.latent_names)

    def sign_matrix(self) -> np.ndarray | None:
        """The prior's signs as a genes x latents float32 matrix (0 off the network), or None."""
        if self.prior is None:
            return None
        sign = np.zeros((self.n_genes, self.n_latent), dtype=np.float32)
        sign[self.rows, self.cols] = self.prior
        return sign

    def similarity(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latent x latent Jaccard indices and containments (fraction of row's targets in
        column's) of the target sets (-1 on the diagonal), and the target counts."""
        b = sparse.csc_matrix((np.ones(len(self.rows)), (self.rows, self.cols)), shape=(self.n_genes, self.n_latent))
        inter = (b.T @ b).toarray()
        size = np.diag(inter).copy()
        union = size[:, None] + size[None, :] - inter
        jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        cont = inter / np.maximum(size[:, None], 1)
        np.fill_diagonal(jac, -1.0)
        np.fill_diagonal(cont, -1.0)
        return jac, cont, size

    def overlap(self) -> pd.DataFrame:
        """Per latent: targets among the genes, the largest Jaccard index with another latent's
        target set (and which), and the largest fraction of its targets inside another's
        (``max_containment``, 1 = nested: the activity is only weakly identified)."""
        m = self.n_latent
        jac, cont, size = self.similarity()
        names = np.asarray(self.latent_names, dtype=object)
        if m > 1:
            j_arg, c_arg = jac.argmax(1), cont.argmax(1)
            j_max, c_max = jac[np.arange(m), j_arg], cont[np.arange(m), c_arg]
            similar, contained = names[j_arg], names[c_arg]
        else:
            j_max = c_max = np.zeros(m)
            similar = contained = np.asarray([""] * m, dtype=object)
        return pd.DataFrame(
            {
                "n_targets": size.astype(int),
                "max_jaccard": j_max,
                "most_similar": similar,
                "max_containment": c_max,
                "contained_in": contained,
            },
            index=pd.Index(self.latent_names, name="source"),
        )

    def resolve_identical(self, how: str = "merge") -> PriorNet:
        """Latents whose regulons are identical among the genes (same targets, same signs)
        cannot be told apart: any mix of their activities fits equally well.

        ``how='merge'``: each group becomes one latent named by joining the sorted TF names
        with ``'|'``; ``'drop'``: the group's first TF (by name) stays, the others go;
        ``'keep'``: nothing changes. Groups found are listed in ``collinear`` and logged
        in one warning.
        """
        if how not in _COLLINEAR:
            msg = f"`collinear` must be one of {_COLLINEAR}, got {how!r}."
            raise ValueError(msg)
        sign = np.ones(len(self.rows)) if self.prior is None else self.prior
        keys: dict[tuple, list[int]] = {}
        for j in range(self.n_latent):
            sel = self.cols == j
            order = np.argsort(self.rows[sel])
            key = (tuple(self.rows[sel][order]), tuple(sign[sel][order]))
            keys.setdefault(key, []).append(j)
        groups = [g for g in keys.values() if len(g) > 1]
        if not groups:
            return self
        names = np.asarray(self.latent_names, dtype=object)
        listed = {"|".join(sorted(names[g])): sorted(names[g]) for g in groups}
        logger.warning(
            "%d group(s) of TFs have identical regulons among these genes, so their activities cannot be told "
            "apart: %s. %s (collinear=%r; 'merge', 'drop' or 'keep').",
            len(groups),
            "; ".join(listed)[:300],
            {"merge": "Each group is fitted as one latent named A|B|...", "drop": "Only the first TF of each is kept",
             "keep": "They are kept as they are, and their activities split arbitrarily"}[how],
            how,
        )  # fmt: skip
        if how == "keep":
            return replace(self, collinear=listed)
        new_col = np.arange(self.n_latent)
        keep = np.ones(self.n_latent, dtype=bool)
        new_names = list(self.latent_names)
        for g in groups:
            g = sorted(g, key=lambda j: self.latent_names[j])
            keep[g[1:]] = False
            new_col[g[1:]] = g[0]
            if how == "merge":
                new_names[g[0]] = "|".join(self.latent_names[j] for j in g)
        edge_keep = keep[self.cols]
        remap = np.cumsum(keep) - 1
        edges = self.edges
        if how == "merge":
            rename = {self.latent_names[j]: new_names[new_col[j]] for j in range(self.n_latent)}
            edges = edges.assign(source=edges["source"].map(rename)).drop_duplicates(["source", "target"])
        else:
            edges = edges[edges["source"].isin([n for n, k in zip(self.latent_names, keep, strict=True) if k])]
        return replace(
            self,
            edges=edges.reset_index(drop=True),
            latent_names=[n for n, k in zip(new_names, keep, strict=True) if k],
            rows=self.rows[edge_keep],
            cols=remap[self.cols[edge_keep]],
            prior=None if self.prior is None else self.prior[edge_keep],
            collinear=listed,
        )

    def median_load(self, n_obs: int) -> float:
        """Median over targeted genes of ``N / (k_g + 1)``: cells per free parameter of a gene's
        weights (``k_g`` regulators and its bias)."""
        deg = np.bincount(self.rows, minlength=self.n_genes)
        deg = deg[deg > 0]
        return float(np.median(n_obs / (deg + 1))) if deg.size else float("inf")

    def with_extra(self, n_extra: int) -> PriorNet:
        """This network plus ``n_extra`` unannotated latents (``extra_0``...) connected to
        every gene (a dense block), to absorb variation no TF explains (batch, cell cycle)."""
        if n_extra < 0 or int(n_extra) != n_extra:
            msg = f"`n_extra` must be a non-negative integer, got {n_extra!r}."
            raise ValueError(msg)
        if not n_extra:
            return self
        m = self.n_latent
        names = [f"extra_{i}" for i in range(int(n_extra))]
        clash = set(names) & set(self.latent_names)
        if clash:
            msg = f"The network already has TFs named {sorted(clash)}; rename them before using `n_extra`."
            raise ValueError(msg)
        genes = np.tile(np.arange(self.n_genes, dtype=np.int64), int(n_extra))
        lat = np.repeat(np.arange(m, m + int(n_extra), dtype=np.int64), self.n_genes)
        prior = None if self.prior is None else np.concatenate([self.prior, np.zeros(len(genes))])
        return replace(
            self,
            latent_names=self.latent_names + names,
            rows=np.concatenate([self.rows, genes]),
            cols=np.concatenate([self.cols, lat]),
            prior=prior,
        )


def prepare_net(
    net: pd.DataFrame,
    var_names: Sequence[str],
    *,
    tmin: int = 5,
    source: str = "source",
    target: str = "target",
    weight: str | None = "weight",
) -> PriorNet:
    """Match a decoupler-format network to the genes of the data.

    Names are matched after stripping leading and trailing whitespace, and Ensembl IDs up to
    their version suffix (``ENSG00000141510.17`` matches ``ENSG00000141510``); a warning
    counts the names this changed.

    Parameters
    ----------
    net
        Long DataFrame with ``source`` (TF), ``target`` (gene) and optional ``weight``
        (sign: activation/repression), or the path of a CSV/TSV file in that format.
        decoupler 1.x's (and DoRothEA's) ``mor`` column is read as the weight when there is
        no ``weight`` (times ``likelihood`` when present: only the sign is used). Without
        weights, or without a negative one, every edge is an activation (+1), as decoupler's
        ulm reads such a net: each activity then rises with its targets' expression (a
        warning says so).
    var_names
        The data's genes, in order.
    tmin
        TFs with fewer targets among the genes are dropped (a warning lists them).
    source, target, weight
        Column names of ``net``.

    Returns
    -------
    A :class:`PriorNet` (``prior``: the sign of each edge, +1 where the net has no weights).

    Raises
    ------
    TypeError
        ``net`` is not a DataFrame (or a path).
    KeyError
        A column is missing (the message gives the ``rename`` that fixes it).
    ValueError
        No edges; missing names; non-numeric weights; duplicate edges; no target among
        the genes, or no TF with ``tmin`` targets (each with its likely cause: case, e.g.
        mouse genes against a human net; Ensembl IDs against symbols; swapped columns);
        duplicate gene names.
    """
    if isinstance(tmin, bool) or int(tmin) != tmin or tmin < 1:
        msg = f"`tmin` is the fewest targets a TF needs among the genes and must be a positive integer, got {tmin!r}."
        raise ValueError(msg)
    if isinstance(net, (str, os.PathLike)):  # a CSV/TSV file in decoupler's format
        net = read_net(net)
    if not isinstance(net, pd.DataFrame):
        msg = f"`net` must be a pandas DataFrame in decoupler's long format, got {type(net).__name__}."
        raise TypeError(msg)
    missing = [c for c in (source, target) if c not in net.columns]
    if missing:
        msg = (
            f"`net` has no column(s) {missing}; its columns are {list(net.columns)}. Rename them, e.g. "
            f"`net = net.rename(columns={{'tf': '{source}', 'gene': '{target}'}})`."
        )
        raise KeyError(msg)
    if len(net) == 0:
        msg = "`net` has no edges."
        raise ValueError(msg)
    df = _edges(net, source, target, weight)
    genes = unique_genes(var_names)
    keys = _gene_keys(genes)
    in_data = df["target"].isin(keys)
    if not in_data.any():
        msg = f"No target gene of `net` is among the data's var_names. {_diagnose(df, keys)}"
        raise ValueError(msg)
    n_case = int((~in_data & df["target"].str.upper().isin(pd.Index(keys.str.upper()))).sum())
    if n_case:
        logger.warning(
            "%d edge target(s) of `net` match var_names only when case is ignored and are not used; "
            "harmonise the case of gene names if they are the same genes.",
            n_case,
        )
    # over the whole net, not the data's genes: a panel rich in TFs (e.g. pbmc68k_reduced's 765
    # genes with CollecTRI) has more regulators than targets among its genes with the right columns
    if df["source"].nunique() > df["target"].nunique():
        logger.warning(
            "`net` has more regulators (%d) than targets (%d); in a TF -> target network it is "
            "the other way round. Are `source` and `target` swapped? (source = TF, target = regulated gene; "
            "if so, swap them: `net = net.rename(columns={'source': 'target', 'target': 'source'})`)",
            df["source"].nunique(),
            df["target"].nunique(),
        )
    all_edges, df = df, df.loc[in_data]
    counts = df["source"].value_counts()
    small = counts.index[counts < tmin]
    if len(small):
        logger.warning(
            "Dropped %d TF(s) with fewer than tmin=%d targets among the genes: %s%s",
            len(small),
            tmin,
            ", ".join(map(str, small[:10])),
            " ..." if len(small) > 10 else "",
        )
        df = df.loc[~df["source"].isin(small)]
    if len(df) == 0:
        fix = _diagnose(all_edges, keys, fallback="") or "Lower `tmin` or use more genes."
        msg = (
            f"No TF has at least tmin={tmin} targets among the data's genes (largest regulon: "
            f"{int(counts.max())} targets; {int(in_data.sum())} of the net's {len(all_edges)} edges reach a gene "
            f"of the data). {fix}"
        )
        raise ValueError(msg)
    tf_names = sorted(df["source"].unique())
    tf_index = pd.Index(tf_names)
    rows = keys.get_indexer(df["target"]).astype(np.int64)
    cols = tf_index.get_indexer(df["source"]).astype(np.int64)
    prior_sign = np.sign(df["weight"].to_numpy())
    df = df.reset_index(drop=True)
    return PriorNet(df, tf_names, rows, cols, prior_sign, len(genes), list(map(str, small)))


#: An Ensembl ID with a version suffix (``ENSG00000141510.17``, ``ENSMUST...``): the ID is matched.
_ENSEMBL_VERSION = r"^(ENS[A-Z]*[GTP]\d{6,})\.\d+$"


def _gene_keys(genes: pd.Index) -> pd.Index:
    """The names genes are matched by: whitespace stripped, Ensembl IDs without their version
    (a warning counts both); an error when two genes then share a name."""
    keys = pd.Index(genes.astype(str).str.strip())
    n_space = int((keys != genes).sum())
    versioned = keys.str.match(_ENSEMBL_VERSION)
    keys = pd.Index(keys.str.replace(_ENSEMBL_VERSION, r"\1", regex=True))
    if n_space:
        logger.warning(
            "%d gene name(s) in var_names have leading or trailing whitespace: matched to `net` without it (e.g. %r).",
            n_space,
            genes[keys != genes][0],
        )
    if versioned.any():
        logger.warning(
            "%d Ensembl gene ID(s) in var_names have a version suffix (e.g. %r): matched to `net` up to the version.",
            int(versioned.sum()),
            genes[versioned][0],
        )
    if not keys.is_unique:
        dup = keys[keys.duplicated()][0]
        msg = (
            f"Without whitespace and Ensembl version suffixes, several of the data's genes have the same name "
            f"(e.g. {list(genes[keys == dup])}). Make the names unique first, e.g. "
            "`adata.var_names = adata.var_names.str.strip().str.split('.').str[0]` then "
            "`adata.var_names_make_unique()`."
        )
        raise ValueError(msg)
    return keys


def _edges(net: pd.DataFrame, source: str, target: str, weight: str | None) -> pd.DataFrame:
    """``source``, ``target`` (stripped strings) and ``weight`` (numbers; +1 where the net has
    none) of ``net``, with warnings for what was read and how."""
    col = weight if weight is not None and weight in net.columns else None
    if col is None and weight == "weight" and "mor" in net.columns:  # decoupler 1.x, DoRothEA
        col = "mor"
        logger.info("`net` has no `weight` column: its `mor` (mode of regulation) is used as the sign of each edge.")
    df = net[[source, target]].copy()
    df.columns = ["source", "target"]
    if df["source"].isna().any() or df["target"].isna().any():
        msg = "`net` has missing source or target names; drop those rows first (`net.dropna(subset=[...])`)."
        raise ValueError(msg)
    for c in ("source", "target"):
        raw = df[c].astype(str)
        df[c] = raw.str.strip()
        n = int((df[c] != raw).sum())
        if n:
            logger.warning(
                "%d %s name(s) of `net` have leading or trailing whitespace (e.g. %r): stripped.",
                n, "TF" if c == "source" else "target gene", raw[df[c] != raw].iloc[0],
            )  # fmt: skip
    df["target"] = df["target"].str.replace(_ENSEMBL_VERSION, r"\1", regex=True)
    if col is None:
        df["weight"] = 1.0
    else:
        w = pd.to_numeric(net[col], errors="coerce")
        if col == "mor" and "likelihood" in net.columns:
            w = w * pd.to_numeric(net["likelihood"], errors="coerce")
        if w.isna().any():
            msg = (
                f"`net[{col!r}]` has {int(w.isna().sum())} missing or non-numeric weights; "
                "fill or drop them, or drop the column to use the net without weights."
            )
            raise ValueError(msg)
        df["weight"] = w.astype(float).to_numpy()
    dup = df.duplicated(["source", "target"])
    if dup.any():
        ex = df.loc[dup, ["source", "target"]].head(3).to_records(index=False).tolist()
        msg = (
            f"`net` has {int(dup.sum())} duplicate source-target edges (e.g. {ex}). "
            "Keep one per pair, e.g. `net = net.drop_duplicates(['source', 'target'])`."
        )
        raise ValueError(msg)
    if not (df["weight"] != 0).any():
        logger.warning("Every `weight` of `net` is 0: the network carries no signs (activation/repression).")
    elif col is None or not (df["weight"] < 0).any():
        logger.warning(
            "`net` has %s: every edge is read as an activation (+1), as decoupler's ulm reads it, so each TF's "
            "activity is oriented to rise with its targets' expression. Give signed weights if some edges are "
            "repressions.",
            "no weight column" if col is None else "no negative weight",
        )
    return df


def _diagnose(df: pd.DataFrame, keys: pd.Index, fallback: str | None = None) -> str:
    """Why the net's targets do not reach the data's genes, and the fix: case (e.g. mouse genes
    against a human net), Ensembl IDs against symbols, swapped columns; else ``fallback``."""
    targets = df["target"]
    ex_net, ex_data = targets.head(3).tolist(), list(keys[:3])
    upper = pd.Index(keys.str.upper())
    n_exact, n_case = int(targets.isin(keys).sum()), int(targets.str.upper().isin(upper).sum())
    if n_case > max(2 * n_exact, 10):
        return (
            f"{n_case} of its {len(targets)} edges reach a gene when case is ignored, {n_exact} exactly (net "
            f"targets look like {ex_net}, var_names like {ex_data}): mouse genes against a human network, or "
            "the reverse? Use a network of the data's organism (decoupler: `dc.op.collectri(organism='mouse')`) "
            "or translate the net by orthologs (`dc.op.translate`); if they are the same genes, use the same "
            "case in both (`net['target'] = net['target'].str.upper()`)."
        )
    if abs(_ids(targets) - _ids(keys)) > 0.5:
        which = "Ensembl IDs" if _ids(keys) > _ids(targets) else "gene symbols"
        return (
            f"The data's var_names are {which} (e.g. {ex_data}) and the net's targets are not (e.g. {ex_net}). "
            "Use the same identifiers in both: e.g. symbols as var_names, `adata.var_names = adata.var[COLUMN]` "
            "with the var column that holds them, then `adata.var_names_make_unique()`."
        )
    n_src = int(df["source"].isin(keys).sum())
    if n_src > max(2 * n_exact, 10):
        return (
            f"But {n_src} of its `source` entries are: the columns look swapped (source = TF, target = regulated "
            "gene). Swap them: `net = net.rename(columns={'source': 'target', 'target': 'source'})`."
        )
    if fallback is not None:
        return fallback
    return (
        f"Net targets look like {ex_net}, var_names like {ex_data}. Use the same gene identifiers (symbols or "
        "Ensembl IDs) and organism in both."
    )


def _ids(names) -> float:
    """The fraction of names that are Ensembl IDs."""
    return float(pd.Series(names, dtype=str).str.match(r"^ENS[A-Z]*[GTP]\d{6,}").mean())
