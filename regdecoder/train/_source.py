"""Where the cells come from: the chunk-source protocol, where data live, and the process group.

Every solver reads cells through a *source*: an object with

* ``n_obs`` (cells this process holds), ``n_vars`` (genes), ``n_total`` (cells over all
  processes) and ``offset`` (global index of this process's first cell);
* ``chunk_size``: how many cells to read at once (in memory: all of them, one chunk);
* ``read(start, stop) -> Tensor``: dense float32 rows ``start:stop`` of this process's
  block (local indices);
* ``take(rows) -> Tensor``: dense rows at sorted local indices;
* optionally ``device``: where it holds its cells as tensors (``read`` returns blocks there);
* optionally ``resident(device) -> source``: the source to read from when computing on
  ``device``, e.g. the same cells moved there once (see :func:`moves_to_device`), or itself.

:class:`TensorSource` holds a dense tensor (one chunk, or a shard of it); :class:`CSRSource`
a torch sparse CSR tensor, each chunk made dense with torch ops where the tensor lives. The
AnnData side (:mod:`regdecoder._anndata`) provides a source over dense, scipy-sparse and
backed matrices that reads chunks of cells, checks each chunk once, and moves sparse data
that fit to the compute device once.

Every solver reads its data through one loop, :func:`stream`. It reads a source that does
not hold its cells on the compute device (a file, scipy, host memory for a GPU) one chunk
ahead in a background thread, so that reading, densifying and (on a GPU) the copy from
pinned host memory overlap the work on the current chunk; chunks come in the same order
with the same values either way, so every result is the same.

With ``torch.distributed`` initialised, each process holds one contiguous block of
cells (:func:`shard_bounds`); the solvers sum their statistics with :func:`all_reduce`,
which is a no-op in one process.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

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

    @property
    def device(self) -> torch.device:
        """Where the tensor is (its chunks are read there)."""
        return self.x.device

    def read(self, start: int, stop: int) -> torch.Tensor:
        return self.x[self.offset + start : self.offset + stop]

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        return self.x[rows.to(self.x.device) + self.offset]


# ------------------------------------------------------------------ sparse data held as torch CSR
_INT32_MAX = 2**31 - 1


def csr_tensor(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A torch sparse CSR tensor from its three arrays, on their device, without torch's warnings.

    Parameters
    ----------
    crow, col, values
        Row pointers (``n_rows + 1``), column indices and values (``nnz`` each); the two
        index arrays of one integer type (int32 or int64), as torch requires.
    shape
        ``(n_rows, n_cols)``.

    Returns
    -------
    The CSR tensor (its invariants are not checked: the arrays come from a valid CSR).
    """
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state" (the suite makes warnings errors)
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def csr_index_dtype(nnz: int, n_cols: int) -> torch.dtype:
    """int32 indices when they fit (half the bytes of int64), else int64."""
    return torch.int32 if max(nnz, n_cols) <= _INT32_MAX else torch.int64


def csr_nbytes(nnz: int, n_rows: int, n_cols: int) -> int:
    """Bytes of a float32 torch CSR tensor: values, column indices and row pointers."""
    idx = 4 if csr_index_dtype(nnz, n_cols) == torch.int32 else 8
    return nnz * (4 + idx) + (n_rows + 1) * idx


class CSRSource:
    """A source over a torch sparse CSR tensor: each read makes its rows dense with torch ops
    where the tensor lives (the GPU for data moved there once), without a Python loop per row.

    Parameters
    ----------
    x
        This process's block of cells x genes, ``torch.sparse_csr`` layout, each position
        stored at most once (a canonical CSR: no duplicate entries); values of any floating
        type (read as float32).
    offset
        Global index of the block's first cell (``torch.distributed``).
    n_total
        Cells over all processes; default: the block's.
    chunk_size
        Cells per chunk; default: :func:`default_chunk_size`.

    Raises
    ------
    TypeError
        ``x`` is not a sparse CSR tensor.
    """

    def __init__(
        self, x: torch.Tensor, *, offset: int = 0, n_total: int | None = None, chunk_size: int | None = None
    ) -> None:
        if x.layout != torch.sparse_csr or x.dim() != 2:
            msg = f"CSRSource needs a 2-d torch.sparse_csr tensor, got layout {x.layout} with {x.dim()} dimensions."
            raise TypeError(msg)
        self.x = x
        self.n_obs, self.n_vars = int(x.shape[0]), int(x.shape[1])
        self.offset = int(offset)
        self.n_total = self.n_obs if n_total is None else int(n_total)
        self.chunk_size = default_chunk_size(self.n_vars) if chunk_size is None else max(1, int(chunk_size))
        self._crow = x.crow_indices()
        self._col = x.col_indices()
        self._val = x.values()
        # the row pointers on the host too: a chunk's bounds in the arrays without a device sync
        self._crow_host = self._crow.to("cpu", torch.int64)

    @property
    def device(self) -> torch.device:
        """Where the CSR tensor is (its chunks are made dense there)."""
        return self.x.device

    def _dense(self, counts: torch.Tensor, col: torch.Tensor, val: torch.Tensor, n_rows: int) -> torch.Tensor:
        """Rows given by their stored entries (``counts`` per row, then their columns and values), dense."""
        g = self.n_vars
        idx = torch.int32 if n_rows * g <= _INT32_MAX else torch.int64
        # position of each entry in the flattened block: its row's start (row * g), plus its column
        pos = torch.repeat_interleave(
            torch.arange(0, n_rows * g, g, dtype=idx, device=self.device), counts, output_size=col.numel()
        )
        pos += col.to(idx)
        out = torch.zeros(n_rows * g, dtype=torch.float32, device=self.device)
        out.index_put_((pos,), val.to(torch.float32))  # each position once: no accumulation needed
        return out.view(n_rows, g)

    def read(self, start: int, stop: int) -> torch.Tensor:
        a, b = int(self._crow_host[start]), int(self._crow_host[stop])
        counts = self._crow[start + 1 : stop + 1] - self._crow[start:stop]
        return self._dense(counts, self._col[a:b], self._val[a:b], stop - start)

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.to("cpu", torch.int64)
        first = self._crow_host[rows]
        counts = self._crow_host[rows + 1] - first
        total = int(counts.sum())
        # where each taken row's entries start in the output, and the entries' positions in the arrays
        out_first = torch.cumsum(counts, 0) - counts
        pos = torch.arange(total) + torch.repeat_interleave(first - out_first, counts, output_size=total)
        pos = pos.to(self.device)
        return self._dense(counts.to(self.device), self._col[pos], self._val[pos], rows.numel())


# ------------------------------------------------------------------ where data live
#: Data are moved to the compute device once when they take under this fraction of its free
#: memory (the same share :func:`~regdecoder.train._als.table_device` gives the latent tables).
RESIDENT_FRACTION = 0.25


def moves_to_device(device: torch.device | str, nbytes: int) -> bool:
    """Where sparse data live: whether they move to ``device`` once, as a torch CSR tensor
    that every pass reads there, or stay where they are (in host memory, or on disk) and are
    streamed every pass. The one place this is decided.

    On a GPU they move when they take under :data:`RESIDENT_FRACTION` of its free memory:
    a pass then reads no file, densifies nothing on the CPU and copies nothing to the GPU.

    On the CPU they stay. Measured on 100,000 cells x 2,000 genes at 17% nonzero on 2 cores
    (``benchmarks/read_speed.py``, several runs): a pass of scipy's ``toarray`` over the six
    chunks took 0.11-0.23 s, of the torch CSR 0.32-0.73 s (each of its large temporaries is
    fresh memory the kernel faults in page by page), and :func:`stream` reads scipy's next
    chunk in the background while the solver works on this one. A backed file that would
    fit in memory stays on disk too: after the first pass it is in the page cache, a chunk
    of 16,777 cells reads in ~15-20 ms (~115 ms gzip-compressed), read ahead as well, and
    loading it would hold a second copy of it.

    Parameters
    ----------
    device
        The compute device.
    nbytes
        Bytes of the data as a float32 torch CSR tensor (:func:`csr_nbytes`).

    Returns
    -------
    True when they move.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes < RESIDENT_FRACTION * free
    return False


# ------------------------------------------------------------------ the one read loop
def as_source(data) -> TensorSource:
    """A tensor becomes a one-chunk :class:`TensorSource`; a source is returned as it is."""
    return TensorSource(data) if isinstance(data, torch.Tensor) else data


def chunks(source):
    """``(start, stop)`` of each chunk of a source's cells (local indices)."""
    step = max(1, int(source.chunk_size))
    for s in range(0, source.n_obs, step):
        yield s, min(source.n_obs, s + step)


def _holds(source, device: torch.device) -> bool:
    """Whether a source holds its cells as tensors on ``device`` (reading is then cheap work there)."""
    where = getattr(source, "device", None)
    if where is None:
        return False
    where = torch.device(where)
    if where.type == "cuda" and where.index is None:
        where = torch.device("cuda", torch.cuda.current_device())
    return where == device


def stream(source, device: torch.device | str, dtype: torch.dtype = torch.float32):
    """``(start, stop, x)`` for each chunk of a source: ``x`` the chunk's cells, dense, ``dtype``,
    on ``device``. Every solver reads its data through this one loop.

    A source that can (``resident``) first gives the source to read on ``device``: sparse data
    that fit there are moved once (:func:`moves_to_device`), and every pass reads them there.
    A source that does not hold its cells on ``device`` and has more than one chunk is read
    one chunk ahead in a background thread (:func:`_read_ahead`).

    Parameters
    ----------
    source
        A source (see the module's docstring) or a tensor.
    device
        The compute device.
    dtype
        The chunks' dtype.

    Returns
    -------
    A generator of ``(start, stop, x)``, the chunks in order; the same values whether read
    ahead or not.

    Raises
    ------
    Exception
        Whatever reading a chunk raises (e.g. the checks of backed data), with its type and
        message, when that chunk is reached.
    """
    source = as_source(source)
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    resident = getattr(source, "resident", None)
    if resident is not None:
        source = resident(device)
    bounds = list(chunks(source))
    if len(bounds) > 1 and not _holds(source, device):
        yield from _read_ahead(source, bounds, device, dtype)
        return
    for s, e in bounds:
        yield s, e, source.read(s, e).to(device=device, dtype=dtype)


def _read_ahead(source, bounds: list[tuple[int, int]], device: torch.device, dtype: torch.dtype):
    """The chunks ``bounds`` of ``source`` on ``device``, each read while the caller works on the one before.

    One background thread reads the chunks in order, one ahead of the caller (so the order,
    and every value, is that of a plain loop). On a GPU the thread also pins the host block
    and enqueues its copy on a side CUDA stream; the caller's stream waits for that copy
    before its first use of the chunk, and the chunk's memory is marked as used by the
    caller's stream (``record_stream``) so that the allocator does not hand it to the side
    stream while the caller still works on it. An error raised while reading a chunk is
    raised to the caller, unchanged, when it asks for that chunk.
    """
    side = torch.cuda.Stream(device) if device.type == "cuda" else None

    def load(s: int, e: int):
        if side is None:
            return source.read(s, e).to(device=device, dtype=dtype), None
        with torch.cuda.device(device), torch.cuda.stream(side):  # any CUDA work of the read on the side stream too
            x = source.read(s, e)
            if x.device.type == "cpu":
                x = x.pin_memory()  # an asynchronous copy needs page-locked memory
            # the pinned block may be freed after this: the host allocator keeps it until the copy is done
            x = x.to(device=device, non_blocking=True).to(dtype)
            ready = torch.cuda.Event()
            ready.record(side)
        return x, ready

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="regdecoder-read") as pool:
        ahead = pool.submit(load, *bounds[0])
        try:
            for i, (s, e) in enumerate(bounds):
                x, ready = ahead.result()  # re-raises the reader's exception as it was
                if i + 1 < len(bounds):
                    ahead = pool.submit(load, *bounds[i + 1])
                if ready is not None:
                    current = torch.cuda.current_stream(device)
                    current.wait_event(ready)
                    x.record_stream(current)
                yield s, e, x
        finally:  # the caller stopped early, or a read failed: read nothing more
            ahead.cancel()


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
