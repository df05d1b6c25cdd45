"""benchmarks/realnet.py runs end to end at a tiny size, and its numbers are consistent."""

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # an end-to-end run of the script (about half a minute)


def test_realnet_paper_setting_at_a_tiny_size(tmp_path, bench):
    realnet = bench("realnet")
    realnet.main(["--sizes", "300", "--settings", "paper", "--exact-cells", "30", "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "realnet.csv")
    assert (tmp_path / "realnet.png").exists() and (tmp_path / "realnet.json").exists()
    row = df.iloc[0]
    assert row.setting == "paper" and row.n_cells == 300 and row.n_tfs == 100 and row.n_genes == 1000
    assert row.max_rel_error_vs_exact <= 2e-3  # the solver's stated tolerance (2 x 1e-3), against the exact method
    assert row.pcc_latents > row.pcc_mlm > 0.5 and row.pcc_ulm > 0.5  # the latents model the zeros mlm ignores
    np.testing.assert_allclose(row.infer_vs_mlm, row.infer_cells_per_s / row.mlm_cells_per_s)
    assert 0 < row.solver_fraction_of_peak < 1 and row.peak_rss_with_decoupler_gib > 0


def test_halves_share_one_network_and_copy_no_data(bench):
    realnet = bench("realnet")
    a = realnet.simulate("paper", 50, 0, None)
    first, second = realnet.halves(a, 20)
    assert first.n_obs == 20 and second.n_obs == 30
    assert np.shares_memory(first.X, a.X) and np.shares_memory(second.X, a.X)
    pd.testing.assert_frame_equal(second.obsm["tf_activity"], a.obsm["tf_activity"].iloc[20:])
