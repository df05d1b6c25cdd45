"""The real-data benchmark's quick mode runs end to end (pbmc68k_reduced + CollecTRI) and the
default fit meets its goals there: the same activities for every seed, signs from the prior,
the merged MHC-II regulator first in antigen-presenting cells, CIITA not starved, held-out
reconstruction better than each gene's mean."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("REGDECODER_COLLECTRI"), reason="set REGDECODER_COLLECTRI to a local CollecTRI TSV"
    ),
]

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "real_markers.py"


def test_real_markers_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("real_markers", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    summary = mod.main(["--quick", "--out", str(tmp_path)]).set_index("method")
    assert (tmp_path / "real_markers_quick.png").exists() and (tmp_path / "real_markers_quick.csv").exists()
    ours, ulm = summary.loc["regdecoder"], summary.loc["ulm"]
    assert ours["seed_median"] >= 0.99 and ours["seed_p10"] >= 0.95
    assert ours["sign_agree"] >= 0.95
    assert ours["mhc2_rank_apc"] == 1 and ours["ciita_auroc_apc"] >= 0.9
    assert ours["marker_median_rank"] <= ulm["marker_median_rank"]
    assert ours["heldout_mse"] < ours["heldout_mse_mean_baseline"]
    assert ours["knn_purity"] >= 0.67
