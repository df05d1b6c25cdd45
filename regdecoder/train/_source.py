"""Where the cells come from: the chunk-source protocol and the process group.

Every solver reads cells through a *source*: an object with

* ``n_obs`` (cells this process holds), ``n_vars`` (genes), ``n_total`` (cells over all
  processes) and ``offset`` (global index of this process's first cell);
* ``chunk_size``: how many cells to read at once (in memory: all of them, one chunk);
* ``read(start, stop) -> Tensor``: dense float32 rows ``start:stop`` of this process's
  block (local indices);
* ``take(rows) -> Tensor``: dense rows at sorted local indices.

:class:`TensorSource` holds a tensor (one chunk, or a shard of it); the AnnData side
(:mod:`regdecoder._anndata`) provides a source over dense, scipy-sparse and backed
matrices that reads chunks of cells and checks each chunk as it is read.

With ``torch.distributed`` initialised, each process holds one contiguous block of
cells (:func:`shard_bounds`); the solvers sum their statistics with :func:`all_reduce`,
which is a no-op in one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

_CHUNK_ELEMENTS = 2**25  # bound on a temporary (cells x genes) block or (genes x K x K) stack


def default_chunk_size(n_vars: int) -> int:
    """Cells per chunk for data read from outside memory: ``2**25 / n_vars`` (~128 MiB float32)."""
    return max(1, _CHUNK_ELEMENTS // max(1, n_vars))


class TensorSource:
    """A source over a dense tensor held in memory (one chunk), or over one process's block of it.

    Parameters
    ----------
    x
        Cells x genes. With ``start``/``stop``, only rows ``start:stop`` belong to this
        source (a ``torch.distributed`` shard), and ``n_total`` is ``x.shape[0]``.
    chunk_size
        Cells per chunk; default: all cells at once.
    """

    def __init__(
        self,
        x: torch.Tensor,
        *,
        start: int = 0,
        stop: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.x = x
        self.n_total = x.shape[0]
        self.offset = int(start)
        stop = x.shape[0] if stop is None else int(stop)
        self.n_obs = stop - self.offset
        self.n_vars = x.shape[1]
        self.chunk_size = max(1, self.n_obs) if chunk_size is None else int(chunk_size)

    def read(self, start: int, stop: int) -> torch.Tensor:
        return self.x[self.offset + start : self.offset + stop]

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        return self.x[rows.to(self.x.device) + self.offset]


def as_source(data) -> TensorSource:
    """A tensor becomes a one-chunk :class:`TensorSource`; a source is returned as it is."""
    return TensorSource(data) if isinstance(data, torch.Tensor) else data


def chunks(source):
    """``(start, stop)`` of each chunk of a source's cells (local indices)."""
    step = max(1, int(source.chunk_size))
    for s in range(0, source.n_obs, step):
        yield s, min(source.n_obs, s + step)


def stream(source, device: torch.device, dtype: torch.dtype = torch.float32):
    """``(start, stop, x)`` for each chunk of a source: ``x`` the chunk's cells, dense, ``dtype``,
    on ``device``. Every solver reads its data through this one loop."""
    for s, e in chunks(source):
        yield s, e, source.read(s, e).to(device=device, dtype=dtype)


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


def all_reduce(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the processes, in place (nothing in one process)."""
    if world()[1] > 1:
        for t in tensors:
            dist.all_reduce(t)


def all_reduce_floats(*values: float, device: torch.device) -> list[float]:
    """Sums of Python floats over the processes."""
    if world()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def comm_device(device: torch.device) -> torch.device:
    """Where tensors must be for a collective: the GPU under nccl, else the CPU."""
    if world()[1] > 1 and dist.get_backend() == "nccl":
        return device
    return torch.device("cpu")


def gather_rows(local: torch.Tensor, n_total: int | None = None) -> torch.Tensor:
    """Every process's block of rows, concatenated in rank order (on every process), on the CPU.

    Blocks may differ in length (e.g. the rows of a random subsample each process holds);
    ``n_total``, when given, is checked against the total.
    """
    rank, size = world()
    if size == 1:
        return local
    dev = comm_device(local.device if local.device.type == "cuda" else torch.device("cuda"))
    n = torch.tensor([local.shape[0]], device=dev)
    counts = [torch.zeros_like(n) for _ in range(size)]
    dist.all_gather(counts, n)
    counts = [int(c) for c in counts]
    if n_total is not None and sum(counts) != n_total:
        msg = f"gather_rows: the processes hold {sum(counts)} rows, expected {n_total}."
        raise RuntimeError(msg)
    pad = torch.zeros((max(counts),) + tuple(local.shape[1:]), dtype=local.dtype, device=dev)
    pad[: local.shape[0]] = local.to(dev)
    parts = [torch.empty_like(pad) for _ in range(size)]
    dist.all_gather(parts, pad)
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]).cpu()
