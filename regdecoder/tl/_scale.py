"""AnnData glue for data too large to densify: sparse ``X``, ``backed='r'`` h5ad files and
multi-process fits. Cells are read in chunks; only the current chunk is dense."""

from __future__ import annotations

import numpy as np
import torch
from anndata import AnnData
from scipy import sparse

from ..train._stream import fit_als_stream, gather_rows, infer_stream, shard_bounds, world

__all__ = ["MatrixSource", "fit_als_adata", "fit_decoder_distributed", "infer_adata", "streamable"]


def _raw_matrix(adata: AnnData, layer: str | None):
    if layer is None:
        mat = adata.X
        if mat is None:
            msg = "adata.X is None: pass `layer=` to name the layer that holds the expression."
            raise ValueError(msg)
        return mat, "adata.X"
    if layer not in adata.layers:
        available = ", ".join(map(repr, adata.layers.keys())) or "none"
        msg = (
            f"Layer {layer!r} not found in adata.layers (available: {available}); pass one of them or layer=None for X."
        )
        raise KeyError(msg)
    return adata.layers[layer], f"adata.layers[{layer!r}]"


def _is_backed_matrix(mat) -> bool:
    return not isinstance(mat, np.ndarray) and not sparse.issparse(mat)


def streamable(adata: AnnData, layer: str | None = None, *, distributed: bool = True) -> bool:
    """Whether a fit should read cells in chunks: sparse or backed data, or several processes."""
    if not isinstance(adata, AnnData) or adata.n_obs == 0 or adata.n_vars == 0:
        return False  # get_matrix gives the error
    mat, _ = _raw_matrix(adata, layer)
    return sparse.issparse(mat) or _is_backed_matrix(mat) or (distributed and world()[1] > 1)


def require_in_memory(adata: AnnData, layer: str | None, what: str, *, distributed: bool = True) -> None:
    """Error for paths that need the whole matrix in memory (the gradient engine)."""
    mat, where = _raw_matrix(adata, layer)
    if _is_backed_matrix(mat):
        msg = (
            f"{what} needs the data in memory, but {where} is backed on disk. Use the ALS solver "
            "(solver='als' / method='als', which streams chunks of cells), or load it with `adata = adata.to_memory()`."
        )
        raise ValueError(msg)
    if distributed and world()[1] > 1:
        msg = f"{what} does not run across processes; use solver='als' under torch.distributed."
        raise ValueError(msg)


class MatrixSource:
    """Chunked, checked, dense float32 rows of a dense, scipy-sparse or backed (h5py) matrix.

    ``start``/``stop`` restrict it to a block of rows (one process's shard); ``cols``
    reorders the genes. Only ``read``/``take`` results are dense.
    """

    def __init__(
        self, mat, *, where: str = "adata.X", start: int = 0, stop: int | None = None, cols: np.ndarray | None = None
    ) -> None:
        if sparse.issparse(mat) and mat.format != "csr":
            mat = sparse.csr_matrix(mat)  # row access; a copy of the user's data, not a change to it
        fmt = getattr(mat, "format", None)
        if _is_backed_matrix(mat) and fmt == "csc":
            msg = (
                f"{where} is a backed CSC matrix: reading cells from it needs the whole file. "
                "Rewrite it as CSR (e.g. `adata.X = adata.X.tocsr()` before `write_h5ad`)."
            )
            raise ValueError(msg)
        self.mat, self.where = mat, where
        n_obs, n_vars = mat.shape
        self.start = int(start)
        self.stop = n_obs if stop is None else int(stop)
        self.n_obs = self.stop - self.start
        self.cols = None if cols is None or np.array_equal(cols, np.arange(n_vars)) else np.asarray(cols)
        self.n_vars = n_vars if self.cols is None else len(self.cols)

    def _dense(self, block) -> torch.Tensor:
        if sparse.issparse(block):
            values = block.data
            block = block.toarray()
        else:
            block = np.asarray(block)
            values = block
        if not np.isfinite(values).all():
            msg = f"{self.where} has NaN or infinite values. Remove or impute them first."
            raise ValueError(msg)
        block = block.astype(np.float32, copy=False)
        if self.cols is not None:
            block = block[:, self.cols]
        return torch.from_numpy(np.ascontiguousarray(block))

    def read(self, start: int, stop: int) -> torch.Tensor:
        return self._dense(self.mat[self.start + start : self.start + stop])

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        idx = rows.cpu().numpy() + self.start
        return self._dense(self.mat[idx])


def fit_als_adata(
    decoder,
    adata: AnnData,
    layer: str | None,
    **kwargs,
) -> tuple[torch.Tensor, dict]:
    """Streamed censored ALS on ``adata`` (this process's block of cells when several
    processes run under ``torch.distributed``); returns every cell's latents."""
    mat, where = _raw_matrix(adata, layer)
    n_obs = mat.shape[0]
    rank, size = world()
    start, stop = shard_bounds(n_obs, rank, size)
    source = MatrixSource(mat, where=where, start=start, stop=stop)
    z, history = fit_als_stream(decoder, source, n_total=n_obs, offset=start, **kwargs)
    history["world_size"] = size
    dev = next(decoder.parameters()).device
    comm_dev = dev if size > 1 and torch.distributed.get_backend() == "nccl" else torch.device("cpu")
    return gather_rows(z.cpu(), n_obs, comm_dev), history


def infer_adata(
    adata: AnnData, model, *, layer: str | None, order: np.ndarray, max_iter: int | None, tol: float | None
) -> tuple[torch.Tensor, int]:
    """Streamed test-time inference (one-layer decoders); returns latents and rounds."""
    mat, where = _raw_matrix(adata, layer)
    source = MatrixSource(mat, where=where, cols=order)
    dec = model.decoder
    z, rounds, _ = infer_stream(
        source,
        dec.get_weight(),
        dec.get_bias(),
        relu=model.config.output == "relu",
        n_iter=100 if max_iter is None else max_iter,
        tol=1e-5 if tol is None else tol,
        progress=False,
    )
    return z, rounds


def _fit_worker(filename: str, layer: str | None, kwargs: dict, model_path: str) -> dict | None:
    """One process of :func:`fit_decoder_distributed`: fit on its shard of a backed file."""
    import anndata as ad

    from ._fit import fit_decoder

    adata = ad.read_h5ad(filename, backed="r")
    try:
        key = kwargs.get("key_added", "regdecoder")
        model = fit_decoder(adata, layer=layer, progress=kwargs.pop("progress", False) and world()[0] == 0, **kwargs)
        if world()[0] != 0:
            return None
        model.save(model_path)
        out = {"obsm": adata.obsm[key], "uns": adata.uns[key]}
        if key + "_weights" in adata.varm:
            out["varm"] = adata.varm[key + "_weights"]
        return out
    finally:
        adata.file.close()


def fit_decoder_distributed(
    adata: AnnData,
    *,
    nprocs: int = 2,
    backend: str = "gloo",
    layer: str | None = None,
    timeout_s: float = 600.0,
    threads_per_process: int | None = 1,
    **kwargs,
):
    """:func:`~regdecoder.tl.fit_decoder` run by ``nprocs`` processes started from Python.

    Each process opens the data with ``backed='r'``, reads only its block of cells
    and owns only their latents; the decoder is replicated and its ALS statistics are
    all-reduced every epoch (``torch.distributed``; ``'gloo'`` on CPU, ``'nccl'`` with
    one GPU per process, then pass ``device='cuda'``). The processes meet on
    ``127.0.0.1`` at a free port; no network is needed.

    Parameters
    ----------
    adata
        Cells x genes. A backed AnnData is read from its file; an in-memory one is
        first written to a temporary h5ad file.
    nprocs
        Number of processes.
    backend
        ``'gloo'`` (CPU) or ``'nccl'`` (GPUs).
    layer
        Layer holding the expression; ``None`` uses ``X``.
    timeout_s
        The run is stopped with a ``TimeoutError`` after this many seconds.
    threads_per_process
        Torch threads in each process (None: torch's default).
    **kwargs
        Options of :func:`~regdecoder.tl.fit_decoder` (``net``, ``seed``,
        ``max_epochs``, ``key_added``...). The solver is ALS.

    Returns
    -------
    The fitted :class:`~regdecoder.tl.Model`; writes the same fields to ``adata`` as
    :func:`~regdecoder.tl.fit_decoder`.
    """
    import os
    import tempfile

    from ..train._distributed import launch
    from ._model import Model

    if not isinstance(adata, AnnData):
        msg = f"Expected an AnnData, got {type(adata).__name__}."
        raise TypeError(msg)
    if kwargs.get("solver", "als") not in ("als", "auto") or kwargs.get("hidden"):
        msg = "fit_decoder_distributed runs the ALS solver (one-layer decoders); drop `solver`/`hidden`."
        raise ValueError(msg)
    if int(nprocs) < 1:
        msg = f"`nprocs` must be a positive integer, got {nprocs!r}."
        raise ValueError(msg)
    key = kwargs.get("key_added", "regdecoder")
    with tempfile.TemporaryDirectory() as tmp:
        if adata.isbacked:
            filename = str(adata.filename)
        else:
            filename = os.path.join(tmp, "data.h5ad")
            AnnData(X=adata.layers[layer] if layer else adata.X, obs=adata.obs[[]], var=adata.var[[]]).write_h5ad(
                filename
            )
        layer_used = layer if adata.isbacked else None
        model_path = os.path.join(tmp, "model.pt")
        results = launch(
            _fit_worker,
            filename,
            layer_used,
            dict(kwargs),
            model_path,
            nprocs=int(nprocs),
            backend=backend,
            timeout_s=timeout_s,
            threads_per_process=threads_per_process,
        )
        model = Model.load(model_path)
    out = results[0]
    adata.obsm[key] = out["obsm"]
    if "varm" in out:
        adata.varm[key + "_weights"] = out["varm"]
    adata.uns[key] = out["uns"]
    return model
