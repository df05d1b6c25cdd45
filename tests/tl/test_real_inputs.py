"""Real data as users bring it (issue 17): CollecTRI without its signs on scanpy's
pbmc68k_reduced, and 10x's PBMC 3k with every gene in scanpy's layout (the README's example).
Slow; skipped with the reason when the local files are missing (nothing downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import regdecoder as rd

REPO = Path(__file__).resolve().parents[2]
COLLECTRI = os.environ.get("REGDECODER_COLLECTRI")
#: 10x's PBMC 3k (2,700 cells x 32,738 genes, raw counts): a local copy, as .ci/run finds CollecTRI
PBMC3K = Path(os.environ.get("REGDECODER_PBMC3K", REPO / ".." / "shared" / "data" / "pbmc3k" / "pbmc3k.h5ad"))

needs_collectri = pytest.mark.skipif(not COLLECTRI, reason="set REGDECODER_COLLECTRI to a local CollecTRI TSV")


def _top_group(acts: pd.DataFrame, groups: pd.Series, tf: str) -> str:
    return str(acts[tf].groupby(groups.to_numpy()).mean().idxmax())


@pytest.mark.slow
@needs_collectri
def test_collectri_without_signs_keeps_known_biology_on_pbmc68k_reduced():
    """Every weight set to +1: the MHC-II group (RFX5|RFXANK|RFXAP) and CIITA highest in
    dendritic cells, PAX5 and EBF1 in B cells, where ulm on the same net puts them (0.2 put
    MHC-II lowest in dendritic cells, -6.07, and EBF1 lowest in B cells)."""
    import decoupler as dc
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    net = rd.datasets.collectri().assign(weight=1.0)
    rd.tl.fit_decoder(adata, net=net, use_raw=True)
    acts = rd.get.activities(adata).to_df()
    ulm, _ = dc.mt.ulm(adata.raw.to_adata().to_df(), net, tmin=5)
    groups = adata.obs["bulk_labels"]
    mhc = next(c for c in acts.columns if "RFX5" in c)
    expect = {mhc: "Dendritic", "CIITA": "Dendritic", "PAX5": "CD19+ B", "EBF1": "CD19+ B"}
    for tf, group in expect.items():
        assert _top_group(acts, groups, tf) == group, tf
        assert _top_group(ulm, groups, tf.split("|")[0]) == group, f"ulm, {tf}"
    assert set(adata.uns["regdecoder"]["orientation"]) == {"prior"}


@pytest.mark.slow
@needs_collectri
def test_one_real_cell_is_ulm_on_the_prior_with_no_advice_to_run_more_epochs(caplog):
    """One cell of pbmc68k_reduced (60% zeros) with CollecTRI: the weights are the prior's and
    there are no offsets, so nothing the epochs fit survives (the latents are solved exactly
    afterwards, the t-values do not use them); the fit stopped at max_epochs on this cell and
    advised `recipe={'max_epochs': 100}`. Its activities are ulm's on the prior's signs with the
    cell's zeros kept (decoupler's `empty=False`)."""
    import logging

    import decoupler as dc
    import scanpy as sc

    one = sc.datasets.pbmc68k_reduced().raw.to_adata()[[5]].copy()
    net = rd.datasets.collectri()
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        rd.tl.fit_decoder(one, net=net)
    assert "single sample" in caplog.text and "max_epochs" not in caplog.text
    ulm, _ = dc.mt.ulm(one.to_df(), net.assign(weight=np.sign(net["weight"])), tmin=5, empty=False)
    acts = rd.get.activities(one).to_df()
    common = [tf for tf in acts.columns if tf in ulm.columns]
    assert len(common) > 100
    np.testing.assert_allclose(acts[common].to_numpy(), ulm[common].to_numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.slow
@needs_collectri
@pytest.mark.skipif(not PBMC3K.is_file(), reason=f"no PBMC 3k file at {PBMC3K}: set REGDECODER_PBMC3K")
def test_the_readme_example_on_pbmc3k_in_scanpy_layout():
    """The README's 'on your own cells' example on PBMC 3k as scanpy's tutorial leaves it: raw
    with every gene kept by filter_genes(min_cells=3), X the highly variable genes, scaled. The
    fit reads raw's 13,714 genes (0.2 crashed in the ALS weight solve on them) and keeps their
    weights; known regulators are highest in their cell types."""
    import anndata as ad
    import scanpy as sc

    adata = ad.read_h5ad(PBMC3K)
    sc.pp.filter_genes(adata, min_cells=3)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    adata.raw = adata
    sc.pp.highly_variable_genes(adata, subset=True)
    adata.X = adata.X.toarray()  # scaling densifies the highly variable genes anyway (scanpy warns on sparse)
    sc.pp.scale(adata, max_value=10)
    net = rd.datasets.collectri()
    model = rd.tl.fit_decoder(adata, net=net, use_raw=True)  # the README's lines, as they are
    acts = rd.get.activities(adata)
    sc.pp.neighbors(adata, use_rep="regdecoder")
    rd.pl.activities(adata, groupby="cell_type", show=False)
    assert model.var_names == list(adata.raw.var_names) and len(model.var_names) > 13_000
    weights = rd.get.weights(adata)
    assert set(weights["target"]) - set(adata.var_names)  # the weights of genes only in raw are there
    assert np.isfinite(acts.X).all() and np.isfinite(model.weights).all()
    groups = adata.obs["cell_type"]
    df = acts.to_df()
    assert _top_group(df, groups, "PAX5") == "B"
    assert _top_group(df, groups, "EBF1") == "B"
    assert _top_group(df, groups, "SPI1") in {"CD14+ Mono", "FCGR3A+ Mono", "DC"}
