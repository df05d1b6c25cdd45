"""The AnnData boundary: one results record that names every key a fit or an inference writes,
writes them once and reads them back, whatever the solver."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import regdecoder as rd
from regdecoder import _anndata

PACKAGE = Path(rd.__file__).parent


def test_only_the_boundary_names_the_keys_of_a_result():
    """The suffixes of the record's keys appear as string constants in _anndata.py alone
    (docstrings aside): every other module asks the record."""
    suffixes = {s for s in _anndata.TABLES.values() if s} | {_anndata.WEIGHTS}
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_anndata.py" and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text())
        docs = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in suffixes and id(node) not in docs:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert not found, found


@pytest.fixture(scope="module")
def grn():
    return rd.sim.grn(n_obs=150, n_genes=60, n_tfs=5, density=0.3, noise=0.1, seed=2)


@pytest.mark.parametrize(
    "recipe", [None, {"solver": "gradient", "max_epochs": 3}, {"preset": "paper", "max_epochs": 2}], ids=str
)
def test_every_solver_reports_the_same_statistic(grn, recipe):
    """A masked squared-error decoder reports the marginal t, its p-values and the latents (their
    standard errors when asked, by infer), whichever solver fitted it (0.2 wrote raw latents for the
    gradient solvers)."""
    a = grn.copy()
    model = rd.tl.fit_decoder(a, net=grn.uns["sim"]["net"], recipe=recipe)
    assert a.uns["regdecoder"]["statistic"] == "t"
    assert {_anndata.table_key("regdecoder", n) for n in _anndata.TABLES if n != "z_se"} <= set(a.obsm)
    assert "regdecoder_z_se" not in a.obsm
    x = np.asarray(a.X, dtype=np.float64) - np.asarray(a.X, dtype=np.float64).mean(0)
    w = model.weights.astype(np.float64)
    wc = w - w.mean(0)
    yc = x - x.mean(1, keepdims=True)
    beta = yc @ wc / (wc**2).sum(0)  # ulm's slope, and its t with G - 2 degrees of freedom
    rss = (yc**2).sum(1, keepdims=True) - beta**2 * (wc**2).sum(0)
    t = beta / np.sqrt(rss / (x.shape[1] - 2) / (wc**2).sum(0))
    np.testing.assert_allclose(rd.get.activities(a).X, t, rtol=2e-3, atol=2e-3)


def test_the_record_reads_back_what_it_wrote_into_another_anndata(grn):
    a = grn.copy()
    model = rd.tl.fit_decoder(a, net=grn.uns["sim"]["net"], key_added="fit")
    rd.tl.infer(a, model, standard_errors=True, key_added="inf")  # every table, the standard errors too
    payload = _anndata.read_results(a, "fit")
    b = grn.copy()
    _anndata.write(b, "fit", **payload)
    for name in _anndata.TABLES:
        if name != "z_se":
            pd.testing.assert_frame_equal(_anndata.read_table(a, "fit", name), _anndata.read_table(b, "fit", name))
    c = grn.copy()
    _anndata.write(c, "inf", **_anndata.read_results(a, "inf"))
    for name in _anndata.TABLES:
        pd.testing.assert_frame_equal(_anndata.read_table(a, "inf", name), _anndata.read_table(c, "inf", name))
    np.testing.assert_array_equal(a.varm["fit_weights"], b.varm["fit_weights"])
    pd.testing.assert_frame_equal(rd.get.weights(a, "fit"), rd.get.weights(b, "fit"))
    assert b.uns["fit"]["statistic"] == "t" and list(b.uns["fit"]["latent_names"]) == list(a.uns["fit"]["latent_names"])
    assert set(a.uns["fit"]) == set(b.uns["fit"])


def test_a_later_call_under_the_same_key_leaves_no_table_of_an_earlier_one(grn):
    a = grn.copy()
    rd.tl.fit_decoder(a, net=grn.uns["sim"]["net"], key_added="k")
    assert "k_z" in a.obsm and "k_weights" in a.varm
    rd.tl.fit_decoder(a, n_latent=3, key_added="k", recipe={"max_epochs": 2})  # a dense decoder: latents only
    assert a.uns["k"]["statistic"] == "z" and "k_z" not in a.obsm and "k_pvals" not in a.obsm
    with pytest.raises(KeyError, match="with a decoder masked by a network"):
        rd.get.activities(a, "k", statistic="z_se")


def test_the_record_refuses_fields_it_does_not_name(grn):
    with pytest.raises(ValueError, match="Not fields of the results record"):
        _anndata.write(grn.copy(), "k", tables={"activity": np.zeros((grn.n_obs, 1))}, latent_names=["a"],
                       params={}, colour="red")  # fmt: skip


# ------------------------------------------------------------------------------ files round-trip
@pytest.fixture(scope="module")
def fitted():
    """A fit and an inference on cells with integer-like names, a merged latent 'TF1|TF1b' and a
    TF named with a '/' (zarr refuses it as a key)."""
    grn = rd.sim.grn(n_obs=120, n_genes=60, n_tfs=5, density=0.3, noise=0.1, seed=8)
    net = grn.uns["sim"]["net"].replace({"source": {"TF2": "NR1H4/RXRA"}})
    net = pd.concat([net, net[net.source == "TF1"].assign(source="TF1b")], ignore_index=True)
    del grn.uns["sim"]
    grn.obs_names = [str(i) for i in range(grn.n_obs)]
    grn.obs["group"] = pd.Categorical(np.where(np.arange(grn.n_obs) % 2, "a", "b"))
    train, test = grn[:80].copy(), grn[80:].copy()
    model = rd.tl.fit_decoder(train, net=net)
    rd.tl.infer(test, model)
    assert {"TF1|TF1b", "NR1H4/RXRA"} <= set(model.latent_names)
    return model, train, test


def _round_trip(adata, path, fmt):
    with warnings.catch_warnings():  # anndata announces that its zarr default will change
        warnings.filterwarnings("ignore", "Writing zarr v2", UserWarning)
        getattr(adata, f"write_{fmt}")(path)
    return getattr(ad, f"read_{fmt}")(path)


def _variants(train, test):
    return {
        "as fitted": train,
        "copy": train.copy(),
        "subset": train[10:40],
        "subset copy": train[10:40].copy(),
        "inferred": test,
        "concat": ad.concat([train, test], merge="same", uns_merge="same"),
    }


@pytest.mark.parametrize("fmt", ["h5ad", pytest.param("zarr", marks=pytest.mark.slow)])  # zarr: ~15 s
def test_fitted_and_inferred_anndata_round_trip(fitted, tmp_path, fmt):
    model, train, test = fitted
    for name, obj in _variants(train, test).items():
        back = _round_trip(obj, tmp_path / f"{name}.{fmt}", fmt)
        back.copy()
        acts = rd.get.activities(back)
        pd.testing.assert_frame_equal(acts.to_df(), rd.get.activities(obj).to_df(), obj=name)
        assert acts.var_names.tolist() == model.latent_names, name
        if name not in ("concat", "inferred"):  # concat keeps the tables, not the fit's record; infer writes no weights
            pd.testing.assert_frame_equal(rd.get.weights(back), rd.get.weights(obj), obj=name)
            assert back.uns["regdecoder"]["statistic"] == "t"
        rd.tl.infer(back, model, key_added="again")
        np.testing.assert_allclose(back.obsm["again"], np.asarray(obj.obsm["regdecoder"]), atol=1e-4, err_msg=name)
        rd.pl.activities(back, groupby="group", show=False)
