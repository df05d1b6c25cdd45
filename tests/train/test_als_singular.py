"""The ALS weight step on singular per-gene systems: handled, never passed to an LU solve (PBMC 3k
with all genes lost a fit inside oneMKL's batched LU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regdecoder.train._als import _MaskIndex, solve_weights_stats


def _system(n_cells: int = 40):
    """Three latents, the second a copy of the first; gene 0 regulated by latents 0 and 1 (a
    singular system without a ridge), gene 1 by 0 and 2 (regular), gene 2 by none."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n_cells, 3))
    z[:, 1] = z[:, 0]
    y = np.stack([2 * z[:, 0], z[:, 0] - z[:, 2], np.zeros(n_cells)], axis=1) + rng.normal(0, 0.1, (n_cells, 3))
    mask = torch.tensor([[True, True, False], [True, False, True], [False, False, False]])
    return z, y, mask


def test_a_singular_gene_system_gets_the_minimum_norm_solution():
    z, y, mask = _system()
    zt, yt = torch.as_tensor(z, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    w = solve_weights_stats(zt.T @ zt, yt.T @ zt, _MaskIndex(mask, bias=False), ridge=0.0).numpy()
    assert np.isfinite(w).all()
    ref0 = np.linalg.pinv(z[:, :2].T @ z[:, :2]) @ (z[:, :2].T @ y[:, 0])  # min-norm least squares
    np.testing.assert_allclose(w[0, :2], ref0, rtol=1e-6)
    assert w[0, 0] == pytest.approx(w[0, 1]) and w[0, 0] + w[0, 1] == pytest.approx(2.0, abs=0.05)
    ref1 = np.linalg.lstsq(z[:, [0, 2]], y[:, 1], rcond=None)[0]  # the regular system: ordinary least squares
    np.testing.assert_allclose(w[1, [0, 2]], ref1, rtol=1e-6)
    assert (w[~mask.numpy()] == 0).all()


def test_non_finite_statistics_say_the_fit_diverged():
    z, y, mask = _system()
    zt, yt = torch.as_tensor(z), torch.as_tensor(y)
    gram = zt.T @ zt
    gram[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="diverged"):
        solve_weights_stats(gram, yt.T @ zt, _MaskIndex(mask, bias=False))
