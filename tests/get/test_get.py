"""rd.get: results out of an AnnData."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

import regdecoder as rd

# -------------------------------------------------------------------- activities


def test_activities_is_an_anndata_of_the_latents(fitted):
    _, train, _ = fitted
    act = rd.get.activities(train)
    assert isinstance(act, AnnData)
    assert act.shape == train.obsm["regdecoder"].shape
    np.testing.assert_array_equal(act.X, train.obsm["regdecoder"])
    assert list(act.var_names) == list(map(str, train.uns["regdecoder"]["latent_names"]))
    assert list(act.obs_names) == list(train.obs_names)
    pd.testing.assert_frame_equal(act.obs, train.obs)


def test_activities_is_independent_of_the_input(fitted):
    _, train, _ = fitted
    z_before = train.obsm["regdecoder"].copy()
    obs_before = train.obs.copy()
    act = rd.get.activities(train)
    act.X[:] = -1.0
    act.obs["new_col"] = "x"
    act.obs_names = [f"renamed{i}" for i in range(act.n_obs)]
    np.testing.assert_array_equal(train.obsm["regdecoder"], z_before)
    pd.testing.assert_frame_equal(train.obs, obs_before)
    assert "new_col" not in train.obs


def test_activities_after_infer_with_other_key(fitted):
    model, _, test = fitted
    test.obs["group"] = pd.Categorical(np.where(np.arange(test.n_obs) % 2, "a", "b"))
    rd.tl.infer(test, model, key_added="inf")
    act = rd.get.activities(test, "inf")
    np.testing.assert_array_equal(act.X, np.asarray(test.obsm["inf"]))
    assert list(act.var_names) == model.latent_names
    pd.testing.assert_frame_equal(act.obs, test.obs)


def test_activities_without_latent_names_is_an_error_not_invented_names():
    rng = np.random.default_rng(0)
    adata = AnnData(X=np.zeros((4, 2), dtype=np.float32))
    adata.obsm["z"] = rng.normal(size=(4, 3))
    with pytest.raises(ValueError, match="without latent names"):
        rd.get.activities(adata, "z")


def test_names_travel_with_obsm(fitted):
    # copying the activities to another object keeps the TF names (decoupler-style DataFrame)
    model, train, _ = fitted
    other = AnnData(X=np.zeros((train.n_obs, 1), dtype=np.float32), obs=train.obs.copy())
    other.obsm["tfa"] = train.obsm["regdecoder"]
    act = rd.get.activities(other, "tfa")
    assert list(act.var_names) == model.latent_names
    np.testing.assert_array_equal(act.X, np.asarray(train.obsm["regdecoder"]))


def test_activities_missing_key_raises(fitted):
    _, train, _ = fitted
    with pytest.raises(KeyError) as err:
        rd.get.activities(train, "nope")
    assert "'nope'" in err.value.args[0] and "obsm" in err.value.args[0]


# ----------------------------------------------------------------------- weights


def test_weights_are_the_nonzero_entries(fitted):
    _, train, _ = fitted
    w = train.varm["regdecoder_weights"]
    latents = list(map(str, train.uns["regdecoder"]["latent_names"]))
    genes = list(map(str, train.var_names))
    ref = {(latents[j], genes[i]): float(w[i, j]) for i in range(w.shape[0]) for j in range(w.shape[1]) if w[i, j] != 0}
    assert len(ref) > 0
    df = rd.get.weights(train)
    assert list(df.columns) == ["source", "target", "weight"]
    assert len(df) == len(ref) == np.count_nonzero(w)
    got = {(s, t): float(v) for s, t, v in df.itertuples(index=False)}
    assert set(got) == set(ref)
    assert got == ref
    assert (df["weight"] != 0).all()
    assert list(df.index) == list(range(len(df)))


def test_weights_sorted_by_decreasing_magnitude(fitted):
    _, train, _ = fitted
    a = np.abs(rd.get.weights(train)["weight"].to_numpy())
    assert (np.diff(a) <= 0).all()
    assert a[0] == np.abs(train.varm["regdecoder_weights"]).max()


def test_weights_hand_made_matrix():
    w = np.array([[0.0, -3.0, 0.0], [0.5, 0.0, 2.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    adata = AnnData(X=np.zeros((2, 4), dtype=np.float32))
    adata.var_names = ["g0", "g1", "g2", "g3"]
    adata.varm["m_weights"] = w
    adata.uns["m"] = {"latent_names": np.asarray(["A", "B", "C"], dtype=object)}
    df = rd.get.weights(adata, "m")
    expected = pd.DataFrame(
        {"source": ["B", "C", "C", "A"], "target": ["g0", "g1", "g2", "g1"], "weight": [-3.0, 2.0, -1.0, 0.5]}
    )
    pd.testing.assert_frame_equal(df, expected, check_dtype=False)


def test_weights_without_latent_names_is_an_error():
    adata = AnnData(X=np.zeros((2, 2), dtype=np.float32))
    adata.var_names = ["g0", "g1"]
    adata.varm["m_weights"] = np.array([[0.0, 1.0], [-2.0, 0.0]])
    with pytest.raises(KeyError, match="obsm\\['m'\\]"):
        rd.get.weights(adata, "m")


def test_weights_missing_key_raises(fitted):
    _, train, _ = fitted
    with pytest.raises(KeyError) as err:
        rd.get.weights(train, "other")
    msg = err.value.args[0]
    assert "'other_weights'" in msg and "varm" in msg


# ----------------------------------------------- activities for scanpy's plots


@pytest.fixture
def embedded(fitted):
    """Training cells with what a scanpy session leaves: an embedding, groups and their colours."""
    _, train, _ = fitted
    rng = np.random.default_rng(1)
    train.obsm["X_umap"] = rng.normal(size=(train.n_obs, 2))
    train.obsm["X_pca"] = rng.normal(size=(train.n_obs, 5))
    train.obs["group"] = pd.Categorical(rng.choice(["a", "b", "c"], size=train.n_obs))
    train.uns["group_colors"] = np.array(["#ff0000", "#00ff00", "#0000ff"], dtype=object)
    train.uns["neighbors"] = {"params": {"n_neighbors": 15}}
    train.obsp["connectivities"] = sparse.identity(train.n_obs, format="csr")
    return train


def test_activities_keep_embeddings_and_colours_not_results(embedded):
    act = rd.get.activities(embedded)
    assert set(act.obsm) == {"X_umap", "X_pca", "tf_activity"}  # the simulator's truth is the user's data
    np.testing.assert_array_equal(act.obsm["X_umap"], embedded.obsm["X_umap"])
    assert list(act.uns) == ["group_colors"]  # no gene neighbours, no regdecoder records
    assert len(act.obsp) == 0
    act.obsm["X_umap"][:] = 0.0  # copied: the input is untouched
    act.uns["group_colors"][0] = "#000000"
    assert (embedded.obsm["X_umap"] != 0).all() and embedded.uns["group_colors"][0] == "#ff0000"


def test_activities_leave_out_every_regdecoder_table(embedded, fitted):
    model, _, _ = fitted
    rd.tl.infer(embedded, model, key_added="again", standard_errors=True)
    tables = {k for k in embedded.obsm if k.startswith(("regdecoder", "again"))}
    assert {"regdecoder_padj", "again_z_se"} <= tables
    assert not tables & set(rd.get.activities(embedded, "again").obsm)


# scanpy 1.11 calls Colormap.set_bad, which matplotlib 3.11 announces it will deprecate
@pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")
def test_scanpy_umap_colours_cells_by_a_tf(embedded):
    sc = pytest.importorskip("scanpy")
    act = rd.get.activities(embedded)
    tf = act.var_names[1]
    ax = sc.pl.umap(act, color=tf, show=False)
    assert ax.get_title() == tf
    dots = ax.collections[0]
    np.testing.assert_allclose(np.sort(np.asarray(dots.get_offsets())[:, 0]), np.sort(embedded.obsm["X_umap"][:, 0]))
    np.testing.assert_allclose(np.sort(dots.get_array()), np.sort(act[:, tf].X.ravel()), rtol=1e-6)
    ax = sc.pl.umap(act, color="group", show=False)  # the stored colours of the groups are used
    used = {tuple(np.round(c[:3], 3)) for c in ax.collections[0].get_facecolors()}
    assert used == {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)}


def test_scanpy_matrixplot_shows_group_means(embedded):
    sc = pytest.importorskip("scanpy")
    act = rd.get.activities(embedded)
    plot = sc.pl.matrixplot(act, list(act.var_names), groupby="group", show=False, return_fig=True)
    expected = pd.DataFrame(act.X, columns=act.var_names).groupby(act.obs["group"].to_numpy()).mean()
    np.testing.assert_allclose(plot.values_df.loc[["a", "b", "c"]].to_numpy(), expected.to_numpy(), rtol=1e-5)
    plot.make_figure()
    assert [t.get_text() for t in plot.get_axes()["mainplot_ax"].get_xticklabels()] == list(act.var_names)


def test_padj_is_benjamini_hochberg_within_each_cell(fitted):
    statsmodels = pytest.importorskip("statsmodels.stats.multitest")
    _, train, _ = fitted
    p, padj = train.obsm["regdecoder_pvals"].to_numpy(), train.obsm["regdecoder_padj"]
    assert list(padj.columns) == list(train.obsm["regdecoder"].columns)
    for i in (0, 7, train.n_obs - 1):
        np.testing.assert_allclose(padj.iloc[i], statsmodels.multipletests(p[i], method="fdr_bh")[1], rtol=1e-5)
    np.testing.assert_array_equal(rd.get.activities(train, statistic="padj").X, padj.to_numpy())
