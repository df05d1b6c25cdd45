"""Every input that can fail does so before the first epoch, naming the problem and the fix;
results written under a key stay consistent."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import sparse

import regdecoder as rd


@pytest.fixture
def grn():
    return rd.sim.grn(n_obs=120, n_genes=60, n_tfs=5, density=0.3, noise=0.1, seed=2)


def _fit(adata, **kw):
    """fit_decoder with a callback that counts epochs: the error must come before any."""
    epochs = []
    if "net" not in kw:
        kw["net"] = adata.uns["sim"]["net"]
    recipe = {**kw.pop("recipe", {}), "callback": lambda s: epochs.append(s["epoch"])}
    try:
        return rd.tl.fit_decoder(adata, recipe=recipe, **kw)
    finally:
        assert epochs == [], f"the error came after {len(epochs)} epoch(s) of training"


def test_a_huge_finite_value_is_named_with_its_position(grn):
    grn.X[7, 11] = 1e20
    with pytest.raises(ValueError, match=r"larger than 1e\+09.*1e\+20.*row 7\).*column 11\)") as err:
        _fit(grn)
    assert repr(grn.obs_names[7]) in str(err.value) and repr(grn.var_names[11]) in str(err.value)


def test_a_large_float64_value_is_not_called_infinite(grn):
    grn.X = grn.X.astype(np.float64)
    grn.X[3, 4] = 1e40
    with pytest.raises(ValueError, match="larger than") as err:
        _fit(grn)
    assert "infinite" not in str(err.value)


def test_nan_in_sparse_names_its_position(grn):
    x = grn.X.copy()
    x[5, np.flatnonzero(x[5] > 0)[0]] = np.nan
    grn.X = sparse.csr_matrix(x)
    with pytest.raises(ValueError, match=r"1 NaN.*row 5\)"):
        _fit(grn)


def test_nan_in_backed_data_fails_before_the_first_epoch(grn, tmp_path):
    import anndata as ad

    x = grn.X.copy()
    x[-1, np.flatnonzero(x[-1] > 0)[0]] = np.inf  # in the last chunk
    grn.X = sparse.csr_matrix(x)
    net = grn.uns["sim"]["net"]
    del grn.uns["sim"]
    grn.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    with pytest.raises(ValueError, match="infinite"):
        _fit(backed, net=net)
    backed.file.close()


def test_scaled_data_are_refused_naming_use_raw(grn):
    grn.raw = grn
    grn.X = (grn.X - grn.X.mean(0)) / (grn.X.std(0) + 1e-6)  # what sc.pp.scale does
    with pytest.raises(ValueError, match=r"negative.*sc.pp.scale.*use_raw=True"):
        _fit(grn)
    model = rd.tl.fit_decoder(grn, net=grn.uns["sim"]["net"], use_raw=True)  # the fix works, on raw's genes
    assert model.var_names == list(grn.raw.var_names)
    assert grn.uns["regdecoder"]["params"]["use_raw"] is True


def test_counts_given_to_the_squared_error_model_warn(grn, caplog):
    grn.X = np.random.default_rng(0).poisson(30 * grn.X).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.tl.fit_decoder(grn, net=grn.uns["sim"]["net"], recipe={"max_epochs": 2})
    assert "raw counts" in caplog.text and "gene_likelihood='nb'" in caplog.text


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"key_added": 5}, TypeError, "key_added"),
        ({"key_added": ""}, TypeError, "key_added"),
        ({"soft_mask": -1.0}, ValueError, "soft_mask"),
        ({"n_extra": -1}, ValueError, "n_extra"),
        ({"recipe": {"nope": 1}}, ValueError, "Unknown field"),
        ({"recipe": {"solver": "als"}, "hidden": (4,), "net": None, "n_latent": 3}, ValueError, "ALS"),
        ({"gene_likelihood": "gaussian"}, ValueError, "gene_likelihood"),
        ({"library_size": "lib", "gene_likelihood": "poisson"}, ValueError, "non-integer"),
        ({"tmin": 10_000}, ValueError, "tmin"),
        ({"layer": "nope"}, KeyError, "Layer 'nope'"),
        ({"use_raw": True}, ValueError, "adata.raw is None"),
        ({"use_raw": True, "layer": "x"}, ValueError, "not both"),
        ({"seed": None}, TypeError, "seed"),
        ({"seed": -1}, ValueError, "non-negative"),
        ({"tmin": 0}, ValueError, "tmin"),
    ],
)
def test_bad_arguments_fail_before_training(grn, kw, error, match):
    with pytest.raises(error, match=match):
        _fit(grn, **kw)


def test_infer_does_not_overwrite_a_fit(grn):
    train, test = rd.pp.split(grn, n_test=20, seed=0)
    model = rd.tl.fit_decoder(train, net=train.uns["sim"]["net"])
    before = {k: train.uns["regdecoder"][k] for k in ("history", "load", "orientation", "params")}
    with pytest.raises(ValueError, match=r"holds the results of a fit.*key_added='regdecoder_infer'"):
        rd.tl.infer(train, model)
    assert set(before) <= set(train.uns["regdecoder"])  # nothing was lost
    rd.tl.infer(train, model, key_added="regdecoder_infer")
    r = rd.metrics.pearson_columns(train.obsm["regdecoder_infer"], train.obsm["regdecoder"])
    assert r.min() > 0.999  # the fit's latents, solved again with its final weights
    assert rd.tl.load(train)["alpha_d"] == before["load"]["alpha_d"]
    rd.pl.loss(train, show=False)  # the fit's history is still there
    rd.tl.infer(test, model)  # a key without a fit is written as before
    assert "regdecoder_weights" not in test.varm and "history" not in test.uns["regdecoder"]


def test_infer_with_a_tolerance_reports_the_same_statistic_and_the_fit_agrees(grn):
    train = grn.copy()
    model = rd.tl.fit_decoder(train, net=grn.uns["sim"]["net"])
    other = grn.copy()
    rd.tl.infer(other, model, key_added="tight", tol=1e-9, max_iter=500)
    assert other.uns["tight"]["statistic"] == "t" and "tight_z_se" not in other.obsm  # only when asked
    np.testing.assert_allclose(np.asarray(other.obsm["tight"]), np.asarray(train.obsm["regdecoder"]), atol=1e-4)
    rd.tl.infer(other, model, key_added="again")  # the fit solved its cells with infer's solver: the same latents
    z_fit, z_again = np.asarray(train.obsm["regdecoder_z"]), np.asarray(other.obsm["again_z"])
    rel = np.linalg.norm(z_again - z_fit, axis=1) / np.linalg.norm(z_fit, axis=1)
    assert rel.max() <= 4e-3  # twice the solver's tolerance from each start (relative KKT residual 1e-3)


def test_empty_cells_get_no_activity_and_a_warning(grn, caplog):
    grn.X[:3] = 0
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.tl.fit_decoder(grn, net=grn.uns["sim"]["net"])
    t = np.asarray(grn.obsm["regdecoder"])
    assert np.isnan(t[:3]).all() and np.isfinite(t[3:]).all()
    assert "3 cell(s) have no expression" in caplog.text and "filter_cells" in caplog.text


def test_swapped_columns_warn_and_bad_model_files_name_the_file(grn, caplog, tmp_path):
    net = grn.uns["sim"]["net"]
    genes = list(grn.var_names)
    swapped = net.rename(columns={"source": "target", "target": "source"})
    swapped["target"] = [genes[i % 10] for i in range(len(swapped))]  # 10 "targets"
    swapped["source"] = [genes[10 + i % 50] for i in range(len(swapped))]  # 50 "regulators"
    swapped = swapped.drop_duplicates(["source", "target"])
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.pp.prepare_net(swapped, genes, tmin=1)
    assert "swapped" in caplog.text
    bad = tmp_path / "model.pt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"Could not read .*model.pt.* as a regdecoder model file"):
        rd.tl.Model.load(bad)
