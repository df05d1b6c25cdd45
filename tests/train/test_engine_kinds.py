"""The one training loop for decoders, encoders on a frozen decoder and autoencoders."""

import numpy as np
import pytest
import torch
from torch import nn

from regdecoder.train import Recipe, RowAdam, RowSGD, fit_gradient, get_loss, infer_gradient, register_loss


def _linear_problem(n=200, n_in=12, n_lat=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_in, n_lat, generator=g)
    z = torch.randn(n, n_lat, generator=g)
    return z @ w.T, z, w


def _frozen_decoder(w):
    dec = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        dec.weight.copy_(w)
    return dec


def test_losses_match_torch_references():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(5, 7, generator=g).clamp(0.01, 0.99)
    x = torch.rand(5, 7, generator=g)
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).sum()
    torch.testing.assert_close(get_loss("bce")(p, x, None), bce)
    torch.testing.assert_close(get_loss("mse")(p, x, None), ((p - x) ** 2).sum())
    with pytest.raises(ValueError, match="Unknown loss 'l1'"):
        get_loss("l1")
    register_loss("l1_test", lambda a, b, e: (a - b).abs().sum())
    assert get_loss("l1_test")(p, x, None).item() == pytest.approx((p - x).abs().sum().item())


@pytest.mark.parametrize("objective", ["reconstruct", "latent"])
def test_encoder_on_frozen_decoder_learns_the_inverse(objective):
    x, z, w = _linear_problem()
    dec = _frozen_decoder(w)
    w_before = dec.weight.detach().clone()
    torch.manual_seed(0)  # the encoder's initialisation, independent of test order
    enc = nn.Linear(x.shape[1], z.shape[1], bias=False)
    rec = Recipe(max_epochs=150, batch_size=50, lr_encoder=3e-2)
    out, hist = fit_gradient(
        dec, x, None, rec, kind="encoder", encoder=enc, objective=objective, z_target=z, progress=False
    )
    assert out is None
    assert hist["loss"][-1] < 1e-3 * hist["loss"][0]
    torch.testing.assert_close(dec.weight, w_before)  # frozen
    assert dec.weight.requires_grad  # and given back trainable
    # on the data's span the encoder inverts the decoder: E W = I (numpy reference)
    np.testing.assert_allclose(enc.weight.detach().numpy() @ w.numpy(), np.eye(3), atol=2e-2)
    torch.testing.assert_close(enc(x).detach(), z, atol=5e-2, rtol=0)


def test_autoencoder_trains_both_parts_and_reconstructs():
    x, _, w = _linear_problem()
    torch.manual_seed(0)
    dec = nn.Linear(w.shape[1], w.shape[0], bias=False)
    enc = nn.Linear(w.shape[0], w.shape[1], bias=False)
    w0 = dec.weight.detach().clone()
    rec = Recipe(max_epochs=200, batch_size=50, lr_encoder=1e-2)
    _, hist = fit_gradient(dec, x, None, rec, kind="autoencoder", encoder=enc, progress=False)
    assert not torch.equal(dec.weight, w0)
    # a rank-3 linear autoencoder reaches the PCA optimum: zero error on rank-3 data
    assert hist["loss"][-1] < 1e-3 * float((x**2).mean())


def test_denoising_encoder_sees_noise_and_is_seeded():
    x, z, w = _linear_problem()
    dec = _frozen_decoder(w)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(0)
        enc = nn.Linear(x.shape[1], z.shape[1])
        rec = Recipe(max_epochs=5, batch_size=50, lr_encoder=1e-2)
        fit_gradient(dec, x, None, rec, kind="encoder", encoder=enc, noise=0.5, seed=seed, progress=False)
        runs.append(enc.weight.detach().clone())
    torch.testing.assert_close(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_image_shaped_latents_with_bce():
    g = torch.Generator().manual_seed(0)
    dec = nn.Sequential(nn.ConvTranspose2d(4, 1, 4, 2, 1), nn.Sigmoid())
    x = torch.rand(40, 1, 4, 4, generator=g).round()
    z = torch.randn(40, 4, 2, 2, generator=g)
    for zopt in ("sgd", "adam"):
        zz = z.clone()
        rec = Recipe(max_epochs=30, batch_size=8, z_optimizer=zopt, lr_z=0.05, reduction="sum")
        _, hist = fit_gradient(dec, x, zz, rec, loss="bce", progress=False)
        assert zz.shape == (40, 4, 2, 2)
        assert hist["loss"][-1] < 0.8 * hist["loss"][0]
    # test-time inference on unseen images lowers the loss with the decoder frozen
    xt = torch.rand(10, 1, 4, 4, generator=g).round()
    z0 = torch.zeros(10, 4, 2, 2)
    before = get_loss("bce")(dec(z0), xt, None).item()
    zt, _ = infer_gradient(dec, xt, z0, max_iter=100, loss="bce")
    assert get_loss("bce")(dec(zt), xt, None).item() < before


def test_row_optimisers_on_nd_rows_match_torch():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(6, 2, 3, 3, generator=g)
    ref = table[[1, 4]].clone().requires_grad_(True)
    for cls, topt in ((RowSGD, torch.optim.SGD), (RowAdam, torch.optim.Adam)):
        t = table.clone()
        r = ref.detach().clone().requires_grad_(True)
        kw = {"lr": 0.1, "momentum": 0.9} if cls is RowSGD else {"lr": 0.1}
        row, opt = cls(t, **kw), topt([r], **kw)
        for _ in range(3):
            grad = torch.randn(2, 2, 3, 3, generator=g)
            row.step(torch.tensor([1, 4]), grad)
            r.grad = grad.clone()
            opt.step()
        torch.testing.assert_close(t[[1, 4]], r.detach())
        torch.testing.assert_close(t[0], table[0])


def test_engine_rejects_bad_arguments():
    x, z, w = _linear_problem(n=10)
    dec = _frozen_decoder(w)
    rec = Recipe(max_epochs=1)
    with pytest.raises(ValueError, match="needs the latent table"):
        fit_gradient(dec, x, None, rec, progress=False)
    with pytest.raises(ValueError, match="needs an `encoder`"):
        fit_gradient(dec, x, None, rec, kind="encoder", progress=False)
    with pytest.raises(ValueError, match="Unknown kind"):
        fit_gradient(dec, x, z, rec, kind="vae", progress=False)
    with pytest.raises(ValueError, match="z_target"):
        fit_gradient(dec, x, None, rec, kind="encoder", encoder=nn.Linear(12, 3), objective="latent", progress=False)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        fit_gradient(dec, x, None, rec, kind="encoder", encoder=nn.Linear(12, 3), noise=-1.0, progress=False)


def test_recipe_updated_applies_overrides_then_fields():
    base = Recipe()
    rec = base.updated({"lr_z": 0.5, "batch_size": 7}, max_epochs=3.0, batch_size=None)
    assert (rec.lr_z, rec.batch_size, rec.max_epochs) == (0.5, 7, 3)
    assert isinstance(rec.max_epochs, int)
    assert base.updated(None) == base and base.max_epochs == Recipe().max_epochs  # a copy; base unchanged
    with pytest.raises(ValueError, match="Unknown field.*in `recipe`.*Valid fields"):
        base.updated({"lr": 1.0})


def test_nb_is_a_registered_loss_owned_by_the_decoder():
    from regdecoder.nn import Decoder, DecoderConfig, nb_nll

    dec = Decoder(DecoderConfig(n_genes=5, n_latent=2, output="softplus", likelihood="nb"))
    rate = torch.rand(4, 5) + 0.1
    x = torch.poisson(3 * rate)
    sf = torch.rand(4, 1) + 0.5
    loss = get_loss("nb", module=dec)
    torch.testing.assert_close(loss(rate, x, sf), nb_nll(rate, x, sf, dec.log_theta))
    torch.testing.assert_close(dec.nll(rate, x, sf), loss(rate, x, sf))  # the decoder's own likelihood
    with pytest.raises(ValueError, match="log_theta"):
        get_loss("nb")
