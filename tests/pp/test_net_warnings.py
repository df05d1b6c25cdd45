"""prepare_net's warning for a net whose columns look swapped."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

import regdecoder as rd


def _net(rng):
    tfs = [f"T{i}" for i in range(30)]
    genes = [f"G{i}" for i in range(200)]
    rows = [(tf, g, float(rng.choice([-1, 1]))) for tf in tfs for g in rng.choice(genes, 20, replace=False)]
    return pd.DataFrame(rows, columns=["source", "target", "weight"]), tfs, genes


def test_a_tf_rich_gene_panel_is_not_called_swapped_but_a_swapped_net_is(caplog):
    rng = np.random.default_rng(0)
    net, tfs, genes = _net(rng)
    # a panel with every TF and few targets (as pbmc68k_reduced with CollecTRI): among these
    # genes the net has more regulators than targets, yet its columns are right
    panel = tfs + genes[:10]
    assert net.source.nunique() > net[net.target.isin(panel)].target.nunique()
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.pp.prepare_net(net, panel, tmin=1)
    assert "swapped" not in caplog.text
    caplog.clear()
    swapped = net.rename(columns={"source": "target", "target": "source"})
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.pp.prepare_net(swapped, panel, tmin=1)
    assert "swapped" in caplog.text
    # the fix, since fit_decoder has no source=/target= options
    assert "net.rename(columns={'source': 'target', 'target': 'source'})" in caplog.text
