"""The perturbation yardstick (``benchmarks/perturbation.py``): the signatures as the shared files
hold them, oriented and with the perturbed TF's gene zeroed; its metrics against decoupler's own
benchmark (``dc.bm.benchmark``) on the same experiments; the folds; the prior prototype against
the package's marginal t. Needs the shared data (skipped without it) except the pure checks."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
needs_data = pytest.mark.skipif(
    not (os.environ.get("REGDECODER_PERTURBATION") and os.environ.get("REGDECODER_COLLECTRI")),
    reason="set REGDECODER_PERTURBATION (the ChEA3 folder) and REGDECODER_COLLECTRI to the shared data",
)


@pytest.fixture(scope="module")
def pert():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("perturbation")
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def signatures(pert):
    if not os.environ.get("REGDECODER_PERTURBATION"):
        pytest.skip("set REGDECODER_PERTURBATION to the ChEA3 folder")
    return pert.load()


@pytest.fixture(scope="module")
def net():
    path = os.environ.get("REGDECODER_COLLECTRI")
    if not path:
        pytest.skip("set REGDECODER_COLLECTRI to a local CollecTRI TSV")
    return pd.read_csv(path, sep="\t")[["source", "target", "weight"]]


@needs_data
def test_signatures_are_the_files_oriented_with_the_perturbed_gene_zeroed(signatures):
    folder = Path(os.environ["REGDECODER_PERTURBATION"])
    sig = pd.read_csv(folder / "chea3_human_signatures.tsv.gz", sep="\t")
    meta = pd.read_csv(folder / "chea3_human_meta.tsv", sep="\t").set_index("signature")
    assert set(signatures.obs_names) == set(meta.index[meta["type_p"] != 0])
    both = sig[sig.duplicated(["signature", "gene"], keep=False)]["signature"].unique()
    for name in [*signatures.obs_names[::40], *both]:
        row = pd.Series(np.asarray(signatures[name].X).ravel(), index=signatures.var_names)
        tf, direction = meta.loc[name, "tf"], meta.loc[name, "type_p"]
        expected = sig[sig["signature"] == name].groupby("gene")["sign"].sum() * direction  # up and down: 0
        expected = expected.drop(tf, errors="ignore")
        assert (row[expected.index] == expected).all()
        assert row.drop(expected.index).eq(0).all()  # the TF's own gene and every other gene
        assert signatures.obs.loc[name, "source"] == tf


@needs_data
def test_ulm_metrics_match_decouplers_benchmark(pert, signatures, net):
    import decoupler as dc

    sub = pert.prepare(signatures[np.random.default_rng(0).permutation(signatures.n_obs)[:60]], net)
    ours = pert.evaluate(pert.decoupler_scores("ulm", sub, net), sub.obs)
    raw = sub.copy()
    raw.X = raw.X * raw.obs["type_p"].to_numpy()[:, None]  # dc.bm orients the data itself
    ref = dc.bm.benchmark(raw, net, metrics=["auc", "qrank"], kws_decouple={"methods": ["ulm"], "tmin": 5})
    ref = ref.set_index("metric")["score"]
    assert ours["auroc"] == pytest.approx(ref["auroc"], abs=1e-12)
    assert ours["auprc"] == pytest.approx(ref["auprc"], abs=1e-12)
    assert ours["1-qrank"] == pytest.approx(ref["1-qrank"], abs=1e-12)


def test_median_rank_of_the_perturbed_tf(pert):
    obs = pd.DataFrame({"source": ["A", "B", "C", "Z"]}, index=["e1", "e2", "e3", "e4"])
    scores = pd.DataFrame(
        [[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], index=obs.index, columns=["A", "B", "C"]
    )
    out = pert.evaluate(scores, obs)
    assert out["n_experiments"] == 3  # Z is not scored: dropped
    assert out["median_rank"] == 1.0  # ranks 1, 2, 1
    # rows scaled by their largest value: positives {1, 2/3, 1}, negatives {2/3, 1/3, 1, 1/3, 1/3, 2/3}
    assert out["auroc"] == pytest.approx(15 / 18)


def test_folds_partition_the_experiments_by_series(pert):
    obs = pd.DataFrame({"gse": np.repeat([f"GSE{i}" for i in range(23)], np.arange(1, 24) % 5 + 1)})
    parts = pert.folds(obs, n_folds=5, seed=3)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(obs)))
    for part in parts:
        inside = set(obs["gse"].iloc[part])
        others = set(obs["gse"].drop(obs.index[part]))
        assert not inside & others


@needs_data
def test_prior_marginal_t_is_the_packages_marginal_t(pert, signatures, net):
    import torch

    from regdecoder.train._score import marginal_t

    sys.path.insert(0, str(BENCH))
    try:
        cand = importlib.import_module("_activity_candidates")
    finally:
        sys.path.remove(str(BENCH))
    sub = signatures[:12].copy()
    ours = pert.prior_scores(sub, net, joint=False)
    s, _ = cand.prior_matrix(net, sub.var_names)
    x = torch.as_tensor(np.asarray(sub.X), dtype=torch.float64)
    ref, _ = marginal_t(x, torch.as_tensor(s.toarray()), torch.zeros(sub.n_vars, dtype=torch.float64))
    np.testing.assert_allclose(ours.to_numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@needs_data
def test_quick_run_writes_its_table(pert, tmp_path):
    table = pert.main(["--quick", "--out", str(tmp_path)]).set_index("method")
    for suffix in (".csv", ".json", ".png"):
        assert (tmp_path / f"perturbation_quick{suffix}").exists()
    assert table.loc[["ulm", "mlm"], "auroc"].between(0.4, 1.0).all()
    assert (table["n_experiments"] > 50).all()
