"""The one latent solver (regdecoder.train.solve_latents) against independent references: scipy's
L-BFGS-B, the KKT conditions, closed forms, and the exact active-set Newton method."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import regdecoder as rd
from regdecoder.train import TensorSource, solve_latents
from regdecoder.train import _latents as latents_mod
from regdecoder.train._censored_ls import solve_censored, standard_errors
from regdecoder.train._latents import EXACT_RIDGE, TOL, detection_rate, latent_standard_errors

# the problems of the exact method's tests (tests/train/test_censored_ls.py), loaded from its file
_spec = importlib.util.spec_from_file_location("censored_ls_tests", Path(__file__).with_name("test_censored_ls.py"))
_censored_ls_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_censored_ls_tests)
_problem = _censored_ls_tests._problem


def _lam(w, ridge=EXACT_RIDGE):
    return ridge * float((w * w).sum(0).mean())


def _objective(x, w, b, z, lam):
    p = z @ w.T + (0 if b is None else b)
    r = torch.where((x != 0) | (p > 0), p - x, torch.zeros((), dtype=p.dtype))
    return (r * r).sum(1) + lam * (z * z).sum(1)


def _lbfgsb(x, w, b, lam):
    """Per cell: L-BFGS-B on the smooth convex objective (censored loss plus ridge), exact gradient."""
    xn, wn = x.numpy(), w.numpy()
    bn = np.zeros(wn.shape[0]) if b is None else b.numpy()

    def f(z, xi):
        p = wn @ z + bn
        r = np.where((xi != 0) | (p > 0), p - xi, 0.0)
        return float(r @ r + lam * z @ z), 2 * (wn.T @ r + lam * z)

    out = []
    for xi in xn:
        res = minimize(f, np.zeros(wn.shape[1]), args=(xi,), jac=True, method="L-BFGS-B",
                       options={"ftol": 1e-16, "gtol": 1e-12, "maxiter": 20000, "maxcor": 30})  # fmt: skip
        out.append(res.x)
    return np.array(out)


def _rel_err(z, ref):
    z, ref = np.asarray(z, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return np.linalg.norm(z - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_lbfgsb_at_a_tight_tolerance_and_within_tol_by_default(seed, bias):
    x, w, b = _problem(seed, bias=bias)
    assert 0.2 < float((x == 0).double().mean()) < 0.8  # many censored entries
    lam = _lam(w)
    ref = _lbfgsb(x, w, b, lam)
    z, info = solve_latents(x, w, b, tol=1e-10, max_iter=500)
    assert bool(info["converged"].all())
    f, f_ref = _objective(x, w, b, z, lam).numpy(), _objective(x, w, b, torch.tensor(ref), lam).numpy()
    assert np.all(f <= f_ref * (1 + 1e-9) + 1e-12)  # never worse than scipy's optimum
    np.testing.assert_allclose(z.numpy(), ref, rtol=1e-5, atol=1e-6)
    # at the default tolerance (relative KKT residual 1e-3): each cell's latents within tol of the optimum
    z_def, info_def = solve_latents(x, w, b)
    assert bool(info_def["converged"].all()) and int(info_def["n_iter"].max()) < 30
    assert info_def["exact"].tolist() == [True, True] + [False] * 10  # the two empty cells: exactly
    nonzero = np.linalg.norm(ref, axis=1) > 0
    assert _rel_err(z_def.numpy()[nonzero], ref[nonzero]).max() <= TOL


@pytest.mark.parametrize("ridge", [1e-3, 1e-6])
def test_kkt_conditions(ridge):
    """Stationarity of the objective, the censored loss plus ``lam |z|^2``: ``W'r + lam z = 0``."""
    x, w, b = _problem(4, n_cells=20, n_genes=80, k=8)
    z, _ = solve_latents(x, w, b, ridge=ridge, tol=1e-12, max_iter=1000)
    p = z @ w.T + b
    active = (x != 0) | (p > 0)
    r = torch.where(active, p - x, torch.zeros((), dtype=p.dtype))
    grad = r @ w + _lam(w, ridge) * z
    scale = (x.abs().sum(1, keepdim=True) + 1) * w.abs().max()
    assert float((grad.abs() / scale).max()) < 1e-9
    # complementarity holds by construction of the residual: inactive censored genes are predicted <= 0
    assert bool((((x == 0) & ~active) & (p > 0)).sum() == 0)


def test_stated_tolerance_against_the_exact_newton_method_on_a_network_with_many_zeros():
    # larger and sparser, two zero regimes; the exact per-cell active-set Newton method is the reference
    for offset in (0.0, -2.0):
        x, w, b = _problem(5, n_cells=200, n_genes=400, k=40, density=0.05, offset=offset, zero_cells=3)
        ref, _, info_ref = solve_censored(x, w, b, ridge=EXACT_RIDGE, tol=1e-14, max_iter=500)
        assert bool(info_ref["converged"].all())
        for tol, dt in ((1e-2, torch.float32), (1e-3, torch.float32), (1e-4, torch.float64)):
            # (float32 rounding alone leaves ~1e-7 x the condition number of a cell's curvature: 1e-4 needs float64)
            z, info = solve_latents(x.to(dt), w.to(dt), b.to(dt), tol=tol)
            # (a few cells with ~85% of their genes censored need more than max_iter steps at a tight tol:
            # the exact Newton method finishes them)
            assert bool(info["converged"].all()) and float(info["exact"].double().mean()) <= 0.05
            err = _rel_err(z, ref)[3:]  # (the empty cells' optimum may be 0)
            # the stop is on the relative KKT residual; the error it leaves stays within 2 tol
            assert err.max() <= 2 * tol, (offset, tol, err.max())
        zero_share = float((x == 0).double().mean())
        assert zero_share > (0.5 if offset < 0 else 0.2)


def test_linear_output_is_ridge_least_squares_in_one_step():
    x, w, b = _problem(3, n_cells=8, zero_cells=0)
    z, info = solve_latents(x, w, b, relu=False)
    wn, lam = w.numpy(), _lam(w)
    ref = np.linalg.solve(wn.T @ wn + lam * np.eye(wn.shape[1]), wn.T @ (x - b).numpy().T).T
    np.testing.assert_allclose(z.numpy(), ref, rtol=1e-9, atol=1e-9)
    assert int(info["n_iter"].max()) <= 1  # the preconditioner is the exact curvature


def test_cells_observing_fewer_genes_than_latents_are_solved_exactly():
    # few nonzeros per cell, many latents: the observed genes leave most latent directions to the ridge
    x, w, b = _problem(16, n_cells=30, n_genes=300, k=60, density=0.08, offset=-2.5, zero_cells=0)
    observed = (x != 0).sum(1)
    assert 5 < int((observed < w.shape[1]).sum()) < 25  # both kinds of cells
    z, info = solve_latents(x, w, b)
    assert torch.equal(info["exact"], observed < w.shape[1])
    ref, _, _ = solve_censored(x, w, b, ridge=EXACT_RIDGE, tol=1e-14, max_iter=500)
    err = _rel_err(z, ref)
    assert err[info["exact"].numpy()].max() < 1e-8 and err.max() <= 2 * TOL


def test_dense_and_sparse_weights_give_the_same_latents(monkeypatch):
    x, w, b = _problem(6, n_cells=30, n_genes=120, k=10, density=0.1)
    monkeypatch.setattr(latents_mod, "SPARSE_DENSITY", {"cpu": 1.0, "cuda": 1.0})
    z_sparse, i_sparse = solve_latents(x, w, b, tol=1e-10)
    assert latents_mod.Frozen(w, b, relu=True, ridge=1e-3).sparse
    monkeypatch.setattr(latents_mod, "SPARSE_DENSITY", {"cpu": 0.0, "cuda": 0.0})
    z_dense, _ = solve_latents(x, w, b, tol=1e-10)
    assert not latents_mod.Frozen(w, b, relu=True, ridge=1e-3).sparse
    np.testing.assert_allclose(z_sparse.numpy(), z_dense.numpy(), rtol=1e-8, atol=1e-8)


def test_genes_without_edges_do_not_matter():
    x, w, b = _problem(7, n_cells=10)
    extra = torch.zeros(w.shape[0] // 2, w.shape[1], dtype=w.dtype)  # genes no latent reaches
    x2 = torch.cat([x, torch.rand(x.shape[0], extra.shape[0], dtype=x.dtype)], dim=1)
    z, _ = solve_latents(x, w, b, tol=1e-10)
    z2, _ = solve_latents(x2, torch.cat([w, extra]), torch.cat([b, torch.ones(extra.shape[0], dtype=b.dtype)]),
                          tol=1e-10, detected=detection_rate(x2, "cpu"))  # fmt: skip
    np.testing.assert_allclose(z2.numpy(), z.numpy(), rtol=1e-8, atol=1e-8)


def test_a_cell_gets_the_same_latents_alone_in_a_batch_and_over_chunks():
    x, w, b = _problem(8, n_cells=40, n_genes=80, zero_cells=2)
    w = torch.cat([w, w[:, :1]], dim=1)  # a duplicated latent: only the ridge splits z_0 + z_6
    det = detection_rate(x, "cpu")
    z_all, info = solve_latents(x, w, b, detected=det)
    for c in (0, 5, 39):
        z_one, _ = solve_latents(x[[c]], w, b, detected=det)
        torch.testing.assert_close(z_one[0], z_all[c], rtol=1e-9, atol=1e-9)
    z_chunks, info_chunks = solve_latents(TensorSource(x, chunk_size=7), w, b, detected=det)
    torch.testing.assert_close(z_chunks, z_all, rtol=1e-9, atol=1e-9)
    assert torch.equal(info["n_iter"], info_chunks["n_iter"])


def test_warm_start_at_the_solution_takes_no_step_and_a_cap_is_finished_exactly():
    x, w, b = _problem(9, n_cells=20)
    z, _ = solve_latents(x, w, b, tol=1e-10)
    z2, info = solve_latents(x, w, b, z0=z, tol=1e-6)
    grad = ~info["exact"]  # (the two empty cells: the exact method, whose last step is ridge-damped)
    assert int(info["n_iter"].max()) == 0 and torch.equal(z2[grad], z[grad]) and int(grad.sum()) == 18
    torch.testing.assert_close(z2, z, rtol=1e-6, atol=1e-6)
    # one step at most: the cells not converged by then are finished by the exact Newton method
    z3, info3 = solve_latents(x, w, b, max_iter=1)
    assert bool(info3["exact"][2:].any()) and bool(info3["converged"].all())
    ref, _, _ = solve_censored(x, w, b, ridge=EXACT_RIDGE, tol=1e-14, max_iter=500)
    rows = info3["exact"]
    np.testing.assert_allclose(z3[rows].numpy(), ref[rows].numpy(), rtol=1e-6, atol=1e-6)


def test_cells_without_expression_and_float32():
    x, w, _ = _problem(10, n_cells=6, zero_cells=6, bias=False)
    z, info = solve_latents(x, w)
    assert float(z.abs().max()) == 0.0 and bool(info["converged"].all())  # nothing observed, no offset: 0
    assert bool(info["exact"].all())  # fewer observed genes than latents: the exact method
    x, w, b = _problem(11, n_cells=10)
    ref, _ = solve_latents(x, w, b, tol=1e-10)
    z32, _ = solve_latents(x.float(), w.float(), b.float())
    assert z32.dtype == torch.float32
    assert _rel_err(z32, ref).max() <= TOL


def test_deprecated_names_warn():
    x, w, b = _problem(12, n_cells=4)
    with pytest.warns(FutureWarning, match="z0"):
        z, info = solve_latents(x, w, b, n_iter=50)
    with pytest.warns(FutureWarning, match="max_iter"):
        z2, _ = solve_latents(x, w, b, z=z)
    np.testing.assert_allclose(z2.numpy(), z.numpy(), rtol=1e-3, atol=1e-3)


def test_detection_rate_and_gradients_not_tracked():
    x, w, b = _problem(13, n_cells=30)
    np.testing.assert_allclose(detection_rate(x, "cpu").numpy(), (x.numpy() != 0).mean(0))
    z, _ = solve_latents(x, w.requires_grad_(), b)
    assert not z.requires_grad


def test_standard_errors_at_the_solution_match_numpy():
    x, w, b = _problem(14, n_cells=6, n_genes=80, zero_cells=1)
    z, _ = solve_latents(x, w, b, tol=1e-12, max_iter=500)
    se = latent_standard_errors(x, w, b, z)
    lam, k = _lam(w), w.shape[1]
    for c in range(6):  # (cell 0 has no expression: only the offsets above 0 are active)
        p = (w @ z[c] + b).numpy()
        a = (x[c].numpy() != 0) | (p > 0)
        wa = w.numpy()[a]
        f = float(((p - x[c].numpy())[a] ** 2).sum())
        inv = np.linalg.inv(wa.T @ wa + lam * np.eye(k))
        np.testing.assert_allclose(se[c].numpy(), np.sqrt(np.diag(inv) * f / (a.sum() - k)), rtol=1e-8)
    np.testing.assert_allclose(se.numpy(), standard_errors(x, w, b, z, ridge=EXACT_RIDGE).numpy(), equal_nan=True)


def test_fit_infer_and_model_give_the_same_latents():
    ad = rd.sim.grn(n_obs=260, n_genes=120, n_tfs=8, density=0.25, noise=0.2, offset_sd=0.5, seed=1)
    train, test = rd.pp.split(ad, n_test=60, seed=0)
    model = rd.tl.fit_decoder(train, net=train.uns["sim"]["net"], recipe={"max_epochs": 5})
    again = train.copy()
    rd.tl.infer(again, model, key_added="again")  # from infer's start; the fit started at its last latents
    rd.tl.infer(test, model)
    z_model, _ = model.infer_latents(torch.as_tensor(np.asarray(test.X)))
    np.testing.assert_array_equal(z_model.numpy(), np.asarray(test.obsm["regdecoder_z"]))  # the same call
    # all of them are the minimiser to the stated tolerance
    w, b = model.decoder.get_weight().double(), model.decoder.get_bias().double()
    for x, z in ((train.X, train.obsm["regdecoder_z"]), (train.X, again.obsm["again_z"]), (test.X, z_model)):
        ref, _, _ = solve_censored(torch.as_tensor(np.asarray(x), dtype=torch.float64), w, b, ridge=EXACT_RIDGE,
                                   tol=1e-14, max_iter=500)  # fmt: skip
        assert _rel_err(np.asarray(z), ref).max() <= 2 * TOL


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_latents():
    x, w, b = _problem(15, n_cells=200, n_genes=300, k=30, density=0.05)
    x, w, b = x.float(), w.float(), b.float()
    z_cpu, _ = solve_latents(x, w, b, tol=1e-5)
    z_gpu, info = solve_latents(x.cuda(), w.cuda(), b.cuda(), tol=1e-5)
    assert z_gpu.device.type == "cuda" and bool(info["converged"].all())
    assert _rel_err(z_gpu.cpu(), z_cpu).max() < 1e-3
