"""Count likelihoods, the simulator's counts mode, unannotated latents and the soft mask."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse, stats

import regdecoder as rd
from regdecoder.nn import nb_nll, negative_binomial, poisson_nll


@pytest.fixture(scope="module")
def _counts():
    return rd.sim.grn(n_obs=300, n_genes=120, n_tfs=6, density=0.25, noise=0.1, counts=True, seed=2)


@pytest.fixture
def counts(_counts):
    return _counts.copy()


@pytest.fixture(scope="module")
def _nb_fit(_counts):
    train, test = rd.pp.split(_counts, n_test=50, seed=0)
    model = rd.tl.fit_decoder(train, net=train.uns["sim"]["net"], gene_likelihood="nb", recipe={"max_epochs": 60})
    return model, train, test


def test_poisson_and_nb_match_scipy():
    gen = torch.Generator().manual_seed(0)
    rate = torch.rand(7, 5, generator=gen, dtype=torch.float64) * 3 + 0.1
    sf = torch.rand(7, 1, generator=gen, dtype=torch.float64) + 0.5
    x = torch.poisson(rate * sf, generator=gen)
    mu = (rate * sf).numpy()
    ref = -stats.poisson.logpmf(x.numpy(), mu).sum()
    assert float(poisson_nll(rate, x, sf)) == pytest.approx(ref, rel=1e-6)
    log_theta = torch.log(torch.tensor([0.5, 1.0, 2.0, 5.0, 50.0], dtype=torch.float64))
    theta = log_theta.exp().numpy()
    ref = -stats.nbinom.logpmf(x.numpy(), theta, theta / (theta + mu)).sum()
    assert float(nb_nll(rate, x, sf, log_theta)) == pytest.approx(ref, rel=1e-6)
    assert float(negative_binomial(log_theta)(rate, x, sf)) == pytest.approx(ref, rel=1e-6)
    assert float(rd.train.get_loss("poisson")(rate, x, sf)) == float(poisson_nll(rate, x, sf))
    with pytest.raises(ValueError, match="size factors"):
        poisson_nll(rate, x, None)


def test_simulator_counts_mode(counts):
    x = counts.X
    assert np.array_equal(x, np.round(x)) and x.min() >= 0 and x.dtype == np.float32
    clean = rd.sim.grn(n_obs=300, n_genes=120, n_tfs=6, density=0.25, noise=0.1, seed=2)
    np.testing.assert_array_equal(counts.layers["expression"], clean.X)  # the truth is kept
    pd.testing.assert_frame_equal(counts.obsm["tf_activity"], clean.obsm["tf_activity"])
    again = rd.sim.grn(n_obs=300, n_genes=120, n_tfs=6, density=0.25, noise=0.1, counts=True, seed=2)
    np.testing.assert_array_equal(again.X, x)
    assert x.sum(1).mean() == pytest.approx(2000, rel=0.1)
    # mean structure: counts / size factor are proportional to the clean expression
    s = counts.obs["size_factor"].to_numpy()
    ratio = (x / s[:, None]).sum(0) / counts.layers["expression"].sum(0).clip(1e-9)
    keep = counts.layers["expression"].sum(0) > 50
    assert np.std(ratio[keep]) / np.mean(ratio[keep]) < 0.1
    # dispersion: with constant size factors, var/mean of a gene's counts grows as 1 + a mu
    big = rd.sim.grn(n_obs=4000, n_genes=5, n_tfs=1, density=1.0, weight_low=0.5, counts=True, library_size=100,
                     dispersion=0.5, size_sd=0.0, tf_shape=50, tf_scale=0.02, seed=0)  # fmt: skip
    mu_true = big.layers["expression"] * (100 / big.layers["expression"].sum(1).mean())
    resid = (big.X - mu_true) ** 2 - mu_true
    alpha = resid.sum() / (mu_true**2).sum()
    assert alpha == pytest.approx(0.5, rel=0.15)
    with pytest.raises(ValueError, match="dispersion"):
        rd.sim.grn(n_obs=5, counts=True, dispersion=-1)


def test_nb_fit_recovers_and_infers(_nb_fit):
    model, train, test = _nb_fit
    assert model.likelihood == "nb" and model.config.output == "softplus"
    assert train.uns["regdecoder"]["params"]["gene_likelihood"] == "nb"
    nb = rd.metrics.recovery(train)["pcc"].mean()
    # reference: the usual route, MSE on log-normalised counts (the count noise bounds both)
    ln = train.copy()
    ln.X = np.log1p(ln.X / ln.X.sum(1, keepdims=True) * 1e4)
    rd.tl.fit_decoder(ln, net=train.uns["sim"]["net"])
    assert nb > 0.8 and nb >= rd.metrics.recovery(ln)["pcc"].mean()
    rd.tl.infer(test, model)
    assert rd.metrics.recovery(test)["pcc"].mean() > 0.75


def test_count_model_save_load_round_trip(_nb_fit, tmp_path):
    model, _, test = _nb_fit
    a, b = test.copy(), test.copy()
    rd.tl.infer(a, model)
    model.save(tmp_path / "m.pt")
    back = rd.tl.Model.load(tmp_path / "m.pt")
    assert back.likelihood == "nb" and back.library_ref == pytest.approx(model.library_ref)
    torch.testing.assert_close(back.log_theta, model.log_theta)
    rd.tl.infer(b, back)
    np.testing.assert_allclose(a.obsm["regdecoder"], b.obsm["regdecoder"], rtol=1e-5, atol=1e-5)


def test_poisson_fit_with_library_size_column_is_seeded(counts):
    train = counts[:200].copy()
    train.obs["lib"] = train.X.sum(1)
    net = train.uns["sim"]["net"]
    a, b = train.copy(), train.copy()
    rd.tl.fit_decoder(a, net=net, gene_likelihood="poisson", library_size="lib", seed=1, recipe={"max_epochs": 5})
    rd.tl.fit_decoder(b, net=net, gene_likelihood="poisson", seed=1, recipe={"max_epochs": 5})  # totals = lib
    np.testing.assert_array_equal(a.obsm["regdecoder"], b.obsm["regdecoder"])
    seen = []
    d = train.copy()
    rd.tl.fit_decoder(
                      d,
                      net=net,
                      gene_likelihood="poisson",
                      seed=1,
                      recipe={"max_epochs": 5, "callback": lambda s: seen.append((s["epoch"], s["model"].latent_names)) or s["epoch"] == 3},
                  )  # fmt: skip
    assert [e for e, _ in seen] == [1, 2, 3] and seen[0][1] == list(a.uns["regdecoder"]["latent_names"])
    c = train.copy()
    c.X = sparse.csr_matrix(c.X)
    rd.tl.fit_decoder(c, net=net, gene_likelihood="poisson", seed=1, recipe={"max_epochs": 5})
    np.testing.assert_allclose(a.obsm["regdecoder"], c.obsm["regdecoder"], rtol=1e-4, atol=1e-4)


def test_count_loss_bad_input(counts):
    net = counts.uns["sim"]["net"]
    frac = counts.copy()
    frac.X = frac.X * 0.5 + 0.25
    with pytest.raises(ValueError, match="non-integer"):
        rd.tl.fit_decoder(frac, net=net, gene_likelihood="nb")
    neg = counts.copy()
    neg.X[0, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        rd.tl.fit_decoder(neg, net=net, gene_likelihood="poisson")
    with pytest.raises(KeyError, match="Layer 'counts' not found"):
        rd.tl.fit_decoder(counts, net=net, gene_likelihood="nb", layer="counts")
    with pytest.raises(KeyError, match="obs"):
        rd.tl.fit_decoder(counts, net=net, gene_likelihood="nb", library_size="n_counts")
    with pytest.raises(ValueError, match="positive link"):
        rd.nn.DecoderConfig(n_genes=3, n_latent=1, likelihood="nb", output="linear")
    with pytest.raises(ValueError, match="gradient"):
        rd.tl.fit_decoder(counts, net=net, gene_likelihood="nb", recipe={"solver": "als"})
    with pytest.raises(ValueError, match="`gene_likelihood` must be one of"):
        rd.tl.fit_decoder(counts, net=net, gene_likelihood="gaussian")
    with pytest.raises(ValueError, match=r"Unknown field\(s\) \['learning_rate'\] in `recipe`"):
        rd.tl.fit_decoder(counts, net=net, gene_likelihood="nb", recipe={"learning_rate": 1.0})
    empty = counts.copy()
    empty.X[0] = 0
    with pytest.raises(ValueError, match="library size"):
        rd.tl.fit_decoder(empty, net=net, gene_likelihood="nb")


def test_count_model_refuses_normalised_new_cells(_nb_fit):
    model, _, test = _nb_fit
    bad = test.copy()
    bad.X = np.log1p(bad.X)
    with pytest.raises(ValueError, match="non-integer"):
        rd.tl.infer(bad, model)


def _with_hidden_factor(seed=1):
    adata = rd.sim.grn(n_obs=300, n_genes=150, n_tfs=6, density=0.25, noise=0.1, seed=seed)
    rng = np.random.default_rng(0)
    pre = adata.obsm["tf_activity"].to_numpy() @ adata.varm["true_weights"].to_numpy().T
    hidden = rng.gamma(2.0, 1.0, size=(adata.n_obs, 1)) @ rng.uniform(0, 1, size=(1, adata.n_vars))
    adata.X = np.maximum(pre + hidden, 0).astype(np.float32)
    return adata


def test_extra_latents_absorb_unannotated_variation():
    adata = _with_hidden_factor()
    net = adata.uns["sim"]["net"]
    truth = adata.obsm["tf_activity"].to_numpy()
    scores = {}
    for k in (0, 1):
        a = adata.copy()
        rd.tl.fit_decoder(a, net=net, n_extra=k)
        names = list(a.uns["regdecoder"]["latent_names"])
        assert names[6:] == [f"extra_{i}" for i in range(k)] and a.obsm["regdecoder"].shape[1] == 6 + k
        assert a.uns["regdecoder"]["params"]["n_extra"] == k
        scores[k] = rd.metrics.pearson_columns(truth, np.asarray(a.obsm["regdecoder_z"])[:, :6]).mean()
        if k:
            w = a.varm["regdecoder_weights"][:, 6]
            assert (w != 0).all()  # a dense column
    assert scores[1] > 0.9 > scores[0] + 0.1
    with pytest.raises(ValueError, match="n_extra"):
        rd.tl.fit_decoder(adata, net=net, n_extra=-1)
    with pytest.raises(ValueError, match="give `net=`"):
        rd.tl.fit_decoder(adata, n_latent=3, n_extra=1)


def test_soft_mask_finds_edges_missing_from_the_prior():
    adata = rd.sim.grn(n_obs=300, n_genes=150, n_tfs=6, density=0.25, noise=0.1, seed=4)
    net = adata.uns["sim"]["net"]
    strong = net["weight"].abs() > 0.5
    removed = net[strong].sample(15, random_state=0)
    prior = net.drop(index=removed.index)
    model = rd.tl.fit_decoder(adata, net=prior, soft_mask=True, recipe={"max_epochs": 100})
    assert adata.uns["regdecoder"]["params"]["soft_mask"]
    new = rd.get.new_edges(adata, n_top=15)
    assert list(new.columns) == ["source", "target", "weight", "rank_in_tf"]
    assert not new.merge(prior, on=["source", "target"]).shape[0]  # none is in the prior
    hits = new.merge(removed, on=["source", "target"]).shape[0]
    n_candidates = 6 * 150 - len(prior)
    assert hits >= 6 > 15 * 15 / n_candidates  # far above chance (0.7 expected)
    assert np.abs(new["weight"].to_numpy()).tolist() == sorted(np.abs(new["weight"].to_numpy()), reverse=True)
    # inference of new cells works on the dense decoder
    test = rd.sim.grn(n_obs=40, n_genes=150, n_tfs=6, density=0.25, noise=0.1, seed=4)
    rd.tl.infer(test, model)
    assert rd.metrics.recovery(test)["pcc"].mean() > 0.95
    with pytest.raises(ValueError, match="needs a network|give `net=`"):
        rd.tl.fit_decoder(adata.copy(), n_latent=3, soft_mask=True)
    with pytest.raises(KeyError, match="soft_mask=True"):
        rd.get.new_edges(test)


def test_extended_fits_leave_the_global_rng_alone(counts):
    state = torch.random.get_rng_state()
    net = counts.uns["sim"]["net"]
    rd.tl.fit_decoder(counts[:100].copy(), net=net, gene_likelihood="poisson", recipe={"max_epochs": 2})
    rd.tl.fit_decoder(counts[:100].copy(), net=net, soft_mask=True, layer="expression", recipe={"max_epochs": 2})
    assert torch.equal(torch.random.get_rng_state(), state)
