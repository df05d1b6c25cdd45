"""Prior networks (CollecTRI loader, files), identifiability diagnostics and bad network input."""

import logging
import os
import sys

import numpy as np
import pandas as pd
import pytest

import regdecoder as rd
from regdecoder.datasets._collectri import COLLECTRI_ENV

COLLECTRI = os.environ.get(COLLECTRI_ENV)


def _toy_net():
    # TF_A and TF_B regulate the same genes (not identifiable); TF_C's targets lie inside TF_D's.
    genes = [f"G{i}" for i in range(40)]
    rows = [("TF_A", g, 1.0) for g in genes[:10]] + [("TF_B", g, -1.0) for g in genes[:10]]
    rows += [("TF_C", g, 1.0) for g in genes[10:16]] + [("TF_D", g, 1.0) for g in genes[10:30]]
    rows += [("TF_E", g, -1.0) for g in genes[25:40]]
    return pd.DataFrame(rows, columns=["source", "target", "weight"]), genes


def test_read_net_and_fit_from_a_path(tmp_path, split_grn):
    train, _ = split_grn
    net = train.uns["sim"]["net"]
    path = tmp_path / "net.tsv"
    net.to_csv(path, sep="\t", index=False)
    back = rd.datasets.read_net(path)
    pd.testing.assert_frame_equal(back, net.reset_index(drop=True))
    a, b = train.copy(), train.copy()
    rd.tl.fit_decoder(a, net=net)
    rd.tl.fit_decoder(b, net=str(path))  # a path works wherever a net does
    np.testing.assert_allclose(a.obsm["regdecoder"], b.obsm["regdecoder"], rtol=1e-5, atol=1e-6)


def test_read_net_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No network file"):
        rd.datasets.read_net(tmp_path / "missing.tsv")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"tf": ["A"], "gene": ["B"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="no column"):
        rd.datasets.read_net(bad)


def test_collectri_from_path_and_env(tmp_path, monkeypatch):
    net, _ = _toy_net()
    path = tmp_path / "c.tsv"
    net.to_csv(path, sep="\t", index=False)
    monkeypatch.delenv(COLLECTRI_ENV, raising=False)
    pd.testing.assert_frame_equal(rd.datasets.collectri(path), net)
    monkeypatch.setenv(COLLECTRI_ENV, str(path))
    pd.testing.assert_frame_equal(rd.datasets.collectri(), net)
    monkeypatch.setenv(COLLECTRI_ENV, str(tmp_path / "nowhere.tsv"))
    with pytest.raises(FileNotFoundError, match=COLLECTRI_ENV):
        rd.datasets.collectri()


def test_collectri_offline_without_file_names_both_ways(monkeypatch):
    monkeypatch.delenv(COLLECTRI_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "decoupler", None)  # as if not installed
    with pytest.raises(RuntimeError, match=COLLECTRI_ENV) as err:
        rd.datasets.collectri()
    assert "path=" in str(err.value) and "decoupler" in str(err.value)


def test_collectri_download_failure_names_the_local_way(monkeypatch):
    dc = pytest.importorskip("decoupler")
    monkeypatch.delenv(COLLECTRI_ENV, raising=False)

    def offline(**kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(dc.op, "collectri", offline)
    with pytest.raises(RuntimeError, match="could not download") as err:
        rd.datasets.collectri()
    assert COLLECTRI_ENV in str(err.value)


@pytest.mark.skipif(not COLLECTRI, reason=f"set {COLLECTRI_ENV} to a local CollecTRI TSV to run this test")
def test_real_collectri_table():
    net = rd.datasets.collectri()
    assert list(net.columns[:3]) == ["source", "target", "weight"]
    assert len(net) == 43178 and net["source"].nunique() == 1186
    assert set(np.unique(net["weight"])) == {-1.0, 1.0}


def test_diagnostics_against_set_arithmetic(caplog):
    net, genes = _toy_net()
    adata = rd.sim.grn(n_obs=50, n_genes=40, n_tfs=2, seed=0)
    adata.var_names = genes
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rep = rd.tl.net_diagnostics(adata, net=net, tmin=5, max_jaccard=0.9)
    assert "TF_A/TF_B" in caplog.text and "resolve_collinear" in caplog.text
    sets = {tf: set(g.target) for tf, g in net.groupby("source")}
    for tf in sets:
        others = {o: s for o, s in sets.items() if o != tf}
        jac = {o: len(sets[tf] & s) / len(sets[tf] | s) for o, s in others.items()}
        cont = {o: len(sets[tf] & s) / len(sets[tf]) for o, s in others.items()}
        assert rep.loc[tf, "n_targets"] == len(sets[tf])
        assert rep.loc[tf, "max_jaccard"] == pytest.approx(max(jac.values()))
        assert rep.loc[tf, "max_containment"] == pytest.approx(max(cont.values()))
        assert rep.loc[tf, "load"] == pytest.approx(50 * len(sets[tf]) / (len(sets[tf]) + 50))
    assert rep.loc["TF_A", "most_similar"] == "TF_B" and rep.loc["TF_C", "contained_in"] == "TF_D"
    assert rep.loc["TF_C", "max_containment"] == 1.0 and not rep.loc["TF_C", "collinear"]
    assert rep["collinear"].tolist() == [True, True, False, False, False]
    assert rep.loc["TF_A", "group"] == rep.loc["TF_B", "group"] >= 0 and rep.loc["TF_E", "group"] == -1
    n_edges = len(net)
    assert rep.attrs["alpha_d"] == pytest.approx(50 * 40 / (n_edges + 50 * 5))


def test_resolve_collinear_merge_and_drop():
    net, genes = _toy_net()
    adata = rd.sim.grn(n_obs=50, n_genes=40, n_tfs=2, seed=0)
    adata.var_names = genes
    rep = rd.tl.net_diagnostics(adata, net=net)
    before = net.copy()
    merged = rd.tl.resolve_collinear(net, rep, how="merge")
    pd.testing.assert_frame_equal(net, before)  # input untouched
    assert "TF_A|TF_B" in set(merged.source) and not {"TF_A", "TF_B"} & set(merged.source)
    m = merged[merged.source == "TF_A|TF_B"]
    assert set(m.target) == set(genes[:10])
    assert set(m.weight) <= {-1.0, 1.0}  # +-1 nets stay +-1
    dropped = rd.tl.resolve_collinear(net, rep, how="drop")
    assert ("TF_A" in set(dropped.source)) != ("TF_B" in set(dropped.source))
    assert rd.tl.net_diagnostics(adata, net=merged)["collinear"].sum() == 0
    with pytest.raises(ValueError, match="how"):
        rd.tl.resolve_collinear(net, rep, how="average")
    with pytest.raises(ValueError, match="net_diagnostics"):
        rd.tl.resolve_collinear(net, pd.DataFrame({"x": [1]}))


def test_fit_does_not_fail_on_identical_regulons(split_grn):
    # Duplicate a TF under a second name: the design matrix of a linear model is singular
    # (decoupler's mlm raises), the ridge-regularised ALS still fits.
    train, _ = split_grn
    net = train.uns["sim"]["net"]
    twin = net[net.source == "TF0"].assign(source="TF0_twin")
    both = pd.concat([net, twin], ignore_index=True)
    adata = train.copy()
    rd.tl.fit_decoder(adata, net=both)
    z = pd.DataFrame(adata.obsm["regdecoder"], columns=adata.uns["regdecoder"]["latent_names"])
    assert np.isfinite(z.to_numpy()).all()
    rec = rd.metrics.recovery(adata)
    others = rec.drop(index=["TF0"], errors="ignore")["pcc"].dropna()
    assert others.mean() > 0.95  # the other TFs are unaffected


def test_gene_case_mismatch_and_swapped_columns(small_grn, caplog):
    net = small_grn.uns["sim"]["net"]
    lower = net.assign(target=net["target"].str.lower())
    with pytest.raises(ValueError, match="case"):
        rd.tl.fit_decoder(small_grn, net=lower)
    swapped = net.rename(columns={"source": "target", "target": "source"})
    # the "targets" are now TF names; the "sources" are genes
    with pytest.raises(ValueError, match="swapped"):
        rd.tl.fit_decoder(small_grn, net=swapped)
    # some genes in another case: used edges only, with a warning naming the fix
    mixed = net.copy()
    mixed.loc[mixed.index[:5], "target"] = mixed["target"].iloc[:5].str.lower()
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.tl.fit_decoder(small_grn.copy(), net=mixed, recipe={"max_epochs": 2})
    assert "case" in caplog.text


def test_tf_named_like_a_gene_is_a_separate_latent(split_grn):
    # Documented handling: a TF's activity is its own latent, whether or not its name is also a gene.
    train, _ = split_grn
    net = train.uns["sim"]["net"]
    gene = train.var_names[0]
    renamed = net.assign(source=net["source"].replace({"TF1": gene}))
    adata = train.copy()
    rd.tl.fit_decoder(adata, net=renamed)
    names = list(adata.uns["regdecoder"]["latent_names"])
    assert gene in names and adata.obsm["regdecoder"].shape[1] == 8
    truth = train.obsm["tf_activity"]["TF1"].to_numpy()
    assert np.corrcoef(truth, np.asarray(adata.obsm["regdecoder_z"])[:, names.index(gene)])[0, 1] > 0.95


def test_nan_weights_name_the_fix(small_grn):
    net = small_grn.uns["sim"]["net"].copy()
    net.loc[net.index[0], "weight"] = np.nan
    with pytest.raises(ValueError, match="missing or non-numeric weights; fill or drop them"):
        rd.tl.net_diagnostics(small_grn, net=net)
