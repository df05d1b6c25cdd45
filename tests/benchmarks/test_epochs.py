"""benchmarks/epochs.py runs end to end on a few cells, and its summary is read off its curve."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow  # runs a benchmark script end to end
def test_epochs_benchmark_runs_and_summarises(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("epochs_bench", BENCH / "epochs.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        summ = mod.main(["--n", "400", "--max-epochs", "3", "--variants", "default", "v010", "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(BENCH))
    curve = pd.read_csv(tmp_path / "epochs.csv")
    assert set(curve.variant) == {"default", "v010"} and curve.groupby("variant").epoch.max().eq(3).all()
    assert curve.abs_pcc.between(0, 1).all()
    assert all(list(g.epoch) == [1, 2, 3] for _, g in curve.groupby("variant"))  # one row per epoch, in order
    for _, row in summ[summ.variant != "oracle (true weights, exact latents)"].iterrows():
        g = curve[curve.variant == row.variant]
        hit = g[g.abs_pcc >= 0.98]
        assert (np.isnan(row["epochs_to_0.98"]) and hit.empty) or row["epochs_to_0.98"] == hit.epoch.iloc[0]
    oracle = summ[summ.variant.str.startswith("oracle")].final_abs_pcc.iloc[0]
    assert 0 < oracle <= 1
