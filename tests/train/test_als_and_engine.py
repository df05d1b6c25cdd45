"""The solvers on tensors, without AnnData, against independent references."""

import numpy as np
import pytest
import torch

from regdecoder.nn import Decoder, DecoderConfig
from regdecoder.train import RowAdam, RowSGD, censored_loss, fit_als, fit_gradient, orient, resolve_device
from regdecoder.train._als import _MaskIndex, solve_weights


def _problem(n_cells=60, n_genes=30, n_latent=4, density=0.4, seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_genes, n_latent)) < density
    mask[rng.integers(n_genes, size=n_latent), np.arange(n_latent)] = True
    w = rng.uniform(-1, 1, (n_genes, n_latent)) * mask
    z = rng.gamma(2.0, 1.0, (n_cells, n_latent))
    x = np.maximum(z @ w.T + rng.normal(0, 0.1, (n_cells, n_genes)), 0)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return t(x), t(w), t(z), torch.tensor(mask)


def test_weight_step_is_per_gene_least_squares_within_mask():
    x, _, z, mask = _problem()
    for bias in (False, True):
        out = solve_weights(z, x, _MaskIndex(mask, bias), ridge=0.0, bias=bias)
        for i in range(x.shape[1]):
            cols = np.flatnonzero(mask[i].numpy())
            design = z.numpy()[:, cols]
            if bias:
                design = np.column_stack([design, np.ones(len(design))])
            ref = np.linalg.lstsq(design, x[:, i].numpy(), rcond=None)[0]
            np.testing.assert_allclose(out[i, cols].numpy(), ref[: len(cols)], rtol=1e-6, atol=1e-8)
            if bias:
                assert out[i, -1].item() == pytest.approx(ref[-1], rel=1e-6, abs=1e-8)
            off = np.setdiff1d(np.arange(mask.shape[1]), cols)
            assert (out[i, off] == 0).all()


def test_weight_step_dense_mask_shared_solve():
    x, _, z, _ = _problem()
    full = torch.ones(x.shape[1], z.shape[1], dtype=torch.bool)
    out = solve_weights(z, x, _MaskIndex(full, False), ridge=0.0, bias=False)
    ref = np.linalg.lstsq(z.numpy(), x.numpy(), rcond=None)[0].T
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6, atol=1e-8)


def _masked_decoder(mask, bias=False, dtype=torch.float64):
    rows, cols = torch.nonzero(mask, as_tuple=True)
    cfg = DecoderConfig(n_genes=mask.shape[0], n_latent=mask.shape[1], masked=True, bias=bias)
    return Decoder(cfg, rows, cols).to(dtype)


def test_als_loss_never_increases_and_recovers_truth():
    x, w, z_true, mask = _problem(n_cells=300, n_genes=80, n_latent=5, density=0.3)
    dec = _masked_decoder(mask)
    prior = torch.sign(w)
    z, hist = fit_als(dec, x, prior_sign=prior, max_epochs=30, tol=0.0, progress=False)
    loss = np.array(hist["loss"])
    assert (np.diff(loss) <= 1e-9 * loss[:-1]).all()
    # the ALS objective is what fit_als reports
    p = z @ dec.get_weight().T
    assert censored_loss(x, p, True).item() / x.numel() == pytest.approx(loss[-1], rel=1e-6)
    w_o, z_o, rules = orient(dec.get_weight(), z, mask, prior_sign=prior, has_bias=False)
    r = [np.corrcoef(z_o[:, j], z_true[:, j])[0, 1] for j in range(5)]
    assert min(r) > 0.98 and np.mean(r) > 0.995 and set(rules) == {"prior"}


def test_als_extrapolation_lowers_the_loss_faster():
    x, w, _, mask = _problem(n_cells=300, n_genes=80, n_latent=5, density=0.3)
    losses = {}
    for extrapolate in (False, True):
        dec = _masked_decoder(mask)
        _, hist = fit_als(
            dec, x, prior_sign=torch.sign(w), max_epochs=30, tol=0.0, extrapolate=extrapolate, progress=False
        )
        loss = np.array(hist["loss"])
        assert (np.diff(loss) <= 1e-9 * loss[:-1]).all()  # monotone with or without
        losses[extrapolate] = loss
    assert losses[True][0] == pytest.approx(losses[False][0])  # first extrapolation is tried at epoch 2
    assert losses[True][-1] < losses[False][-1]


def test_orient_rules_and_invariance():
    x, w, z_true, mask = _problem(n_cells=200)
    flip = torch.tensor([1.0, -2.0, 0.5, -1.0], dtype=torch.float64)
    w2, z2 = w / flip, z_true * flip  # same product, scaled and flipped
    torch.testing.assert_close(z2 @ w2.T, z_true @ w.T)
    # signed prior: recovers the truth's orientation
    wo, zo, rules = orient(w2, z2, mask, prior_sign=torch.sign(w), has_bias=False)
    assert rules == ["prior"] * 4
    assert (torch.sign(zo.mean(0)) > 0).all()
    torch.testing.assert_close(zo @ wo.T, z_true @ w.T)
    deg = mask.sum(0).double()
    torch.testing.assert_close((wo**2).sum(0) / deg, torch.ones(4, dtype=torch.float64))
    # no prior: the mean rule gives non-negative-mean activities
    wo, zo, rules = orient(w2, z2, mask, prior_sign=None, has_bias=False)
    assert rules == ["mean"] * 4 and (zo.mean(0) > 0).all()
    # with a bias: skewness rule (Gamma levels are right-skewed)
    wo, zo, rules = orient(w2, z2 - 5 * flip, mask, prior_sign=None, has_bias=True)
    assert rules == ["skew"] * 4
    r = [np.corrcoef(zo[:, j], z_true[:, j])[0, 1] for j in range(4)]
    assert min(r) > 0.999


def test_row_sgd_matches_torch_sgd_and_leaves_other_rows():
    torch.manual_seed(0)
    table = torch.randn(10, 3)
    ref = table[:4].clone().requires_grad_(True)
    opt = torch.optim.SGD([ref], lr=0.1, momentum=0.9, weight_decay=0.01)
    row = RowSGD(table, lr=0.1, momentum=0.9, weight_decay=0.01)
    untouched = table[4:].clone()
    idx = torch.arange(4)
    for step in range(5):
        g = torch.randn(4, 3, generator=torch.Generator().manual_seed(step))
        ref.grad = g.clone()
        opt.step()
        row.step(idx, g)
    torch.testing.assert_close(table[:4], ref.detach())
    torch.testing.assert_close(table[4:], untouched)


def test_row_adam_matches_torch_adam_per_row():
    torch.manual_seed(1)
    table = torch.randn(6, 2)
    ref = table.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.05)
    row = RowAdam(table, lr=0.05)
    idx = torch.arange(6)
    for step in range(4):
        g = torch.randn(6, 2, generator=torch.Generator().manual_seed(step))
        ref.grad = g.clone()
        opt.step()
        row.step(idx, g)
    torch.testing.assert_close(table, ref.detach())
    # a row outside the batch keeps its state and value
    before = table[0].clone()
    row.step(torch.tensor([1, 2]), torch.ones(2, 2))
    torch.testing.assert_close(table[0], before)
    assert row.t[0].item() == 4 and row.t[1].item() == 5


def test_gradient_engine_lowers_loss_and_is_seeded():
    x, _, _, mask = _problem(n_cells=100)
    from regdecoder.train import Recipe

    rec = Recipe(max_epochs=15, batch_size=16)

    def run(seed):
        torch.manual_seed(0)
        dec = _masked_decoder(mask)
        z0 = torch.randn(x.shape[0], mask.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        z, hist = fit_gradient(dec, x, z0, rec, seed=seed, progress=False)
        return z, hist, dec

    z1, h1, d1 = run(0)
    z2, h2, _ = run(0)
    z3, _, _ = run(1)
    assert h1["loss"][-1] < 0.75 * h1["loss"][0]
    torch.testing.assert_close(z1, z2)
    assert not torch.equal(z1, z3)
    # off-mask weights remain exactly zero after Adam with weight decay
    assert (d1.get_weight()[~mask] == 0).all()


def test_early_stopping_stops_on_plateau():
    x, _, _, mask = _problem(n_cells=40)
    from regdecoder.train import Recipe

    dec = _masked_decoder(mask)
    z0 = torch.zeros(x.shape[0], mask.shape[1], dtype=torch.float64)  # ReLU at 0: no gradient, flat loss
    with torch.no_grad():
        dec.layers[0].values.zero_()
    _, hist = fit_gradient(dec, x, z0, Recipe(max_epochs=200), early_stopping=True, patience=3, progress=False)
    assert hist["epochs"] == 4


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
