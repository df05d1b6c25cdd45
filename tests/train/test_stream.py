"""The one read loop (``stream``): a torch CSR source gives the dense rows scipy gives, reading
one chunk ahead changes neither the chunks nor their order, and a reader's error reaches the
caller as it was raised."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from scipy import sparse

import regdecoder as rd
from regdecoder.nn import Decoder, DecoderConfig
from regdecoder.train import CSRSource, TensorSource, fit_als
from regdecoder.train._source import chunks, csr_tensor, moves_to_device, stream


def _random_csr(n: int, g: int, dtype, seed: int = 0) -> sparse.csr_matrix:
    """A CSR with empty rows (a run of them, and the last) and values of ``dtype``."""
    rng = np.random.default_rng(seed)
    x = sparse.random(n, g, density=0.2, format="csr", random_state=rng, dtype=np.float64)
    x.data = (x.data * 10 + 1).astype(dtype)
    dense = x.toarray()
    dense[[3, 4, 5, 6, n - 1]] = 0
    return sparse.csr_matrix(dense.astype(dtype))


def _torch_csr(x: sparse.csr_matrix, cols: np.ndarray | None, index: torch.dtype) -> torch.Tensor:
    """``x`` (columns in data order) as a torch CSR in the order ``cols`` (the model's gene j is data column cols[j])."""
    indices = x.indices if cols is None else np.argsort(cols)[x.indices]
    return csr_tensor(
        torch.from_numpy(x.indptr).to(index),
        torch.from_numpy(indices).to(index),
        torch.from_numpy(x.data),
        x.shape,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("index", [torch.int32, torch.int64])
@pytest.mark.parametrize("reorder", [False, True])
def test_csr_source_reads_what_scipy_gives(dtype, index, reorder):
    x = _random_csr(257, 41, dtype)
    cols = np.random.default_rng(1).permutation(41) if reorder else None
    ref = x.toarray().astype(np.float32)
    if cols is not None:
        ref = ref[:, cols]
    src = CSRSource(_torch_csr(x, cols, index), chunk_size=50)
    assert (src.n_obs, src.n_vars, src.n_total, src.offset, src.chunk_size) == (257, 41, 257, 0, 50)
    for s, e in [*chunks(src), (0, 257), (3, 7), (4, 5), (10, 10), (256, 257), (0, 0)]:
        block = src.read(s, e)
        assert block.dtype == torch.float32 and block.shape == (e - s, 41)
        assert torch.equal(block, torch.from_numpy(ref[s:e])), (s, e)
    for rows in ([0, 3, 4, 5, 100, 256], [], [6], list(range(257))):
        rows = torch.tensor(rows, dtype=torch.long)
        assert torch.equal(src.take(rows), torch.from_numpy(ref[rows.numpy()])), rows


def test_csr_source_of_an_empty_matrix_and_a_shard():
    empty = sparse.csr_matrix((6, 4), dtype=np.float32)
    src = CSRSource(_torch_csr(empty, None, torch.int32), chunk_size=4)
    assert [(s, e, x.abs().sum().item()) for s, e, x in stream(src, "cpu")] == [(0, 4, 0.0), (4, 6, 0.0)]
    shard = CSRSource(_torch_csr(empty, None, torch.int64), offset=10, n_total=30)
    assert (shard.offset, shard.n_total, shard.n_obs) == (10, 30, 6)
    with pytest.raises(TypeError, match="sparse_csr"):
        CSRSource(torch.zeros(3, 3))


def test_data_stay_on_the_cpu():
    assert not moves_to_device("cpu", 1)


class _Recorder:
    """A source with no ``device`` (so ``stream`` reads it ahead): 5 chunks of a tensor,
    recording which thread read which chunk, optionally failing at one chunk."""

    def __init__(self, x: torch.Tensor, chunk_size: int, fail_at: int | None = None, error=ValueError) -> None:
        self.x, self.chunk_size, self.fail_at, self.error = x, chunk_size, fail_at, error
        self.n_obs = self.n_total = x.shape[0]
        self.n_vars, self.offset = x.shape[1], 0
        self.reads: list[tuple[int, str]] = []
        self.done = {s: threading.Event() for s in range(0, self.n_obs, chunk_size)}

    def read(self, start: int, stop: int) -> torch.Tensor:
        self.reads.append((start, threading.current_thread().name))
        if self.fail_at is not None and start == self.fail_at * self.chunk_size:
            raise self.error(f"cannot read chunk {self.fail_at} (cells {start}:{stop})")
        out = self.x[start:stop].clone()
        self.done[start].set()
        return out

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        return self.x[rows]


def test_reading_ahead_gives_the_chunks_of_the_plain_loop_in_order():
    x = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    src = _Recorder(x, chunk_size=10)
    got = []
    for s, e, xc in stream(src, "cpu", torch.float64):
        if e < src.n_obs:  # the next chunk is read while this one is worked on
            assert src.done[e].wait(timeout=30), "the next chunk was not read ahead"
        got.append((s, e, xc))
    plain = [(s, e, x[s:e].to(torch.float64)) for s, e in chunks(src)]
    assert (
        [(s, e) for s, e, _ in got]
        == [(s, e) for s, e, _ in plain]
        == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]
    )
    assert all(torch.equal(a[2], b[2]) and a[2].dtype == torch.float64 for a, b in zip(got, plain, strict=True))
    assert [s for s, _ in src.reads] == [0, 10, 20, 30, 40]  # each chunk read once, in order
    assert all(name.startswith("regdecoder-read") for _, name in src.reads)


class _ChunkError(RuntimeError):
    pass


@pytest.mark.parametrize("error", [ValueError, _ChunkError])
def test_an_error_reading_chunk_3_of_5_reaches_the_caller_as_raised(error):
    src = _Recorder(torch.ones(50, 3), chunk_size=10, fail_at=3, error=error)
    seen = []
    with pytest.raises(error, match=r"^cannot read chunk 3 \(cells 30:40\)$") as info:
        for s, _, _ in stream(src, "cpu"):
            seen.append(s)
    assert type(info.value) is error
    assert seen == [0, 10, 20]  # the chunks before it were worked on, as without reading ahead
    assert [s for s, _ in src.reads] == [0, 10, 20, 30]  # nothing read after the failure


def test_stopping_early_stops_the_reader():
    src = _Recorder(torch.ones(50, 3), chunk_size=10)
    gen = stream(src, "cpu")
    for s, _, _ in gen:
        if s == 10:
            break
    gen.close()  # waits for the chunk in flight
    n = len(src.reads)
    assert n <= 3  # chunks 0 and 1, and at most the one read ahead
    assert not any(t.name.startswith("regdecoder-read") for t in threading.enumerate())
    assert len(src.reads) == n


def test_data_on_the_compute_device_are_read_in_line():
    names = []

    class Spy(TensorSource):
        def read(self, start, stop):
            names.append(threading.current_thread().name)
            return super().read(start, stop)

    list(stream(Spy(torch.ones(30, 2), chunk_size=10), "cpu"))
    x = _random_csr(30, 5, np.float32)
    src = CSRSource(_torch_csr(x, None, torch.int32), chunk_size=10)
    src.read = lambda s, e, f=src.read: names.append(threading.current_thread().name) or f(s, e)
    list(stream(src, "cpu"))
    assert names == [threading.current_thread().name] * 6


def _decoder(adata):
    prior = rd.pp.prepare_net(adata.uns["sim"]["net"], list(adata.var_names))
    cfg = DecoderConfig(n_genes=adata.n_vars, n_latent=prior.n_latent, bias=True, masked=True)
    return Decoder(cfg, torch.as_tensor(prior.rows), torch.as_tensor(prior.cols))


def test_fit_als_on_a_csr_source_is_the_fit_on_the_dense_chunks():
    data = rd.sim.grn(n_obs=700, n_genes=60, n_tfs=5, density=0.3, noise=0.1, seed=2)
    x = sparse.csr_matrix(data.X.astype(np.float32))
    d1, d2, d3 = _decoder(data), _decoder(data), _decoder(data)
    z1, h1 = fit_als(d1, TensorSource(torch.as_tensor(x.toarray()), chunk_size=128), max_epochs=6, progress=False)
    z2, h2 = fit_als(d2, CSRSource(_torch_csr(x, None, torch.int32), chunk_size=128), max_epochs=6, progress=False)
    z3, h3 = fit_als(d3, _Recorder(torch.as_tensor(x.toarray()), 128), max_epochs=6, progress=False)
    for z, h, d in ((z2, h2, d2), (z3, h3, d3)):
        assert torch.equal(z, z1) and h["loss"] == h1["loss"]
        assert torch.equal(d.get_weight(), d1.get_weight())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_csr_and_read_ahead_give_the_cpu_chunks():
    x = _random_csr(3000, 77, np.float32)
    cols = np.random.default_rng(2).permutation(77)
    ref = torch.from_numpy(x.toarray()[:, cols])
    src = CSRSource(_torch_csr(x, cols, torch.int32).to("cuda"), chunk_size=700)
    assert src.device.type == "cuda"
    for s, e, xc in stream(src, "cuda"):
        assert xc.device.type == "cuda" and torch.equal(xc.cpu(), ref[s:e])
    assert torch.equal(src.take(torch.tensor([0, 5, 2999])).cpu(), ref[[0, 5, 2999]])
    host = _Recorder(ref, 700)  # read on the host, pinned, copied on a side stream
    got = [(s, e, xc * 2) for s, e, xc in stream(host, "cuda")]
    torch.cuda.synchronize()
    assert [(s, e) for s, e, _ in got] == list(chunks(host))
    assert all(torch.equal(xc.cpu(), 2 * ref[s:e]) for s, e, xc in got)
    assert moves_to_device("cuda", 1)
