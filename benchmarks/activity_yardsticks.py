"""Every candidate activity statistic on every yardstick, in one run and one table (issue 20).

Yardsticks (each gives every method the same prior and the same cells to score):

* ``sim_random``: the paper's setting, ``rd.sim.grn`` (1,000 genes, 100 TFs, density 0.1,
  noise 0.2), 1,000 training and 500 new cells; prior: the true network's signs.
  Score: mean signed PCC per TF between the new cells' activities and the truth.
* ``sim_collectri``: the paper's eq. 6 on CollecTRI's topology (:func:`sim_on_net`: all
  targets of the TFs with >= 5 of them, 772 TFs, 6,652 genes, 42,308 edges; the net's signs,
  ``|w| ~ U(0.5, 1)``, Gamma(2, 1) TF levels, per-gene offsets ``N(0, 1)``, noise sd 0.2,
  ``x = ReLU(W z + b + eps)``), 2,000 training and 500 new cells; prior: the signs.
* ``sim_collectri_incomplete``: the same cells, the prior with 20% of its edges removed and as
  many random edges added (``peers.corrupt``).
* ``pbmc68k``: scanpy's ``pbmc68k_reduced`` (``.raw``, 700 cells x 765 genes) with CollecTRI,
  the 19 marker checks of ``real_markers.py`` (rank of a regulator among all TFs by the AUROC of
  its activity for its cell type against the rest); score: the median rank (lower is better).
  On both marker yardsticks identical activity columns count once (named 'A|B', as the
  package's merged latents), so TFs that share one activity do not push each other down.
* ``pbmc3k``: 10x PBMC 3k with all genes (``--pbmc3k`` or ``REGDECODER_PBMC3K``: the h5ad with
  raw counts and ``obs['cell_type']``), log-normalised as scanpy's tutorial
  (``filter_genes(min_cells=3)``, ``normalize_total``, ``log1p``), the 2,638 labelled cells;
  per cell type (against all other labelled cells) the best rank of its known regulators
  (:data:`PBMC3K_CHECKS`, from the literature, fixed before the first run); score: the
  median over the six cell types (lower is better).
* ``perturbation``: the GEO TF-perturbation signatures of ``perturbation.py``: AUROC over all
  experiment x TF pairs (higher is better); fits use the other experiments (5 folds).

Candidates: decoupler's methods (``ulm``, ``mlm``, ``zscore``, ``waggr`` weighted mean
without permutations, ``aucell``, ``viper``; tmin 5), regdecoder's public API
(``rd.tl.fit_decoder`` then ``rd.tl.infer``: the latents, today's default marginal t, the
latents' ``z / se``), and numpy prototypes of the candidate statistics
(``benchmarks/_activity_candidates.py``), each one change away from the row it names
(column ``change``). Prototypes use the prior's signed weights and centre each gene by its
training mean, unless the row says otherwise.

    python benchmarks/activity_yardsticks.py --net collectri_human.tsv --pbmc3k pbmc3k.h5ad --perturbation DIR
    python benchmarks/activity_yardsticks.py --quick    # small sizes, a few candidates (the test)

A NaN score (e.g. ``z / se`` where the package leaves a latent unidentified) counts as 0, no
evidence (``nan_fraction`` in the long table says how many). The marker yardsticks are also
scored on 50 paired bootstrap resamples of the cells (the same resamples for every candidate).

Outputs ``benchmarks/results/activity_yardsticks{_quick}.csv`` (one row per candidate, one
column per yardstick, and the goals), ``..._long.csv`` (every number: seconds, the chosen
lambda, per-check ranks), ``..._lambda.csv`` (held-out-gene error of each lambda per
yardstick), ``..._bootstrap.csv`` (per candidate the fraction of resamples where it beats ulm
and the best decoupler method, and where it loses), ``.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _activity_candidates as cand  # noqa: E402
import perturbation  # noqa: E402
import real_markers  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PBMC3K_ENV = "REGDECODER_PBMC3K"

#: Known regulators per PBMC 3k cell type, from the literature; written down before the first
#: run and not changed after it. A cell type's score is the best rank among its regulators.
PBMC3K_CHECKS: dict[str, list[str]] = {
    # PAX5 (Cobaleda et al. 2007), EBF1 (Nechanitzky et al. 2013), SPIB (Su et al. 1997),
    # OCT2 / OBF1 = POU2F2 / POU2AF1 (Corcoran et al. 1993; Schubart et al. 1996)
    "B": ["PAX5", "EBF1", "SPIB", "POU2AF1", "POU2F2"],
    # PU.1 = SPI1 (Scott et al. 1994), C/EBPa/b/d (Friedman 2007), KLF4 (Feinberg et al. 2007)
    "CD14+ Mono": ["SPI1", "CEBPA", "CEBPB", "CEBPD", "KLF4"],
    # NR4A1 for non-classical monocytes (Hanna et al. 2011), C/EBPb (Mildner et al. 2017), PU.1
    "FCGR3A+ Mono": ["NR4A1", "SPI1", "CEBPB", "CEBPA"],
    # T-bet / Eomes (Gordon et al. 2012), NFIL3 (Gascoyne et al. 2009)
    "NK": ["TBX21", "EOMES", "NFIL3"],
    # TCF1 / LEF1 (Willinger et al. 2006), KLF2 (Carlson et al. 2006), FOXP1 (Feng et al. 2011),
    # BACH2 (Roychoudhuri et al. 2013)
    "Naive CD4 T": ["TCF7", "LEF1", "KLF2", "FOXP1", "BACH2"],
    # MHC-II: CIITA and the RFX complex (Reith & Mach 2001); IRF8 (Tamura et al. 2005), IRF4
    # (Suzuki et al. 2004), ZBTB46 (Satpathy et al. 2012), BATF3 (Hildner et al. 2008)
    "DC": ["CIITA", "RFX5", "RFXANK", "RFXAP", "IRF8", "IRF4", "ZBTB46", "BATF3"],
}
DECOUPLER = ("ulm", "mlm", "zscore", "waggr", "aucell", "viper")
DECOUPLER_KWARGS = {"waggr": {"times": 0}}  # the weighted mean itself; 1,000 permutations take minutes
SKIP = {"viper": ("pbmc3k", "sim_collectri", "sim_collectri_incomplete")}  # 35 s per 200 cells of PBMC 3k here


# ----------------------------------------------------------------------------- simulation
def sim_on_net(
    net: pd.DataFrame, n_obs: int, *, tmin: int = 5, weight_low: float = 0.5, weight_high: float = 1.0,
    tf_shape: float = 2.0, tf_scale: float = 1.0, offset_sd: float = 1.0, noise: float = 0.2, seed: int = 0,
):  # fmt: skip
    """The paper's eq. 6 on a real network's topology, with per-gene offsets.

    TFs with at least ``tmin`` targets in ``net`` and all their targets; weights
    ``sign(net weight) * U(weight_low, weight_high)``; ``z ~ Gamma(tf_shape, tf_scale)``;
    ``b ~ N(0, offset_sd)`` per gene; ``x = ReLU(W z + b + eps)``, ``eps ~ N(0, noise)``.
    Returns an AnnData with the contract of ``rd.sim.grn`` (``obsm['tf_activity']``,
    ``varm['true_weights']``, ``uns['sim']['net']``; the offsets in ``var['offset']``): a stand-in for ``rd.sim.grn(net=...)``
    (issue 18), which replaces it once it exists.
    """
    from anndata import AnnData

    rng = np.random.default_rng(seed)
    net = net.groupby(["source", "target"], as_index=False)["weight"].sum()
    size = net.groupby("source").size()
    net = net[net["source"].isin(size[size >= tmin].index)]
    tfs, genes = sorted(net["source"].unique()), sorted(net["target"].unique())
    rows, cols = pd.Index(genes).get_indexer(net["target"]), pd.Index(tfs).get_indexer(net["source"])
    sign = np.where(net["weight"].to_numpy() < 0, -1.0, 1.0)
    w = np.zeros((len(genes), len(tfs)))
    w[rows, cols] = sign * rng.uniform(weight_low, weight_high, len(net))
    b = rng.normal(0.0, offset_sd, len(genes))
    z = rng.gamma(tf_shape, tf_scale, size=(n_obs, len(tfs)))
    x = np.maximum(z @ w.T + b + rng.normal(0.0, noise, size=(n_obs, len(genes))), 0.0).astype(np.float32)
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n_obs)])
    adata = AnnData(X=x, obs=obs, var=pd.DataFrame({"offset": b}, index=genes))
    adata.obsm["tf_activity"] = pd.DataFrame(z, index=obs.index, columns=tfs)
    adata.varm["true_weights"] = pd.DataFrame(w, index=genes, columns=tfs)
    true_net = pd.DataFrame(
        {"source": np.asarray(tfs)[cols], "target": np.asarray(genes)[rows], "weight": w[rows, cols]}
    )
    adata.uns["sim"] = {"net": true_net, "params": {"n_obs": n_obs, "tmin": tmin, "offset_sd": offset_sd,
                                                     "noise": noise, "seed": seed}}  # fmt: skip
    return adata


# ----------------------------------------------------------------------------- yardsticks
@dataclass
class Split:
    """Cells to fit on and cells to score, with the prior every method gets."""

    train: object  # AnnData
    test: object  # AnnData
    net: pd.DataFrame
    cache: dict = field(default_factory=dict)


@dataclass
class Yardstick:
    name: str
    metric: str
    higher_is_better: bool
    splits: list[Split]
    evaluate: Callable[[pd.DataFrame], dict]  # scores of every split's test cells, concatenated
    signed: bool = False  # data may be negative: only the linear model applies
    index: pd.Index | None = None  # order of the scored cells
    notes: dict = field(default_factory=dict)  # candidate -> a note for the table
    lambdas: list = field(default_factory=list)  # held-out-gene error curves of the lam=cv candidates
    chosen: dict = field(default_factory=dict)  # split -> the lambda a candidate used there
    n_cells: int = 0  # > 0: the score is re-evaluated on bootstrap resamples of this many cells
    boot: dict = field(default_factory=dict)  # candidate -> its score on each resample (the same for all)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


def signs(net: pd.DataFrame) -> pd.DataFrame:
    return net.assign(weight=np.where(net["weight"] < 0, -1.0, 1.0))


def _pcc(truth: pd.DataFrame):
    def evaluate(scores: pd.DataFrame) -> dict:
        import regdecoder as rd

        common = [c for c in truth.columns if c in scores.columns]
        pcc = rd.metrics.pearson_columns(truth.loc[scores.index, common].to_numpy(), scores[common].to_numpy(float))
        return {"score": float(np.nanmean(pcc)), "n_tfs": len(common)}

    return evaluate


def sim_random(quick: bool) -> Yardstick:
    import regdecoder as rd

    n_train, n_test, n_genes, n_tfs = (300, 100, 300, 30) if quick else (1000, 500, 1000, 100)
    adata = rd.sim.grn(n_obs=n_train + n_test, n_genes=n_genes, n_tfs=n_tfs, density=0.1, noise=0.2, seed=0)
    train, test = rd.pp.split(adata, n_test=n_test, seed=0)
    net = signs(adata.uns["sim"]["net"])
    return Yardstick("sim_random", "signed PCC", True, [Split(train, test, net)], _pcc(test.obsm["tf_activity"]))


def sim_collectri(collectri: pd.DataFrame, quick: bool, *, incomplete: bool = False) -> Yardstick:
    import peers

    import regdecoder as rd

    net = collectri
    if quick:  # 60 TFs of CollecTRI with their targets
        size = net.groupby("source").size()
        tfs = np.random.default_rng(0).choice(sorted(size[size >= 10].index), 60, replace=False)
        net = net[net["source"].isin(tfs)]
    n_train, n_test = (300, 100) if quick else (2000, 500)
    adata = sim_on_net(net, n_train + n_test, seed=0)
    train, test = rd.pp.split(adata, n_test=n_test, seed=0)
    prior = signs(adata.uns["sim"]["net"])
    name = "sim_collectri"
    if incomplete:
        prior, name = peers.corrupt(prior, adata.var_names, frac=0.2, seed=0), name + "_incomplete"
    return Yardstick(name, "signed PCC", True, [Split(train, test, prior)], _pcc(test.obsm["tf_activity"]))


def merge_identical_columns(scores: pd.DataFrame) -> pd.DataFrame:
    """Identical columns as one, named by joining the TF names with '|' (the package's merged latents):
    a rank counts each distinct activity once, however many TFs share it."""
    keys = pd.util.hash_pandas_object(scores.T.round(12), index=False).to_numpy()
    names = pd.Series(scores.columns.astype(str)).groupby(keys, sort=False).agg("|".join)
    first = ~pd.Index(keys).duplicated()
    out = scores.loc[:, first]
    out.columns = names.loc[keys[first]].to_numpy()
    return out


def pbmc68k(collectri: pd.DataFrame, quick: bool) -> Yardstick:
    adata = real_markers.load_data()
    labels = adata.obs["bulk_labels"]

    def evaluate(scores: pd.DataFrame, cells: np.ndarray | None = None) -> dict:
        z, lab = merge_identical_columns(scores.loc[adata.obs_names]), labels
        if cells is not None:  # a bootstrap resample of the cells
            z, lab = z.iloc[cells], labels.iloc[cells]
        table = real_markers.marker_table(z, lab)
        main = table[~table["headline"]]
        checks = {f"{g}:{r}": v for g, r, v in zip(main["group"], main["regulator"], main["rank"], strict=True)}
        return {"score": float(main["rank"].median()), **checks}

    split = [Split(adata, adata, collectri)]
    return Yardstick("pbmc68k", "marker median rank", False, split, evaluate, n_cells=adata.n_obs)


def load_pbmc3k(path: str | None):
    """PBMC 3k log-normalised as scanpy's tutorial, the labelled cells only."""
    import anndata
    import scanpy as sc

    path = path or os.environ.get(PBMC3K_ENV)
    if not path or not Path(path).exists():
        raise SystemExit(f"PBMC 3k not found: pass `--pbmc3k FILE.h5ad` or set {PBMC3K_ENV}.")
    adata = anndata.read_h5ad(path)
    adata = adata[adata.obs["cell_type"].notna()].copy()
    sc.pp.filter_genes(adata, min_cells=3)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str)
    return adata


def best_ranks(scores: pd.DataFrame, labels: pd.Series, checks: dict[str, list[str]]) -> dict[str, float]:
    """Per cell type, the best rank (1 = highest AUROC for the type against the rest) of its
    regulators among all scored TFs; a regulator inside a merged latent takes its rank."""
    out = {}
    for group, regulators in checks.items():
        auc = real_markers.auroc_matrix(scores, labels.eq(group).to_numpy())
        ranks = [int((auc > auc[lat]).sum()) + 1 for r in regulators if (lat := real_markers.latent_of(auc.index, r))]
        out[group] = float(min(ranks)) if ranks else np.nan
    return out


def pbmc3k(collectri: pd.DataFrame, quick: bool, path: str | None) -> Yardstick:
    adata = load_pbmc3k(path)
    if quick:
        adata = adata[np.sort(np.random.default_rng(0).permutation(adata.n_obs)[:600])].copy()
    labels = adata.obs["cell_type"]

    def evaluate(scores: pd.DataFrame, cells: np.ndarray | None = None) -> dict:
        z, lab = merge_identical_columns(scores.loc[adata.obs_names]), labels
        if cells is not None:  # a bootstrap resample of the cells
            z, lab = z.iloc[cells], labels.iloc[cells]
        ranks = best_ranks(z, lab, PBMC3K_CHECKS)
        return {"score": float(np.nanmedian(list(ranks.values()))), **ranks}

    split = [Split(adata, adata, collectri)]
    return Yardstick("pbmc3k", "best-regulator median rank", False, split, evaluate, n_cells=adata.n_obs)


def perturbation_yardstick(collectri: pd.DataFrame, quick: bool, path: str | None) -> Yardstick:
    adata = perturbation.load(path)
    if quick:
        adata = adata[np.sort(np.random.default_rng(0).permutation(adata.n_obs)[:80])]
    adata = perturbation.prepare(adata, collectri)
    splits = []
    for held in perturbation.folds(adata.obs, n_folds=2 if quick else perturbation.N_FOLDS):
        train = adata[np.setdiff1d(np.arange(adata.n_obs), held)].copy()
        splits.append(Split(train, adata[held].copy(), collectri))

    def evaluate(scores: pd.DataFrame) -> dict:
        out = perturbation.evaluate(scores, adata.obs)
        return {"score": out["auroc"], "median_rank": out["median_rank"], "1-qrank": out["1-qrank"]}

    return Yardstick("perturbation", "AUROC", True, splits, evaluate, signed=True, index=adata.obs_names)


# ----------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    name: str
    family: str  # 'decoupler', 'regdecoder (public API)', 'prototype'
    change: str  # the one change from the row it names
    score: Callable[[Split, Yardstick], pd.DataFrame]  # scores of split.test
    skip: tuple[str, ...] = ()  # yardsticks where it is not run (time budget)


def _dense(adata) -> np.ndarray:
    x = adata.X
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def decoupler_method(method: str) -> Callable:
    def score(split: Split, ys: Yardstick) -> pd.DataFrame:
        try:
            return perturbation.decoupler_scores(method, split.test, split.net, **DECOUPLER_KWARGS.get(method, {}))
        except np.linalg.LinAlgError:  # mlm on identical regulons ("Singular matrix"): merge them, as real_markers does
            merged = real_markers.merge_identical(split.net, split.test.var_names)[0]
            ys.notes.setdefault(method, "identical regulons merged (Singular matrix otherwise)")
            return perturbation.decoupler_scores(method, split.test, merged, **DECOUPLER_KWARGS.get(method, {}))

    return score


def _rd_fit(split: Split, ys: Yardstick):
    """One public-API fit per split (shared by the regdecoder rows and the learned-weight prototypes)."""
    if "rd" not in split.cache:
        if ys.signed:
            msg = "needs the linear decoder for signed data (issue 17); see perturbation.py's prototype"
            raise NotImplementedError(msg)
        import regdecoder as rd

        rd.settings.progress = False
        train = split.train.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = rd.tl.fit_decoder(train, net=split.net, seed=0)
            test = train if split.test is split.train else split.test.copy()
            # standard errors only when asked (issue 18): the z/se row needs them; on the training
            # cells this solves the fit's own latents again
            rd.tl.infer(test, model, standard_errors=True)
        weights = pd.DataFrame(np.asarray(train.varm["regdecoder_weights"]), index=train.var_names,
                               columns=list(map(str, model.latent_names)))  # fmt: skip
        split.cache["rd"] = (test, weights)
    return split.cache["rd"]


def regdecoder_stat(statistic: str) -> Callable:
    def score(split: Split, ys: Yardstick) -> pd.DataFrame:
        import regdecoder as rd

        test, _ = _rd_fit(split, ys)
        act = rd.get.activities(test, statistic=statistic)
        return pd.DataFrame(act.X, index=test.obs_names, columns=act.var_names)

    return score


def _weights(split: Split, ys: Yardstick, learned: bool):
    genes = split.test.var_names
    if not learned:
        return cand.prior_matrix(split.net, genes)
    if ys.signed:  # the linear decoder prototype fitted on the training experiments
        if "linear" not in split.cache:
            s, tfs = cand.prior_matrix(split.net, genes)
            w, b = cand.fit_linear_decoder(_dense(split.train), s)
            split.cache["linear"] = (w, tfs, b)
        w, tfs, _ = split.cache["linear"]
        return w, tfs
    return cand.weights_matrix(_rd_fit(split, ys)[1], genes)


def prototype(
    *, lam: float | str = "cv", stat: str = "coef", kind: str = "ridge", weighted: bool = False,
    censored: bool = False, groups: bool = False, learned: bool = False,
) -> Callable:  # fmt: skip
    """A prototype statistic (see ``_activity_candidates``): fit ``lam`` (held-out genes), the
    offsets and the precision weights on the training cells, score the test cells."""

    def score(split: Split, ys: Yardstick) -> pd.DataFrame:
        use_censored = censored and not ys.signed  # signed data: the linear model, as the package would fit
        s, tfs = _weights(split, ys, learned)
        labels = None
        if groups:
            labels = cand.complexes(s, tfs)
            s = cand.group_columns(s, labels)
        x_train = _dense(split.train)
        x_test = x_train if split.test is split.train else _dense(split.test)
        mean = x_train.mean(0)
        chosen = lam
        if lam in ("cv", "cv1se"):  # one choice per split and model, shared by the rows that differ elsewhere
            rule = "1se" if lam == "cv1se" else "min"
            key = ("cv", rule, kind, learned, groups)
            if key not in split.cache:
                split.cache[key] = cand.choose_lambda(x_train - mean, s, kind=kind, rule=rule)
                ys.lambdas.append({"rule": rule, "kind": kind, "learned": learned, "groups": groups,
                                   **split.cache[key][1], "chosen": split.cache[key][0]})  # fmt: skip
            chosen = split.cache[key][0]
        p = cand.precision(x_train - mean, s, chosen) if weighted else None
        if use_censored:
            z, t, b = cand.censored_ridge(x_train, s, chosen, p=p)
            if x_test is not x_train:
                z, t, _ = cand.censored_ridge(x_test, s, chosen, offset=b, p=p)
        else:
            est = cand.linear(s, chosen, p=p, kind=kind)
            z, t = est.t(x_test - mean) if stat == "t" else (est.coef(x_test - mean)[0], None)
        out = t if stat == "t" else z
        if labels is not None:
            out = out[:, labels]  # every member reports its complex's activity
        ys.chosen[id(split)] = chosen
        return pd.DataFrame(out, index=split.test.obs_names, columns=tfs)

    return score


PATH = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e4)


def candidates(quick: bool) -> list[Candidate]:
    """The table's rows. Prototypes form a ladder, each rung one change from the row named in
    ``change``: the ridge path, then ``lam`` by held-out genes, its t, precision weights, the
    censored model, the decoder's learned weights; and alternatives to the rung 'ridge lam=cv, t'."""
    dec = ("ulm", "mlm") if quick else DECOUPLER
    out = [Candidate(m, "decoupler", "", decoupler_method(m), skip=SKIP.get(m, ())) for m in dec]
    if not quick:
        api = "regdecoder (public API)"
        out += [
            Candidate("regdecoder latents", api, "", regdecoder_stat("z")),
            Candidate("regdecoder marginal t (default)", api, "", regdecoder_stat("activity")),
            Candidate("regdecoder z/se", api, "regdecoder latents / their standard errors", regdecoder_stat("z_t")),
        ]
    proto = "prototype"
    out += [
        Candidate(f"ridge lam={lam:g}", proto, "prior weights, linear, coefficient", prototype(lam=lam))
        for lam in (PATH if not quick else (1e-2, 1e4))
    ]
    ladder = [  # name, change, options
        ("ridge lam=cv", "ridge lam=...: lam by held-out genes", {}),
        ("ridge lam=cv, t", "ridge lam=cv: reported as z/se", {"stat": "t"}),
        ("ridge lam=cv, t, precision", "ridge lam=cv, t: per-gene precision weights", {"stat": "t", "weighted": True}),
        ("censored, lam=cv, t, precision", "ridge lam=cv, t, precision: censored model ReLU(Sz+b) (signed data: linear)",
         {"stat": "t", "weighted": True, "censored": True}),
        ("learned, censored, lam=cv, t, precision", "censored, lam=cv, t, precision: the decoder's learned weights",
         {"stat": "t", "weighted": True, "censored": True, "learned": True}),
        ("learned, censored, lam=cv1se, t, precision", "learned, censored, lam=cv, t, precision: the 1-SE rule",
         {"stat": "t", "weighted": True, "censored": True, "learned": True, "lam": "cv1se"}),
        ("learned, censored, lam=cv1se, t", "learned, censored, lam=cv1se, t, precision: no precision weights",
         {"stat": "t", "censored": True, "learned": True, "lam": "cv1se"}),
    ]  # fmt: skip
    alternatives = [  # each one change from 'ridge lam=cv, t'
        ("ridge lam=cv1se, t", "the 1-SE rule for lam", {"lam": "cv1se"}),
        ("shrink to marginal, lam=cv, t", "shrunk toward the marginal slopes, not 0", {"kind": "shrink"}),
        ("complexes, ridge lam=cv, t", "nested regulons as one latent", {"groups": True}),
        ("censored, lam=cv, t", "censored model ReLU(Sz+b) (signed data: linear)", {"censored": True}),
        ("learned, ridge lam=cv, t", "the decoder's learned weights", {"learned": True}),
        ("marginal t (prior)", "each TF alone (regdecoder's marginal t on the prior)", {"lam": np.inf, "kind": "marginal"}),
    ]  # fmt: skip
    for name, change, opts in ladder:
        out.append(Candidate(name, proto, change, prototype(**opts)))
    for name, change, opts in alternatives:
        out.append(Candidate(name, proto, "ridge lam=cv, t: " + change, prototype(**{"stat": "t", **opts})))
    if quick:  # no public-API fit: no learned weights
        out = [c for c in out if not c.name.startswith("learned")]
    return out


# ----------------------------------------------------------------------------- run
def run_one(c: Candidate, ys: Yardstick, n_boot: int = 0) -> dict:
    t0 = time.perf_counter()
    row = {"candidate": c.name, "yardstick": ys.name}
    if ys.name in c.skip:
        return {**row, "note": "skipped: over the run's time budget"}
    try:
        parts = [c.score(split, ys) for split in ys.splits]
    except NotImplementedError as err:
        return {**row, "note": f"n/a: {err}"}
    except Exception as err:  # noqa: BLE001 - a failing candidate is reported, the others still run
        return {**row, "note": f"failed: {type(err).__name__}: {err}"}
    common = [c for c in parts[0].columns if all(c in p.columns for p in parts[1:])]
    scores = pd.concat([p[common] for p in parts])  # decoupler's TFs can differ between folds
    if ys.index is not None:
        scores = scores.reindex(ys.index)
    row["seconds"] = time.perf_counter() - t0
    row["nan_fraction"] = float(scores.isna().to_numpy().mean())
    scores = scores.fillna(0.0)  # NaN (e.g. a standard error where a latent is not identified): no evidence
    row.update(ys.evaluate(scores))
    if ys.n_cells and n_boot:
        rng = np.random.default_rng(0)  # the same resamples for every candidate: paired comparisons
        resamples = (rng.integers(0, ys.n_cells, ys.n_cells) for _ in range(n_boot))
        ys.boot[c.name] = np.array([ys.evaluate(scores, cells)["score"] for cells in resamples])
    if c.name in ys.notes:
        row["note"] = ys.notes[c.name]
    if "lam=cv" in c.name:
        row["lambda"] = ";".join(f"{v:g}" for v in dict.fromkeys(ys.chosen.values()))
    ys.chosen.clear()
    return row


def build(args) -> list[Yardstick]:
    collectri = real_markers.load_net(args.net)
    makers = {
        "sim_random": lambda: sim_random(args.quick),
        "sim_collectri": lambda: sim_collectri(collectri, args.quick),
        "sim_collectri_incomplete": lambda: sim_collectri(collectri, args.quick, incomplete=True),
        "pbmc68k": lambda: pbmc68k(collectri, args.quick),
        "pbmc3k": lambda: pbmc3k(collectri, args.quick, args.pbmc3k),
        "perturbation": lambda: perturbation_yardstick(collectri, args.quick, args.perturbation),
    }
    out = []
    for name in args.yardsticks:
        out.append(makers[name]())
    return out


def bootstrap_table(yardsticks: list[Yardstick], wide: pd.DataFrame) -> pd.DataFrame:
    """Per marker yardstick and candidate, on paired bootstrap resamples of the cells: the
    fraction of resamples where it scores better than ulm, and worse; the same against the
    decoupler method with the best score on the full cells."""
    rows = []
    for ys in yardsticks:
        if not ys.boot or "ulm" not in ys.boot:
            continue
        dec = [m for m in DECOUPLER if m in ys.boot]
        best = (max if ys.higher_is_better else min)(dec, key=lambda m: wide.loc[m, ys.name])
        for name, b in ys.boot.items():
            row = {"yardstick": ys.name, "candidate": name, "n_resamples": len(b), "median": float(np.median(b)),
                   "p10": float(np.percentile(b, 10)), "p90": float(np.percentile(b, 90)), "best decoupler": best}  # fmt: skip
            for key, ref in (("ulm", "ulm"), ("best decoupler", best)):
                row[f"P(better than {key})"] = float(np.mean(ys.better(b, ys.boot[ref])))
                row[f"P(worse than {key})"] = float(np.mean(ys.better(ys.boot[ref], b)))
            rows.append(row)
    return pd.DataFrame(rows)


def table(long: pd.DataFrame, yardsticks: list[Yardstick], cands: list[Candidate]) -> pd.DataFrame:
    wide = long.pivot(index="candidate", columns="yardstick", values="score")
    wide = wide.reindex(index=[c.name for c in cands], columns=[y.name for y in yardsticks])
    wide.insert(0, "family", [c.family for c in cands])
    wide.insert(1, "change", [c.change for c in cands])
    return wide


def goals(wide: pd.DataFrame, yardsticks: list[Yardstick]) -> pd.DataFrame:
    """Per candidate: at least mlm on the CollecTRI simulation, at least ulm on every real
    yardstick, and its margin over the best decoupler method per real yardstick."""
    dec = wide[wide["family"] == "decoupler"]
    real = [y for y in yardsticks if not y.name.startswith("sim")]
    out = pd.DataFrame(index=wide.index)
    if "sim_collectri" in wide and "mlm" in wide.index:
        out["sim_collectri >= mlm"] = wide["sim_collectri"] >= wide.loc["mlm", "sim_collectri"]
    for y in real:
        sign = 1 if y.higher_is_better else -1
        if "ulm" in wide.index:
            out[f"{y.name} >= ulm"] = sign * (wide[y.name] - wide.loc["ulm", y.name]) >= 0
        best = dec[y.name].max() if y.higher_is_better else dec[y.name].min()
        out[f"{y.name} margin over best decoupler"] = sign * (wide[y.name] - best)
    return out


def plot(wide: pd.DataFrame, yardsticks: list[Yardstick], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(yardsticks)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 3, 0.28 * len(wide) + 1.8), sharey=True)
    axes = np.atleast_1d(axes)
    colours = {"decoupler": "tab:grey", "regdecoder (public API)": "tab:blue", "prototype": "tab:orange"}
    y = np.arange(len(wide))
    for ax, ys in zip(axes, yardsticks, strict=True):
        vals = wide[ys.name].to_numpy(float)
        ax.barh(y, np.nan_to_num(vals), color=[colours[f] for f in wide["family"]])
        ax.set_title(f"{ys.name}\n{ys.metric} ({'higher' if ys.higher_is_better else 'lower'} is better)", fontsize=8)
        if not ys.higher_is_better:
            ax.set_xscale("log")
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(y, wide.index)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default=None, help="CollecTRI TSV (else $REGDECODER_COLLECTRI)")
    ap.add_argument("--pbmc3k", default=None, help=f"PBMC 3k h5ad (else ${PBMC3K_ENV})")
    ap.add_argument("--perturbation", default=None, help=f"folder of the ChEA3 files (else ${perturbation.DATA_ENV})")
    ap.add_argument("--yardsticks", nargs="+", default=["sim_random", "sim_collectri", "sim_collectri_incomplete",
                                                         "pbmc68k", "pbmc3k", "perturbation"])  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="small sizes, a few candidates")
    ap.add_argument(
        "--bootstrap", type=int, default=None, help="resamples of the marker yardsticks (default 50; quick 5)"
    )
    ap.add_argument("--out", default=str(RESULTS), help="folder for the results (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    t0 = time.perf_counter()
    yardsticks = build(args)
    cands = candidates(args.quick)
    n_boot = args.bootstrap if args.bootstrap is not None else (5 if args.quick else 50)
    rows = []
    for ys in yardsticks:
        for c in cands:
            rows.append(run_one(c, ys, n_boot))
            r = rows[-1]
            print(f"{ys.name:26s} {c.name:36s} {r.get('score', np.nan):10.4f} {r.get('seconds', np.nan):7.1f} s "
                  f"{r.get('lambda', '')} {r.get('note', '')}", flush=True)  # fmt: skip
    long = pd.DataFrame(rows)
    wide = table(long, yardsticks, cands)
    checks = goals(wide, yardsticks)
    stem = Path(args.out) / f"activity_yardsticks{'_quick' if args.quick else ''}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    pd.concat([wide, checks], axis=1).to_csv(f"{stem}.csv")
    long.to_csv(f"{stem}_long.csv", index=False)
    bootstrap_table(yardsticks, wide).to_csv(f"{stem}_bootstrap.csv", index=False)
    lambdas = pd.concat([pd.DataFrame(y.lambdas).assign(yardstick=y.name) for y in yardsticks if y.lambdas])
    lambdas.drop_duplicates().to_csv(f"{stem}_lambda.csv", index=False)
    meta = {"command": " ".join(["python", *sys.argv]), "quick": args.quick, "seconds": time.perf_counter() - t0,
            "pbmc3k_checks": PBMC3K_CHECKS}  # fmt: skip
    Path(f"{stem}.json").write_text(json.dumps({"meta": meta, "table": wide.reset_index().to_dict(orient="records")},
                                               indent=1, default=str))  # fmt: skip
    plot(wide, yardsticks, Path(f"{stem}.png"))
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 40):
        print(wide.drop(columns="change").to_string())
    print(f"total {time.perf_counter() - t0:.0f} s")
    return wide


if __name__ == "__main__":
    main()
