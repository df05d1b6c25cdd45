"""The inputs people bring (issue 17): scanpy's HVG layout, signed data and contrasts, a single
sample, backed files and their views, and scripts written for 0.1. Each works, or fails before
the first epoch naming the problem and the fix."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse
from scipy.stats import false_discovery_control

import regdecoder as rd
from regdecoder.cli import main


def _ulm(profiles: pd.DataFrame, net: pd.DataFrame, *, signs: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """decoupler's ulm on the profiles as they are: scores and BH-adjusted p-values (with
    ``signs``: on the net's signs, the weights regdecoder's prior holds)."""
    import decoupler as dc

    if signs:
        net = net.assign(weight=np.sign(net["weight"]))
    return dc.mt.ulm(profiles, net, tmin=0, empty=False)


# ------------------------------------------------------------------------------ the HVG layout
@pytest.fixture(scope="module")
def _hvg():
    """scanpy's layout: raw holds every gene (200, log-normalised), X the 120 'highly variable'
    ones, scaled (so X has negative values)."""
    grn = rd.sim.grn(n_obs=160, n_genes=200, n_tfs=6, density=0.2, noise=0.1, seed=4)
    net = grn.uns["sim"]["net"]
    del grn.uns["sim"]
    grn.raw = grn
    hvg = grn.var_names[np.sort(np.random.default_rng(0).choice(200, 120, replace=False))]
    a = grn[:, hvg].copy()
    sc.pp.scale(a)
    return a, net


@pytest.fixture
def hvg(_hvg):
    a, net = _hvg
    return a.copy(), net


def test_the_hvg_layout_fits_on_raw_genes_and_keeps_its_weights(hvg, tmp_path):
    a, net = hvg
    model = rd.tl.fit_decoder(a, net=net, use_raw=True)
    assert model.var_names == list(a.raw.var_names) and a.n_vars == 120
    assert "regdecoder_weights" not in a.varm  # 200 genes' weights do not fit X's 120 genes
    w = rd.get.weights(a)
    assert set(w["target"]) - set(a.var_names), "the weights of genes only in raw are kept"
    mat = pd.DataFrame(model.weights, index=model.var_names, columns=model.latent_names)
    np.testing.assert_array_equal(w["weight"].to_numpy(), mat.to_numpy()[mat.index.get_indexer(w["target"]),
                                  mat.columns.get_indexer(w["source"])])  # fmt: skip
    assert len(w) == int((model.weights != 0).sum())
    # new cells in the same layout; the saved model infers the same activities
    new = a[:30].copy()
    rd.tl.infer(new, model, use_raw=True, key_added="again")
    np.testing.assert_allclose(new.obsm["again"], a.obsm["regdecoder"][:30], atol=1e-4)
    model.save(tmp_path / "m.pt")
    back = a[:30].copy()
    rd.tl.infer(back, rd.tl.Model.load(tmp_path / "m.pt"), use_raw=True, key_added="again")
    np.testing.assert_array_equal(back.obsm["again"], new.obsm["again"])
    a.write_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(rd.get.weights(ad.read_h5ad(tmp_path / "a.h5ad")), w)


def test_the_hvg_layout_on_the_command_line(hvg, tmp_path):
    a, net = hvg
    a.write_h5ad(tmp_path / "cells.h5ad")
    net.to_csv(tmp_path / "net.tsv", sep="\t", index=False)
    fit = ["fit", str(tmp_path / "cells.h5ad"), "--net", str(tmp_path / "net.tsv"), "--use-raw"]
    assert main([*fit, "--out", str(tmp_path / "fitted.h5ad"), "--model", str(tmp_path / "m.pt"), "-q"]) == 0
    fitted = ad.read_h5ad(tmp_path / "fitted.h5ad")
    assert set(rd.get.weights(fitted)["target"]) <= set(a.raw.var_names)
    infer = ["infer", str(tmp_path / "cells.h5ad"), "--model", str(tmp_path / "m.pt"), "--use-raw"]
    assert main([*infer, "--out", str(tmp_path / "new.h5ad"), "-q"]) == 0
    np.testing.assert_allclose(
        ad.read_h5ad(tmp_path / "new.h5ad").obsm["regdecoder"], fitted.obsm["regdecoder"], atol=1e-4
    )


def test_inferring_on_scaled_x_names_use_raw_never_another_likelihood(hvg, tmp_path, capsys):
    """A model fitted on raw's log-normalised genes, given new cells' scaled X (all genes, as
    scanpy leaves X without subsetting): the fix is `use_raw=True` (`--use-raw`), not the linear
    decoder's `gene_likelihood='normal'`, which infer has no way to take (the model is fixed)."""
    a, net = hvg
    model = rd.tl.fit_decoder(a, net=net, use_raw=True)
    new = ad.AnnData(np.asarray(a.raw.X[:30]), obs=a.obs[[]].iloc[:30], var=a.raw.var[[]])
    new.raw = new.copy()
    sc.pp.scale(new)  # X: every gene of the model, scaled (negative values)
    with pytest.raises(ValueError, match=r"negative") as err:
        rd.tl.infer(new, model)
    assert "use_raw=True" in str(err.value) and "gene_likelihood" not in str(err.value)
    assert "regdecoder" not in new.obsm  # nothing written
    model.save(tmp_path / "m.pt")
    new.write_h5ad(tmp_path / "new.h5ad")
    infer = ["infer", str(tmp_path / "new.h5ad"), "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "o.h5ad")]
    assert main([*infer, "-q"]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "`--use-raw`" in line, line
    assert "likelihood=" not in line and "--gene-likelihood" not in line and "use_raw" not in line, line
    assert not (tmp_path / "o.h5ad").exists()


# ------------------------------------------------------------------------------ signed data
@pytest.fixture(scope="module")
def _signed():
    """Signed data from a linear model: contrasts x = W z + b + noise, about half negative."""
    grn = rd.sim.grn(n_obs=200, n_genes=150, n_tfs=6, density=0.25, noise=0.1, seed=5)
    net = grn.uns["sim"]["net"]
    w = np.asarray(grn.varm["true_weights"])
    z = np.random.default_rng(1).normal(size=(grn.n_obs, w.shape[1]))
    x = z @ w.T + np.random.default_rng(2).normal(0, 0.2, size=(grn.n_obs, grn.n_vars))
    a = ad.AnnData(x.astype(np.float32), obs=grn.obs[[]], var=grn.var[[]])
    a.obsm["tf_activity"] = pd.DataFrame(z, index=a.obs_names, columns=grn.obsm["tf_activity"].columns)
    return a, net


@pytest.fixture
def signed(_signed):
    a, net = _signed
    return a.copy(), net


def test_negative_data_are_refused_before_training_naming_the_linear_decoder(signed, fit_before_training):
    a, net = signed
    with pytest.raises(ValueError, match=r"negative.*gene_likelihood='normal'"):
        fit_before_training(a, net=net)


def test_the_linear_decoder_fits_a_matrix_of_contrasts(signed):
    a, net = signed
    model = rd.tl.fit_decoder(a, net=net, gene_likelihood="normal")
    assert model.config.output == "linear" and a.uns["regdecoder"]["params"]["gene_likelihood"] == "normal"
    assert a.uns["regdecoder"]["params"]["weights"] == "fit"
    rec = rd.metrics.recovery(a)
    assert rec["pcc"].min() > 0.95, rec
    # the activities are ulm's statistic of the profile as it is (no centre) on the learned weights
    x = a.to_df()
    es, padj = _ulm(x, rd.get.weights(a))
    t = rd.get.activities(a).to_df()[es.columns]
    np.testing.assert_allclose(t.to_numpy(), es.to_numpy(), rtol=2e-3, atol=2e-4)
    p = rd.get.activities(a, statistic="pvals").to_df()[es.columns].to_numpy().astype(np.float64)
    np.testing.assert_allclose(false_discovery_control(p, axis=1), padj.to_numpy(), rtol=2e-2, atol=1e-6)


def test_one_contrast_vector_gets_ulm_with_the_prior_weights(signed, caplog):
    a, net = signed
    one = a[3:4].copy()
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        model = rd.tl.fit_decoder(one, net=net, gene_likelihood="normal")
    assert "single sample" in caplog.text and "fixed at the prior" in caplog.text
    assert one.uns["regdecoder"]["params"]["weights"] == "prior" and one.uns["regdecoder"]["params"]["bias"] is False
    es, padj = _ulm(one.to_df(), net, signs=True)
    t = rd.get.activities(one).to_df()[es.columns]
    np.testing.assert_allclose(t.to_numpy(), es.to_numpy(), rtol=1e-3, atol=1e-4)
    p = rd.get.activities(one, statistic="pvals").to_df()[es.columns].to_numpy().astype(np.float64)
    np.testing.assert_allclose(false_discovery_control(p, axis=1), padj.to_numpy(), rtol=1e-2, atol=1e-7)
    # the latents: least squares of the profile on the prior's signs, with finite standard errors
    sign = np.sign(np.asarray(rd.pp.prepare_net(net, one.var_names).sign_matrix(), dtype=np.float64))
    z_ls = np.linalg.lstsq(sign, one.X[0].astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(one.obsm["regdecoder_z"].to_numpy()[0], z_ls, rtol=2e-2, atol=2e-2)
    rd.tl.infer(one, model, standard_errors=True, key_added="se")  # standard errors: when asked
    assert np.isfinite(one.obsm["se_z_se"].to_numpy()).all()
    np.testing.assert_array_equal(model.weights != 0, sign != 0)


def test_signatures_of_minus_one_zero_one_per_experiment_and_together(signed):
    """An experiments x genes matrix of signed signatures: scored together (learned weights) and
    each experiment alone with the prior's weights (weights='prior', bias=False): ulm per row."""
    a, net = signed
    sig = a.copy()
    sig.X = np.sign(np.where(np.abs(sig.X) > 1.0, sig.X, 0)).astype(np.float32)
    sig = sig[(sig.X != 0).any(1)].copy()  # an experiment without a changed gene says nothing
    alone = sig.copy()
    rd.tl.fit_decoder(alone, net=net, gene_likelihood="normal", weights="prior", bias=False)
    es, _ = _ulm(alone.to_df(), net, signs=True)
    np.testing.assert_allclose(rd.get.activities(alone).to_df()[es.columns], es, rtol=1e-3, atol=1e-4)
    first = sig[:1].copy()
    rd.tl.fit_decoder(first, net=net, gene_likelihood="normal")
    np.testing.assert_allclose(first.obsm["regdecoder"].to_numpy(), alone.obsm["regdecoder"].to_numpy()[:1], atol=1e-4)
    together = sig.copy()
    rd.tl.fit_decoder(together, net=net, gene_likelihood="normal")
    r = rd.metrics.recovery(together)
    assert r["pcc"].median() > 0.8, r


def test_scaled_data_fit_with_the_linear_decoder(signed):
    grn = rd.sim.grn(n_obs=200, n_genes=150, n_tfs=6, density=0.25, noise=0.1, seed=5)
    sc.pp.scale(grn)
    assert (grn.X < 0).any()
    rd.tl.fit_decoder(grn, net=grn.uns["sim"]["net"], gene_likelihood="normal")
    assert rd.metrics.recovery(grn)["pcc"].median() > 0.8


def test_signed_data_on_the_command_line(signed, tmp_path):
    a, net = signed
    a.write_h5ad(tmp_path / "contrasts.h5ad")
    net.to_csv(tmp_path / "net.tsv", sep="\t", index=False)
    args = [
        "fit",
        str(tmp_path / "contrasts.h5ad"),
        "--net",
        str(tmp_path / "net.tsv"),
        "--out",
        str(tmp_path / "o.h5ad"),
    ]
    assert main([*args, "-q"]) == 1  # refused: negative values
    assert main([*args, "--gene-likelihood", "normal", "-q"]) == 0
    assert ad.read_h5ad(tmp_path / "o.h5ad").uns["regdecoder"]["params"]["gene_likelihood"] == "normal"


# ------------------------------------------------------------------------------ one sample
def test_one_cell_gets_ulm_on_its_profile_never_silent_zeros(caplog):
    grn = rd.sim.grn(n_obs=50, n_genes=150, n_tfs=6, density=0.25, noise=0.1, seed=6)
    net = grn.uns["sim"]["net"]
    one = grn[7:8].copy()
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        model = rd.tl.fit_decoder(one, net=net)
    assert "single sample" in caplog.text
    # the weights are the prior's and there are no offsets: the epochs learn nothing that the
    # final exact latents and the t-values depend on, so no "more epochs" advice
    assert "max_epochs" not in caplog.text
    rd.tl.infer(one, model, standard_errors=True, key_added="se")  # standard errors: when asked
    es, _ = _ulm(one.to_df(), net, signs=True)
    t = rd.get.activities(one).to_df()[es.columns]
    np.testing.assert_allclose(t.to_numpy(), es.to_numpy(), rtol=1e-3, atol=1e-4)
    assert (np.abs(t.to_numpy()) > 0.1).any() and (one.obsm["regdecoder_pvals"].to_numpy() < 1).all()
    z, se = one.obsm["regdecoder_z"].to_numpy(), one.obsm["se_z_se"].to_numpy()
    assert (z != 0).any() and not (se == 0).any()  # identified latents have a standard error, others NaN
    truth = grn.obsm["tf_activity"].to_numpy()[7]
    assert np.corrcoef(truth, z[0])[0, 1] > 0.5


# ------------------------------------------------------------------------------ backed files and views
@pytest.fixture
def backed(tmp_path):
    grn = rd.sim.grn(n_obs=300, n_genes=60, n_tfs=5, density=0.3, noise=0.1, seed=2)
    net = grn.uns["sim"]["net"]
    del grn.uns["sim"]
    grn.X = sparse.csr_matrix(grn.X)
    grn.write_h5ad(tmp_path / "a.h5ad")
    b = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    yield b, net
    b.file.close()


def test_a_backed_anndata_fits_and_infers(backed):
    b, net = backed
    model = rd.tl.fit_decoder(b, net=net)
    rd.tl.infer(b, model, key_added="inf")
    np.testing.assert_allclose(b.obsm["inf"], b.obsm["regdecoder"], atol=1e-4)
    assert rd.get.activities(b).shape == (b.n_obs, len(model.latent_names))


def test_a_view_of_a_backed_anndata_is_refused_before_training(backed, fit_before_training):
    b, net = backed
    model = rd.tl.fit_decoder(b, net=net)
    with pytest.raises(ValueError, match=r"view of an AnnData opened with `backed='r'`.*to_memory\(\)"):
        fit_before_training(b[:250], net=net)
    with pytest.raises(ValueError, match=r"to_memory\(\)") as err:
        rd.tl.infer(b[:250], model, key_added="inf")
    assert "fit on" not in str(err.value)  # infer's error does not tell the user to fit
    mem = b[:250].to_memory()  # the fix works
    rd.tl.infer(mem, model, key_added="inf")
    np.testing.assert_allclose(mem.obsm["inf"], b.obsm["regdecoder"][:250], atol=1e-4)


def test_a_view_in_memory_becomes_an_anndata_of_its_own():
    grn = rd.sim.grn(n_obs=120, n_genes=60, n_tfs=5, density=0.3, noise=0.1, seed=2)
    view = grn[:80]
    rd.tl.fit_decoder(view, net=grn.uns["sim"]["net"])
    assert not view.is_view and view.obsm["regdecoder"].shape[0] == 80
    assert "regdecoder" not in grn.obsm  # the parent is not changed


def test_obs_names_that_are_not_strings_are_refused_before_training(fit_before_training):
    grn = rd.sim.grn(n_obs=60, n_genes=40, n_tfs=3, density=0.3, seed=0)
    with pytest.warns(UserWarning, match="strings"):  # anndata's own warning
        grn.obs_names = pd.Index(np.arange(grn.n_obs))
    with pytest.raises(ValueError, match=r"obs_names are not strings.*astype\(str\)"):
        fit_before_training(grn, net=grn.uns["sim"]["net"])


# ------------------------------------------------------------------------------ scripts for 0.1
def test_the_recipe_keywords_of_0_1_work_with_a_future_warning():
    """0.1's fit_decoder also took the recipe's fields as keywords (solver=, preset=, batch_size=,
    tol=, early_stopping=): a script written for it raised a bare TypeError."""
    grn = rd.sim.grn(n_obs=80, n_genes=60, n_tfs=4, density=0.3, noise=0.1, seed=1)
    net = grn.uns["sim"]["net"]
    given = {"solver": "als", "tol": 1e-3, "batch_size": 64, "early_stopping": False}
    with pytest.warns(FutureWarning) as rec:
        rd.tl.fit_decoder(grn, net=net, recipe={"max_epochs": 2}, **given)
    assert len(rec) == 4
    for k, v in given.items():
        assert any(f"`{k}=`" in str(w.message) and f"recipe={{'{k}': {v!r}}}" in str(w.message) for w in rec), k
        assert grn.uns["regdecoder"]["params"]["recipe"][k] == v
    with pytest.warns(FutureWarning, match=r"`preset=`.*recipe=\{'preset': 'paper'\}"):
        rd.tl.fit_decoder(grn, net=net, preset="paper", recipe={"max_epochs": 1})
    assert grn.uns["regdecoder"]["params"]["recipe"]["solver"] == "gradient"  # the paper's recipe
    with pytest.raises(TypeError, match="recipe="), pytest.warns(FutureWarning):
        rd.tl.fit_decoder(grn, net=net, tol=1e-3, recipe={"tol": 1e-4})


@pytest.mark.parametrize(
    ("keyword", "value", "fix"),
    [
        ("source", "tf", "net.rename(columns={'tf': 'source'})"),
        ("target", "gene", "net.rename(columns={'gene': 'target'})"),
        ("weight", "mor", "net.rename(columns={'mor': 'weight'})"),
        ("output", "linear", "gene_likelihood"),
        ("l1", 0.05, "soft_mask=0.05"),
        ("impl", "torch", "leave it out"),
    ],
)
def test_keywords_of_0_1_without_a_new_spelling_are_refused_naming_the_fix(keyword, value, fix, fit_before_training):
    grn = rd.sim.grn(n_obs=40, n_genes=60, n_tfs=4, density=0.3, noise=0.1, seed=1)
    net = grn.uns["sim"]["net"]
    with pytest.raises(TypeError, match=f"`{keyword}=`") as err:
        fit_before_training(grn, net=net, **{keyword: value})
    assert fix in str(err.value) and "regdecoder" not in grn.obsm


def test_keywords_of_0_1_work_with_a_future_warning(capsys):
    grn = rd.sim.grn(n_obs=80, n_genes=60, n_tfs=4, density=0.3, noise=0.1, seed=1)
    net = grn.uns["sim"]["net"]
    seen = []
    with pytest.warns(FutureWarning) as rec:
        rd.tl.fit_decoder(grn, net=net, max_epochs=2, callback=lambda s: seen.append(s["epoch"]))
    messages = sorted(str(w.message) for w in rec)
    assert len(messages) == 2 and "`callback=`" in messages[0] and "recipe={'callback': f}" in messages[0]
    assert "`max_epochs=`" in messages[1] and "recipe={'max_epochs': 2}" in messages[1]
    assert seen == [1, 2] and grn.uns["regdecoder"]["params"]["recipe"]["max_epochs"] == 2
    counts = grn.copy()
    counts.X = np.random.default_rng(0).poisson(5 * counts.X).astype(np.float32)
    with pytest.warns(FutureWarning, match=r"`loss=`.*gene_likelihood='poisson'"):
        rd.tl.fit_decoder(counts, net=net, loss="poisson", recipe={"max_epochs": 1})
    assert counts.uns["regdecoder"]["params"]["gene_likelihood"] == "poisson"
    assert rd.settings.progress is False
    with pytest.warns(FutureWarning, match=r"`progress=`.*rd.settings.progress = True"):
        rd.tl.fit_decoder(grn, net=net, progress=True, recipe={"max_epochs": 1})
    assert "fit_decoder (ALS)" in capsys.readouterr().err and rd.settings.progress is False
    with pytest.raises(TypeError, match="gene_likelihood="), pytest.warns(FutureWarning):
        rd.tl.fit_decoder(grn, net=net, loss="mse", gene_likelihood="mse")
