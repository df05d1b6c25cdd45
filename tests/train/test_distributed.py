"""Multi-process training on torch.distributed (2 CPU processes, gloo)."""

import numpy as np
import pytest
import torch.distributed as dist
from scipy import sparse

import regdecoder as rd
from regdecoder.train._distributed import free_port, launch

pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available"),
    pytest.mark.slow,  # starts processes
]


def _signed_pcc(adata):
    return rd.metrics.recovery(adata, "regdecoder", truth="tf_activity")["pcc"].to_numpy()


def test_two_gloo_processes_match_one(tmp_path):
    data = rd.sim.grn(n_obs=700, n_genes=100, n_tfs=6, density=0.3, noise=0.1, seed=11)
    data.X = sparse.csr_matrix(data.X)
    net = data.uns["sim"]["net"]
    single = data.copy()
    rd.tl.fit_decoder(single, net=net, seed=4, recipe={"max_epochs": 12})
    multi = data.copy()
    model = rd.tl.fit_decoder_distributed(multi, net=net, nprocs=2, seed=4, timeout_s=300, recipe={"max_epochs": 12})
    assert multi.uns["regdecoder"]["history"]["loss"].shape == single.uns["regdecoder"]["history"]["loss"].shape
    p1, p2 = _signed_pcc(single), _signed_pcc(multi)
    assert p1.mean() > 0.95  # the fit works at all
    assert np.abs(p1 - p2).max() < 0.005
    # the same optimum, not just the same quality: sums over shards equal sums over all cells
    np.testing.assert_allclose(
        multi.obsm["regdecoder"],
        single.obsm["regdecoder"],
        atol=1e-3 * np.abs(np.asarray(single.obsm["regdecoder"])).max(),
    )
    np.testing.assert_allclose(model.weights, single.varm["regdecoder_weights"], atol=1e-3)


def _fails():
    msg = "boom"
    raise ValueError(msg)


def test_launch_reports_a_failing_worker():
    with pytest.raises(RuntimeError, match="boom"):
        launch(_fails, nprocs=2, timeout_s=120)


def test_free_port_is_usable():
    assert 1024 <= free_port() <= 65535
