import anndata as ad
import numpy as np
import pandas as pd
import pytest

import regdecoder as rd
from regdecoder import demo

pytestmark = pytest.mark.slow  # end-to-end runs of scripts (seconds to a minute each)


def test_demo_writes_results_and_recovers(tmp_path):
    summary = demo.main(
        [
            "--out",
            str(tmp_path),
            "--n-train",
            "300",
            "--n-test",
            "50",
            "--n-genes",
            "300",
            "--n-tfs",
            "20",
            "--noise",
            "0.1",
        ]
    )
    for name in ("train.h5ad", "test.h5ad", "model.pt", "recovery.png", "loss.png", "recovery_test.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert summary["test_pcc_mean"] > 0.99
    test = ad.read_h5ad(tmp_path / "test.h5ad")
    table = pd.read_csv(tmp_path / "recovery_test.csv", index_col=0)
    assert table.pcc.mean() == pytest.approx(summary["test_pcc_mean"], rel=1e-12)
    # the saved model reproduces the saved activities
    model = rd.tl.Model.load(tmp_path / "model.pt")
    again = rd.tl.infer(test, model, copy=True)
    np.testing.assert_array_equal(np.asarray(again.obsm["regdecoder"]), np.asarray(test.obsm["regdecoder"]))
