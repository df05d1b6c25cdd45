"""rd.get: results out of an AnnData."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

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
