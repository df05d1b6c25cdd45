"""The AnnData front end: fit_decoder, infer, Model save/load, and bad input."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

import regdecoder as rd
from regdecoder.train._latents import EXACT_RIDGE


def test_fit_writes_the_data_contract(fitted):
    model, train, _ = fitted
    n_tfs = train.obsm["tf_activity"].shape[1]
    z = train.obsm["regdecoder"]
    assert isinstance(z, pd.DataFrame) and (z.dtypes == np.float32).all() and z.shape == (train.n_obs, n_tfs)
    assert list(z.columns) == model.latent_names and list(z.index) == list(train.obs_names)
    w = train.varm["regdecoder_weights"]
    assert w.shape == (train.n_vars, n_tfs)
    true_w = train.varm["true_weights"].to_numpy()
    assert (w[true_w == 0] == 0).all()  # learned weights only on the network's edges
    uns = train.uns["regdecoder"]
    assert list(uns["latent_names"]) == list(train.obsm["tf_activity"].columns)
    assert uns["params"]["recipe"]["solver"] == "als" and uns["params"]["seed"] == 0
    assert len(uns["history"]["loss"]) == len(uns["history"]["seconds"]) >= 1
    nnz = int((true_w != 0).sum())
    n, m, N = train.n_vars, n_tfs, train.n_obs
    assert uns["load"]["alpha_d"] == pytest.approx(N * n / (nnz + N * m))
    assert uns["load"]["alpha_d_all_weights"] == pytest.approx(N * n / (n * m + N * m))
    assert set(uns["orientation"]) == {"prior"}


def test_recovers_tf_activities_with_the_right_sign(fitted):
    model, train, test = fitted
    assert rd.metrics.recovery(train).pcc.mean() > 0.99
    rd.tl.infer(test, model)
    rec = rd.metrics.recovery(test)
    assert rec.pcc.mean() > 0.99 and rec.pcc.min() > 0.95
    # learned weights correlate positively with the true ones (signs right)
    w = train.varm["regdecoder_weights"]
    true_w = train.varm["true_weights"].to_numpy()
    # per TF (each latent has its own scale)
    r = [np.corrcoef(w[true_w[:, j] != 0, j], true_w[true_w[:, j] != 0, j])[0, 1] for j in range(w.shape[1])]
    assert min(r) > 0.8 and np.mean(r) > 0.85


def test_latents_without_prior_edges_use_the_mean_rule(split_grn):
    """No net (or n_extra latents): without an offset the mean is identified, and each latent's
    mean over the training cells is made positive. (A net without weights is all activations
    now, oriented by the prior rule: tests/pp/test_net_inputs.py.)"""
    train, _ = split_grn
    model = rd.tl.fit_decoder(train, n_latent=4, bias=False, recipe={"max_epochs": 20})
    assert set(model.orientation) == {"mean"}
    assert (np.asarray(train.obsm["regdecoder"]).mean(0) > 0).all()


def test_signed_prior_decides_the_sign(split_grn):
    train, _ = split_grn
    net = train.uns["sim"]["net"].copy()
    net["weight"] = -net["weight"]  # a prior that claims every edge the other way round
    rd.tl.fit_decoder(train, net=net)
    assert rd.metrics.recovery(train).pcc.mean() < -0.99


def test_bias_and_skew_rule(split_grn):
    train, _ = split_grn
    model = rd.tl.fit_decoder(train, n_latent=4, bias=True, recipe={"max_epochs": 20})
    assert set(model.orientation) == {"skew"}
    z = np.asarray(train.obsm["regdecoder"], dtype=np.float64)
    assert (((z - z.mean(0)) ** 3).mean(0) > 0).all()


def test_same_seed_same_result_and_x_untouched(small_grn):
    before = small_grn.X.copy()
    net = small_grn.uns["sim"]["net"]
    for solver in ("als", "gradient"):
        rec = {"solver": solver, "max_epochs": 5 if solver == "gradient" else 10}
        a = small_grn.copy()
        rd.tl.fit_decoder(a, net=net, seed=1, recipe=rec)
        b = small_grn.copy()
        rd.tl.fit_decoder(b, net=net, seed=1, recipe=rec)
        np.testing.assert_array_equal(a.obsm["regdecoder"], b.obsm["regdecoder"])
        np.testing.assert_array_equal(a.X, before)
    c = small_grn.copy()
    rd.tl.fit_decoder(c, net=net, seed=2, recipe={"solver": "gradient", "max_epochs": 5})
    assert not np.array_equal(c.obsm["regdecoder"], a.obsm["regdecoder"])


def test_sparse_and_dense_x_agree(small_grn):
    net = small_grn.uns["sim"]["net"]
    dense = small_grn.copy()
    sp = small_grn.copy()
    sp.X = sparse.csr_matrix(sp.X)
    rd.tl.fit_decoder(dense, net=net, recipe={"max_epochs": 10})
    rd.tl.fit_decoder(sp, net=net, recipe={"max_epochs": 10})
    assert sparse.issparse(sp.X)  # not densified in place
    np.testing.assert_allclose(dense.obsm["regdecoder"], sp.obsm["regdecoder"], rtol=1e-4, atol=1e-4)


def test_layer_is_used(small_grn):
    ad = small_grn.copy()
    ad.layers["expr"] = ad.X.copy()
    ad.X = np.zeros_like(ad.X)
    rd.tl.fit_decoder(ad, net=ad.uns["sim"]["net"], layer="expr")
    assert rd.metrics.recovery(ad).pcc.mean() > 0.99


def test_paper_preset_runs_the_paper_recipe(split_grn):
    train, test = split_grn
    model = rd.tl.fit_decoder(train, net=train.uns["sim"]["net"], recipe={"preset": "paper", "max_epochs": 3})
    p = train.uns["regdecoder"]["params"]
    assert p["recipe"]["solver"] == "gradient" and p["recipe"]["start"] == "random"
    assert p["recipe"]["batch_size"] == 32 and p["recipe"]["lr_z"] == 0.01 and p["recipe"]["momentum_z"] == 0.9
    assert p["recipe"]["reduction"] == "sum" and p["recipe"]["max_epochs"] == 3
    assert len(train.uns["regdecoder"]["history"]["loss"]) == 3
    rd.tl.infer(test, model)  # runs; recovery after 3 epochs is not expected to be good


def test_gradient_solver_from_the_als_start_recovers(split_grn):
    train, test = split_grn
    model = rd.tl.fit_decoder(train, net=train.uns["sim"]["net"], recipe={"solver": "gradient", "max_epochs": 50})
    assert train.uns["regdecoder"]["params"]["recipe"]["z_optimizer"] == "adam"
    rd.tl.infer(test, model)
    assert rd.metrics.recovery(test).pcc.mean() > 0.97


@pytest.mark.slow
@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_paper_recipe_recovers_in_the_paper_setting(noise):
    # Paper setting (n=1000 genes, m=100 TFs, density 0.1); the paper's recipe passes
    # signed PCC 0.99 on held-out cells after ~150-200 epochs at N=1,000.
    ad = rd.sim.grn(n_obs=1100, noise=noise, seed=0)
    train, test = rd.pp.split(ad, n_test=100, seed=0)
    model = rd.tl.fit_decoder(train, net=train.uns["sim"]["net"], recipe={"preset": "paper", "max_epochs": 250})
    rd.tl.infer(test, model)
    assert rd.metrics.recovery(test).pcc.mean() > 0.985


def test_unmasked_and_mlp_decoders(split_grn):
    train, test = split_grn
    model = rd.tl.fit_decoder(train, n_latent=8)
    assert model.config.masked is False and train.varm["regdecoder_weights"].shape == (train.n_vars, 8)
    rd.tl.infer(test, model)
    rec = rd.metrics.recovery(test, match="hungarian")
    assert rec.latent.notna().all()
    assert rd.metrics.reconstruction_error(test, model) < 0.5 * float(np.var(test.X))
    mlp = rd.tl.fit_decoder(train, n_latent=8, hidden=(32,), key_added="mlp", recipe={"max_epochs": 20})
    assert "mlp_weights" not in train.varm and train.uns["mlp"]["params"]["recipe"]["solver"] == "gradient"
    err0 = rd.metrics.mse(test.X, mlp.decode(np.tile(mlp.z_mean.numpy(), (test.n_obs, 1))))
    rd.tl.infer(test, mlp, key_added="mlp", max_iter=200)
    assert rd.metrics.reconstruction_error(test, mlp, "mlp") < err0


def test_infer_copy_and_gene_order(fitted):
    model, _, test = fitted
    out = rd.tl.infer(test, model, copy=True)
    assert "regdecoder" not in test.obsm and "regdecoder" in out.obsm
    shuffled = test[:, test.var_names[::-1]].copy()
    rd.tl.infer(shuffled, model)
    np.testing.assert_allclose(shuffled.obsm["regdecoder"], out.obsm["regdecoder"], rtol=1e-4, atol=1e-5)


def test_infer_matches_least_squares_when_nothing_is_censored(fitted):
    model, _, test = fitted
    w = model.weights.astype(np.float64)
    z = np.abs(np.random.default_rng(0).normal(size=(10, w.shape[1]))) + 3
    x = w @ z.T
    assert (x > 0).mean() < 1  # some censoring in the raw product...
    x = np.maximum(x.T, 0)
    z_hat, _ = model.infer_latents(torch.tensor(x, dtype=torch.float32), max_iter=500, tol=1e-9)
    # ...and the censored solution is least squares on the expressed genes with the solver's small
    # ridge (lam = EXACT_RIDGE x a TF's mean squared weight norm), whose closed form it matches (the
    # censored genes stay predicted below 0 there), so it reproduces the generating latents up to
    # the ridge's shrinkage
    lam = EXACT_RIDGE * (w * w).sum(0).mean()
    for c in range(len(x)):
        wp = w[x[c] > 0]
        ref = np.linalg.solve(wp.T @ wp + lam * np.eye(w.shape[1]), wp.T @ x[c][x[c] > 0])
        assert (w[x[c] == 0] @ ref).max() <= 0
        np.testing.assert_allclose(z_hat[c].numpy(), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(z_hat.numpy(), z, rtol=1e-2)


def test_save_load_round_trip(fitted, tmp_path):
    model, _, test = fitted
    path = tmp_path / "model.pt"
    model.save(path)
    blob = torch.load(path, weights_only=True)  # safe loading works
    assert blob["var_names"] == model.var_names
    loaded = rd.tl.Model.load(path)
    assert loaded.latent_names == model.latent_names and loaded.orientation == model.orientation
    a = rd.tl.infer(test, model, copy=True)
    b = rd.tl.infer(test, loaded, copy=True)
    np.testing.assert_array_equal(a.obsm["regdecoder"], b.obsm["regdecoder"])
    other = test[:, :-1].copy()
    with pytest.raises(ValueError, match="genes differ"):
        rd.tl.infer(other, loaded)


def test_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, p)
    with pytest.raises(ValueError, match="not a regdecoder model"):
        rd.tl.Model.load(p)
    with pytest.raises(FileNotFoundError):
        rd.tl.Model.load(tmp_path / "missing.pt")


def test_mlp_save_load(split_grn, tmp_path):
    train, _ = split_grn
    m = rd.tl.fit_decoder(train, n_latent=3, hidden=(16,), recipe={"max_epochs": 2})
    m.save(tmp_path / "m.pt")
    loaded = rd.tl.Model.load(tmp_path / "m.pt")
    z = np.ones((2, 3), dtype=np.float32)
    np.testing.assert_array_equal(m.decode(z), loaded.decode(z))


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_rejected(small_grn, bad):
    small_grn.X[3, 4] = bad
    with pytest.raises(ValueError, match="NaN"):
        rd.tl.fit_decoder(small_grn, net=small_grn.uns["sim"]["net"])


def test_nan_in_sparse_rejected(small_grn):
    x = small_grn.X.copy()
    x[0, x[0] > 0] = np.nan
    small_grn.X = sparse.csr_matrix(x)
    with pytest.raises(ValueError, match="NaN"):
        rd.tl.fit_decoder(small_grn, net=small_grn.uns["sim"]["net"])


def test_net_errors(small_grn):
    net = small_grn.uns["sim"]["net"]
    with pytest.raises(KeyError, match="Rename"):
        rd.tl.fit_decoder(small_grn, net=net.rename(columns={"source": "tf"}))
    with pytest.raises(ValueError, match="duplicate"):
        rd.tl.fit_decoder(small_grn, net=pd.concat([net, net.head(2)]))
    with pytest.raises(ValueError, match="No target gene"):
        rd.tl.fit_decoder(small_grn, net=net.assign(target=net.target.str.lower()))
    with pytest.raises(ValueError, match="missing or non-numeric"):
        rd.tl.fit_decoder(small_grn, net=net.assign(weight=np.nan))
    with pytest.raises(TypeError, match="DataFrame"):
        rd.tl.fit_decoder(small_grn, net=net.to_numpy())
    with pytest.raises(ValueError, match="not both"):
        rd.tl.fit_decoder(small_grn, net=net, n_latent=3)
    with pytest.raises(ValueError, match="n_latent"):
        rd.tl.fit_decoder(small_grn)


def test_tmin_drops_small_regulons_with_a_message(small_grn, caplog):
    net = small_grn.uns["sim"]["net"]
    small_tf = net.source.iloc[0]
    keep = net[(net.source != small_tf) | (net.index.isin(net.index[net.source == small_tf][:2]))]
    with caplog.at_level(logging.INFO, logger="regdecoder"):
        model = rd.tl.fit_decoder(small_grn, net=keep, tmin=5)
    assert small_tf not in model.latent_names and len(model.latent_names) == 7
    assert "fewer than tmin=5" in caplog.text and small_tf in caplog.text
    rec = rd.metrics.recovery(small_grn)
    assert np.isnan(rec.loc[small_tf, "pcc"]) and rec.pcc.notna().sum() == 7
    with pytest.raises(ValueError, match="tmin"):
        rd.tl.fit_decoder(small_grn, net=keep, tmin=10_000)


def test_empty_and_missing_layer(small_grn):
    net = small_grn.uns["sim"]["net"]
    with pytest.raises(ValueError, match="empty"):
        rd.tl.fit_decoder(small_grn[:0].copy(), net=net)
    with pytest.raises(KeyError, match="Layer 'counts' not found"):
        rd.tl.fit_decoder(small_grn, net=net, layer="counts")


def test_bad_options(small_grn):
    net = small_grn.uns["sim"]["net"]
    with pytest.raises(ValueError, match="solver"):
        rd.tl.fit_decoder(small_grn, net=net, recipe={"solver": "lbfgs"})
    with pytest.raises(ValueError, match="preset"):
        rd.tl.fit_decoder(small_grn, net=net, recipe={"solver": "als", "preset": "paper"})
    with pytest.raises(ValueError, match="recipe"):
        rd.tl.fit_decoder(small_grn, net=net, recipe={"solver": "gradient", "nope": 1})
    with pytest.raises(ValueError, match="hidden"):
        rd.tl.fit_decoder(small_grn, net=net, hidden=(4,))
    with pytest.raises(TypeError, match="Model"):
        rd.tl.infer(small_grn, "model.pt")


def test_h5ad_round_trip(fitted, tmp_path):
    _, train, _ = fitted
    train.write_h5ad(tmp_path / "a.h5ad")
    import anndata as ad

    back = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_array_equal(back.obsm["regdecoder"], train.obsm["regdecoder"])
    assert list(back.uns["regdecoder"]["latent_names"]) == list(train.uns["regdecoder"]["latent_names"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(split_grn):
    train, test = split_grn
    net = train.uns["sim"]["net"]
    a, b = train.copy(), train.copy()
    cpu = rd.tl.fit_decoder(a, net=net, device="cpu")
    gpu = rd.tl.fit_decoder(b, net=net, device="cuda")
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(a.obsm["regdecoder"], b.obsm["regdecoder"], rtol=1e-2, atol=1e-2)
    ta, tb = rd.tl.infer(test, cpu, copy=True), rd.tl.infer(test, gpu, copy=True)
    np.testing.assert_allclose(ta.obsm["regdecoder"], tb.obsm["regdecoder"], rtol=1e-2, atol=1e-2)


def test_genes_outside_net_and_all_zero_rows_and_columns(split_grn):
    train, test = split_grn
    net = train.uns["sim"]["net"]
    net = net[net.target.isin(train.var_names[20:])]  # 20 genes have no regulator in the prior
    train.X[:, 25] = 0.0  # a gene that is never expressed
    train.X[0] = 0.0  # a cell with no expression at all
    model = rd.tl.fit_decoder(train, net=net, bias=False)
    z = np.asarray(train.obsm["regdecoder_z"])
    t = np.asarray(train.obsm["regdecoder"])
    assert np.isfinite(z).all() and np.isfinite(t[1:]).all() and np.isnan(t[0]).all()  # no expression: no activity
    np.testing.assert_allclose(z[0], 0.0, atol=1e-6)  # nothing expressed, no offset: zero activity fits exactly
    rd.tl.infer(train, model, standard_errors=True, key_added="se")  # the standard errors, when asked
    np.testing.assert_allclose(np.asarray(train.obsm["se_z"]), z, atol=1e-3)  # the same latents (solver's tolerance)
    se = np.asarray(train.obsm["se_z_se"])
    assert np.isnan(se[0]).all() and np.isfinite(se[1:]).any()  # an empty cell identifies nothing: no z_t, z_pvals
    assert np.isnan(rd.get.activities(train, "se", statistic="z_pvals").X[0]).all()
    assert (train.varm["regdecoder_weights"][:20] == 0).all()
    rd.tl.infer(test, model)
    assert rd.metrics.recovery(test).pcc.mean() > 0.98
