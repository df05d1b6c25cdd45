"""Networks as people bring them (issue 17): without signs, in decoupler 1.x's columns, with
messy names; mismatches that say what is wrong and never advise an option that does not exist."""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import regdecoder as rd
from regdecoder.cli import main


@pytest.fixture(scope="module")
def _grn():
    return rd.sim.grn(n_obs=200, n_genes=120, n_tfs=6, density=0.25, noise=0.1, seed=7)


@pytest.fixture
def grn(_grn):
    return _grn.copy()


# ------------------------------------------------------------------------------ nets without signs
def _activating(grn):
    """The simulated net keeping only its activating edges (so its true signs are all +1)."""
    net = grn.uns["sim"]["net"]
    return net[net["weight"] > 0].reset_index(drop=True)


@pytest.mark.parametrize("form", ["no weight column", "all weights +1"])
def test_a_net_without_signs_warns_and_orients_activities_with_their_targets(grn, form, caplog):
    net = _activating(grn)
    given = net.drop(columns="weight") if form == "no weight column" else net.assign(weight=1.0)
    x = grn.copy()
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.tl.fit_decoder(x, net=given)
    assert "activation (+1)" in caplog.text and "rise with its targets" in caplog.text
    assert set(x.uns["regdecoder"]["orientation"]) == {"prior"}
    r = rd.metrics.recovery(x, use="activities")
    assert (r["pcc"].dropna() > 0.5).all(), r  # never inverted


def test_decoupler_1x_mor_and_likelihood_columns_are_read_as_signs(grn, caplog):
    net = grn.uns["sim"]["net"]
    old = net.assign(mor=np.sign(net["weight"]), likelihood=1.0).drop(columns="weight")
    with caplog.at_level(logging.INFO, logger="regdecoder"):
        prior = rd.pp.prepare_net(old, grn.var_names)
    assert "`mor`" in caplog.text
    np.testing.assert_array_equal(prior.sign_matrix(), rd.pp.prepare_net(net, grn.var_names).sign_matrix())
    a, b = grn.copy(), grn.copy()
    rd.tl.fit_decoder(a, net=old)
    rd.tl.fit_decoder(b, net=net)
    np.testing.assert_allclose(a.obsm["regdecoder"], b.obsm["regdecoder"], atol=1e-5)


# ------------------------------------------------------------------------------ names
def test_whitespace_in_names_is_stripped_with_a_count(grn, caplog):
    net = grn.uns["sim"]["net"]
    messy = net.assign(source=net["source"] + " ", target=" " + net["target"])
    padded = grn.copy()
    padded.var_names = [f"{g} " if i % 3 == 0 else g for i, g in enumerate(grn.var_names)]
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.tl.fit_decoder(padded, net=messy)
    assert f"{len(net)} TF name(s) of `net` have leading or trailing whitespace" in caplog.text
    assert f"{len(net)} target gene name(s)" in caplog.text
    assert (
        f"{len(range(0, grn.n_vars, 3))} gene name(s) in var_names have leading or trailing whitespace" in caplog.text
    )
    clean = grn.copy()
    rd.tl.fit_decoder(clean, net=net)
    assert list(padded.obsm["regdecoder"].columns) == list(clean.obsm["regdecoder"].columns)
    np.testing.assert_allclose(padded.obsm["regdecoder"], clean.obsm["regdecoder"], atol=1e-5)


def _ensembl(grn):
    ids = pd.Index([f"ENSG{i:011d}" for i in range(grn.n_vars)])
    to_id = dict(zip(grn.var_names, ids, strict=True))
    net = grn.uns["sim"]["net"]
    return ids, net.assign(target=net["target"].map(to_id))


def test_ensembl_version_suffixes_are_matched_up_to_the_version(grn, caplog, fit_before_training):
    ids, net = _ensembl(grn)
    versioned = grn.copy()
    versioned.var_names = [f"{g}.{i % 7 + 1}" for i, g in enumerate(ids)]
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        model = rd.tl.fit_decoder(versioned, net=net)
    assert f"{grn.n_vars} Ensembl gene ID(s) in var_names have a version suffix" in caplog.text
    plain = grn.copy()
    plain.var_names = ids
    rd.tl.fit_decoder(plain, net=net)
    np.testing.assert_allclose(versioned.obsm["regdecoder"], plain.obsm["regdecoder"], atol=1e-5)
    assert model.var_names == list(versioned.var_names)  # the data's own names, as infer needs them
    # two versions of one ID: cannot be matched up to the version
    clash = grn.copy()
    clash.var_names = [f"{ids[0]}.2" if i == 1 else f"{g}.1" for i, g in enumerate(ids)]
    with pytest.raises(ValueError, match=r"\.str\.split\('\.'\)\.str\[0\]"):
        fit_before_training(clash, net=net)


def test_mouse_genes_against_a_human_net_say_so_not_lower_tmin(grn, fit_before_training):
    net = grn.uns["sim"]["net"]
    human = net.assign(target="GENE" + net["target"].str[1:])  # G12 -> GENE12, as human symbols
    mouse = grn.copy()
    mouse.var_names = ["Gene" + g[1:] for g in grn.var_names]  # G12 -> Gene12, as mouse symbols
    few = mouse.copy()  # a few genes match exactly (too few for any TF to keep tmin targets)
    few.var_names = [g.upper() if i < 8 else g for i, g in enumerate(mouse.var_names)]
    for data in (mouse, few):
        with pytest.raises(ValueError) as err:
            fit_before_training(data, net=human)
        msg = str(err.value)
        assert "case is ignored" in msg and "organism" in msg, msg
        assert "Lower `tmin`" not in msg and "source=" not in msg


def test_ensembl_ids_against_symbols_say_so(grn, fit_before_training):
    ids, _ = _ensembl(grn)
    data = grn.copy()
    data.var_names = ids
    with pytest.raises(ValueError, match=r"var_names are Ensembl IDs.*net's targets are not") as err:
        fit_before_training(data, net=grn.uns["sim"]["net"])
    assert "source=" not in str(err.value)


def test_swapped_columns_name_a_rename_not_an_option_that_does_not_exist(grn, tmp_path, fit_before_training):
    net = grn.uns["sim"]["net"]
    swapped = net.rename(columns={"source": "target", "target": "source"})
    # a data set whose genes include the TFs (as a TF-rich panel would)
    data = grn.copy()
    data.var_names = list(net["source"].unique()) + list(grn.var_names[net["source"].nunique() :])
    with pytest.raises(ValueError, match=r"swapped.*net\.rename\(columns=") as err:
        fit_before_training(data, net=swapped.assign(target="x" + swapped["target"]))
    assert "source=" not in str(err.value).replace("'source'", "")
    data.write_h5ad(tmp_path / "d.h5ad")
    swapped.assign(target="x" + swapped["target"]).to_csv(tmp_path / "n.tsv", sep="\t", index=False)
    assert (
        main(["fit", str(tmp_path / "d.h5ad"), "--net", str(tmp_path / "n.tsv"), "--out", str(tmp_path / "o"), "-q"])
        == 1
    )


def test_a_net_with_missing_columns_names_the_rename(grn, fit_before_training):
    net = grn.uns["sim"]["net"].rename(columns={"source": "tf", "target": "gene"})
    with pytest.raises(KeyError, match=r"net\.rename\(columns=") as err:
        fit_before_training(grn, net=net)
    assert "`source=`" not in str(err.value)


def test_tf_names_h5ad_and_zarr_cannot_hold_as_keys_are_stored_and_read_back(grn, tmp_path):
    net = grn.uns["sim"]["net"]
    odd = net.assign(source=net["source"].map({"TF0": "NR1H4/RXRA", "TF1": "50%"}).fillna(net["source"]))
    rd.tl.fit_decoder(grn, net=odd)
    assert {"NR1H4/RXRA", "50%"} <= set(rd.get.activities(grn).var_names)
    for fmt in ("h5ad", "zarr"):
        path = tmp_path / f"a.{fmt}"
        with warnings.catch_warnings():  # anndata announces that its zarr default will change
            warnings.filterwarnings("ignore", "Writing zarr v2", UserWarning)
            getattr(grn, f"write_{fmt}")(path)
        back = getattr(ad, f"read_{fmt}")(path)
        pd.testing.assert_frame_equal(rd.get.activities(back).to_df(), rd.get.activities(grn).to_df())
        assert set(rd.get.weights(back)["source"]) == {"NR1H4/RXRA", "50%", *net["source"].unique()} - {"TF0", "TF1"}
