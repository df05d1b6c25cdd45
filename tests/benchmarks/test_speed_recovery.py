"""The benchmark scripts run end to end (tiny sizes) so they cannot rot unnoticed."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # end-to-end runs of scripts (seconds to a minute each)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_speed_quick(tmp_path):
    df = _load("speed").main(["--quick", "--out", str(tmp_path / "speed.csv")])
    assert (tmp_path / "speed.csv").exists() and (tmp_path / "speed.json").exists()
    assert set(df.method) == {"paper", "fast", "gradient"}
    fast = df[df.method == "fast"].iloc[0]
    # the time is read at the first epoch whose held-out PCC passed the target
    assert fast.reached and fast.pcc_at_stop >= fast.target


def test_sparse_linear_quick(tmp_path):
    _load("sparse_linear").main(["--quick", "--out", str(tmp_path / "sl.csv")])
    df = pd.read_csv(tmp_path / "sl.csv")
    assert {"dense_fwd_bwd_ms", "sparse_fwd_bwd_ms"} <= set(df.columns)
    assert (df.max_rel_diff < 1e-4).all()  # both kernels computed the same thing


def test_recovery_quick(tmp_path):
    df = _load("recovery").main(["--quick", "--out", str(tmp_path / "rec.csv")])
    assert set(df.preset) == {"fast", "paper"}
    back = pd.read_csv(tmp_path / "rec.csv")
    assert back.pcc_mean.tolist() == pytest.approx(df.pcc_mean.tolist())
    assert df.loc[df.preset == "fast", "pcc_mean"].iloc[0] > 0.9
