"""benchmarks/read_speed.py runs end to end at a tiny size."""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs of scripts (seconds to a minute each)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_read_speed_tiny(tmp_path):
    spec = importlib.util.spec_from_file_location("read_speed", BENCH / "read_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "read_speed.csv"
    table = mod.main(["--cells", "3000", "--genes", "50", "--repeats", "1", "--out", str(out)])
    assert out.exists()
    assert list(table.path) == [
        "none", "scipy_old", "scipy_old_reordered", "scipy_read_ahead", "torch_csr", "backed_read_ahead", "backed_loaded"
    ]  # fmt: skip
    assert (table.read_s >= 0).all()
    timed = table.path != "scipy_old_reordered"  # that row times reading only (documented)
    assert (table.loc[timed, ["work_s", "wait_s"]] >= 0).all().all()
    assert table.loc[~timed, ["work_s", "wait_s"]].isna().all().all()
    assert table.loc[table.path == "torch_csr", "setup_s"].item() > 0
