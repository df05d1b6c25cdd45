"""Sparse and backed (out-of-core) data on the AnnData side: read in chunks, same result as dense."""

import logging

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import regdecoder as rd
import regdecoder._anndata as anndata_mod
from regdecoder._anndata import ExpressionSource


@pytest.fixture(scope="module")
def data():
    return rd.sim.grn(n_obs=2600, n_genes=90, n_tfs=6, density=0.3, noise=0.1, seed=5)


def _write_backed(adata, path):
    adata.write_h5ad(path)
    return ad.read_h5ad(path, backed="r")


def test_fit_and_infer_on_sparse_and_backed_match_dense(data, tmp_path, monkeypatch):
    train, test = rd.pp.split(data, n_test=300, seed=0)
    net = data.uns["sim"]["net"]
    dense = train.copy()
    m_dense = rd.tl.fit_decoder(dense, net=net, recipe={"max_epochs": 10})

    # Record the size of every block the streamed path densifies.
    shapes = []
    dense_fn = ExpressionSource._dense

    def spy(self, block):
        out = dense_fn(self, block)
        shapes.append(out.shape[0])
        return out

    monkeypatch.setattr(ExpressionSource, "_dense", spy)
    monkeypatch.setattr(anndata_mod, "default_chunk_size", lambda n_vars: 256)
    sp = train.copy()
    sp.X = sparse.csr_matrix(sp.X)
    x_before = sp.X.copy()
    m_sp = rd.tl.fit_decoder(sp, net=net, recipe={"max_epochs": 10})
    assert (sp.X != x_before).nnz == 0 and sparse.issparse(sp.X)  # not modified, not densified
    assert shapes and max(shapes) <= 2000 and sorted(shapes)[-2] <= 256  # chunks, and one init subsample
    tr_sp = train.copy()
    tr_sp.X = sparse.csr_matrix(tr_sp.X)
    backed = _write_backed(tr_sp, tmp_path / "train.h5ad")
    m_bk = rd.tl.fit_decoder(backed, net=net, recipe={"max_epochs": 10})
    for a, m in ((sp, m_sp), (backed, m_bk)):
        np.testing.assert_allclose(
            a.obsm["regdecoder"],
            dense.obsm["regdecoder"],
            atol=2e-3 * np.abs(np.asarray(dense.obsm["regdecoder"])).max(),
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
    for adata, seed in ((a, 1), (b, 1), (c, 2)):  # 0.1.0's seeded start: the seed is used
        rd.tl.fit_decoder(adata, net=net, seed=seed, recipe={"preset": "v010", "max_epochs": 4})
    np.testing.assert_array_equal(a.obsm["regdecoder"], b.obsm["regdecoder"])
    assert not np.array_equal(a.obsm["regdecoder"], c.obsm["regdecoder"])
    d, e = sp.copy(), sp.copy()
    for adata, seed in ((d, 1), (e, 2)):  # the default starts at the prior: nothing random
        rd.tl.fit_decoder(adata, net=net, seed=seed, recipe={"max_epochs": 4})
    np.testing.assert_array_equal(d.obsm["regdecoder"], e.obsm["regdecoder"])


def test_streamed_errors(data, tmp_path):
    net = data.uns["sim"]["net"]
    small = data[:300].copy()
    small.X = sparse.csr_matrix(small.X)
    backed = _write_backed(small, tmp_path / "a.h5ad")
    with pytest.raises(ValueError, match="backed on disk"):
        rd.tl.fit_decoder(backed, net=net, recipe={"solver": "gradient"})
    backed.file.close()
    csc = small.copy()
    csc.X = sparse.csc_matrix(csc.X)
    backed_csc = _write_backed(csc, tmp_path / "b.h5ad")
    with pytest.raises(ValueError, match="CSC"):
        rd.tl.fit_decoder(backed_csc, net=net)
    backed_csc.file.close()
    bad = small.copy()
    bad.X.data[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rd.tl.fit_decoder(bad, net=net)


def test_one_progress_bar_and_no_per_chunk_logs(data, capsys, caplog, monkeypatch):
    monkeypatch.setattr(anndata_mod, "default_chunk_size", lambda n_vars: 100)
    monkeypatch.setattr(rd.settings, "progress", True)
    sp = data[:800].copy()
    sp.X = sparse.csr_matrix(sp.X)
    with caplog.at_level(logging.DEBUG, logger="regdecoder"):
        rd.tl.fit_decoder(sp, net=data.uns["sim"]["net"], recipe={"max_epochs": 3})
    err = capsys.readouterr().err
    assert "cell/s" in err or "cells/s" in err or "s/cell" in err  # throughput shown
    assert err.count("fit_decoder (ALS)") >= 1
    assert "latents" in err  # the final latents after the ALS bar have a bar of their own
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info[0].startswith("read 800 cells") and info[-1].startswith("finished fit_decoder")
    assert any(m.startswith("latents of 800 cells") and " in " in m for m in info)  # with its time
    # one line per stage (read, fit, final latents, t-values, finished), none per chunk of the 8
    assert len(info) == len({m.split(" in ")[0] for m in info}) <= 7
