import os

import numpy as np
import pandas as pd
import pytest

import regdecoder as rd


def test_grn_matches_its_own_ground_truth():
    ad = rd.sim.grn(n_obs=50, n_genes=40, n_tfs=6, density=0.2, noise=0.0, seed=1)
    z = ad.obsm["tf_activity"]
    w = ad.varm["true_weights"]
    assert ad.X.dtype == np.float32 and ad.X.shape == (50, 40)
    assert isinstance(z, pd.DataFrame) and list(z.columns) == list(w.columns)
    assert (z.to_numpy() >= 0).all()
    # eq. 6 without noise: x = ReLU(W z), recomputed independently with numpy.
    np.testing.assert_allclose(ad.X, np.maximum(z.to_numpy() @ w.to_numpy().T, 0), rtol=1e-5, atol=1e-5)
    # the net lists exactly the non-zero weights
    net = ad.uns["sim"]["net"]
    assert list(net.columns) == ["source", "target", "weight"]
    dense = (
        net.pivot(index="target", columns="source", values="weight")
        .reindex(index=ad.var_names, columns=w.columns)
        .fillna(0.0)
    )
    np.testing.assert_array_equal(dense.to_numpy(), w.to_numpy())
    assert not net.duplicated(["source", "target"]).any()


def test_every_tf_has_a_target_even_at_tiny_density():
    ad = rd.sim.grn(n_obs=10, n_genes=20, n_tfs=30, density=0.001, seed=0)
    assert (ad.varm["true_weights"].to_numpy() != 0).any(axis=0).all()


def test_distributions_follow_parameters():
    ad = rd.sim.grn(
        n_obs=4000,
        n_genes=200,
        n_tfs=20,
        density=0.1,
        tf_shape=3.0,
        tf_scale=0.5,
        weight_low=0.5,
        weight_high=2.0,
        noise=0.0,
        seed=0,
    )
    z = ad.obsm["tf_activity"].to_numpy()
    assert z.mean() == pytest.approx(1.5, rel=0.02)  # Gamma mean shape*scale
    assert z.var() == pytest.approx(0.75, rel=0.05)  # shape*scale^2
    w = ad.uns["sim"]["net"]["weight"].to_numpy()
    assert w.min() >= 0.5 and w.max() <= 2.0
    frac = (ad.varm["true_weights"].to_numpy() != 0).mean()
    assert frac == pytest.approx(0.1, abs=0.01)


def test_noise_is_gaussian_before_relu():
    ad = rd.sim.grn(n_obs=300, n_genes=50, n_tfs=5, density=0.3, noise=0.3, seed=2)
    clean = ad.obsm["tf_activity"].to_numpy() @ ad.varm["true_weights"].to_numpy().T
    pos = ad.X > 0
    resid = ad.X[pos] - clean[pos]
    # positive entries: clean + eps where clean + eps > 0; where clean is large, eps is uncensored
    big = clean[pos] > 2.0
    assert resid[big].std() == pytest.approx(0.3, rel=0.1)


def test_seed_reproducible():
    a = rd.sim.grn(n_obs=20, n_genes=30, n_tfs=4, seed=5, noise=0.1)
    b = rd.sim.grn(n_obs=20, n_genes=30, n_tfs=4, seed=5, noise=0.1)
    c = rd.sim.grn(n_obs=20, n_genes=30, n_tfs=4, seed=6, noise=0.1)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)


def test_paper_setting_sizes():
    ad = rd.sim.grn(n_obs=5, seed=0)
    assert ad.shape == (5, 1000) and ad.obsm["tf_activity"].shape == (5, 100)
    assert ad.uns["sim"]["params"]["density"] == 0.1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_obs": 0},
        {"n_genes": 2.5},
        {"density": 0},
        {"density": 1.5},
        {"tf_shape": -1},
        {"weight_low": 1, "weight_high": 1},
        {"noise": -0.1},
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError, match="must"):
        rd.sim.grn(**kwargs)


def test_split_is_seeded_and_disjoint(small_grn):
    tr, te = rd.pp.split(small_grn, n_test=40, seed=1)
    tr2, te2 = rd.pp.split(small_grn, n_test=40, seed=1)
    assert te.n_obs == 40 and tr.n_obs == small_grn.n_obs - 40
    assert set(tr.obs_names).isdisjoint(te.obs_names)
    assert list(te.obs_names) == list(te2.obs_names)
    _, te3 = rd.pp.split(small_grn, n_test=40, seed=2)
    assert list(te.obs_names) != list(te3.obs_names)
    np.testing.assert_array_equal(
        te.obsm["tf_activity"].to_numpy(), small_grn[te.obs_names].obsm["tf_activity"].to_numpy()
    )
    with pytest.raises(ValueError, match="n_test"):
        rd.pp.split(small_grn, n_test=small_grn.n_obs)
    with pytest.raises(ValueError, match="not both"):
        rd.pp.split(small_grn, n_test=3, test_fraction=0.1)


def _toy_net():
    # TF A: 6 targets (two repressed), B: 5, C: 2 (dropped by tmin=5); G8 is only C's target
    rows = [("A", f"G{i}", -1.0 if i < 2 else 1.0) for i in range(6)]
    rows += [("B", f"G{i}", 1.0) for i in range(3, 8)] + [("C", "G0", 1.0), ("C", "G8", -1.0)]
    return pd.DataFrame(rows, columns=["source", "target", "weight"])


def test_grn_on_a_networks_topology_matches_its_own_truth():
    net = _toy_net()
    ad = rd.sim.grn(n_obs=300, net=net, tmin=5, offset_mean=-0.5, offset_sd=0.5, seed=3)
    assert list(ad.var_names) == [f"G{i}" for i in range(8)]  # the kept TFs' targets, sorted; G8 gone with C
    w = ad.varm["true_weights"]
    assert list(w.columns) == ["A", "B"] and list(ad.obsm["tf_activity"].columns) == ["A", "B"]
    # topology and signs are the net's, magnitudes in [0.5, 1]
    truth = ad.uns["sim"]["net"]
    kept = net[net.source.isin(["A", "B"])].sort_values(["source", "target"], ignore_index=True)
    pd.testing.assert_frame_equal(truth[["source", "target"]], kept[["source", "target"]])
    np.testing.assert_array_equal(np.sign(truth.weight), kept.weight)
    assert truth.weight.abs().between(0.5, 1.0).all()
    dense = truth.pivot(index="target", columns="source", values="weight").reindex(index=ad.var_names).fillna(0.0)
    np.testing.assert_array_equal(dense.to_numpy(), w.to_numpy())
    # eq. 6 with offsets, no noise, recomputed with numpy
    b = ad.var["true_offset"].to_numpy()
    z = ad.obsm["tf_activity"].to_numpy()
    np.testing.assert_allclose(ad.X, np.maximum(z @ w.to_numpy().T + b, 0), rtol=1e-5, atol=1e-5)
    assert (ad.X == 0).any()  # the negative offsets censor some values
    p = ad.uns["sim"]["params"]
    assert p["from_net"] and p["n_edges"] == 11 and p["n_tfs"] == 2 and p["n_genes"] == 8 and p["tmin"] == 5


def test_grn_on_a_network_without_weights_and_from_a_file(tmp_path):
    net = _toy_net().drop(columns="weight")
    ad = rd.sim.grn(n_obs=10, net=net, seed=0, weight_low=0.2, weight_high=0.3)
    assert ad.uns["sim"]["net"].weight.between(0.2, 0.3).all()  # no signs: activations
    path = tmp_path / "net.tsv"
    _toy_net().to_csv(path, sep="\t", index=False)
    from_file = rd.sim.grn(n_obs=10, net=str(path), seed=0)
    from_frame = rd.sim.grn(n_obs=10, net=_toy_net(), seed=0)
    np.testing.assert_array_equal(from_file.X, from_frame.X)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_genes": 10}, "drop `n_genes`"),
        ({"density": 0.1, "n_tfs": 3}, "drop `n_tfs`, `density`"),
        ({"weight_low": -1.0}, "magnitudes"),
        ({"tmin": 7}, "tmin=7"),
        ({"offset_sd": -1.0}, "standard deviations"),
    ],
)
def test_bad_parameters_with_a_network(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rd.sim.grn(n_obs=5, net=_toy_net(), **kwargs)
    with pytest.raises(KeyError, match="rename"):
        rd.sim.grn(n_obs=5, net=_toy_net().rename(columns={"target": "gene"}))


def test_expression_in_blocks_equals_one_block(monkeypatch):
    whole = rd.sim.grn(n_obs=50, n_genes=40, n_tfs=5, noise=0.3, offset_sd=1.0, seed=4)
    monkeypatch.setattr(rd.sim._grn, "_CHUNK_ELEMENTS", 7 * 40)  # blocks of 7 cells
    blocks = rd.sim.grn(n_obs=50, n_genes=40, n_tfs=5, noise=0.3, offset_sd=1.0, seed=4)
    np.testing.assert_array_equal(whole.X, blocks.X)


@pytest.mark.skipif(
    not os.environ.get("REGDECODER_COLLECTRI"), reason="set REGDECODER_COLLECTRI to a local CollecTRI TSV"
)
def test_grn_on_collectri_has_its_size():
    ad = rd.sim.grn(n_obs=3, net=rd.datasets.collectri(), tmin=5, seed=0)
    p = ad.uns["sim"]["params"]
    assert (p["n_tfs"], p["n_genes"], p["n_edges"]) == (772, 6652, 42308)
