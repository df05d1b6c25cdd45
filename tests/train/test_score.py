"""Statistics of the activities (regdecoder.train._score)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from regdecoder.train._score import t_pvalues


def test_t_pvalues_match_scipy_in_blocks_on_threads():
    rng = np.random.default_rng(0)
    t = (rng.standard_t(5, size=(1003, 7)) * 3).astype(np.float32)
    t[0, 0], t[5, 3] = np.nan, 0.0
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            p = t_pvalues(t, 40)
            assert p.dtype == np.float32 and p.shape == t.shape
            np.testing.assert_allclose(p, 2 * stats.t.sf(np.abs(t), 40), rtol=1e-5, atol=1e-30)
            assert np.isnan(p[0, 0]) and p[5, 3] == 1.0
    finally:
        torch.set_num_threads(before)
