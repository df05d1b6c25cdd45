"""fit_decoder run by several processes started from Python (``torch.distributed``)."""

from __future__ import annotations

import os
import tempfile

import anndata as ad
import pandas as pd
from anndata import AnnData

from .. import _anndata
from .._settings import settings
from ..train._distributed import launch
from ..train._source import world
from ._fit import fit_decoder
from ._model import Model


def _fit_worker(filename: str, layer: str | None, kwargs: dict, model_path: str) -> dict | None:
    """One process of :func:`fit_decoder_distributed`: fit on its shard of a backed file; rank 0
    returns the results record (:func:`regdecoder._anndata.read_results`)."""
    adata = ad.read_h5ad(filename, backed="r")
    try:
        settings.progress = bool(kwargs.pop("progress", False)) and world()[0] == 0
        model = fit_decoder(adata, layer=layer, **kwargs)
        if world()[0] != 0:
            return None
        model.save(model_path)
        return _anndata.read_results(adata, kwargs.get("key_added", "regdecoder"))
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
) -> Model:
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
        Layer holding the expression; ``None`` uses ``X`` (or ``use_raw=True`` in ``kwargs``:
        ``adata.raw``, as :func:`~regdecoder.tl.fit_decoder` reads it).
    timeout_s
        The run is stopped with a ``TimeoutError`` after this many seconds.
    threads_per_process
        Torch threads in each process (None: torch's default).
    **kwargs
        Options of :func:`~regdecoder.tl.fit_decoder` (``net``, ``seed``,
        ``recipe``, ``key_added``...). The solver is ALS.

    Returns
    -------
    The fitted :class:`~regdecoder.tl.Model`; writes the same fields to ``adata`` as
    :func:`~regdecoder.tl.fit_decoder`.

    Raises
    ------
    TypeError
        ``adata`` is not an AnnData.
    ValueError
        A solver other than ALS, hidden layers, or ``nprocs < 1``.
    RuntimeError, TimeoutError
        A worker failed (with its traceback) or the run took longer than ``timeout_s``.
    """
    if not isinstance(adata, AnnData):
        msg = f"Expected an AnnData, got {type(adata).__name__}."
        raise TypeError(msg)
    rec = kwargs.get("recipe")
    solver = rec.get("solver", "auto") if isinstance(rec, dict) else getattr(rec, "solver", "auto")
    if solver not in ("als", "auto") or rec == "paper" or kwargs.get("hidden"):
        msg = "fit_decoder_distributed runs the ALS solver (one-layer decoders); drop `recipe`'s solver/`hidden`."
        raise ValueError(msg)
    if int(nprocs) < 1:
        msg = f"`nprocs` must be a positive integer, got {nprocs!r}."
        raise ValueError(msg)
    use_raw = bool(kwargs.pop("use_raw", False))
    with tempfile.TemporaryDirectory() as tmp:
        if adata.isbacked and not use_raw:
            filename, layer_used = str(adata.filename), layer
        else:  # the expression the fit reads, alone, in a file every process can open
            mat, _, var_names = _anndata.matrix(adata, layer, use_raw)
            filename, layer_used = os.path.join(tmp, "data.h5ad"), None
            AnnData(X=mat, obs=adata.obs[[]], var=pd.DataFrame(index=var_names)).write_h5ad(filename)
        model_path = os.path.join(tmp, "model.pt")
        results = launch(
            _fit_worker, filename, layer_used, dict(kwargs), model_path, nprocs=int(nprocs), backend=backend,
            timeout_s=timeout_s, threads_per_process=threads_per_process,
        )  # fmt: skip
        model = Model.load(model_path)
    out = results[0]
    out["params"].update(layer=layer, use_raw=use_raw)  # the workers read the expression from their own file
    _anndata.write(adata, kwargs.get("key_added", "regdecoder"), **out)
    return model
