"""Sparse and backed (out-of-core) data: the streamed ALS against the in-memory ALS."""

import logging

import anndata as ad
import numpy as np
import pytest
import torch
from scipy import sparse

import regdecoder as rd
import regdecoder.train._stream as stream_mod
from regdecoder.nn import Decoder, DecoderConfig
from regdecoder.tl._scale import MatrixSource
from regdecoder.tl._validate import prepare_net
from regdecoder.train import fit_als
from regdecoder.train._stream import TensorSource, fit_als_stream, infer_stream, shard_bounds


@pytest.fixture(scope="module")
def data():
    # 2,600 cells: more than the 2,000 the initialisation subsamples, so that path is used.
    return rd.sim.grn(n_obs=2600, n_genes=90, n_tfs=6, density=0.3, noise=0.1, seed=5)


def _decoder(adata, bias):
    _, names, rows, cols, _ = prepare_net(
        adata.uns["sim"]["net"], list(adata.var_names), source="source", target="target", weight="weight", tmin=5
    )
    cfg = DecoderConfig(n_genes=adata.n_vars, n_latent=len(names), bias=bias, masked=True)
    return Decoder(cfg, torch.as_tensor(rows), torch.as_tensor(cols))


@pytest.mark.parametrize("bias", [False, True])
def test_stream_equals_in_memory_als(data, bias):
    x = torch.as_tensor(data.X)
    d_ref, d_str = _decoder(data, bias), _decoder(data, bias)
    z_ref, h_ref = fit_als(d_ref, x, max_epochs=12, progress=False, seed=3)
    z_str, h_str = fit_als_stream(d_str, TensorSource(x), max_epochs=12, chunk_size=333, progress=False, seed=3)
    assert h_ref["epochs"] == h_str["epochs"]
    np.testing.assert_allclose(h_str["loss"], h_ref["loss"], rtol=1e-4)
    scale = z_ref.abs().max()
    assert (z_str - z_ref).abs().max() < 1e-3 * scale
    np.testing.assert_allclose(d_str.get_weight(), d_ref.get_weight(), atol=1e-3)
    if bias:
        np.testing.assert_allclose(d_str.get_bias(), d_ref.get_bias(), atol=1e-3)


def test_infer_stream_equals_solve_latents(data):
    w = torch.randn(data.n_vars, 6)
    x = torch.as_tensor(data.X)
    ref, _ = rd.train.solve_latents(x, w, None, relu=True, n_iter=20, tol=0.0)
    out, rounds, rate = infer_stream(
        TensorSource(x), w, None, relu=True, n_iter=20, tol=0.0, chunk_size=500, progress=False
    )
    assert rounds == 20 and rate > 0
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_shard_bounds_cover_all_cells():
    for n, size in [(10, 3), (2, 4), (1000, 7)]:
        bounds = [shard_bounds(n, r, size) for r in range(size)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def _write_backed(adata, path):
    adata.write_h5ad(path)
    return ad.read_h5ad(path, backed="r")


def test_fit_and_infer_on_sparse_and_backed_match_dense(data, tmp_path, monkeypatch):
    train, test = rd.pp.split(data, n_test=300, seed=0)
    net = data.uns["sim"]["net"]
    dense = train.copy()
    m_dense = rd.tl.fit_decoder(dense, net=net, max_epochs=10, progress=False)

    # Record the size of every block the streamed path densifies.
    shapes = []
    dense_fn = MatrixSource._dense

    def spy(self, block):
        out = dense_fn(self, block)
        shapes.append(out.shape[0])
        return out

    monkeypatch.setattr(MatrixSource, "_dense", spy)
    monkeypatch.setattr(stream_mod, "default_chunk_size", lambda n_vars: 256)
    sp = train.copy()
    sp.X = sparse.csr_matrix(sp.X)
    x_before = sp.X.copy()
    m_sp = rd.tl.fit_decoder(sp, net=net, max_epochs=10, progress=False)
    assert (sp.X != x_before).nnz == 0 and sparse.issparse(sp.X)  # not modified, not densified
    assert shapes and max(shapes) <= 2000 and sorted(shapes)[-2] <= 256  # chunks, and one init subsample
    tr_sp = train.copy()
    tr_sp.X = sparse.csr_matrix(tr_sp.X)
    backed = _write_backed(tr_sp, tmp_path / "train.h5ad")
    m_bk = rd.tl.fit_decoder(backed, net=net, max_epochs=10, progress=False)
    for a, m in ((sp, m_sp), (backed, m_bk)):
        np.testing.assert_allclose(
            a.obsm["regdecoder"], dense.obsm["regdecoder"], atol=2e-3 * np.abs(dense.obsm["regdecoder"]).max()
        )
        np.testing.assert_allclose(m.weights, m_dense.weights, atol=2e-3)
        assert a.uns["regdecoder"]["load"]["n_cells"] == train.n_obs
    backed.file.close()

    # inference: sparse, backed (with shuffled genes) and dense agree
    ref = rd.tl.infer(test, m_dense, copy=True).obsm["regdecoder"]
    t_sp = test.copy()
    t_sp.X = sparse.csr_matrix(t_sp.X)
    t_sp = t_sp[:, np.random.default_rng(0).permutation(test.n_vars)].copy()
    rd.tl.infer(t_sp, m_dense)
    np.testing.assert_allclose(t_sp.obsm["regdecoder"], ref, rtol=1e-4, atol=1e-4)
    t_bk = _write_backed(t_sp, tmp_path / "test.h5ad")
    rd.tl.infer(t_bk, m_dense)
    np.testing.assert_allclose(t_bk.obsm["regdecoder"], ref, rtol=1e-4, atol=1e-4)
    t_bk.file.close()


def test_streamed_fit_is_seeded(data):
    sp = data[:600].copy()
    sp.X = sparse.csr_matrix(sp.X)
    net = data.uns["sim"]["net"]
    a, b, c = sp.copy(), sp.copy(), sp.copy()
    for adata, seed in ((a, 1), (b, 1), (c, 2)):
        rd.tl.fit_decoder(adata, net=net, max_epochs=4, seed=seed, progress=False)
    np.testing.assert_array_equal(a.obsm["regdecoder"], b.obsm["regdecoder"])
    assert not np.array_equal(a.obsm["regdecoder"], c.obsm["regdecoder"])


def test_streamed_errors(data, tmp_path):
    net = data.uns["sim"]["net"]
    small = data[:300].copy()
    small.X = sparse.csr_matrix(small.X)
    backed = _write_backed(small, tmp_path / "a.h5ad")
    with pytest.raises(ValueError, match="backed on disk"):
        rd.tl.fit_decoder(backed, net=net, solver="gradient", progress=False)
    backed.file.close()
    csc = small.copy()
    csc.X = sparse.csc_matrix(csc.X)
    backed_csc = _write_backed(csc, tmp_path / "b.h5ad")
    with pytest.raises(ValueError, match="CSC"):
        rd.tl.fit_decoder(backed_csc, net=net, progress=False)
    backed_csc.file.close()
    bad = small.copy()
    bad.X.data[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rd.tl.fit_decoder(bad, net=net, progress=False)


def test_one_progress_bar_and_no_per_chunk_logs(data, capsys, caplog, monkeypatch):
    monkeypatch.setattr(stream_mod, "default_chunk_size", lambda n_vars: 100)
    sp = data[:800].copy()
    sp.X = sparse.csr_matrix(sp.X)
    with caplog.at_level(logging.DEBUG, logger="regdecoder"):
        rd.tl.fit_decoder(sp, net=data.uns["sim"]["net"], max_epochs=3, progress=True)
    err = capsys.readouterr().err
    assert "cell/s" in err or "cells/s" in err or "s/cell" in err  # throughput shown
    assert err.count("fit_decoder (ALS, streamed)") >= 1
    assert {r.getMessage().split()[0] for r in caplog.records} <= {"fitting", "finished"}
    assert len(caplog.records) == 2  # one line at the start, one at the end: none per chunk


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_paged_latent_table_on_cuda(data):
    x = torch.as_tensor(data.X)
    d1, d2 = _decoder(data, False).cuda(), _decoder(data, False).cuda()
    z1, _ = fit_als_stream(d1, TensorSource(x), max_epochs=5, progress=False)
    z2, _ = fit_als_stream(d2, TensorSource(x), max_epochs=5, progress=False, table_device="cpu")
    assert z1.device.type == "cuda" and z2.device.type == "cpu"
    np.testing.assert_allclose(z1.cpu(), z2, rtol=1e-4, atol=1e-4)
