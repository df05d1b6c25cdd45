"""Exact censored least squares (regdecoder.train._censored_ls.solve_censored)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from regdecoder.train._censored_ls import solve_censored


def _problem(seed, n_cells=12, n_genes=60, k=6, density=0.5, bias=True, zero_cells=2, offset=0.0, dtype=torch.float64):
    """A censored least-squares problem: cells x genes ``x`` (the first ``zero_cells`` empty), weights
    and offsets (mean ``offset``: negative ones censor more). Also used by tests/train/test_latents.py."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (n_genes, k)) * (rng.random((n_genes, k)) < density)
    w[rng.integers(n_genes, size=k), np.arange(k)] = 1.0  # every latent has a target
    b = rng.normal(offset, 0.5, n_genes) if bias else None
    z = rng.gamma(2.0, 1.0, (n_cells, k))
    p = z @ w.T + (0 if b is None else b) + rng.normal(0, 0.3, (n_cells, n_genes))
    x = np.maximum(p, 0)
    x[:zero_cells] = 0.0
    t = lambda a: None if a is None else torch.tensor(a, dtype=dtype)  # noqa: E731
    return t(x), t(w), t(b)


def _loss_grad(z, x, w, b):
    p = w @ z + (0 if b is None else b)
    r = np.where((x != 0) | (p > 0), p - x, 0.0)
    return float(r @ r), 2 * w.T @ r


def _reference(x, w, b):
    """Per cell: L-BFGS-B on the smooth convex censored loss with its exact gradient."""
    xn, wn = x.numpy(), w.numpy()
    bn = None if b is None else b.numpy()
    zs, fs = [], []
    for xi in xn:
        best = None
        for z0 in (np.zeros(wn.shape[1]), np.linalg.lstsq(wn, xi - (0 if bn is None else bn), rcond=None)[0]):
            res = minimize(
                _loss_grad,
                z0,
                args=(xi, wn, bn),
                jac=True,
                method="L-BFGS-B",
                options={"ftol": 1e-16, "gtol": 1e-12, "maxiter": 20000, "maxcor": 30},
            )
            if best is None or res.fun < best.fun:
                best = res
        zs.append(best.x)
        fs.append(best.fun)
    return np.array(zs), np.array(fs)


def _loss(x, w, b, z):
    p = z @ w.T + (0 if b is None else b)
    return ((torch.where(x == 0, p.clamp(max=0), x) - p) ** 2).sum(1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_lbfgsb_reference(seed, bias):
    x, w, b = _problem(seed, bias=bias)
    assert 0.2 < float((x == 0).double().mean()) < 0.8  # many censored entries
    z, n_iter, info = solve_censored(x, w, b)
    z_ref, f_ref = _reference(x, w, b)
    f = _loss(x, w, b, z).numpy()
    np.testing.assert_allclose(info["loss"].numpy(), f, rtol=1e-10, atol=1e-10)
    # never worse than the reference optimiser, and equal to it
    assert np.all(f <= f_ref + 1e-8 * (1 + f_ref))
    np.testing.assert_allclose(f, f_ref, rtol=1e-6, atol=1e-8)
    # the minimiser is unique wherever the active genes determine z
    determined = info["n_active"].numpy() >= 3 * w.shape[1]
    np.testing.assert_allclose(z.numpy()[determined], z_ref[determined], rtol=1e-4, atol=1e-4)
    assert bool(info["converged"].all())
    assert 1 <= n_iter <= 10


def test_no_zeros_is_plain_least_squares():
    x, w, b = _problem(3, n_cells=8, bias=True, zero_cells=0)
    x = x.abs() + 5.0  # no censored entry
    z, n_iter, info = solve_censored(x, w, b)
    wn = w.numpy()
    lam = 1e-6 * np.diag(wn.T @ wn).mean()  # the solver's default ridge, part of its objective
    ref = np.linalg.solve(wn.T @ wn + lam * np.eye(wn.shape[1]), wn.T @ (x - b).numpy().T).T
    np.testing.assert_allclose(z.numpy(), ref, rtol=1e-9, atol=1e-9)
    assert n_iter == 1 and bool(info["converged"].all())
    assert bool((info["n_active"] == x.shape[1]).all())


@pytest.mark.parametrize("ridge", [1e-3, 1e-6, 0.0])
def test_kkt_conditions(ridge, bound=1e-10):
    """Stationarity of the objective, the censored loss plus ``lam * |z|^2``."""
    x, w, b = _problem(4, n_cells=20, n_genes=80, k=8)
    z, _, info = solve_censored(x, w, b, ridge=ridge)
    p = z @ w.T + b
    active = (x != 0) | (p > 0)
    r = torch.where(active, p - x, torch.zeros(()).double())
    lam = ridge * float((w * w).sum(0).mean())
    grad = r @ w + lam * z  # stationarity of the convex objective: W' r + lam z = 0
    scale = (x.abs().sum(1, keepdim=True) + 1) * w.abs().max()
    assert float((grad.abs() / scale).max()) < bound
    # complementarity: a censored gene is either inactive (p <= 0, no residual) or active with residual p
    assert bool(((x == 0) & ~active).logical_and(p > 0).sum() == 0)


def test_all_zero_cells():
    x, w, _ = _problem(5, n_cells=6, zero_cells=6, bias=False)
    z, _, info = solve_censored(x, w)
    assert float(info["loss"].max()) == 0.0
    assert float((z @ w.T).max()) <= 0.0
    assert bool(info["converged"].all())
    # with a bias some censoring may be unavoidable: compare the loss with the reference
    x, w, b = _problem(5, n_cells=4, zero_cells=4, bias=True)
    z, _, info = solve_censored(x, w, b)
    _, f_ref = _reference(x, w, b)
    np.testing.assert_allclose(info["loss"].numpy(), f_ref, rtol=1e-6, atol=1e-9)


def test_deterministic_and_chunk_invariant():
    x, w, b = _problem(6, n_cells=30)
    z1, n1, i1 = solve_censored(x, w, b)
    z2, n2, i2 = solve_censored(x, w, b)
    assert torch.equal(z1, z2) and n1 == n2 and torch.equal(i1["loss"], i2["loss"])
    z3, _, _ = solve_censored(x, w, b, chunk_size=7)
    torch.testing.assert_close(z1, z3, rtol=1e-9, atol=1e-9)


def test_dense_weights_and_float32():
    x, w, b = _problem(7, density=1.0)  # dense W: dense curvature assembly
    z, _, info = solve_censored(x, w, b)
    _, f_ref = _reference(x, w, b)
    np.testing.assert_allclose(info["loss"].numpy(), f_ref, rtol=1e-6, atol=1e-8)
    z32, _, info32 = solve_censored(x.float(), w.float(), b.float())
    assert z32.dtype == torch.float32
    np.testing.assert_allclose(info32["loss"].numpy(), f_ref, rtol=1e-4, atol=1e-4)


def test_warm_start_at_the_solution_stops_at_once():
    x, w, b = _problem(8)
    z, _, _ = solve_censored(x, w, b)
    z2, n_iter, info = solve_censored(x, w, b, z0=z)
    assert n_iter == 1 and bool(info["converged"].all())
    torch.testing.assert_close(z2, z, rtol=1e-4, atol=1e-4)  # the last step is ridge-damped


def test_standard_errors():
    x, w, b = _problem(9, n_cells=5, n_genes=80, zero_cells=0)
    z, _, info = solve_censored(x, w, b, return_se=True, ridge=0.0)
    k = w.shape[1]
    for c in range(x.shape[0]):
        p = w @ z[c] + b
        a = ((x[c] != 0) | (p > 0)).numpy()
        wa = w.numpy()[a]
        sigma2 = info["loss"][c].item() / (a.sum() - k)
        se = np.sqrt(np.diag(np.linalg.inv(wa.T @ wa)) * sigma2)
        np.testing.assert_allclose(info["se"][c].numpy(), se, rtol=1e-8)


def test_latent_without_targets_and_singular_curvature():
    x, w, b = _problem(10, n_cells=5)
    w = torch.cat([w, torch.zeros(w.shape[0], 1, dtype=w.dtype)], dim=1)  # a latent with no target
    z, _, info = solve_censored(x, w, b, ridge=0.0, return_se=True)
    assert bool(torch.isfinite(z).all()) and bool(info["converged"].all())
    assert bool((z[:, -1] == 0).all())  # never moved: no gene depends on it
    assert bool(info["se"][:, -1].isnan().all()) and bool(torch.isfinite(info["se"][2:, :-1]).all())
    z_ref, f_ref = _reference(x, w[:, :-1], b)
    np.testing.assert_allclose(info["loss"].numpy(), f_ref, rtol=1e-6, atol=1e-8)


def test_gradients_are_not_tracked():
    x, w, b = _problem(11, n_cells=3)
    z, _, _ = solve_censored(x, w.requires_grad_(), b)
    assert not z.requires_grad


def test_thread_count_does_not_change_the_result():
    x, w, b = _problem(12, n_cells=40)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        z1, _, i1 = solve_censored(x, w, b, chunk_size=8)
        torch.set_num_threads(2)
        z2, _, i2 = solve_censored(x, w, b, chunk_size=8)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
    assert torch.equal(z1, z2) and torch.equal(i1["n_iter"], i2["n_iter"])


def test_standard_errors_with_few_and_many_active_zeros_in_one_batch():
    # Cells whose active zeros number at most k/2 take the Woodbury-updated inverse, the others a
    # new inverse: both kinds in one batch, each checked against numpy's inverse on the active genes.
    x, w, b = _problem(21, n_cells=40, n_genes=80, zero_cells=0)
    z, _, info = solve_censored(x, w, b, return_se=True, ridge=0.0, chunk_size=40)
    k = w.shape[1]
    extra = []
    for c in range(x.shape[0]):
        a = ((x[c] != 0) | (w @ z[c] + b > 0)).numpy()
        extra.append(int((a & (x[c] == 0).numpy()).sum()))
        wa = w.numpy()[a]
        se = np.sqrt(np.diag(np.linalg.inv(wa.T @ wa)) * info["loss"][c].item() / (a.sum() - k))
        np.testing.assert_allclose(info["se"][c].numpy(), se, rtol=1e-7)
    assert min(extra) <= k // 2 < max(extra)


def test_a_cell_gets_the_same_latents_alone_and_in_any_batch():
    # The ridge is part of the objective, so the minimiser is unique even along directions the
    # active genes leave flat (here: a duplicated latent), and the branch (Woodbury or a new
    # factor) is chosen per cell: a cell's result does not depend on its batch-mates.
    x, w, b = _problem(22, n_cells=40, n_genes=80, zero_cells=2)
    w = torch.cat([w, w[:, :1]], dim=1)  # latent 6 copies latent 0: z_0 + z_6 is all the data fix
    z_all, _, i_all = solve_censored(x, w, b, return_se=True, ridge=1e-3, chunk_size=40)
    for c in (0, 5, 39):
        z_one, _, i_one = solve_censored(x[[c]], w, b, return_se=True, ridge=1e-3)
        torch.testing.assert_close(z_one[0], z_all[c], rtol=1e-9, atol=1e-9)
    assert bool(i_all["converged"].all())
    # the ridge splits the shared part evenly, and the two copies are not identified apart
    torch.testing.assert_close(z_all[:, 0], z_all[:, 6], rtol=1e-7, atol=1e-7)
    assert bool(i_all["se"][:, [0, 6]].isnan().all()) and bool(torch.isfinite(i_all["se"][2:, 1:6]).all())
