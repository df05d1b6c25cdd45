"""The end-to-end demo (regdecoder/demo.py): what it writes, and figures that say what they show."""

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import regdecoder as rd
from regdecoder import demo


@pytest.mark.slow  # the whole demo, end to end (seconds)
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


def test_demo_figures_say_what_they_show(fitted):
    model, train, test = fitted
    rd.tl.infer(test, model)
    figs = demo.figures(train, test)
    assert set(figs) == {"recovery", "loss"}
    rec = figs["recovery"]
    title = rec._suptitle.get_text()
    assert title.startswith(f"true vs inferred TF activity of the {test.n_obs} held-out cells (decoder frozen)")
    hist = rec.axes[-1]
    mean = rd.metrics.recovery(test).pcc.mean()
    (line,) = [ln for ln in hist.get_lines() if ln.get_color() == "C3"]  # the red line
    assert line.get_xdata()[0] == pytest.approx(mean)
    assert [t.get_text() for t in hist.get_legend().get_texts()] == [f"mean {mean:.3f}"]  # the red line explained
    assert all(ax.get_xlabel() == "true activity (simulated)" for ax in rec.axes[:-1])
    loss = figs["loss"].axes[0].get_title()
    assert f"{train.n_obs:,} cells" in loss and "alternating least squares" in loss
    assert "regdecoder" not in loss and "(als)" not in loss  # no jargon
    plt.close("all")
