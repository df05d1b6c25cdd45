"""benchmarks/epoch_profile.py runs on a small backed file and its numbers are consistent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.slow  # profiles a fit


def test_epoch_profile_runs(tmp_path, bench):
    sys.path.insert(0, str(BENCH))
    try:
        scale, prof = bench("scale"), bench("epoch_profile")
        path = tmp_path / "x.h5ad"
        scale.generate(path, 600, n_genes=300, n_tfs=200, density=0.05, seed=0)
        df = prof.main(["--train", str(path), "--epochs", "2", "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(BENCH))
    row = df.iloc[0]
    assert row.n_cells == 600 and row.matmul_peak_gflops > 0 and row.sec_per_epoch > 0
    # an epoch does at least the two products with the data per cell: p = z W' and Y W (2 n k flops each)
    assert row.gemm_gflop_per_epoch * 1e9 >= 2 * 2 * 600 * 300 * 200
    assert row.fraction_of_peak > 0  # timings themselves are the benchmark's, not the test's
    assert (tmp_path / "epoch_profile.csv").exists()
