"""rd.tl.rank_activities (regdecoder/tl/_rank.py): per group against the rest, checked against
scipy, statsmodels' Benjamini-Hochberg and decoupler's rankby_group."""

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import regdecoder as rd
from regdecoder.tl._rank import adjust_pvalues


@pytest.fixture
def grouped(fitted):
    """Training cells in three groups: cells high in TF2, cells high in TF5, the rest."""
    _, train, _ = fitted
    t = train.obsm["tf_activity"]
    hi2 = t["TF2"] > t["TF2"].quantile(0.8)
    hi5 = (t["TF5"] > t["TF5"].quantile(0.8)) & ~hi2
    train.obs["group"] = pd.Categorical(np.select([hi2, hi5], ["TF2-high", "TF5-high"], "other"))
    return train


def _bh(p):
    from statsmodels.stats.multitest import multipletests

    return multipletests(p, method="fdr_bh")[1]


@pytest.mark.parametrize("method", ["t-test", "wilcoxon"])
def test_each_tf_against_scipy_and_statsmodels(grouped, method):
    table = rd.tl.rank_activities(grouped, "group", method=method)
    assert list(table.columns) == ["group", "reference", "name", "stat", "meanchange", "pval", "padj"]
    z = grouped.obsm["regdecoder"]
    assert len(table) == 3 * z.shape[1] and set(table["reference"]) == {"rest"}
    for g in ("TF2-high", "other"):
        inside = (grouped.obs["group"] == g).to_numpy()
        rows = table[table["group"] == g].set_index("name").loc[z.columns]
        for tf in z.columns:
            x = z[tf].to_numpy(np.float64)
            a, b = x[inside], x[~inside]
            ref = stats.ttest_ind(a, b, equal_var=False) if method == "t-test" else stats.ranksums(a, b)
            np.testing.assert_allclose(rows.loc[tf, ["stat", "pval"]].to_numpy(float), [ref.statistic, ref.pvalue],
                                       rtol=1e-6)  # fmt: skip
            assert rows.loc[tf, "meanchange"] == pytest.approx(a.mean() - b.mean(), rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(rows["padj"], _bh(rows["pval"].to_numpy()), rtol=1e-10)  # BH within the group


@pytest.mark.parametrize("method", ["t-test", "wilcoxon"])
def test_the_same_table_as_decouplers_rankby_group(grouped, method):
    dc = pytest.importorskip("decoupler")
    ours = rd.tl.rank_activities(grouped, "group", method=method)
    theirs = dc.tl.rankby_group(rd.get.activities(grouped), groupby="group", method=method)
    key = ["group", "name"]
    both = ours.astype({c: str for c in key}).merge(theirs.astype({c: str for c in key}), on=key, suffixes=("", "_dc"))
    assert len(both) == len(ours) == len(theirs)
    for col in ("stat", "meanchange", "pval", "padj"):
        np.testing.assert_allclose(both[col], both[col + "_dc"], rtol=1e-5, atol=1e-7, err_msg=col)
    # the same order within each group: padj, then pval, then decreasing stat
    for g in ("TF2-high", "TF5-high", "other"):
        ranked = ours[ours["group"] == g]["name"].astype(str).tolist()
        assert ranked[:3] == theirs[theirs["group"] == g]["name"].astype(str).tolist()[:3]


def test_the_planted_tf_leads_its_group(grouped):
    table = rd.tl.rank_activities(grouped, "group")
    for tf in ("TF2", "TF5"):
        top = table[table["group"] == f"{tf}-high"].iloc[0]
        assert top["name"] == tf and top["stat"] > 0 and top["meanchange"] > 0 and top["padj"] < 1e-6


def test_record_in_uns_survives_h5ad(grouped, tmp_path):
    table = rd.tl.rank_activities(grouped, "group", reference="rest", key_added="ranked")
    rec = grouped.uns["ranked"]
    assert rec["params"] == {"groupby": "group", "key": "regdecoder", "reference": "rest", "method": "t-test",
                             "corr_method": "benjamini-hochberg"}  # fmt: skip
    pd.testing.assert_frame_equal(rec["results"], table)
    grouped.write_h5ad(tmp_path / "ranked.h5ad")
    back = ad.read_h5ad(tmp_path / "ranked.h5ad").uns["ranked"]["results"]
    np.testing.assert_allclose(back["padj"].to_numpy(), table["padj"].to_numpy())


def test_one_group_against_another_and_the_latents(grouped):
    table = rd.tl.rank_activities(grouped, "group", groups=["TF2-high"], reference="TF5-high", key="regdecoder_z")
    assert set(table["group"]) == {"TF2-high"} and set(table["reference"]) == {"TF5-high"}
    z = grouped.obsm["regdecoder_z"].astype(np.float64)
    g = grouped.obs["group"].to_numpy()
    ref = stats.ttest_ind(z[g == "TF2-high"], z[g == "TF5-high"], equal_var=False)
    got = table.set_index("name").loc[z.columns]
    np.testing.assert_allclose(got["stat"], ref.statistic, rtol=1e-6)
    assert got["stat"]["TF2"] > 0 > got["stat"]["TF5"]


def test_missing_activities_are_left_out_per_tf(grouped):
    tf = grouped.obsm["regdecoder"].columns[0]
    grouped.obsm["regdecoder"].iloc[:5, 0] = np.nan  # e.g. cells without expression
    table = rd.tl.rank_activities(grouped, "group")
    row = table[(table["group"] == "other") & (table["name"] == tf)].iloc[0]
    x, inside = grouped.obsm["regdecoder"][tf].to_numpy(np.float64), (grouped.obs["group"] == "other").to_numpy()
    a, b = x[inside], x[~inside]
    ref = stats.ttest_ind(a[np.isfinite(a)], b[np.isfinite(b)], equal_var=False)
    assert row["stat"] == pytest.approx(ref.statistic, rel=1e-6) and row["pval"] == pytest.approx(ref.pvalue, rel=1e-6)
    assert np.isfinite(table["padj"]).all()


def test_a_group_of_one_cell_is_not_tested(grouped, caplog):
    grouped.obs["group"] = grouped.obs["group"].cat.add_categories("alone")
    grouped.obs.iloc[0, grouped.obs.columns.get_loc("group")] = "alone"
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        table = rd.tl.rank_activities(grouped, "group")
    assert "alone" in caplog.text and "fewer than 2 cells" in caplog.text
    alone = table[table["group"] == "alone"]
    assert len(alone) == grouped.obsm["regdecoder"].shape[1] and alone[["stat", "pval", "padj"]].isna().all().all()
    assert table[table["group"] != "alone"]["padj"].notna().all()


def test_bad_arguments_name_the_fix(grouped):
    with pytest.raises(KeyError, match="not a column of adata.obs"):
        rd.tl.rank_activities(grouped, "cell_type")
    with pytest.raises(ValueError, match="`method` must be one of"):
        rd.tl.rank_activities(grouped, "group", method="logreg")
    with pytest.raises(KeyError, match="groups \\['B'\\]"):
        rd.tl.rank_activities(grouped, "group", groups=["B"])
    with pytest.raises(KeyError, match="reference='B'"):
        rd.tl.rank_activities(grouped, "group", reference="B")
    with pytest.raises(KeyError, match="obsm"):
        rd.tl.rank_activities(grouped, "group", key="nothing")
    # a numeric column (e.g. genes per cell) is not groups: refused, as scanpy's rank_genes_groups does
    grouped.obs["n_counts"] = np.arange(grouped.n_obs, dtype=float)
    with pytest.raises(ValueError, match=r"numeric \(\d+ distinct values\).*astype\('category'\)"):
        rd.tl.rank_activities(grouped, "n_counts")
    assert "rank_activities" not in grouped.uns  # nothing written on an error
    # the same numbers as categories are groups
    grouped.obs["two"] = pd.Categorical(np.arange(grouped.n_obs) % 2)
    assert set(rd.tl.rank_activities(grouped, "two")["group"]) == {"0", "1"}


def test_adjust_pvalues_against_statsmodels_with_missing_values():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(6, 9)) ** 3
    p[2, [1, 4]] = np.nan
    p[4] = np.nan
    out = adjust_pvalues(p, axis=1)
    for i in (0, 3, 5):
        np.testing.assert_allclose(out[i], _bh(p[i]), rtol=1e-12)
    ok = np.isfinite(p[2])
    np.testing.assert_allclose(out[2, ok], _bh(p[2, ok]), rtol=1e-12)
    assert np.isnan(out[2, ~ok]).all() and np.isnan(out[4]).all()
    np.testing.assert_allclose(adjust_pvalues(p.T, axis=0), out.T)
    # rows adjusted a block at a time (blocks of 4 split the missing rows across two) give the
    # same answer; float32 tables stay float32, within float32 rounding of statsmodels
    np.testing.assert_array_equal(adjust_pvalues(p, axis=1, block=4), out)
    out32 = adjust_pvalues(p.astype(np.float32), axis=1, block=4)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32[0], _bh(p[0].astype(np.float32)), rtol=1e-6)
