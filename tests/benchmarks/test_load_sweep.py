"""benchmarks/load_sweep.py runs end to end on a tiny setting and writes what the README reads."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # end-to-end runs of scripts (seconds to a minute each)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "load_sweep.py"


def test_load_sweep_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("load_sweep", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "ls.csv"
    df = mod.main(["--smoke", "--out", str(out)])
    assert out.exists() and out.with_suffix(".png").exists() and (tmp_path / "ls_summary.csv").exists()
    back = pd.read_csv(out)
    assert set(back.model) == set(mod.MODELS) and set(back.test_set) == set(mod.TEST_SETS)
    # one row per size x replicate x model x test set
    assert len(back) == 2 * 2 * len(mod.MODELS) * len(mod.TEST_SETS)
    np.testing.assert_allclose(back.pcc, df.pcc)
    # the load columns follow the formulas (n=60 genes, m=6 TFs, N training cells); fit_decoder's
    # default has one offset per gene, the autoencoder's decoder none
    n, m = 60, 6
    assert back.decoder_offsets.all()
    c_d = np.where(back.model == "autoencoder", n * m, n * m + n)
    np.testing.assert_allclose(back.alpha_d_all_weights, back.n_train * n / (c_d + back.n_train * m))
    # the decoder recovers the TFs on the in-distribution test cells at the larger size
    dec = back[(back.model == "decoder") & (back.test_set == "test") & (back.n_train == 120)]
    assert (dec.pcc > 0.95).all()
