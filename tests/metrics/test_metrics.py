"""rd.metrics: array metrics against independent references, and the AnnData front ends."""

import itertools

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import stats

import regdecoder as rd

# --------------------------------------------------------------- pearson_columns


@pytest.mark.parametrize("shape", [(5, 1), (12, 3), (40, 7)])
def test_pearson_columns_matches_scipy_pearsonr(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.normal(size=shape)
    # b partly correlated with a, so the values are not all near 0
    b = 0.7 * a + rng.normal(size=shape)
    got = rd.metrics.pearson_columns(a, b)
    ref = np.array([stats.pearsonr(a[:, j], b[:, j]).statistic for j in range(shape[1])])
    assert got.shape == (shape[1],)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_pearson_columns_one_dimensional_input():
    rng = np.random.default_rng(1)
    a = rng.normal(size=20)
    b = a - 0.5 * rng.normal(size=20)
    got = rd.metrics.pearson_columns(a, b)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)
    # a 1-D input is one column: same as the explicit column
    np.testing.assert_allclose(got, rd.metrics.pearson_columns(a[:, None], b[:, None]))


def test_pearson_columns_accepts_float32_and_lists():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(15, 2)).astype(np.float32)
    b = rng.normal(size=(15, 2)).astype(np.float32)
    ref = [stats.pearsonr(a[:, j].astype(np.float64), b[:, j].astype(np.float64)).statistic for j in range(2)]
    np.testing.assert_allclose(rd.metrics.pearson_columns(a.tolist(), b.tolist()), ref, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 1.0, -3.0])
def test_pearson_columns_constant_column_is_nan(value):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(10, 3))
    b = rng.normal(size=(10, 3))
    a[:, 1] = value
    got = rd.metrics.pearson_columns(a, b)
    assert np.isnan(got[1])
    ref = [stats.pearsonr(a[:, j], b[:, j]).statistic for j in (0, 2)]
    np.testing.assert_allclose(got[[0, 2]], ref, atol=1e-12)
    # also when the constant column is the second argument
    assert np.isnan(rd.metrics.pearson_columns(b, a)[1])


def test_pearson_columns_constant_column_not_representable_as_its_mean_is_nan():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(10, 2))
    b = rng.normal(size=(10, 2))
    a[:, 1] = 0.1
    assert np.ptp(a[:, 1]) == 0  # truly constant, zero variance
    assert np.isnan(rd.metrics.pearson_columns(a, b)[1])


@pytest.mark.parametrize(
    ("sa", "sb"),
    [((10, 3), (10, 2)), ((10, 3), (9, 3)), ((10,), (9,)), ((10, 1), (10, 2))],
)
def test_pearson_columns_shape_mismatch_raises(sa, sb):
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="same shape"):
        rd.metrics.pearson_columns(rng.normal(size=sa), rng.normal(size=sb))


def test_pearson_columns_rejects_three_dimensional_input():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        rd.metrics.pearson_columns(x, x)


# ------------------------------------------------------------- cross_correlation


@pytest.mark.parametrize(("n", "ka", "kb"), [(8, 1, 1), (20, 3, 5), (30, 4, 2)])
def test_cross_correlation_matches_corrcoef_block(n, ka, kb):
    rng = np.random.default_rng(n + ka + kb)
    a = rng.normal(size=(n, ka))
    b = rng.normal(size=(n, kb))
    b[:, 0] += a[:, 0]  # make at least one pair strongly correlated
    got = rd.metrics.cross_correlation(a, b)
    ref = np.corrcoef(a.T, b.T)[:ka, ka:]
    assert got.shape == (ka, kb)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    # the diagonal of the self cross-correlation is 1 and it agrees with pearson_columns
    np.testing.assert_allclose(np.diag(rd.metrics.cross_correlation(a, a)), 1.0)
    k = min(ka, kb)
    np.testing.assert_allclose(np.diag(got)[:k], rd.metrics.pearson_columns(a[:, :k], b[:, :k]), atol=1e-12)


def test_cross_correlation_row_mismatch_raises():
    with pytest.raises(ValueError, match="number of rows"):
        rd.metrics.cross_correlation(np.ones((5, 2)), np.ones((6, 2)))


# ----------------------------------------------------------------- match_factors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_match_factors_recovers_permutation_with_sign_flips(seed):
    rng = np.random.default_rng(seed)
    n, k = 60, 6
    true = rng.normal(size=(n, k))
    perm = rng.permutation(k)  # est column j is true column perm[j]
    signs = rng.choice([-1.0, 1.0], size=k)
    signs[0] = -1.0  # at least one flip
    est = true[:, perm] * signs * rng.uniform(0.5, 3.0, size=k) + 0.2 * rng.normal(size=(n, k))
    ti, zi = rd.metrics.match_factors(true, est)
    assert len(ti) == len(zi) == k
    mapping = dict(zip(ti.tolist(), zi.tolist(), strict=True))
    inv = np.argsort(perm)  # true column i is est column inv[i]
    assert mapping == {i: int(inv[i]) for i in range(k)}


def _brute_force_best(c):
    k_true, k_est = c.shape
    best = -np.inf
    for p in itertools.permutations(range(k_est), k_true):
        best = max(best, sum(c[i, p[i]] for i in range(k_true)))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_match_factors_is_optimal_brute_force_4x4(seed):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(10, 4))
    est = rng.normal(size=(10, 4)) + 0.5 * true @ rng.normal(size=(4, 4))
    ti, zi = rd.metrics.match_factors(true, est)
    assert sorted(ti.tolist()) == [0, 1, 2, 3] and sorted(zi.tolist()) == [0, 1, 2, 3]
    c = np.abs(np.corrcoef(true.T, est.T)[:4, 4:])
    assert c[ti, zi].sum() == pytest.approx(_brute_force_best(c), abs=1e-12)


def test_match_factors_fewer_estimated_than_true():
    rng = np.random.default_rng(5)
    true = rng.normal(size=(30, 4))
    est = -true[:, [2, 0]] + 0.1 * rng.normal(size=(30, 2))
    ti, zi = rd.metrics.match_factors(true, est)
    assert dict(zip(ti.tolist(), zi.tolist(), strict=True)) == {0: 1, 2: 0}
    c = np.abs(np.corrcoef(true.T, est.T)[:4, 4:])
    assert c[ti, zi].sum() == pytest.approx(_brute_force_best(c.T), abs=1e-12)


# -------------------------------------------------------------------------- mse


@pytest.mark.parametrize("shape", [(7,), (4, 5), (3, 2, 2)])
def test_mse_matches_numpy(shape):
    rng = np.random.default_rng(len(shape))
    x = rng.normal(size=shape)
    y = rng.normal(size=shape)
    d = (x - y).ravel()
    ref = float(d @ d) / d.size
    got = rd.metrics.mse(x, y)
    assert isinstance(got, float)
    assert got == pytest.approx(ref, rel=1e-12)
    assert rd.metrics.mse(x, x) == 0.0


def test_mse_float32_is_computed_in_float64():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = rng.normal(size=(6, 4)).astype(np.float32)
    d = x.astype(np.float64) - y.astype(np.float64)
    assert rd.metrics.mse(x, y) == pytest.approx(float(np.einsum("ij,ij->", d, d)) / d.size, rel=1e-12)


def test_mse_shape_mismatch_raises():
    with pytest.raises(ValueError, match="Shapes differ"):
        rd.metrics.mse(np.zeros((3, 2)), np.zeros((2, 3)))


# ---------------------------------------------------------------------- recovery


def _truth_adata(n=50, k=5, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"TF{i}" for i in range(k)]
    obs_names = [f"cell{i}" for i in range(n)]
    truth = pd.DataFrame(rng.gamma(2.0, 1.0, size=(n, k)), index=obs_names, columns=names)
    adata = AnnData(X=np.zeros((n, 3), dtype=np.float32), obs=pd.DataFrame(index=obs_names))
    adata.obsm["tf_activity"] = truth
    return adata, truth, rng


def test_recovery_by_name_aligns_shuffled_latents():
    adata, truth, rng = _truth_adata()
    order = rng.permutation(truth.columns.to_numpy())
    est = truth[order].to_numpy() + rng.normal(scale=0.8, size=truth.shape)
    est[:, 0] *= -1  # one negatively correlated latent
    adata.obsm["est"] = est
    adata.uns["est"] = {"latent_names": np.asarray(order, dtype=object)}
    rec = rd.metrics.recovery(adata, "est", match="name")
    assert list(rec.index) == list(truth.columns)
    assert rec.index.name == "factor"
    aligned = pd.DataFrame(est, columns=order)[truth.columns].to_numpy()
    ref = rd.metrics.pearson_columns(truth.to_numpy(), aligned)
    np.testing.assert_allclose(rec["pcc"].to_numpy(dtype=float), ref, atol=1e-12)
    np.testing.assert_allclose(rec["abs_pcc"].to_numpy(dtype=float), np.abs(ref), atol=1e-12)
    assert list(rec["latent"]) == list(truth.columns)
    assert rec.loc[order[0], "pcc"] < 0  # the flipped one keeps its sign
    # 'auto' picks the same when every latent is named like a factor
    pd.testing.assert_frame_equal(rd.metrics.recovery(adata, "est"), rec)


def test_recovery_by_name_missing_factor_is_nan():
    adata, truth, rng = _truth_adata()
    keep = ["TF3", "TF0", "TF4"]
    est = truth[keep].to_numpy() + rng.normal(scale=0.5, size=(adata.n_obs, 3))
    adata.obsm["est"] = est
    adata.uns["est"] = {"latent_names": np.asarray(keep, dtype=object)}
    rec = rd.metrics.recovery(adata, "est", match="auto")
    assert rec.loc[["TF1", "TF2"], "pcc"].isna().all()
    assert rec.loc[["TF1", "TF2"], "latent"].isna().all()
    for j, f in enumerate(keep):
        assert rec.loc[f, "latent"] == f
        assert rec.loc[f, "pcc"] == pytest.approx(np.corrcoef(truth[f], est[:, j])[0, 1], abs=1e-12)
    assert rec["pcc"].mean() == pytest.approx(
        np.mean([np.corrcoef(truth[f], est[:, j])[0, 1] for j, f in enumerate(keep)])
    )


def test_recovery_by_name_without_any_common_name_raises():
    adata, truth, rng = _truth_adata()
    adata.obsm["est"] = rng.normal(size=truth.shape)
    with pytest.raises(ValueError, match="hungarian"):
        rd.metrics.recovery(adata, "est", match="name")


def _permuted_copy(truth, rng, flips):
    k = truth.shape[1]
    perm = rng.permutation(k)  # latent j is factor perm[j]
    signs = np.ones(k)
    signs[flips] = -1.0
    est = truth.to_numpy()[:, perm] * signs * rng.uniform(0.5, 2.0, size=k)
    est += 0.15 * rng.normal(size=est.shape)
    return est, perm, signs


def test_recovery_hungarian_on_unnamed_latents():
    adata, truth, rng = _truth_adata(n=80, k=6, seed=1)
    est, perm, signs = _permuted_copy(truth, rng, flips=[1, 4])
    adata.obsm["est"] = est  # no uns['est']: latents are named latent_0...
    rec = rd.metrics.recovery(adata, "est", match="hungarian")
    assert list(rec.index) == list(truth.columns)
    for j, i in enumerate(perm):
        f = truth.columns[i]
        assert rec.loc[f, "latent"] == f"latent_{j}"
        ref = np.corrcoef(truth[f], est[:, j])[0, 1]
        assert rec.loc[f, "pcc"] == pytest.approx(ref, abs=1e-12)
        assert np.sign(rec.loc[f, "pcc"]) == signs[j]
    assert (rec["abs_pcc"] > 0.9).all()
    np.testing.assert_allclose(rec["abs_pcc"], rec["pcc"].abs())
    # 'auto' chooses Hungarian here (names are not factor names)
    pd.testing.assert_frame_equal(rd.metrics.recovery(adata, "est"), rec)


def test_recovery_auto_with_partly_foreign_names_uses_hungarian():
    adata, truth, rng = _truth_adata(n=80, k=4, seed=2)
    est, perm, _ = _permuted_copy(truth, rng, flips=[0])
    names = ["TF0", "TF1", "TF2", "other"]  # not all names are factors: names cannot be trusted
    adata.obsm["est"] = est
    adata.uns["est"] = {"latent_names": np.asarray(names, dtype=object)}
    auto = rd.metrics.recovery(adata, "est", match="auto")
    pd.testing.assert_frame_equal(auto, rd.metrics.recovery(adata, "est", match="hungarian"))
    for j, i in enumerate(perm):
        assert auto.loc[truth.columns[i], "latent"] == names[j]


def test_recovery_truth_as_plain_array():
    adata, truth, rng = _truth_adata(n=40, k=3, seed=3)
    adata.obsm["tf_activity"] = truth.to_numpy()
    est, perm, _ = _permuted_copy(truth, rng, flips=[])
    adata.obsm["est"] = est
    rec = rd.metrics.recovery(adata, "est")
    assert list(rec.index) == ["factor_0", "factor_1", "factor_2"]
    for j, i in enumerate(perm):
        assert rec.loc[f"factor_{i}", "latent"] == f"latent_{j}"


@pytest.mark.parametrize("match", ["names", "Hungarian", "", None])
def test_recovery_bad_match_raises(match):
    adata, truth, rng = _truth_adata(n=20, k=3)
    adata.obsm["est"] = truth.to_numpy()
    with pytest.raises(ValueError, match="`match` must be"):
        rd.metrics.recovery(adata, "est", match=match)


def test_recovery_missing_key_raises():
    adata, _, _ = _truth_adata(n=20, k=3)
    with pytest.raises(KeyError) as err:
        rd.metrics.recovery(adata, "not_there")
    msg = err.value.args[0]
    assert "'not_there'" in msg and "rd.tl.fit_decoder" in msg


def test_recovery_missing_truth_raises():
    adata, truth, _ = _truth_adata(n=20, k=3)
    adata.obsm["est"] = truth.to_numpy()
    with pytest.raises(KeyError) as err:
        rd.metrics.recovery(adata, "est", truth="truth_here")
    msg = err.value.args[0]
    assert "'truth_here'" in msg and "rd.sim.grn" in msg


def test_recovery_on_fitted_matches_pearson_columns(fitted):
    _, train, _ = fitted
    rec = rd.metrics.recovery(train)
    names = list(train.uns["regdecoder"]["latent_names"])
    t = train.obsm["tf_activity"]
    z = train.obsm["regdecoder_z"]  # the decoder's latents (recovery's default)
    ref = pd.Series(rd.metrics.pearson_columns(t[names].to_numpy(), z), index=names, dtype=float)
    pd.testing.assert_series_equal(rec["pcc"].loc[names], ref, check_names=False)


# ---------------------------------------------------------- reconstruction_error


def test_reconstruction_error_matches_numpy(fitted):
    model, train, _ = fitted
    x = np.asarray(train.X, dtype=np.float64)
    xhat = np.asarray(model.decode(train.obsm["regdecoder_z"]), dtype=np.float64)
    assert xhat.shape == x.shape
    ref = float(np.square(x - xhat).sum() / x.size)
    got = rd.metrics.reconstruction_error(train, model)
    assert isinstance(got, float)
    assert got == pytest.approx(ref, rel=1e-10)
    # the decoder explains the data better than the mean expression of each gene
    assert got < float(np.square(x - x.mean(0)).mean())


def test_reconstruction_error_genes_in_another_order(fitted):
    model, train, _ = fitted
    ref = rd.metrics.reconstruction_error(train, model)
    perm = np.random.default_rng(0).permutation(train.n_vars)
    shuffled = train[:, perm].copy()
    assert rd.metrics.reconstruction_error(shuffled, model) == pytest.approx(ref, rel=1e-10)


def test_reconstruction_error_uses_layer_and_key(fitted):
    model, train, _ = fitted
    rng = np.random.default_rng(0)
    train.layers["other"] = np.asarray(train.X) + rng.normal(scale=0.5, size=train.shape).astype(np.float32)
    train.obsm["z2"] = train.obsm["regdecoder"] * 0.5
    xhat = model.decode(train.obsm["z2"]).astype(np.float64)
    ref = float(np.mean((train.layers["other"].astype(np.float64) - xhat) ** 2))
    got = rd.metrics.reconstruction_error(train, model, "z2", layer="other")
    assert got == pytest.approx(ref, rel=1e-10)


def test_reconstruction_error_missing_key_raises(fitted):
    model, train, _ = fitted
    with pytest.raises(KeyError) as err:
        rd.metrics.reconstruction_error(train, model, "nope")
    assert "'nope'" in err.value.args[0] and "rd.tl.fit_decoder" in err.value.args[0]
