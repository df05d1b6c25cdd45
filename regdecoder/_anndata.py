"""The AnnData boundary: every read of expression and every write of results goes through here.

``tl``, ``metrics``, ``get`` and ``pl`` use these functions; ``nn`` and ``train`` never see
an AnnData. Reading gives a *source* of cells (see :mod:`regdecoder.train._source`) over a
dense, scipy-sparse or backed matrix, in the model's gene order, whose every chunk is checked
(finite, not absurdly large, and the likelihood's domain) as it is read; sources over data in
memory are checked whole when made, so every check fails before training starts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from .train._source import (
    CSRSource,
    chunks,
    csr_index_dtype,
    csr_nbytes,
    csr_tensor,
    default_chunk_size,
    moves_to_device,
    shard_bounds,
    world,
)

logger = logging.getLogger("regdecoder")

#: Largest magnitude accepted in expression data. Squares of larger values summed over
#: cells overflow float32 (the solvers' precision); no normalised or count data come near it.
MAX_ABS = 1e9


# ------------------------------------------------------------------ where the matrix is
def _check_adata(adata) -> None:
    if not isinstance(adata, AnnData):
        msg = f"Expected an AnnData, got {type(adata).__name__}."
        raise TypeError(msg)
    if adata.n_obs == 0 or adata.n_vars == 0:
        msg = f"The AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes); give it at least one cell and gene."
        raise ValueError(msg)


def matrix(adata: AnnData, layer: str | None = None, use_raw: bool = False):
    """``(matrix, where, var_names)`` of the expression: ``X``, ``layers[layer]`` or ``raw.X``.

    Raises
    ------
    TypeError
        Not an AnnData.
    ValueError
        Empty AnnData; ``X`` is None; both ``layer`` and ``use_raw``; no ``raw``.
    KeyError
        The layer does not exist (the message lists the layers there are).
    """
    _check_adata(adata)
    if use_raw:
        if layer is not None:
            msg = "Give either `layer=` or `use_raw=True`, not both (adata.raw has no layers)."
            raise ValueError(msg)
        if adata.raw is None:
            msg = "use_raw=True but adata.raw is None; pass `layer=` or leave use_raw=False to use adata.X."
            raise ValueError(msg)
        return adata.raw.X, "adata.raw.X", pd.Index(adata.raw.var_names)
    if layer is None:
        if adata.X is None:
            msg = "adata.X is None: pass `layer=` to name the layer that holds the expression."
            raise ValueError(msg)
        return adata.X, "adata.X", pd.Index(adata.var_names)
    if layer not in adata.layers:
        available = ", ".join(map(repr, adata.layers.keys())) or "none"
        msg = (
            f"Layer {layer!r} not found in adata.layers (available: {available}); pass one of them or layer=None for X."
        )
        raise KeyError(msg)
    return adata.layers[layer], f"adata.layers[{layer!r}]", pd.Index(adata.var_names)


def is_backed(mat) -> bool:
    """A matrix read from disk on demand (an h5py dataset or anndata's backed sparse)."""
    return not isinstance(mat, np.ndarray) and not sparse.issparse(mat)


def unique_genes(var_names: Sequence[str]) -> pd.Index:
    """The gene names as an Index; an error naming the fix when they are not unique."""
    genes = pd.Index(var_names)
    if not genes.is_unique:
        msg = "The gene names (var_names) are not unique; run `adata.var_names_make_unique()` first."
        raise ValueError(msg)
    return genes


def check_genes(var_names: Sequence[str], model_genes: Sequence[str]) -> np.ndarray:
    """Column order that maps the data's genes onto the model's; an error if they differ."""
    data = pd.Index(var_names)
    model = pd.Index(model_genes)
    missing = model.difference(data)
    extra = data.difference(model)
    if len(missing) or len(extra):
        msg = (
            f"The data's genes differ from the model's: {len(missing)} model gene(s) missing "
            f"(e.g. {list(missing[:3])}) and {len(extra)} gene(s) not in the model (e.g. {list(extra[:3])}). "
            "Subset or reorder the data to the model's genes, e.g. `adata[:, model.var_names]`. When genes are "
            "missing, refit on the genes both share: zeros filled in for a missing gene read as a strong loss of "
            "expression and bias every TF that targets it."
        )
        raise ValueError(msg)
    unique_genes(data)
    return data.get_indexer(model)


# ------------------------------------------------------------------ checks of values
def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


class _Checker:
    """Checks one block of values: finite, at most :data:`MAX_ABS`, and the likelihood's domain.

    ``domain``: ``'any'``; ``'nonnegative'`` (the ReLU model's output cannot be negative);
    ``'counts'`` (non-negative integers, count likelihoods). ``fitted``: the likelihood is a
    fitted model's (inference), so the fix is other values, never another likelihood.
    """

    def __init__(self, where: str, obs_names, var_names, domain: str, likelihood: str, fitted: bool = False) -> None:
        self.where, self.obs, self.var = where, obs_names, var_names
        self.domain, self.likelihood, self.fitted = domain, likelihood, fitted
        self.needs = (
            f"The model (fitted with the likelihood {likelihood!r})" if fitted else f"gene_likelihood={likelihood!r}"
        )

    def _pos(self, row: int, col: int) -> str:
        return f"cell {self.obs[row]!r} (row {row}), gene {self.var[col]!r} (column {col})"

    def __call__(self, block, row0: int) -> None:
        if sparse.issparse(block):
            coo = block.tocoo()
            vals, rows, cols = coo.data, coo.row, coo.col
        else:
            vals = np.asarray(block).ravel()
            n_col = np.asarray(block).shape[1]
            rows = cols = None
        if not vals.size:
            return
        if vals.dtype.kind == "f" and vals.dtype.itemsize < 4:
            vals = vals.astype(np.float32)  # half precision cannot hold the bounds below

        def where_(i: int) -> str:
            if rows is None:
                return self._pos(row0 + i // n_col, i % n_col)
            return self._pos(row0 + int(rows[i]), int(cols[i]))

        finite = np.isfinite(vals)
        if not finite.all():
            i = _first(~finite)
            n_nan, n_inf = int(np.isnan(vals).sum()), int(np.isinf(vals).sum())
            msg = (
                f"{self.where} has {n_nan} NaN and {n_inf} infinite value(s) in this block, the first "
                f"({vals[i]}) at {where_(i)}. Remove or impute them first "
                "(e.g. drop those genes: `adata = adata[:, np.isfinite(adata.X).all(0)]`, or fill them)."
            )
            raise ValueError(msg)
        big = np.abs(vals) > MAX_ABS
        if big.any():
            i = _first(big)
            msg = (
                f"{self.where} has {int(big.sum())} value(s) larger than {MAX_ABS:g} in magnitude, the first "
                f"({vals[i]:g}) at {where_(i)}. That is not expression data: check the matrix (log-normalise "
                "counts with `sc.pp.normalize_total` and `sc.pp.log1p`, or fix the corrupted entries)."
            )
            raise ValueError(msg)
        if self.domain in ("nonnegative", "counts"):
            neg = vals < 0
            if neg.any():
                i = _first(neg)
                frac = float(neg.mean()) if rows is None else float(neg.sum()) / max(1, vals.size)
                if self.domain == "counts":
                    fix = "Pass the layer with raw UMI counts (`layer='counts'`)" + (
                        ", as the model was fitted on." if self.fitted else ", or use gene_likelihood='mse'."
                    )
                elif self.fitted:  # infer: the model is fixed; only the values can change
                    fix = (
                        "The model's ReLU output cannot be negative: give these cells the log-normalised values it "
                        "was fitted on, `use_raw=True` (adata.raw) or `layer=` with a log-normalised layer. Signed "
                        "data (contrasts, scaled values) need a model fitted on signed data (the linear decoder)."
                    )
                else:
                    fix = (
                        "The ReLU model's output cannot be negative. For signed data (contrasts, log fold changes, "
                        "t- or z-statistics, perturbation signatures, `sc.pp.scale`d values) use the linear "
                        "decoder: gene_likelihood='normal'. For expression, pass log-normalised values: "
                        "`use_raw=True` (adata.raw) or `layer=` with a log-normalised layer."
                    )
                msg = (
                    f"{self.needs} needs non-negative data, but {self.where} has "
                    f"{int(neg.sum())} negative value(s) in this block ({frac:.0%} of its stored values), "
                    f"the first ({vals[i]:g}) at {where_(i)}. {fix}"
                )
                raise ValueError(msg)
        if self.domain == "counts":
            frac = vals != np.round(vals)
            if frac.any():
                ex = vals[frac][:3].tolist()
                msg = (
                    f"{self.needs} models raw counts, but {self.where} has {int(frac.sum())} "
                    f"non-integer values (e.g. {ex}); it looks normalised. Pass the layer with raw counts "
                    "(`layer='counts'`)" + ("." if self.fitted else ", or use gene_likelihood='mse'.")
                )
                raise ValueError(msg)


# ------------------------------------------------------------------ the source of cells
class ExpressionSource:
    """Cells of an AnnData as a chunk source (see :mod:`regdecoder.train._source`).

    Reads rows of the dense, scipy-sparse or backed matrix, checks them and returns them
    dense, float32, in ``genes`` order. Data in memory are checked whole when the source is
    made; backed data chunk by chunk as they are first read (every solver reads all cells
    once before its first epoch), each chunk once. Sparse data that fit on the compute
    device are moved there once as a torch CSR tensor (:meth:`resident`).
    """

    def __init__(self, mat, *, where, obs_names, var_names, cols, start, stop, chunk_size, checker) -> None:
        if sparse.issparse(mat) and mat.format != "csr":
            mat = sparse.csr_matrix(mat)  # row access; a copy of the user's data, not a change to it
        if is_backed(mat) and getattr(mat, "format", None) == "csc":
            msg = (
                f"{where} is a backed CSC matrix: reading cells from it needs the whole file. "
                "Rewrite it as CSR (e.g. `adata.X = adata.X.tocsr()` before `write_h5ad`)."
            )
            raise ValueError(msg)
        self.mat, self.where = mat, where
        self.backed = is_backed(mat)
        self.n_total = mat.shape[0]
        self.offset = int(start)
        self.n_obs = int(stop) - self.offset
        self.cols = None if cols is None or np.array_equal(cols, np.arange(mat.shape[1])) else np.asarray(cols)
        self.n_vars = mat.shape[1] if self.cols is None else len(self.cols)
        # the data's column of each model gene, inverted: the model's column of each data column
        self._to_model = None if self.cols is None else np.argsort(self.cols)
        self.chunk_size = chunk_size
        self._check = checker
        self.obs_names, self.var_names = obs_names, var_names
        if not self.backed:  # in memory: every check before any training
            for s in range(0, self.n_obs, max(1, chunk_size)):
                e = min(self.n_obs, s + max(1, chunk_size))
                self._check(self.mat[self.offset + s : self.offset + e], self.offset + s)
        # cells 0:_checked_to are checked: all of them in memory; backed, as the first pass reads them
        self._checked_to = self.n_obs if not self.backed else 0
        self._placed: tuple[str, object] | None = None

    # -------------------------------------------------------------- reading chunks
    def _read_checked(self, start: int, stop: int):
        """Rows ``start:stop`` of the matrix as stored, checked if they were not yet."""
        block = self.mat[self.offset + start : self.offset + stop]
        if stop > self._checked_to:
            self._check(block, self.offset + start)
            if start <= self._checked_to:  # read in order: the checked prefix grows
                self._checked_to = stop
        return block

    def _reordered(self, block):
        """A sparse block with its columns in the model's gene order (its column indices relabelled)."""
        if self._to_model is None:
            return block
        return sparse.csr_matrix(
            (block.data, self._to_model[block.indices], block.indptr), shape=(block.shape[0], self.n_vars)
        )

    def _dense(self, block) -> torch.Tensor:
        if sparse.issparse(block):
            # relabelling the stored columns costs O(nnz); reordering the dense block cost 10x the toarray
            block = self._reordered(sparse.csr_matrix(block)).toarray().astype(np.float32, copy=False)
        else:
            block = np.asarray(block).astype(np.float32, copy=False)
            if self.cols is not None:
                block = block[:, self.cols]
        return torch.from_numpy(np.ascontiguousarray(block))

    def read(self, start: int, stop: int) -> torch.Tensor:
        return self._dense(self._read_checked(start, stop))

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        idx = rows.cpu().numpy() + self.offset
        block = self.mat[idx]
        if self._checked_to < self.n_obs:
            self._check(block, 0)
        return self._dense(block)

    # -------------------------------------------------------------- where the data live
    def _nnz(self) -> int | None:
        """Stored entries of this source's cells (sparse data; None for dense)."""
        lo, hi = self.offset, self.offset + self.n_obs
        if sparse.issparse(self.mat):
            return int(self.mat.indptr[hi] - self.mat.indptr[lo])
        if self.backed and getattr(self.mat, "format", None) == "csr":
            indptr = self.mat.group["indptr"]
            return int(indptr[hi] - indptr[lo])
        return None

    def _to_csr(self, device: torch.device) -> torch.Tensor:
        """This source's cells as a float32 torch CSR tensor on ``device``: the model's gene
        order, each position once (duplicates summed, as ``toarray`` sums them), every chunk
        checked once. Copied chunk by chunk: the host holds one chunk at a time."""
        nnz = self._nnz()
        idx = csr_index_dtype(nnz, self.n_vars)
        crow = torch.zeros(self.n_obs + 1, dtype=torch.int64)
        col = torch.empty(nnz, dtype=idx, device=device)
        val = torch.empty(nnz, dtype=torch.float32, device=device)
        at = 0
        for s, e in chunks(self):
            block = sparse.csr_matrix(self._read_checked(s, e))
            if not block.has_canonical_format:
                block = block.copy()
                block.sum_duplicates()  # in the data's own dtype, as toarray sums them
            block = self._reordered(block)
            n = block.nnz
            col[at : at + n] = torch.from_numpy(block.indices).to(idx)
            val[at : at + n] = torch.from_numpy(block.data.astype(np.float32, copy=False))
            crow[s + 1 : e + 1] = torch.from_numpy(block.indptr[1:].astype(np.int64)) + at
            at += n
        return csr_tensor(crow.to(device=device, dtype=idx), col[:at], val[:at], (self.n_obs, self.n_vars))

    def resident(self, device: torch.device | str):
        """The source to read from when computing on ``device``.

        Sparse data whose float32 torch CSR fits there (:func:`~regdecoder.train._source.moves_to_device`)
        are moved once, as a :class:`~regdecoder.train._source.CSRSource` with these cells,
        chunks and gene order; backed data are read (and checked) for that once. Otherwise,
        this source, streamed. The answer is kept for the next pass.

        Parameters
        ----------
        device
            The compute device.

        Returns
        -------
        A source over this source's cells.

        Raises
        ------
        ValueError
            Backed data that fail a check (the position of the first offending value).
        """
        device = torch.device(device)
        if self._placed is not None and self._placed[0] == str(device):
            return self._placed[1]
        self._placed = None  # one device at a time: drop a copy held for another
        placed = self
        nnz = self._nnz()
        if nnz is not None and moves_to_device(device, csr_nbytes(nnz, self.n_obs, self.n_vars)):
            x = self._to_csr(device)
            placed = CSRSource(x, offset=self.offset, n_total=self.n_total, chunk_size=self.chunk_size)
        self._placed = (str(device), placed)
        return placed

    # -------------------------------------------------------------- whole
    def dense(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """All cells of this source as one dense float32 tensor on ``device``."""
        if self.backed:
            msg = (
                f"This needs the data in memory, but {self.where} is backed on disk. Use the ALS solver "
                "(which streams chunks of cells), or load it with `adata = adata.to_memory()`."
            )
            raise ValueError(msg)
        return self.read(0, self.n_obs).to(device)

    def values_sample(self, n: int = 2000) -> np.ndarray:
        """The stored values of (at most) the first ``n`` cells, for cheap heuristics."""
        block = self.mat[self.offset : self.offset + min(self.n_obs, n)]
        return block.data if sparse.issparse(block) else np.asarray(block).ravel()


def read(
    adata: AnnData,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    genes: Sequence[str] | None = None,
    likelihood: str | None = None,
    shard: bool = False,
) -> ExpressionSource:
    """The expression of ``adata`` as a checked source of cells.

    Parameters
    ----------
    adata
        Cells x genes.
    layer, use_raw
        ``layers[layer]``, or ``raw.X`` with ``raw.var_names``; default ``X``.
    genes
        The model's genes: columns are reordered to them (an error if the sets differ). Given,
        the likelihood is a fitted model's: errors name other values as the fix, never another
        likelihood.
    likelihood
        ``'mse'`` with a ReLU output: values must be >= 0; ``'poisson'``/``'nb'``:
        non-negative integers; ``'normal'`` (a linear output) or None: any finite values.
    shard
        Under ``torch.distributed``: only this process's block of cells.

    Raises
    ------
    TypeError, ValueError, KeyError
        See :func:`matrix`; genes that differ from the model's or are not unique; NaN,
        infinite or absurdly large values, or values outside the likelihood's domain
        (each naming the position of the first offending value and the fix).
    """
    mat, where, var_names = matrix(adata, layer, use_raw)
    unique_genes(var_names)
    cols = None if genes is None else check_genes(var_names, genes)
    start, stop = 0, mat.shape[0]
    if shard:
        rank, size = world()
        start, stop = shard_bounds(mat.shape[0], rank, size)
    chunk = (stop - start) if isinstance(mat, np.ndarray) else default_chunk_size(mat.shape[1])  # dense: one chunk
    domain = {None: "any", "mse": "nonnegative", "normal": "any", "poisson": "counts", "nb": "counts"}.get(
        likelihood, "any"
    )
    checker = _Checker(where, adata.obs_names, var_names, domain, likelihood or "", fitted=genes is not None)
    return ExpressionSource(
        mat,
        where=where,
        obs_names=adata.obs_names,
        var_names=var_names,
        cols=cols,
        start=start,
        stop=stop,
        chunk_size=max(1, chunk),
        checker=checker,
    )


def streamed(adata: AnnData, layer: str | None = None, use_raw: bool = False, *, distributed: bool = True) -> bool:
    """Whether cells are read in chunks: sparse or backed data, or (``distributed``) several processes."""
    mat, _, _ = matrix(adata, layer, use_raw)
    return sparse.issparse(mat) or is_backed(mat) or (distributed and world()[1] > 1)


def warn_if_counts(source: ExpressionSource) -> None:
    """A warning when data given to the squared-error model look like raw counts."""
    vals = source.values_sample()
    vals = vals[vals != 0]
    if vals.size and np.all(vals == np.round(vals)) and vals.max() > 20:
        logger.warning(
            "%s looks like raw counts (integers up to %g): the squared-error model expects log-normalised "
            "values. Log-normalise (`sc.pp.normalize_total(adata); sc.pp.log1p(adata)`) or fit the counts "
            "with gene_likelihood='nb'.",
            source.where,
            float(vals.max()),
        )


# ------------------------------------------------------------------ size factors
def library_sizes(adata: AnnData, source: ExpressionSource, library_size: str | None) -> np.ndarray:
    """Per-cell library sizes: ``obs[library_size]`` or the cells' total counts.

    Raises
    ------
    KeyError
        ``library_size`` is not an ``obs`` column.
    ValueError
        A library size <= 0 or not finite (names the fix: remove empty cells).
    """
    if library_size is None:
        mat = source.mat
        if source.backed:
            lib = np.concatenate(
                [
                    np.asarray(mat[s : s + source.chunk_size].sum(1)).ravel()
                    for s in range(0, mat.shape[0], source.chunk_size)
                ]
            )
        else:
            lib = np.asarray(mat.sum(1)).ravel()
        lib = lib.astype(np.float64)
    else:
        if library_size not in adata.obs.columns:
            msg = f"`library_size={library_size!r}` is not a column of adata.obs; give an obs column or None (totals)."
            raise KeyError(msg)
        lib = adata.obs[library_size].to_numpy(dtype=np.float64)
    if not np.isfinite(lib).all() or (lib <= 0).any():
        msg = (
            f"{int((~np.isfinite(lib) | (lib <= 0)).sum())} cell(s) have a library size <= 0 or not finite; "
            "remove empty cells first (e.g. `sc.pp.filter_cells(adata, min_counts=1)`)."
        )
        raise ValueError(msg)
    return lib


# ------------------------------------------------------------------ the results record
#: The one results record: every table of one row per cell that a fit or an inference writes,
#: by name, with the suffix of its key, ``obsm[key + suffix]``. Nothing else names these keys.
#:
#: ``activity``: the activities (``uns[key]['statistic']`` says which statistic); ``z``: the
#: decoder's latents; ``z_se``: their standard errors; ``pvals``: two-sided p-values of the activity;
#: ``padj``: those adjusted by Benjamini-Hochberg within each cell, over its latents (decoupler's
#: convention for its per-cell ``padj_<method>``).
TABLES = {"activity": "", "z": "_z", "z_se": "_z_se", "pvals": "_pvals", "padj": "_padj"}

#: ``varm[key + WEIGHTS]``: the learned weights (genes x latents) when the model's genes are
#: ``var_names``; otherwise (e.g. a fit on ``adata.raw``'s genes) a tidy table ``source``,
#: ``target``, ``weight`` of the non-zero weights in ``uns[key]['weights']``.
WEIGHTS = "_weights"

#: Every field of ``uns[key]`` a call writes (besides ``latent_names`` and ``params``, always written).
UNS_FIELDS = (
    "statistic", "history", "load", "orientation", "collinear", "identifiability", "net", "n_iter", "weights",
)  # fmt: skip

#: Latent names are written as obsm's column names: h5ad and zarr store those as keys, where ``/``
#: is a path separator. It is written ``%2F`` (and ``%`` itself ``%25``); readers decode both.
_ESCAPES = {"%": "%25", "/": "%2F"}


def _encode(name: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in name)


def _decode(name: str) -> str:
    return re.sub("%(25|2F)", lambda m: "%" if m.group(1) == "25" else "/", name)


def table_key(key: str, name: str) -> str:
    """``obsm`` key of the record's table ``name`` (one of :data:`TABLES`) under ``key``."""
    return key + TABLES[name]


def check_key(adata: AnnData, key: str, where: str = "obsm", hint: str = "rd.tl.fit_decoder") -> None:
    """An error naming the call to run when ``adata.<where>[key]`` is missing."""
    store = getattr(adata, where)
    if key not in store:
        msg = f"Did not find adata.{where}[{key!r}]. Run `{hint}` first (or pass the `key` it wrote to)."
        raise KeyError(msg)


def decoder_latents_key(adata: AnnData, key: str) -> str:
    """Where the decoder's latents are: ``obsm[key + '_z']`` when the call that wrote ``key``
    reported other activities in ``obsm[key]`` (marginal t-values), else ``obsm[key]``."""
    return table_key(key, "z") if table_key(key, "z") in adata.obsm else key


def latents(
    adata: AnnData, key: str = "regdecoder", hint: str = "rd.tl.fit_decoder", *, unnamed: bool = False
) -> pd.DataFrame:
    """``obsm[key]`` as a DataFrame (cells x latents) with the latent names as columns.

    Results written by regdecoder are DataFrames already (the names travel with them, encoded
    as :func:`write` stores them, decoded here); a bare array takes its names from
    ``uns[key]['latent_names']``. With ``unnamed=True`` (factors matched by position, e.g. PCA
    components) an array without names gets ``latent_0``, ``latent_1``...; otherwise that is an
    error, never invented TF names.

    Raises
    ------
    KeyError
        ``obsm[key]`` is missing (names the call to run).
    ValueError
        A bare array without names of the right length (names the fix).
    """
    check_key(adata, key, hint=hint)
    z = adata.obsm[key]
    if isinstance(z, pd.DataFrame):
        return z.set_axis(adata.obs_names, axis=0).set_axis([_decode(str(c)) for c in z.columns], axis=1)
    z = np.asarray(z)
    names = adata.uns.get(key, {}).get("latent_names") if isinstance(adata.uns.get(key), dict) else None
    if (names is None or len(names) != z.shape[1]) and unnamed:
        names = [f"latent_{i}" for i in range(z.shape[1])]
    if names is None or len(names) != z.shape[1]:
        msg = (
            f"adata.obsm[{key!r}] is an array without latent names (adata.uns[{key!r}]['latent_names'] is "
            f"{'missing' if names is None else f'of length {len(names)}, not {z.shape[1]}'}). Copy the results as "
            "the DataFrame regdecoder writes (columns = TF names), or copy `uns[key]` along with them."
        )
        raise ValueError(msg)
    return pd.DataFrame(z, index=adata.obs_names, columns=list(map(str, names)))


def read_table(adata: AnnData, key: str = "regdecoder", name: str = "activity") -> pd.DataFrame:
    """The record's table ``name`` (one of :data:`TABLES`) under ``key``: cells x latents.

    Raises
    ------
    KeyError
        Not written (names the call that writes it).
    """
    if name not in TABLES:
        msg = f"Unknown table {name!r}; the record holds {list(TABLES)}."
        raise ValueError(msg)
    hint = "rd.tl.fit_decoder` or `rd.tl.infer" if name == "activity" else (
        "rd.tl.fit_decoder(adata, net=net)` or `rd.tl.infer(adata, model)` with a decoder masked by a network"
    )  # fmt: skip
    if name == "z_se":  # computed only when asked (one k x k inverse per cell)
        hint = (
            "rd.tl.infer(adata, model, standard_errors=True)` (standard errors are computed only when asked) with a "
            "decoder masked by a network, as fitted by `rd.tl.fit_decoder(adata, net=net)"
        )
    return latents(adata, table_key(key, name), hint=hint)


def read_weights(adata: AnnData, key: str = "regdecoder") -> pd.DataFrame:
    """The learned weights under ``key`` as a tidy table ``source``, ``target``, ``weight``: the
    non-zero weights, latents in decoder order (genes within each in the order they are stored:
    ``var_names`` from ``varm``, the model's from ``uns``).

    Raises
    ------
    KeyError
        No weights under ``key`` (decoders with hidden layers have none).
    """
    held = adata.uns.get(key)
    if isinstance(held, dict) and isinstance(held.get("weights"), pd.DataFrame):
        return held["weights"].reset_index(drop=True)
    if key + WEIGHTS not in adata.varm:
        msg = (
            f"No weights under {key!r}: adata.varm[{key + WEIGHTS!r}] and adata.uns[{key!r}]['weights'] are missing. "
            "`rd.tl.fit_decoder` writes them for one-layer decoders (`rd.tl.infer` writes none: the model's are "
            "`model.weights`); pass the `key` the fit wrote to."
        )
        raise KeyError(msg)
    w = np.asarray(adata.varm[key + WEIGHTS])
    names = held.get("latent_names") if isinstance(held, dict) else None
    if names is None or len(names) != w.shape[1]:
        names = latents(adata, key).columns
    names = np.asarray(list(map(str, names)), dtype=object)
    lat, genes = np.nonzero(w.T)
    return pd.DataFrame({"source": names[lat], "target": adata.var_names[genes].to_numpy(), "weight": w[genes, lat]})


def check_writable(adata: AnnData) -> None:
    """Make sure results can be written into ``adata`` and read back, before any training.

    An in-memory view (``adata[:100]``) becomes an AnnData of its own, as scanpy's tools make
    it (its parent is not changed).

    Raises
    ------
    ValueError
        A view of an AnnData opened with ``backed=`` (results cannot be written into it); or
        ``obs_names`` that are not strings (h5ad and zarr store them as strings, so the tables
        written beside them could not be read back).
    """
    if adata.is_view and adata.isbacked:
        msg = (
            "adata is a view of an AnnData opened with `backed='r'` (e.g. `backed[:250]`): results cannot be written "
            "into it. Load those cells into memory first, `adata = backed[:250].to_memory()`, or pass the whole "
            "backed AnnData (rd.tl.fit_decoder and rd.tl.infer both read it in chunks)."
        )
        raise ValueError(msg)
    if adata.obs_names.inferred_type != "string":
        msg = (
            f"adata.obs_names are not strings (dtype {adata.obs_names.dtype}, e.g. {adata.obs_names[0]!r}): h5ad and "
            "zarr store them as strings, and the results written beside them could not be read back. Make them "
            "strings first: `adata.obs_names = adata.obs_names.astype(str)`."
        )
        raise ValueError(msg)
    if adata.is_view:
        adata._init_as_actual(adata.copy())  # anndata's own step when a view is written to (scanpy's view_to_actual)


def result_tables(adata: AnnData) -> set[str]:
    """The ``obsm`` keys of every record's tables in ``adata`` (every ``uns[key]`` that
    :func:`write` wrote: it has ``latent_names``)."""
    keys = [k for k, v in adata.uns.items() if isinstance(v, Mapping) and "latent_names" in v]
    return {table_key(k, n) for k in keys for n in TABLES} & set(adata.obsm.keys())


def check_key_name(key) -> str:
    """``key_added`` must be a non-empty string (checked before training, not when writing)."""
    if not isinstance(key, str) or not key:
        msg = f"`key_added` must be a non-empty string (the obsm/uns key results are written to), got {key!r}."
        raise TypeError(msg)
    return key


def check_free(adata: AnnData, key: str, *, by: str) -> None:
    """Refuse to write ``by``'s results under a key that holds a fit's results.

    A fit stores its history, load and weights under ``key``; writing an inference there
    would leave ``varm`` and ``uns`` describing different calls.

    Raises
    ------
    ValueError
        ``uns[key]`` holds a fit (names the key to use instead).
    """
    held = adata.uns.get(key)
    if isinstance(held, dict) and "history" in held:
        msg = (
            f"adata.uns[{key!r}] holds the results of a fit (history, load, weights) that {by} would overwrite "
            f"inconsistently. Write to another key, e.g. `key_added='{key}_infer'`, or remove the fit's results "
            f"first (`del adata.uns[{key!r}]`)."
        )
        raise ValueError(msg)


def h5ad_safe(d: dict) -> dict:
    """A dict writable to h5ad: None as 'None', sequences as arrays, nested dicts likewise."""
    out = {}
    for k, v in d.items():
        if v is None:
            out[k] = "None"
        elif isinstance(v, dict):
            out[k] = h5ad_safe(v)
        elif isinstance(v, (list, tuple)):
            out[k] = np.asarray(v)
        else:
            out[k] = v
    return out


def _uns_value(value):
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, dict):
        return h5ad_safe(value)
    if isinstance(value, (list, tuple)):
        return np.asarray(value, dtype=object if value and isinstance(value[0], str) else None)
    return value


def write(
    adata: AnnData,
    key: str,
    *,
    tables: dict,
    latent_names: Sequence[str],
    params: dict,
    weights: np.ndarray | None = None,
    genes: Sequence[str] | None = None,
    **fields,
) -> None:
    """The one writer of results: the record's tables in ``obsm``, the weights, and ``uns[key]``.

    ``tables`` maps names of :data:`TABLES` (``'activity'`` always) to cells x latents arrays
    or tensors, written as float32 DataFrames with the latent names as columns (so the names
    travel with ``obsm``; scanpy's ``use_rep=`` takes them; a ``/`` in a name is written
    ``%2F``, see :func:`latents`). ``weights`` (genes x latents) are the weights of the
    model's ``genes`` (default ``var_names``): in ``varm[key + '_weights']`` when those are
    ``adata.var_names`` (in any order), else as a tidy table in ``uns[key]['weights']``.
    ``uns[key]`` holds ``latent_names``, ``params`` and the ``fields`` (see :data:`UNS_FIELDS`).
    Tables and weights a previous call wrote under ``key`` and this call does not are removed,
    so what is under ``key`` always describes one call.
    """
    unknown = set(fields) - set(UNS_FIELDS)
    if unknown or "activity" not in tables or not set(tables) <= set(TABLES):
        msg = f"Not fields of the results record: {sorted(unknown | (set(tables) - set(TABLES)))} (or no activity)."
        raise ValueError(msg)
    names = list(map(str, latent_names))
    columns = [_encode(n) for n in names]

    def frame(a) -> pd.DataFrame:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        return pd.DataFrame(a.astype(np.float32, copy=False), index=adata.obs_names, columns=columns)

    frames = {table_key(key, n): frame(v) for n, v in tables.items()}
    for n in TABLES:
        frames.setdefault(table_key(key, n), None)
    uns = {"latent_names": np.asarray(names, dtype=object), "params": h5ad_safe(params)}
    uns.update({k: _uns_value(v) for k, v in fields.items()})
    in_varm = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float32)
        genes = pd.Index(adata.var_names if genes is None else list(map(str, genes)))
        if len(genes) == adata.n_vars and genes.is_unique and genes.isin(adata.var_names).all():
            in_varm = w[genes.get_indexer(adata.var_names)]
        else:
            lat, rows = np.nonzero(w.T)
            uns["weights"] = pd.DataFrame(
                {
                    "source": np.asarray(names, dtype=object)[lat],
                    "target": genes[rows].to_numpy(),
                    "weight": w[rows, lat],
                }
            )
    for k, v in frames.items():
        if v is not None:
            adata.obsm[k] = v
        elif k in adata.obsm:
            del adata.obsm[k]
    if in_varm is not None:
        adata.varm[key + WEIGHTS] = in_varm
    elif key + WEIGHTS in adata.varm:
        del adata.varm[key + WEIGHTS]
    adata.uns[key] = uns


def write_uns(adata: AnnData, key: str, **fields) -> None:
    """A tool's record that is not a fit's (e.g. :func:`regdecoder.tl.rank_activities`' table and
    parameters): ``uns[key]``, replaced whole, each field made writable to h5ad."""
    adata.uns[key] = {name: _uns_value(value) for name, value in fields.items()}


def read_results(adata: AnnData, key: str) -> dict:
    """Everything the record holds under ``key``, as the keyword arguments of :func:`write`
    (to write the same results into another AnnData with the same cells, e.g. from the worker
    processes of a distributed fit)."""
    held = dict(adata.uns[key])
    tables = {n: read_table(adata, key, n).to_numpy() for n in TABLES if table_key(key, n) in adata.obsm}
    out = {"tables": tables, "latent_names": list(held.pop("latent_names")), "params": held.pop("params")}
    held.pop("weights", None)
    if isinstance(adata.uns[key].get("weights"), pd.DataFrame) or key + WEIGHTS in adata.varm:
        w = read_weights(adata, key)
        genes = pd.Index(pd.unique(w["target"])) if key + WEIGHTS not in adata.varm else adata.var_names
        mat = np.zeros((len(genes), len(out["latent_names"])), dtype=np.float32)
        lat = pd.Index(out["latent_names"]).get_indexer(w["source"])
        mat[genes.get_indexer(w["target"]), lat] = w["weight"].to_numpy()
        out.update(weights=mat, genes=list(genes))
    return {**out, **held}
