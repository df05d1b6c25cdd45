"""The one censored ALS over chunk sources: the same result whether the cells come as one
chunk, in chunks, or sharded over torch.distributed processes; device placement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import regdecoder as rd
from regdecoder.nn import Decoder, DecoderConfig
from regdecoder.train import TensorSource, fit_als, solve_latents
from regdecoder.train._als import normalise_scale
from regdecoder.train._distributed import launch
from regdecoder.train._source import shard_bounds, world


@pytest.fixture(scope="module")
def data():
    # 2,600 cells: more than the 2,000 the start subsamples, so that path is used.
    return rd.sim.grn(n_obs=2600, n_genes=90, n_tfs=6, density=0.3, noise=0.1, seed=5)


def _decoder(adata, bias):
    prior = rd.pp.prepare_net(adata.uns["sim"]["net"], list(adata.var_names))
    cfg = DecoderConfig(n_genes=adata.n_vars, n_latent=prior.n_latent, bias=bias, masked=True)
    return Decoder(cfg, torch.as_tensor(prior.rows), torch.as_tensor(prior.cols))


def _shard_worker(x: np.ndarray, bias: bool, chunk_size: int | None, decoder_state, config: dict) -> dict:
    """One process of the sharded fit: its block of cells, the same code as in one process.

    Returns numpy arrays only: a torch tensor put on torch's multiprocessing queue travels as a
    handle to the worker's shared memory, which the parent could not open once the worker had
    exited (FileNotFoundError in multiprocessing's resource sharer, at random)."""
    rank, size = world()
    start, stop = shard_bounds(x.shape[0], rank, size)
    rows, cols = decoder_state["layers.0.rows"], decoder_state["layers.0.cols"]
    dec = Decoder(DecoderConfig(**config), rows, cols)
    source = TensorSource(torch.as_tensor(x), start=start, stop=stop, chunk_size=chunk_size)
    z, hist = fit_als(dec, source, max_epochs=12, progress=False, seed=3)
    b = dec.get_bias()
    return {
        "z": z.numpy(),
        "loss": [float(v) for v in hist["loss"]],
        "w": dec.get_weight().numpy(),
        "b": None if b is None else b.numpy(),
    }


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(
    ("chunk_size", "world_size"),
    [(333, 1), (1, 1), pytest.param(None, 2, marks=pytest.mark.slow), pytest.param(333, 2, marks=pytest.mark.slow)],
)
def test_one_als_over_chunks_and_processes(data, bias, chunk_size, world_size):
    x = torch.as_tensor(data.X)
    ref_dec = _decoder(data, bias)
    z_ref, h_ref = fit_als(ref_dec, x, max_epochs=12, progress=False, seed=3)
    if chunk_size == 1:  # one cell per chunk: the extreme of streaming, on fewer cells
        x = x[:300]
        ref_dec = _decoder(data, bias)
        z_ref, h_ref = fit_als(ref_dec, x, max_epochs=12, progress=False, seed=3)
    if world_size == 1:
        dec = _decoder(data, bias)
        z, h = fit_als(dec, TensorSource(x, chunk_size=chunk_size), max_epochs=12, progress=False, seed=3)
        loss, w, b = h["loss"], dec.get_weight(), dec.get_bias()
    else:
        dec = _decoder(data, bias)
        out = launch(
            _shard_worker, x.numpy(), bias, chunk_size, dec.state_dict(), dec.config.to_dict(),
            nprocs=world_size, timeout_s=300,
        )  # fmt: skip
        z = torch.as_tensor(np.concatenate([o["z"] for o in out]))
        loss, w, b = out[0]["loss"], torch.as_tensor(out[0]["w"]), out[0]["b"]
        np.testing.assert_array_equal(out[0]["w"], out[1]["w"])  # the replicas take the same steps
    assert len(loss) == h_ref["epochs"]
    np.testing.assert_allclose(loss, h_ref["loss"], rtol=1e-4)
    assert (z - z_ref).abs().max() < 1e-3 * z_ref.abs().max()
    np.testing.assert_allclose(w, ref_dec.get_weight(), atol=1e-3)
    if bias:
        np.testing.assert_allclose(b, ref_dec.get_bias(), atol=1e-3)


def test_solve_latents_over_chunks_equals_one_solve(data):
    w = torch.randn(data.n_vars, 6, generator=torch.Generator().manual_seed(0))
    x = torch.as_tensor(data.X)
    ref, info = solve_latents(x, w, None, relu=True)
    out, info_chunks = solve_latents(TensorSource(x, chunk_size=500), w, None, relu=True)
    assert torch.equal(info["n_iter"], info_chunks["n_iter"]) and bool(info["converged"].all())
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_shard_bounds_cover_all_cells():
    for n, size in [(10, 3), (2, 4), (1000, 7)]:
        bounds = [shard_bounds(n, r, size) for r in range(size)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_scale_normalisation_keeps_latents_on_their_device():
    # The crash on a GPU: a latent table paged on the host met weights on the device in the
    # scale step after training. Here the 'meta' device stands for the other device: any
    # arithmetic that mixes the two raises, as cuda/cpu mixing does.
    w = torch.randn(7, 3)
    mask = torch.ones(7, 3, dtype=torch.bool)
    z = torch.empty(5, 3, device="meta")
    w2, z2 = normalise_scale(w, z, mask)
    assert w2.device.type == "cpu" and z2.device.type == "meta"
    np.testing.assert_allclose((w2**2).mean(0), np.ones(3), rtol=1e-5)


def test_latent_tables_paged_on_the_host_give_the_same_fit(data):
    x = torch.as_tensor(data.X[:500])
    d1, d2 = _decoder(data, False), _decoder(data, False)
    z1, _ = fit_als(d1, x, max_epochs=5, progress=False)
    z2, _ = fit_als(d2, TensorSource(x, chunk_size=64), max_epochs=5, progress=False, tables_on="cpu")
    np.testing.assert_allclose(z1, z2, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_paged_latent_table_on_cuda(data):
    x = torch.as_tensor(data.X)
    d1, d2 = _decoder(data, False).cuda(), _decoder(data, False).cuda()
    z1, _ = fit_als(d1, TensorSource(x, chunk_size=500), max_epochs=5, progress=False)
    z2, _ = fit_als(d2, TensorSource(x, chunk_size=500), max_epochs=5, progress=False, tables_on="cpu")
    assert z1.device.type == "cuda" and z2.device.type == "cpu"
    np.testing.assert_allclose(z1.cpu(), z2, rtol=1e-4, atol=1e-4)
