"""Activities a biologist can trust (issue 11): identical regulons merged, the same answer for
every seed and subset, signs from the prior, few samples, and the uncertainty of each activity
checked against statsmodels' OLS where the censored model is ordinary least squares."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import torch

import regdecoder as rd
from regdecoder.train._latents import EXACT_RIDGE
from regdecoder.train._score import marginal_t


@pytest.fixture(scope="module")
def grn():
    return rd.sim.grn(n_obs=300, n_genes=120, n_tfs=8, density=0.25, noise=0.1, seed=3)


def test_a_copied_regulon_is_merged_and_its_activity_is_right(grn, caplog):
    net = grn.uns["sim"]["net"]
    copy = net[net.source == "TF1"].assign(source="TF1copy")
    both = pd.concat([net, copy], ignore_index=True)
    a = grn.copy()
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        model = rd.tl.fit_decoder(a, net=both)
    assert "TF1|TF1copy" in model.latent_names and "TF1" not in model.latent_names
    assert "identical regulons" in caplog.text and "TF1|TF1copy" in caplog.text
    groups = a.uns["regdecoder"]["collinear"]
    assert groups.loc[groups["latent"] == "TF1|TF1copy", "tf"].tolist() == ["TF1", "TF1copy"]
    truth = grn.obsm["tf_activity"]["TF1"].to_numpy()
    z = a.obsm["regdecoder_z"]["TF1|TF1copy"].to_numpy()
    assert np.corrcoef(truth, z)[0, 1] > 0.99
    kept = grn.copy()
    rd.tl.fit_decoder(kept, net=both, collinear="keep")
    assert {"TF1", "TF1copy"} <= set(kept.obsm["regdecoder"].columns)
    dropped = grn.copy()
    m = rd.tl.fit_decoder(dropped, net=both, collinear="drop")
    assert "TF1" in m.latent_names and "TF1copy" not in m.latent_names
    with pytest.raises(ValueError, match="collinear"):
        rd.tl.fit_decoder(grn.copy(), net=both, collinear="average")


def test_same_activities_for_every_seed_and_for_different_subsets(grn):
    net = grn.uns["sim"]["net"]
    a, b = grn.copy(), grn.copy()
    rd.tl.fit_decoder(a, net=net, seed=0)
    rd.tl.fit_decoder(b, net=net, seed=1)
    np.testing.assert_array_equal(np.asarray(a.obsm["regdecoder"]), np.asarray(b.obsm["regdecoder"]))
    rng = np.random.default_rng(0)
    outs = []
    for _ in range(2):
        sub = grn[np.sort(rng.choice(grn.n_obs, int(0.8 * grn.n_obs), replace=False))].copy()
        model = rd.tl.fit_decoder(sub, net=net)
        outs.append(rd.tl.infer(grn, model, copy=True))
    for key in ("regdecoder", "regdecoder_z"):
        r = rd.metrics.pearson_columns(np.asarray(outs[0].obsm[key]), np.asarray(outs[1].obsm[key]))
        assert np.median(r) > 0.99 and r.min() > 0.95, key


def test_learned_signs_follow_the_prior(grn):
    a = grn.copy()
    rd.tl.fit_decoder(a, net=grn.uns["sim"]["net"])
    w = a.varm["regdecoder_weights"]
    prior = np.sign(grn.varm["true_weights"].to_numpy())
    on = prior != 0
    assert (np.sign(w[on]) == prior[on]).mean() >= 0.95
    assert rd.metrics.recovery(a).pcc.mean() > 0.99  # the latents still recover the truth


def test_untargeted_genes_are_predicted_by_their_mean_not_zero(grn):
    net = grn.uns["sim"]["net"]
    net = net[~net.target.isin(grn.var_names[:10])]  # 10 genes no TF targets
    a = grn.copy()
    model = rd.tl.fit_decoder(a, net=net)
    xhat = model.decode(np.asarray(a.obsm["regdecoder_z"]))
    x = np.asarray(a.X)
    np.testing.assert_allclose(xhat[:, :10], np.broadcast_to(x[:, :10].mean(0), (a.n_obs, 10)), rtol=1e-3, atol=1e-3)
    assert rd.metrics.reconstruction_error(a, model) < float(np.square(x - x.mean(0)).mean())


def test_few_samples_fix_the_weights_at_the_prior(grn, caplog):
    net = grn.uns["sim"]["net"]
    bulk = grn[:4].copy()  # 4 samples for ~2 regulators and an offset per gene: 1.3 < 2 cells per weight
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.tl.fit_decoder(bulk, net=net)
    assert bulk.uns["regdecoder"]["params"]["weights"] == "prior" and "Too few cells" in caplog.text
    w = bulk.varm["regdecoder_weights"]
    prior = grn.varm["true_weights"].to_numpy()
    np.testing.assert_allclose(w, np.sign(prior), atol=1e-6)  # exactly the prior's signs
    cells = grn.copy()  # the other side of the rule: enough cells, the weights are learned
    rd.tl.fit_decoder(cells, net=net)
    assert cells.uns["regdecoder"]["params"]["weights"] == "fit"
    assert not np.allclose(cells.varm["regdecoder_weights"], np.sign(prior))
    forced = grn[:4].copy()
    rd.tl.fit_decoder(forced, net=net, weights="fit")
    assert forced.uns["regdecoder"]["params"]["weights"] == "fit"
    with pytest.raises(ValueError, match="signed"):  # a net whose every weight is 0 carries no signs
        rd.tl.fit_decoder(grn.copy(), net=net.assign(weight=0.0), weights="prior")


def _positive_cells(model, n: int, seed: int) -> np.ndarray:
    """Cells whose every gene is positive: the censored model is then ordinary least squares."""
    rng = np.random.default_rng(seed)
    w, b = model.weights.astype(np.float64), model.decoder.get_bias().numpy().astype(np.float64)
    z = rng.uniform(1, 2, size=(n, w.shape[1]))
    x = z @ w.T + b + rng.normal(0, 0.3, size=(n, w.shape[0]))
    shift = max(0.0, 1 - x.min())  # keep every value positive
    return x + shift


def test_standard_errors_of_the_latents_match_statsmodels_ols(grn):
    train = grn.copy()
    model = rd.tl.fit_decoder(train, net=grn.uns["sim"]["net"])
    x = _positive_cells(model, 5, seed=1)
    new = rd.sim.grn(n_obs=5, n_genes=120, n_tfs=8, density=0.25, seed=3)[:, model.var_names].copy()
    new.X = x.astype(np.float32)
    rd.tl.infer(new, model, standard_errors=True, tol=1e-6)  # the formulas, at a tight tolerance
    w, b = model.weights.astype(np.float64), model.decoder.get_bias().numpy().astype(np.float64)
    z, se = np.asarray(new.obsm["regdecoder_z"]), np.asarray(new.obsm["regdecoder_z_se"])
    zt = rd.get.activities(new, statistic="z_t").X
    zp = rd.get.activities(new, statistic="z_pvals").X
    # the exact latents minimise the loss plus the ridge lam |z|^2 (EXACT_RIDGE): its closed form
    lam = EXACT_RIDGE * (w * w).sum(0).mean()
    h_inv = np.linalg.inv(w.T @ w + lam * np.eye(w.shape[1]))
    for c in range(5):
        y = x[c].astype(np.float32).astype(np.float64) - b
        fit = sm.OLS(y, w).fit()  # and, the ridge being small, statsmodels' OLS
        np.testing.assert_allclose(z[c], fit.params, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(se[c], fit.bse, rtol=1e-3)
        z_ref = h_inv @ w.T @ y
        se_ref = np.sqrt(np.diag(h_inv) * ((y - w @ z_ref) ** 2).sum() / (len(y) - w.shape[1]))
        np.testing.assert_allclose(zt[c], z_ref / se_ref, rtol=2e-3, atol=1e-5)
        np.testing.assert_allclose(
            zp[c], 2 * __import__("scipy").stats.norm.sf(np.abs(z_ref / se_ref)), rtol=0.05, atol=1e-6
        )


def test_marginal_t_values_match_statsmodels_ols(grn):
    train = grn.copy()
    model = rd.tl.fit_decoder(train, net=grn.uns["sim"]["net"])
    x = np.asarray(train.X, dtype=np.float64)
    xc = x - model.gene_mean.numpy().astype(np.float64)
    w = model.weights.astype(np.float64)
    t, p = np.asarray(train.obsm["regdecoder"]), np.asarray(train.obsm["regdecoder_pvals"])
    for c in (0, 7, 42):
        for j in (0, 3):
            fit = sm.OLS(xc[c], sm.add_constant(w[:, j])).fit()  # with an intercept, G - 2 degrees of freedom
            assert t[c, j] == pytest.approx(fit.tvalues[1], rel=1e-3)
            assert p[c, j] == pytest.approx(fit.pvalues[1], rel=1e-2, abs=1e-7)
    assert train.uns["regdecoder"]["statistic"] == "t"
    act = rd.get.activities(train)
    np.testing.assert_array_equal(act.X, t.astype(np.float32))
    with pytest.raises(ValueError, match="statistic"):
        rd.get.activities(train, statistic="score")


def test_marginal_t_is_decoupler_ulm_on_the_same_weights(grn):
    """The marginal t is decoupler's ulm statistic (intercept included) given the centred cells
    and the learned weights as its net; its p-values, BH-adjusted per cell, are ulm's padj."""
    import decoupler as dc
    from scipy.stats import false_discovery_control

    train = grn.copy()
    model = rd.tl.fit_decoder(train, net=grn.uns["sim"]["net"])
    y = pd.DataFrame(np.asarray(train.X, dtype=np.float64) - model.gene_mean.numpy(), train.obs_names, train.var_names)
    net = rd.get.weights(train)
    es, padj = dc.mt.ulm(y, net, tmin=0, empty=False)
    t = rd.get.activities(train).to_df()
    np.testing.assert_allclose(t[es.columns].to_numpy(), es.to_numpy(), rtol=2e-3, atol=2e-4)
    p = rd.get.activities(train, statistic="pvals").to_df()[es.columns].to_numpy().astype(np.float64)
    np.testing.assert_allclose(false_discovery_control(p, axis=1), padj.to_numpy(), rtol=2e-2, atol=1e-6)
    # on a signed vector whose mean is far from 0, the intercept matters: ulm's sign, not the origin's
    shifted = y.iloc[:5] + 1.0
    es5, _ = dc.mt.ulm(shifted, net, tmin=0, empty=False)
    t5, _ = marginal_t(
        torch.as_tensor(shifted.to_numpy(np.float32)), torch.as_tensor(model.weights), torch.zeros(model.config.n_genes)
    )
    np.testing.assert_allclose(t5, es5[model.latent_names].to_numpy(), rtol=2e-3, atol=2e-4)


@pytest.mark.slow  # scanpy's neighbours compile numba code: ~15 s of the quick subset
def test_activities_work_as_use_rep_in_scanpy(grn):
    import scanpy as sc

    a = grn.copy()
    rd.tl.fit_decoder(a, net=grn.uns["sim"]["net"])
    sc.pp.neighbors(a, use_rep="regdecoder", n_neighbors=10)
    assert a.obsp["connectivities"].shape == (a.n_obs, a.n_obs)
