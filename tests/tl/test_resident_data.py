"""Where the data live: sparse data moved once to the compute device (a torch CSR) read as
scipy reads them; dense, in-memory sparse, backed and device-resident data give one fit; the
checks of backed data run once, before training, and still name the cell."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch
from scipy import sparse

import regdecoder as rd
import regdecoder._anndata as anndata_mod
from regdecoder.train import CSRSource
from regdecoder.train._source import chunks, stream


@pytest.fixture(scope="module")
def data():
    return rd.sim.grn(n_obs=600, n_genes=70, n_tfs=5, density=0.3, noise=0.1, seed=4)


@pytest.fixture
def on_device(monkeypatch):
    """Sparse data move to the compute device (here the CPU) as a torch CSR, as they do to a GPU they fit on."""
    monkeypatch.setattr(anndata_mod, "moves_to_device", lambda device, nbytes: True)


def _backed(adata, path):
    adata = adata.copy()
    adata.uns.pop("sim", None)
    adata.write_h5ad(path)
    return ad.read_h5ad(path, backed="r")


def _sparse(adata, dtype=np.float32):
    out = adata.copy()
    out.X = sparse.csr_matrix(out.X.astype(dtype))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("kind", ["memory", "backed"])
def test_device_csr_reads_what_the_scipy_path_reads(data, tmp_path, monkeypatch, on_device, dtype, kind):
    monkeypatch.setattr(anndata_mod, "default_chunk_size", lambda n_vars: 128)
    x = np.ceil(data.X * 5) if dtype == np.int32 else data.X.copy()
    x[10:15] = 0  # empty cells
    a = data.copy()
    a.X = sparse.csr_matrix(x.astype(dtype))
    genes = list(np.random.default_rng(0).permutation(a.var_names))  # the model's order is not the file's
    if kind == "backed":
        a = _backed(a, tmp_path / "a.h5ad")
    scipy_src = anndata_mod.read(a, genes=genes)
    device_src = anndata_mod.read(a, genes=genes).resident("cpu")
    assert isinstance(device_src, CSRSource) and device_src.chunk_size == 128
    assert list(chunks(device_src)) == list(chunks(scipy_src))
    for s, e in [*chunks(scipy_src), (10, 15), (0, 600), (33, 33)]:
        assert torch.equal(device_src.read(s, e), scipy_src.read(s, e)), (s, e)
    rows = torch.tensor([0, 10, 11, 14, 15, 599])
    assert torch.equal(device_src.take(rows), scipy_src.take(rows))
    if kind == "backed":
        a.file.close()


def test_duplicate_entries_are_summed_as_scipy_sums_them(on_device):
    x = sparse.csr_matrix((np.array([1.5, 2.0, 4.0]), np.array([1, 1, 0]), np.array([0, 2, 3])), shape=(2, 3))
    assert not x.has_canonical_format
    a = ad.AnnData(x)
    src = anndata_mod.read(a)
    assert torch.equal(src.resident("cpu").read(0, 2), src.read(0, 2))
    assert src.read(0, 2)[0, 1] == 3.5


def test_a_source_moves_once_and_stays_on_the_cpu_by_default(data):
    src = anndata_mod.read(_sparse(data))
    assert src.resident("cpu") is src  # on the CPU scipy's toarray is the faster densify
    dense = anndata_mod.read(data)
    assert dense.resident("cpu") is dense and dense.chunk_size == data.n_obs  # dense data: one chunk, as they are


def test_device_csr_is_built_once(data, on_device):
    src = anndata_mod.read(_sparse(data))
    first = src.resident("cpu")
    assert src.resident("cpu") is first
    list(stream(src, "cpu"))
    assert src.resident("cpu") is first


def _fit(adata, net, **kw):
    rd.tl.fit_decoder(adata, net=net, recipe={"max_epochs": 8}, **kw)
    return adata.obsm["regdecoder"].to_numpy(), adata.obsm["regdecoder_z"].to_numpy()


def test_fit_is_the_same_on_dense_sparse_backed_and_device_data(data, tmp_path, monkeypatch):
    net = data.uns["sim"]["net"]
    ref_t, ref_z = _fit(data.copy(), net)
    sp = _sparse(data)
    results = {"sparse": _fit(sp.copy(), net)}
    backed = _backed(sp, tmp_path / "a.h5ad")
    results["backed"] = _fit(backed, net)
    monkeypatch.setattr(anndata_mod, "moves_to_device", lambda device, nbytes: True)
    results["sparse on the device"] = _fit(sp.copy(), net)
    results["backed on the device"] = _fit(backed, net)
    backed.file.close()
    for name, (t, z) in results.items():
        np.testing.assert_allclose(z, ref_z, rtol=0, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(t, ref_t, rtol=0, atol=1e-6, err_msg=name)


def test_fit_in_chunks_is_the_same_wherever_the_sparse_data_live(data, tmp_path, monkeypatch):
    monkeypatch.setattr(anndata_mod, "default_chunk_size", lambda n_vars: 100)  # 6 chunks, read ahead
    net = data.uns["sim"]["net"]
    sp = _sparse(data)
    ref = _fit(sp.copy(), net)
    backed = _backed(sp, tmp_path / "a.h5ad")
    got = {"backed": _fit(backed, net)}
    monkeypatch.setattr(anndata_mod, "moves_to_device", lambda device, nbytes: True)
    got["sparse on the device"] = _fit(sp.copy(), net)
    got["backed on the device"] = _fit(backed, net)
    backed.file.close()
    for name, (t, z) in got.items():  # the same chunks in the same order: the same arithmetic
        np.testing.assert_array_equal(z, ref[1], err_msg=name)
        np.testing.assert_array_equal(t, ref[0], err_msg=name)


@pytest.mark.parametrize("where", ["streamed", "moved once"])
def test_nan_in_a_backed_chunk_names_the_cell_before_training(data, tmp_path, monkeypatch, where):
    monkeypatch.setattr(anndata_mod, "default_chunk_size", lambda n_vars: 100)
    if where == "moved once":
        monkeypatch.setattr(anndata_mod, "moves_to_device", lambda device, nbytes: True)
    x = data.X.copy()
    row = 345  # in chunk 3 of 6
    col = int(np.flatnonzero(x[row] > 0)[0])
    x[row, col] = np.nan
    a = _sparse(data)
    a.X = sparse.csr_matrix(x)
    backed = _backed(a, tmp_path / "nan.h5ad")
    epochs = []
    recipe = {"max_epochs": 3, "callback": lambda s: epochs.append(s["epoch"])}
    with pytest.raises(ValueError, match=r"1 NaN") as err:
        rd.tl.fit_decoder(backed, net=data.uns["sim"]["net"], recipe=recipe)
    assert f"cell {backed.obs_names[row]!r} (row {row})" in str(err.value)
    assert f"gene {backed.var_names[col]!r} (column {col})" in str(err.value)
    assert epochs == []
    backed.file.close()


def test_backed_chunks_are_checked_once(data, tmp_path, monkeypatch):
    monkeypatch.setattr(anndata_mod, "default_chunk_size", lambda n_vars: 100)
    checked = []
    call = anndata_mod._Checker.__call__

    def spy(self, block, row0):
        checked.append((row0, block.shape[0]))
        return call(self, block, row0)

    monkeypatch.setattr(anndata_mod._Checker, "__call__", spy)
    backed = _backed(_sparse(data), tmp_path / "a.h5ad")
    rd.tl.fit_decoder(backed, net=data.uns["sim"]["net"], recipe={"max_epochs": 5})
    backed.file.close()
    assert sorted(checked) == [(s, 100) for s in range(0, 600, 100)]  # each chunk once, over all passes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sparse_data_move_to_the_gpu_and_give_the_cpu_fit(data, tmp_path):
    net = data.uns["sim"]["net"]
    sp = _sparse(data)
    src = anndata_mod.read(sp)
    on_gpu = src.resident("cuda")
    assert isinstance(on_gpu, CSRSource) and on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.read(0, 600).cpu(), src.read(0, 600))
    ref_t, ref_z = _fit(sp.copy(), net, device="cpu")
    backed = _backed(sp, tmp_path / "a.h5ad")
    for a in (sp.copy(), backed):
        t, z = _fit(a, net, device="cuda")
        np.testing.assert_allclose(z, ref_z, atol=1e-3 * np.abs(ref_z).max())
        np.testing.assert_allclose(t, ref_t, atol=1e-3 * np.nanmax(np.abs(ref_t)))
    backed.file.close()
