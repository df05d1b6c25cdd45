"""Input checks shared by every tl function. Each error names the problem and the fix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..nn._net import prepare_net, unique_genes

__all__ = ["check_genes", "check_key", "get_matrix", "prepare_net", "to_dense"]


def get_matrix(adata: AnnData, layer: str | None = None) -> np.ndarray | sparse.csr_matrix:
    """The expression matrix (``X`` or ``layers[layer]``), checked, as float32 (a copy).

    Refuses an empty AnnData, a missing layer, and NaN or infinite values. Never
    modifies ``adata``.
    """
    if not isinstance(adata, AnnData):
        msg = f"Expected an AnnData, got {type(adata).__name__}."
        raise TypeError(msg)
    if adata.n_obs == 0 or adata.n_vars == 0:
        msg = f"The AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes); give it at least one cell and gene."
        raise ValueError(msg)
    if layer is None:
        mat, where = adata.X, "adata.X"
        if mat is None:
            msg = "adata.X is None: pass `layer=` to name the layer that holds the expression."
            raise ValueError(msg)
    else:
        if layer not in adata.layers:
            available = ", ".join(map(repr, adata.layers.keys())) or "none"
            msg = f"Layer {layer!r} not found in adata.layers (available: {available}); pass one of them or layer=None for X."
            raise KeyError(msg)
        mat, where = adata.layers[layer], f"adata.layers[{layer!r}]"
    if sparse.issparse(mat):
        mat = sparse.csr_matrix(mat, dtype=np.float32, copy=True)
        values = mat.data
    else:
        mat = np.array(mat, dtype=np.float32, copy=True)
        values = mat
    if not np.isfinite(values).all():
        n_nan = int(np.isnan(values).sum())
        n_inf = int(np.isinf(values).sum())
        msg = (
            f"{where} has {n_nan} NaN and {n_inf} infinite values. Remove or impute them first "
            "(e.g. `adata = adata[:, np.isfinite(adata.X).all(0)]`, or fill them)."
        )
        raise ValueError(msg)
    return mat


def to_dense(mat: np.ndarray | sparse.spmatrix) -> np.ndarray:
    return mat.toarray() if sparse.issparse(mat) else np.asarray(mat)


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
            "Subset or reorder the data to the model's genes, e.g. `adata[:, model.var_names]` "
            "(missing genes must be added, e.g. as zeros, before that)."
        )
        raise ValueError(msg)
    unique_genes(data)
    return data.get_indexer(model)


def check_key(adata: AnnData, key: str, where: str = "obsm", hint: str = "rd.tl.fit_decoder") -> None:
    store = getattr(adata, where)
    if key not in store:
        msg = f"Did not find adata.{where}[{key!r}]. Run `{hint}` first (or pass the `key` it wrote to)."
        raise KeyError(msg)
