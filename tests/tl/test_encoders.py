"""Encoders on a frozen decoder, autoencoders, encode, the load and the load plot."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import regdecoder as rd
from regdecoder.nn import Encoder, EncoderConfig

FAST = {"max_epochs": 60, "batch_size": 50, "lr": 3e-3}


@pytest.fixture(scope="module")
def _enc_fitted(_fitted):
    model, train, test = _fitted
    train = train.copy()
    enc = rd.tl.fit_encoder(train, model, objective="latent", seed=0, **FAST)
    return model, enc, train, test


@pytest.fixture
def enc_fitted(_enc_fitted):
    """(model, encoder, train, test) with fresh copies of the AnnData objects."""
    model, enc, train, test = _enc_fitted
    return model, enc, train.copy(), test.copy()


# ---------------------------------------------------------------- nn.Encoder
def test_encoder_module_is_linear_then_leaky_relu():
    cfg = EncoderConfig(n_genes=7, n_latent=3)
    torch.manual_seed(0)
    enc = Encoder(cfg)
    x = torch.randn(5, 7)
    lin = enc.layers[0]
    ref = torch.nn.functional.leaky_relu(x @ lin.weight.T + lin.bias, 0.01)
    torch.testing.assert_close(enc(x), ref)
    assert enc.n_weights == 7 * 3 + 3
    mlp = Encoder(EncoderConfig(n_genes=7, n_latent=3, hidden=(4,)))
    assert len(mlp.layers) == 2 and mlp.n_weights == 7 * 4 + 4 + 4 * 3 + 3
    with pytest.raises(ValueError, match="positive integers"):
        EncoderConfig(n_genes=7, n_latent=3, hidden=(0,))
    with pytest.raises(ValueError, match="output"):
        EncoderConfig(n_genes=7, n_latent=3, output="relu")


def test_linear_encoder_on_centred_input():
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(n_genes=7, n_latent=3, hidden=(4,), output="linear", center=True))
    enc.x_mean.copy_(torch.arange(7.0))
    x = torch.randn(5, 7) + 3
    h1, h2 = enc.layers
    # numpy reference: hidden layers keep the LeakyReLU, the last layer is linear
    xc = (x - torch.arange(7.0)).numpy()
    a = xc @ h1.weight.detach().numpy().T + h1.bias.detach().numpy()
    a = np.where(a > 0, a, 0.01 * a)
    ref = a @ h2.weight.detach().numpy().T + h2.bias.detach().numpy()
    np.testing.assert_allclose(enc(x).detach().numpy(), ref, rtol=1e-5, atol=1e-5)
    assert (ref < 0).any()  # it can output negative latents at full scale
    # the input mean is part of the saved state; an uncentred encoder (0.1.0's files) has none
    assert "x_mean" in enc.state_dict() and "x_mean" not in Encoder(EncoderConfig(n_genes=7, n_latent=3)).state_dict()


# ---------------------------------------------------------------- load
def test_load_from_sizes_matches_the_formulas():
    N, n, m, e = 500, 1000, 100, 10_000
    out = rd.tl.load(n_obs=N, n_genes=n, n_latent=m, n_edges=e)
    assert out["alpha_d"] == pytest.approx(N * n / (e + N * m))
    assert out["alpha_d_all_weights"] == pytest.approx(N * n / (n * m + N * m))
    # the paper's encoder: Linear(n -> m) with biases
    assert out["n_weights_encoder"] == n * m + m
    assert out["alpha_e"] == pytest.approx(m * N / (n * m + m))
    assert out["alpha_ae"] == pytest.approx(N * n / (n * m + m + e))
    # the paper's "load 3.3" is N = 500 with every weight counted; N = 10,000 gives ~9.09
    assert rd.tl.load(n_obs=10_000, n_genes=n, n_latent=m)["alpha_d"] == pytest.approx(1e7 / 1.1e6)
    mlp = rd.tl.load(n_obs=N, n_genes=n, n_latent=m, encoder_hidden=(50,))
    assert mlp["n_weights_encoder"] == n * 50 + 50 + 50 * m + m


def test_load_from_model_anndata_and_encoder(enc_fitted):
    model, enc, train, _ = enc_fitted
    N, n, m = train.n_obs, train.n_vars, len(model.latent_names)
    nnz = model.decoder.n_weights
    from_model = rd.tl.load(model, n_obs=N)
    assert from_model["alpha_d"] == pytest.approx(N * n / (nnz + N * m))
    # every fit stores the same numbers under its key
    assert rd.tl.load(train)["alpha_d"] == pytest.approx(from_model["alpha_d"])
    stored = rd.tl.load(train, key="regdecoder_encoder")
    assert stored["alpha_e"] == pytest.approx(m * N / (n * m + m))
    assert stored["alpha_d"] == pytest.approx(from_model["alpha_d"])
    assert rd.tl.load(enc)["alpha_e"] == pytest.approx(stored["alpha_e"])
    assert rd.tl.load(model)["alpha_d"] == pytest.approx(from_model["alpha_d"])  # the model knows its N
    bare = rd.tl.Model(model.decoder, var_names=model.var_names, latent_names=model.latent_names)
    with pytest.raises(ValueError, match="n_obs"):
        rd.tl.load(bare)
    with pytest.raises(KeyError, match="fit_decoder"):
        rd.tl.load(train, key="nothing")
    with pytest.raises(ValueError, match="n_obs"):
        rd.tl.load(n_genes=10, n_latent=2)
    with pytest.raises(ValueError, match="n_edges"):
        rd.tl.load(n_obs=5, n_genes=10, n_latent=2, n_edges=21)
    with pytest.raises(FileNotFoundError, match="model.pt"):  # a path is read as a saved model (tests/tl/test_load.py)
        rd.tl.load("model.pt")
    with pytest.raises(TypeError, match="source"):
        rd.tl.load(3.5)


# ---------------------------------------------------------------- fit_encoder / encode
def test_fit_encoder_freezes_the_decoder_and_writes_results(fitted):
    model, train, test = fitted
    before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    x_before = train.X.copy()
    enc = rd.tl.fit_encoder(train, model, objective="reconstruct", seed=0, **FAST)
    for k, v in model.decoder.state_dict().items():
        torch.testing.assert_close(v, before[k])
    np.testing.assert_array_equal(train.X, x_before)
    assert enc.decoder is model.decoder and enc.kind == "encoder"  # shared, not copied
    z = np.asarray(train.obsm["regdecoder_encoder"])
    assert z.shape == (train.n_obs, len(model.latent_names)) and z.dtype == np.float32
    uns = train.uns["regdecoder_encoder"]
    assert list(uns["latent_names"]) == model.latent_names
    assert uns["params"]["objective"] == "reconstruct" and uns["params"]["seed"] == 0
    assert len(uns["history"]["loss"]) == FAST["max_epochs"]
    # the written latents are the encoder applied to the clean data (independent forward pass)
    lin = enc.encoder.layers[0]
    xt = torch.as_tensor(train.X)
    ref = torch.nn.functional.leaky_relu(xt @ lin.weight.T + lin.bias, 0.01).detach().numpy()
    np.testing.assert_allclose(z, ref, rtol=1e-4, atol=1e-4)
    # it learned: the training loss fell by far, and held-out latents track the true TFs
    assert uns["history"]["loss"][-1] < 0.2 * uns["history"]["loss"][0]
    rd.tl.encode(test, enc)
    assert rd.metrics.recovery(test, "regdecoder_encoder").pcc.mean() > 0.8


def test_latent_objective_regresses_onto_the_decoders_latents(enc_fitted):
    model, enc, train, test = enc_fitted
    z_dec = train.obsm["regdecoder"]
    z_enc = train.obsm["regdecoder_encoder"]
    # close to the decoder's own latents on the training cells (per-latent correlation)
    r = rd.metrics.pearson_columns(z_dec, z_enc)
    assert np.mean(r) > 0.9
    # and on new cells: compare with test-time inference by the decoder
    ref = rd.tl.infer(test, model, copy=True)
    rd.tl.encode(test, enc, key_added="enc")
    assert np.mean(rd.metrics.pearson_columns(ref.obsm["regdecoder"], test.obsm["enc"])) > 0.85


def test_fit_encoder_is_seeded(_fitted):
    model, train, _ = _fitted
    runs = []
    for seed in (1, 1, 2):
        ad = train.copy()
        rd.tl.fit_encoder(ad, model, noise=0.3, seed=seed, **{**FAST, "max_epochs": 3})
        runs.append(ad.obsm["regdecoder_encoder"])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_encode_reorders_genes_copy_and_save_load(enc_fitted, tmp_path):
    model, enc, _, test = enc_fitted
    out = rd.tl.encode(test, enc, copy=True)
    assert "regdecoder_encoder" not in test.obsm and out is not None
    shuffled = test[:, test.var_names[::-1]].copy()
    rd.tl.encode(shuffled, enc)
    np.testing.assert_allclose(shuffled.obsm["regdecoder_encoder"], out.obsm["regdecoder_encoder"], atol=1e-5)
    path = tmp_path / "enc.pt"
    enc.save(path)
    loaded = rd.tl.EncoderModel.load(path)
    assert loaded.kind == "encoder" and loaded.var_names == enc.var_names and loaded.n_obs == enc.n_obs
    again = rd.tl.encode(test, loaded, copy=True)
    np.testing.assert_allclose(again.obsm["regdecoder_encoder"], out.obsm["regdecoder_encoder"], atol=1e-6)
    # the saved decoder came along
    torch.testing.assert_close(loaded.decoder.get_weight(), model.decoder.get_weight())
    model.save(tmp_path / "dec.pt")  # one format: a decoder's file loads as a Model without an encoder
    with pytest.raises(TypeError, match="without an encoder"):
        rd.tl.encode(test, rd.tl.Model.load(tmp_path / "dec.pt"))


def test_mlp_encoder_option(_fitted):
    model, train, _ = _fitted
    ad = train.copy()
    enc = rd.tl.fit_encoder(ad, model, hidden=(16,), seed=0, **{**FAST, "max_epochs": 5})
    assert enc.encoder.config.hidden == (16,) and len(enc.encoder.layers) == 2
    assert rd.tl.load(ad, key="regdecoder_encoder")["n_weights_encoder"] == ad.n_vars * 16 + 16 + 16 * 8 + 8


@pytest.mark.slow  # ~15 s: three fits at N = 2,000
def test_encoder_on_centred_latents_recovers_new_cells():
    """The paper's Fig. 4 setting (density 0.1, no noise) at N = 2,000, scaled down to 200 genes and
    20 TFs: fit_decoder's default (per-gene offsets, latents centred: about half negative), then
    fit_encoder's default. Its linear output on centred input reaches signed PCC >= 0.99 on new cells;
    the paper's LeakyReLU output on the same latents stays far below (0.83-0.91 when written)."""
    adata = rd.sim.grn(n_obs=2100, n_genes=200, n_tfs=20, density=0.1, noise=0.0, seed=0)
    train, test = rd.pp.split(adata, n_test=100, seed=0)
    model = rd.tl.fit_decoder(train, net=train.uns["sim"]["net"], seed=0)
    assert model.config.bias and (np.asarray(train.obsm["regdecoder_z"]) < 0).mean() > 0.3
    enc = rd.tl.fit_encoder(train, model, seed=0)
    assert train.uns["regdecoder_encoder"]["params"]["output"] == "linear"
    assert enc.encoder.config.center
    torch.testing.assert_close(enc.encoder.x_mean, torch.as_tensor(train.X).mean(0))
    rd.tl.encode(test, enc)
    assert rd.metrics.recovery(test, "regdecoder_encoder").pcc.mean() >= 0.99
    paper = rd.tl.fit_encoder(train, model, output="leaky_relu", seed=0, key_added="paper")
    rd.tl.encode(test, paper)
    assert rd.metrics.recovery(test, "paper").pcc.mean() < 0.95


def test_encoder_output_auto_keeps_the_papers_leaky_relu_without_offsets(fitted, tmp_path):
    model, train, test = fitted  # fit_decoder(bias=False): the paper's eq. 6, latents are levels >= 0
    enc = rd.tl.fit_encoder(train, model, seed=0, **{**FAST, "max_epochs": 2})
    assert enc.encoder.config.output == "leaky_relu" and not enc.encoder.config.center
    lin = rd.tl.fit_encoder(train, model, output="linear", seed=0, key_added="lin", **{**FAST, "max_epochs": 2})
    assert train.uns["lin"]["params"]["output"] == "linear"
    lin.save(tmp_path / "lin.pt")
    back = rd.tl.Model.load(tmp_path / "lin.pt")
    torch.testing.assert_close(back.encoder.x_mean, lin.encoder.x_mean)
    a = rd.tl.encode(test, lin, copy=True).obsm["lin"]
    b = rd.tl.encode(test, back, copy=True).obsm["lin"]
    np.testing.assert_allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------- bad input
def test_encoder_bad_input(fitted, enc_fitted, monkeypatch):
    model, train, test = fitted
    ad = train.copy()
    with pytest.raises(TypeError, match="fitted decoder"):
        rd.tl.fit_encoder(ad, None)
    with pytest.raises(TypeError, match="fitted decoder"):
        rd.tl.fit_encoder(ad, ad)
    with pytest.raises(ValueError, match="noise.*>= 0"):
        rd.tl.fit_encoder(ad, model, noise=-0.1)
    with pytest.raises(ValueError, match="noise.*>= 0"):
        rd.tl.fit_autoencoder(ad, n_latent=2, noise=-1.0)
    with pytest.raises(ValueError, match="genes differ"):
        rd.tl.fit_encoder(ad[:, 5:].copy(), model)
    with pytest.raises(ValueError, match="objective"):
        rd.tl.fit_encoder(ad, model, objective="both")
    with monkeypatch.context() as mp:  # refused before any training starts
        mp.setattr(rd.tl._encoder, "fit_gradient", lambda *a, **k: pytest.fail("training started"))
        with pytest.raises(ValueError, match="`output` must be 'auto', 'leaky_relu' or 'linear'"):
            rd.tl.fit_encoder(ad, model, output="relu")
    with pytest.raises(ValueError, match="preset"):
        rd.tl.fit_encoder(ad, model, preset="slow")
    with pytest.raises(ValueError, match="Unknown field"):
        rd.tl.fit_encoder(ad, model, recipe={"lr_encodr": 1.0})
    bare = ad.copy()
    del bare.obsm["regdecoder"]
    with pytest.raises(KeyError, match="Run `rd.tl.fit_decoder`"):
        rd.tl.fit_encoder(bare, model, objective="latent")
    wrong = ad.copy()
    wrong.obsm["regdecoder_z"] = np.asarray(wrong.obsm["regdecoder_z"])[:, :3]
    with pytest.raises(ValueError, match="latent_key"):
        rd.tl.fit_encoder(wrong, model, objective="latent")
    _, enc, _, _ = enc_fitted
    with pytest.raises(ValueError, match="genes differ"):
        rd.tl.encode(test[:, :-1].copy(), enc)
    with pytest.raises(TypeError, match="without an encoder"):
        rd.tl.encode(test, model)
    with pytest.raises(TypeError, match="Model with an encoder"):
        rd.tl.encode(test, "enc.pt")
    with pytest.raises(ValueError, match="n_latent"):
        rd.tl.fit_autoencoder(ad)


# ---------------------------------------------------------------- autoencoder
def test_autoencoder_orients_latents_like_the_decoder(split_grn):
    train, test = split_grn
    x_before = train.X.copy()
    ae = rd.tl.fit_autoencoder(
        train,
        net=train.uns["sim"]["net"],
        max_epochs=80,
        batch_size=50,
        lr=5e-3,
        seed=0,
    )
    np.testing.assert_array_equal(train.X, x_before)
    key = "regdecoder_autoencoder"
    assert ae.kind == "autoencoder" and ae.decoder.config.masked
    uns = train.uns[key]
    assert set(uns["orientation"]) == {"prior"}  # the simulated net is signed
    # the written latents are the (rescaled) encoder output and reconstruct x through the decoder
    z = train.obsm[key]
    np.testing.assert_allclose(z, ae.encode_tensor(torch.as_tensor(train.X)).numpy(), atol=1e-5)
    # orientation: learned weights agree in sign with the prior on each TF (the 'prior' rule)
    w = train.varm[key + "_weights"]
    prior = train.varm["true_weights"].to_numpy()
    assert ((w * np.sign(prior)).sum(0) > 0).all()
    # orientation rescales but does not change the model's output
    xhat = ae.decode(z)
    assert rd.metrics.mse(train.X, xhat) < 0.7 * float(np.var(train.X))  # 0.47 when written
    assert uns["history"]["loss"][-1] < 0.5 * uns["history"]["loss"][0]
    # the reconstruction is what an independent numpy forward pass gives
    np.testing.assert_allclose(xhat, np.maximum(z @ w.T, 0), rtol=1e-4, atol=1e-4)
    rd.tl.encode(test, ae)
    assert rd.metrics.recovery(test, key).pcc.mean() > 0.5
    load = rd.tl.load(train, key=key)
    assert load["alpha_ae"] == pytest.approx(train.n_obs * train.n_vars / (ae.encoder.n_weights + ae.decoder.n_weights))


def test_autoencoder_dense_is_seeded(small_grn):
    outs = []
    for seed in (0, 0, 1):
        ad = small_grn.copy()
        rd.tl.fit_autoencoder(ad, n_latent=3, max_epochs=3, seed=seed)
        outs.append(ad.obsm["regdecoder_autoencoder"])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    assert ad.varm["regdecoder_autoencoder_weights"].shape == (ad.n_vars, 3)


# ---------------------------------------------------------------- plot
def _fake_results():
    rng = np.random.default_rng(0)
    rows = []
    for model in ("decoder", "autoencoder"):
        for a in (0.5, 1.0, 5.0):
            for _rep in range(3):
                rows.append({"model": model, "alpha_d": a, "test_mse": rng.random() + 0.1, "pcc": rng.random()})
    return pd.DataFrame(rows)


def test_load_curve_plots_mean_and_sd():
    df = _fake_results()
    fig = rd.pl.load_curve(df, return_fig=True)
    mse_ax, pcc_ax = fig.axes
    line = pcc_ax.get_lines()[0]
    ref = df[df.model == "decoder"].groupby("alpha_d").pcc.mean()
    np.testing.assert_allclose(line.get_xdata(), ref.index)
    np.testing.assert_allclose(line.get_ydata(), ref.to_numpy())
    assert mse_ax.get_yscale() == "log" and pcc_ax.get_xscale() == "log"
    assert [t.get_text() for t in pcc_ax.get_legend().get_texts()] == ["decoder", "autoencoder"]
    plt.close(fig)
    _, ax = plt.subplots()
    assert rd.pl.load_curve(df, metrics="pcc", ax=ax, show=False) is None
    assert len(ax.get_lines()) == 2
    plt.close("all")
    with pytest.raises(KeyError, match="lacks the column"):
        rd.pl.load_curve(df.drop(columns="pcc"))
    with pytest.raises(ValueError, match="one Axes per metric"):
        rd.pl.load_curve(df, ax=ax)
    plt.close("all")
