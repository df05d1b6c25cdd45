"""Censored ALS streamed over chunks of cells, in one process or sharded over several.

The same algorithm as :func:`~regdecoder.train.fit_als`, step for step, for data that
is not held dense in memory (scipy-sparse, or read from disk): only one chunk of cells
is dense at a time.

* Latent step: cells are independent, so it runs chunk by chunk with one shared
  ``m x m`` factor.
* Weight step: the per-gene ridge solves only need ``Z.T Z`` and ``Y.T Z`` (``Y`` the
  imputed targets), sums over cells accumulated chunk by chunk. These sufficient
  statistics are computed in the same pass as the latent step (for the latents the
  next weight step will use), so an epoch reads the data once.
* Extrapolation: the loss of the extrapolated point, and its statistics, are
  accumulated in that same pass; the accept/reject decision is taken at its end.
* Several processes (``torch.distributed``): each owns a contiguous block of cells
  and its rows of the latent table; the statistics and the losses are summed with
  one all-reduce per epoch, so every process takes the same weight step and the same
  decisions. The result equals the one-process result up to rounding.

The data come from a *source*: any object with ``n_obs`` (cells it holds), ``n_vars``,
``read(start, stop) -> Tensor`` (dense float rows) and ``take(rows) -> Tensor`` (sorted
local row indices), see :class:`TensorSource`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..nn import Decoder
from ._als import (
    _CHUNK_ELEMENTS,
    _MaskIndex,
    _ridge_factor,
    censored_target,
    masked_pca_init,
    solve_latents,
    solve_weights_stats,
)
from ._common import EpochLog


class TensorSource:
    """A source over an in-memory dense tensor (for tests and small data)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.n_obs, self.n_vars = x.shape

    def read(self, start: int, stop: int) -> torch.Tensor:
        return self.x[start:stop]

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        return self.x[rows]


def default_chunk_size(n_vars: int) -> int:
    """Cells per chunk: the row blocks :func:`~regdecoder.train.solve_latents` uses."""
    return max(1, _CHUNK_ELEMENTS // max(1, n_vars))


# ------------------------------------------------------------------ process group
def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n_obs: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous block of cells owned by ``rank`` (sizes differ by at most one)."""
    base, extra = divmod(n_obs, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _all_reduce(*tensors: torch.Tensor) -> None:
    if world()[1] > 1:
        for t in tensors:
            dist.all_reduce(t)


def _all_reduce_float(*values: float, device: torch.device) -> list[float]:
    if world()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(local: torch.Tensor, n_obs: int, device: torch.device) -> torch.Tensor:
    """The full ``n_obs``-row table from every process's block (on every process)."""
    rank, size = world()
    if size == 1:
        return local
    bounds = [shard_bounds(n_obs, r, size) for r in range(size)]
    longest = max(b - a for a, b in bounds)
    pad = torch.zeros((longest,) + tuple(local.shape[1:]), dtype=local.dtype, device=device)
    pad[: local.shape[0]] = local.to(device)
    parts = [torch.empty_like(pad) for _ in range(size)]
    dist.all_gather(parts, pad)
    return torch.cat([p[: b - a] for p, (a, b) in zip(parts, bounds, strict=True)]).to(local.device)


# ------------------------------------------------------------------ the solver
def _subsample(source, n_total: int, offset: int, pick: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``pick`` (sorted global indices) of the data, from whichever process holds them."""
    local = pick[(pick >= offset) & (pick < offset + source.n_obs)] - offset
    rows = (
        source.take(local).to(device=device, dtype=torch.float32)
        if local.numel()
        else torch.zeros(0, source.n_vars, device=device)
    )
    return gather_rows(rows, pick.numel(), device) if world()[1] > 1 else rows


def fit_als_stream(
    decoder: Decoder,
    source,
    *,
    n_total: int | None = None,
    offset: int = 0,
    prior_sign: torch.Tensor | None = None,
    max_epochs: int = 50,
    tol: float = 1e-3,
    ridge: float = 1e-6,
    init_iter: int = 10,
    extrapolate: bool = True,
    seed: int = 0,
    chunk_size: int | None = None,
    table_device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callable[[dict], bool | None] | None = None,
) -> tuple[torch.Tensor, dict]:
    """Censored ALS (:func:`~regdecoder.train.fit_als`) over a chunked data source.

    Parameters
    ----------
    decoder
        One-layer decoder; its weights are set to the fitted ones. Its device is the
        compute device (each chunk is moved there).
    source
        The cells of this process (see the module docstring).
    n_total, offset
        With several processes: the number of cells over all processes, and the
        global index of this process's first cell (default: one process).
    prior_sign, max_epochs, tol, ridge, init_iter, extrapolate, seed
        As in :func:`~regdecoder.train.fit_als`.
    chunk_size
        Cells per chunk (default: ``2**25 / n_genes``, ~128 MiB as float32).
    table_device
        Where the latent tables live (two ``cells x latents`` tables with
        ``extrapolate``). Default: the compute device when they take less than a
        quarter of its free memory, else the CPU (rows are then paged per chunk).
    progress
        One progress bar for the fit, counting cells, with cells/s.
    callback
        As in :func:`~regdecoder.train.fit_als`; ``z`` is this process's table.

    Returns
    -------
    This process's latents (``source.n_obs x n_latent``, on ``table_device``) and the
    history dict (``loss``, ``seconds``, ``epochs``, ``cells_per_second``).
    """
    dev = next(decoder.parameters()).device
    relu = decoder.config.output == "relu"
    mask = decoder.get_mask().to(dev)
    has_bias = decoder.get_bias() is not None
    n_local, n_genes = source.n_obs, source.n_vars
    n_total = n_local if n_total is None else int(n_total)
    n_latent = mask.shape[1]
    step = default_chunk_size(n_genes) if chunk_size is None else int(chunk_size)
    tdev = _table_device(dev, n_local, n_latent, extrapolate) if table_device is None else torch.device(table_device)
    index = _MaskIndex(mask, has_bias)
    n_elem = n_total * n_genes
    rank, _ = world()

    # Initialisation, exactly as fit_als: the same generator draws the same subsample.
    gen = torch.Generator().manual_seed(seed)
    ahead = torch.Generator()
    ahead.set_state(gen.get_state())
    torch.randn(mask.shape, generator=ahead)  # what masked_pca_init draws first
    max_cells = 2000
    if n_total > max_cells:
        pick = torch.randperm(n_total, generator=ahead)[:max_cells].sort().values
    else:
        pick = torch.arange(n_total)
    x_sub = _subsample(source, n_total, offset, pick, dev)
    weight = masked_pca_init(x_sub, mask, prior_sign=prior_sign, n_iter=init_iter, generator=gen, max_cells=max_cells)
    del x_sub
    bias = torch.zeros(n_genes, device=dev) if has_bias else None

    z = torch.empty(n_local, n_latent, device=tdev)
    last = torch.empty_like(z) if extrapolate else None
    log = EpochLog(max_epochs, "", False, callback)
    bar = tqdm(
        total=max_epochs * n_total,
        desc="fit_decoder (ALS, streamed)",
        unit="cell",
        unit_scale=True,
        disable=not progress or rank != 0,
        leave=False,
        dynamic_ncols=True,
    )
    cols = n_latent + (1 if has_bias else 0)

    def predict(zc, w, b):
        return zc @ w.T if b is None else zc @ w.T + b

    def stats(zc, y, gram, rhs):
        if has_bias:
            zc = torch.cat([zc, torch.ones(zc.shape[0], 1, dtype=zc.dtype, device=zc.device)], dim=1)
        gram += zc.T @ zc
        rhs += y.T @ zc

    def zeros():
        return torch.zeros(cols, cols, device=dev), torch.zeros(n_genes, cols, device=dev)

    # Pass 0: least-squares latents from the initial weights, and the first statistics.
    gram, rhs = zeros()
    chol = _ridge_factor(weight.T @ weight, ridge)
    for s in range(0, n_local, step):
        xc = source.read(s, min(n_local, s + step)).to(device=dev, dtype=torch.float32)
        zc = torch.cholesky_solve((xc @ weight).T, chol).T
        z[s : s + xc.shape[0]] = zc.to(tdev)
        stats(zc, censored_target(xc, predict(zc, weight, bias), relu), gram, rhs)
    _all_reduce(gram, rhs)

    prev = None
    w_last = b_last = None
    have_last = False
    beta = 0.5
    for epoch in range(1, max_epochs + 1):
        wb = solve_weights_stats(gram, rhs, index, ridge=ridge)
        weight = wb[:, :n_latent]
        if has_bias:
            bias = wb[:, -1]
        deg = mask.sum(0).clamp(min=1).to(weight.dtype)
        rms = (weight.pow(2).sum(0) / deg).sqrt()
        rms = torch.where(rms > 0, rms, torch.ones_like(rms))
        weight = weight / rms  # normalise_scale; the latents are scaled as they are read
        chol = _ridge_factor(weight.T @ weight, ridge)
        try_e = extrapolate and have_last
        if try_e:
            w_e = weight + beta * (weight - w_last)
            b_e = None if bias is None else bias + beta * (bias - b_last)
        gram, rhs = zeros()
        gram_e, rhs_e = zeros() if try_e else (None, None)
        loss = loss_e = 0.0
        for s in range(0, n_local, step):
            xc = source.read(s, min(n_local, s + step)).to(device=dev, dtype=torch.float32)
            e = s + xc.shape[0]
            zc = z[s:e].to(dev) * rms
            y = censored_target(xc, predict(zc, weight, bias), relu)
            yb = y if bias is None else y - bias
            zc = torch.cholesky_solve((yb @ weight).T, chol).T
            p = predict(zc, weight, bias)
            y = censored_target(xc, p, relu)
            loss += float(((y - p) ** 2).sum())
            stats(zc, y, gram, rhs)
            if try_e:
                ze = zc + beta * (zc - last[s:e].to(dev))
                pe = predict(ze, w_e, b_e)
                ye = censored_target(xc, pe, relu)
                loss_e += float(((ye - pe) ** 2).sum())
                stats(ze, ye, gram_e, rhs_e)
            z[s:e] = zc.to(tdev)
            bar.update(xc.shape[0] * (world()[1]))
        loss, loss_e = _all_reduce_float(loss, loss_e, device=dev)
        _all_reduce(gram, rhs)
        if try_e:
            _all_reduce(gram_e, rhs_e)
        loss /= n_elem
        loss_e /= n_elem
        if extrapolate:
            accept = try_e and loss_e < loss
            for s in range(0, n_local, step):  # tables only, no data
                zn = z[s : s + step].clone()
                if accept:
                    z[s : s + step] = zn + beta * (zn - last[s : s + step])
                last[s : s + step] = zn
            w_last, b_last, have_last = weight, bias, True
            if accept:
                weight, bias, loss, gram, rhs = w_e, b_e, loss_e, gram_e, rhs_e
                beta = min(1.5 * beta, 10.0)
            elif try_e:
                beta = max(0.5 * beta, 0.1)
        bar.set_postfix(epoch=epoch, loss=f"{loss:.4g}")
        stop = log.end_epoch(epoch, loss, z, before_callback=lambda w=weight, b=bias: decoder.set_weight(w, b))
        if stop or (prev is not None and (prev - loss) <= tol * prev):
            break
        prev = loss
    decoder.set_weight(weight, bias)
    bar.close()
    history = log.close()
    secs = history["seconds"][-1] if history["seconds"] else 0.0
    history["cells_per_second"] = history["epochs"] * n_total / secs if secs > 0 else float("nan")
    return z, history


def _table_device(dev: torch.device, n_rows: int, n_latent: int, extrapolate: bool) -> torch.device:
    if dev.type != "cuda":
        return dev
    need = n_rows * n_latent * 4 * (2 if extrapolate else 1)
    free, _ = torch.cuda.mem_get_info(dev)
    return dev if need < free / 4 else torch.device("cpu")


@torch.no_grad()
def infer_stream(
    source,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    relu: bool,
    n_iter: int = 100,
    tol: float = 1e-5,
    chunk_size: int | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, int, float]:
    """Test-time latents of every cell of ``source``, chunk by chunk (decoder frozen).

    Each chunk is solved by :func:`~regdecoder.train.solve_latents`; with the default
    chunk size the result equals solving the whole matrix at once. Only the latents
    (cells x latents, on the CPU) grow with the number of cells.

    Returns the latents, the largest number of rounds any chunk ran, and cells/s.
    """
    step = default_chunk_size(source.n_vars) if chunk_size is None else int(chunk_size)
    out = torch.empty(source.n_obs, weight.shape[1], dtype=torch.float32)
    rounds = 0
    t0 = time.perf_counter()
    bar = tqdm(
        total=source.n_obs,
        desc="infer (streamed)",
        unit="cell",
        unit_scale=True,
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    for s in range(0, source.n_obs, step):
        xc = source.read(s, min(source.n_obs, s + step)).to(device=weight.device, dtype=weight.dtype)
        zc, r = solve_latents(xc, weight, bias, relu=relu, n_iter=n_iter, tol=tol)
        out[s : s + xc.shape[0]] = zc.cpu()
        rounds = max(rounds, r)
        bar.update(xc.shape[0])
    bar.close()
    secs = time.perf_counter() - t0
    return out, rounds, source.n_obs / secs if secs > 0 else float("nan")
