"""Real-data yardstick for signed inputs: GEO TF-perturbation signatures (ChEA3).

Data: 443 human GEO experiments on 204 TFs, each a signed vector over genes (+1 up, -1 down,
0 otherwise), with the perturbed TF and the expected change of its activity ``type_p`` (-1
knock-down/out, +1 over-expression; the 15 experiments with an unknown direction are left
out). Files ``chea3_human_signatures.tsv.gz`` and ``chea3_human_meta.tsv`` in the folder given
by ``--data`` or the environment variable ``REGDECODER_PERTURBATION``. Prior: CollecTRI
(``--net`` or ``REGDECODER_COLLECTRI``), TFs with >= 5 targets among the genes (tmin 5).

Protocol (decoupler's benchmark, ``dc.bm.benchmark``): the perturbed TF's own gene is set to
0 in its experiment; every experiment is multiplied by ``type_p``; experiments whose TF has
fewer than 5 targets among the genes are dropped, then genes that are 0 in every remaining
experiment; every method scores every TF in every experiment; 373 experiments remain whose
TF is scored (decoupler's benchmark also keeps a 374th, whose TF no method scores once those
genes are gone, as a row without a positive: its ulm AUROC 0.6054 against our 0.6053). Metrics:

* **AUROC** over all experiment x TF pairs (positive: the perturbed TF), each experiment's
  scores first divided by their largest absolute value (decoupler's ``bm.metric.auc``);
* **median rank** of the perturbed TF among the scored TFs (1 = top), and decoupler's
  ``1-qrank`` (mean of 1 - its rank quantile).

Methods: decoupler's ulm and mlm (and, in the full run, zscore, waggr's weighted mean
without permutations, aucell, viper) on CollecTRI with tmin 5, each experiment alone; and
regdecoder through its public API, the linear decoder for signed data
(``gene_likelihood='normal'``), each reported by its default statistic ``obsm[key]`` (the
marginal t: decoupler's ulm statistic on the decoder's weights) and by its latents
``obsm[key + '_z']``:

* ``regdecoder prior, each experiment alone``: ``rd.tl.fit_decoder(..., weights='prior',
  bias=False)``, the weights fixed at the prior's signs and no offsets, so that every
  experiment is its own one-profile problem (issue 17 part 5);
* ``regdecoder compendium, 5 folds, held out``: ``rd.tl.fit_decoder(...)`` at its defaults
  (weights learned and shrunk toward the prior's signs, per-gene offsets) on the other
  experiments (experiments of one GEO series in one fold), then ``rd.tl.infer`` on the
  held-out ones with that model.

    OMP_NUM_THREADS=1 python benchmarks/perturbation.py --data DIR --net collectri_human.tsv --n-threads 1
    python benchmarks/perturbation.py --quick      # ulm, mlm and regdecoder's prior fit on 80 experiments
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _activity_candidates as cand  # noqa: E402
import real_markers  # noqa: E402

import regdecoder as rd  # noqa: E402
from regdecoder._settings import add_threads_option  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
KEY = "regdecoder"
N_BOOT = 100
OFFSETS_REMOVED = "marginal t of x - b (diagnostic: offsets removed before infer)"
DATA_ENV = "REGDECODER_PERTURBATION"
N_FOLDS = 5


# ----------------------------------------------------------------------------- data
def data_dir(path: str | None) -> Path:
    path = path or os.environ.get(DATA_ENV)
    if not path:
        msg = (
            f"No perturbation data given. Pass `--data DIR` or set {DATA_ENV} to the folder holding "
            "chea3_human_signatures.tsv.gz and chea3_human_meta.tsv."
        )
        raise SystemExit(msg)
    folder = Path(path)
    for name in ("chea3_human_signatures.tsv.gz", "chea3_human_meta.tsv"):
        if not (folder / name).exists():
            raise SystemExit(f"{folder / name} does not exist; fix `--data` / {DATA_ENV}.")
    return folder


def load(path: str | None = None):
    """The signatures as an AnnData (experiments x genes, float32 in {-1, 0, 1}), multiplied by
    ``type_p``, the perturbed TF's own gene set to 0 (a gene both up and down: 0). ``obs``: ``source`` (the perturbed TF),
    ``type_p``, ``perturbation``, ``gse``. Genes: every gene in any signature."""
    from anndata import AnnData

    folder = data_dir(path)
    sig = pd.read_csv(folder / "chea3_human_signatures.tsv.gz", sep="\t")
    meta = pd.read_csv(folder / "chea3_human_meta.tsv", sep="\t").set_index("signature")
    meta = meta[meta["type_p"] != 0]
    sig = sig[sig["signature"].isin(meta.index)]
    genes = pd.Index(sorted(sig["gene"].unique()))
    exps = pd.Index([s for s in meta.index if s in set(sig["signature"])])
    x = np.zeros((len(exps), len(genes)), dtype=np.float32)
    # a gene listed both up and down in one experiment (6 such pairs, duplicate probes) sums to 0
    np.add.at(x, (exps.get_indexer(sig["signature"]), genes.get_indexer(sig["gene"])), sig["sign"].to_numpy())
    meta = meta.loc[exps]
    own = genes.get_indexer(meta["tf"])
    rows = np.flatnonzero(own >= 0)
    x[rows, own[rows]] = 0.0
    x *= meta["type_p"].to_numpy(np.float32)[:, None]
    obs = pd.DataFrame(
        {"source": meta["tf"].astype(str), "type_p": meta["type_p"].astype(int),
         "perturbation": meta["perturbation"].astype(str), "gse": meta["gse"].astype(str)},
        index=exps,
    )  # fmt: skip
    return AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes))


def prepare(adata, net: pd.DataFrame, *, tmin: int = 5):
    """decoupler's benchmark's order: keep the experiments whose TF has at least ``tmin`` targets
    among the genes, then drop the genes that are 0 in every kept experiment (decoupler's
    methods drop them, so every method scores the same TFs)."""
    targets = net[net["target"].isin(adata.var_names)].groupby("source")["target"].nunique()
    adata = adata[adata.obs["source"].isin(targets[targets >= tmin].index).to_numpy()]
    return adata[:, np.asarray(abs(adata.X).sum(0)).ravel() > 0].copy()


def folds(obs: pd.DataFrame, n_folds: int = N_FOLDS, seed: int = 0) -> list[np.ndarray]:
    """Experiment indices in ``n_folds`` held-out parts; all experiments of a GEO series share a fold."""
    rng = np.random.default_rng(seed)
    series = obs["gse"].to_numpy()
    uniq = rng.permutation(np.unique(series))
    load = np.zeros(n_folds)
    part = {}
    for s in uniq:  # greedy: the next series into the lightest fold
        f = int(np.argmin(load))
        part[s] = f
        load[f] += (series == s).sum()
    which = np.array([part[s] for s in series])
    return [np.flatnonzero(which == f) for f in range(n_folds)]


# ----------------------------------------------------------------------------- metrics
def evaluate(scores: pd.DataFrame, obs: pd.DataFrame) -> dict:
    """AUROC, AUPRC (decoupler's ``bm.metric.auc``), median rank and 1-qrank of the perturbed TF.

    ``scores``: experiments x TFs of the oriented experiments (rows of ``obs``); experiments
    whose TF is not a column are dropped; NaN scores are left out as decoupler does."""
    from decoupler.bm.metric import auc, qrank

    y_true, y_score, keep = _labelled(scores, obs)
    y_true, y_score = y_true[keep], y_score[keep]
    out = dict(zip(auc.scores, auc(y_true=y_true, y_score=y_score), strict=True))
    out.update(zip(qrank.scores, qrank(y_true=y_true, y_score=y_score), strict=True))
    rank = _ranks(y_score)[y_true.astype(bool)]
    out.update(median_rank=float(np.median(rank)), n_experiments=int(keep.sum()), n_tfs=y_true.shape[1])
    return out


def _labelled(scores: pd.DataFrame, obs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (1: the perturbed TF) and scores, every experiment of ``obs`` x the scored TFs, and
    which experiments have their TF scored."""
    tfs = np.asarray(scores.columns, dtype=str)
    y_true = (obs["source"].to_numpy()[:, None] == tfs[None, :]).astype(np.float64)
    return y_true, scores.loc[obs.index].to_numpy(np.float64), y_true.any(1)


def versus_ulm(scores: dict[str, pd.DataFrame], obs: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Each method's AUROC minus ulm's, with a paired bootstrap over experiments (``n_boot``
    seeded resamples of the experiments, every method scored on the same ones): the
    difference's standard deviation and the share of resamples where it is <= 0."""
    from decoupler.bm.metric import auc

    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(obs), len(obs)) for _ in range(n_boot)]

    def aurocs(df: pd.DataFrame) -> tuple[float, np.ndarray]:
        y_true, y_score, keep = _labelled(df, obs)
        boot = [auc(y_true=y_true[d[keep[d]]], y_score=y_score[d[keep[d]]])[0] for d in draws]
        return auc(y_true=y_true[keep], y_score=y_score[keep])[0], np.asarray(boot)

    ref, ref_boot = aurocs(scores["ulm"])
    out = {}
    for name, df in scores.items():
        point, boot = aurocs(df)
        diff = boot - ref_boot
        out[name] = {"auroc_minus_ulm": point - ref, "sd_vs_ulm": float(diff.std(ddof=1)),
                     "p_not_above_ulm": float((diff <= 0).mean()) if name != "ulm" else float("nan")}  # fmt: skip
    return out


def _ranks(y: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(-np.nan_to_num(y, nan=-np.inf), axis=1, method="average")


# ----------------------------------------------------------------------------- methods
def decoupler_scores(method: str, adata, net: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """decoupler 2.x ``dc.mt.<method>`` on every experiment (tmin 5)."""
    import decoupler as dc

    b = adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(dc.mt, method)(b, net, tmin=5, verbose=False, **kwargs)
    return b.obsm[f"score_{method}"]


def prior_scores(adata, net: pd.DataFrame, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Each experiment alone with the prior's weights, through the public API:
    ``rd.tl.fit_decoder(gene_likelihood='normal', weights='prior', bias=False)``. Weights fixed
    and no offsets make every row its own problem (one call for all rows gives each row's
    single-sample answer; tested), so this is the one-profile fit of issue 17 part 5 for
    every experiment. Returns ``obsm[key]`` (the marginal t: decoupler's ulm on the prior's
    signs) and ``obsm[key + '_z']`` (the latents), experiments x TFs."""
    b = adata.copy()
    rd.tl.fit_decoder(b, net=net, gene_likelihood="normal", weights="prior", bias=False, seed=seed, key_added=KEY)
    return results(b, b.uns[KEY]["collinear"])


def changed_fraction(adata, net: pd.DataFrame) -> pd.DataFrame:
    """Diagnostic, not an activity: the fraction of each TF's targets that changed in the
    experiment, in either direction (``|x|`` averaged over the regulon; signs and direction
    ignored). How well it ranks the perturbed TF says how much of this yardstick a statistic can
    win without getting the direction right."""
    s, tfs = cand.prior_matrix(net, adata.var_names)
    a = abs(s).sign()
    frac = np.asarray(a.T @ np.abs(_dense(adata)).T).T / np.asarray(a.sum(0)).ravel()
    return pd.DataFrame(frac, index=adata.obs_names, columns=tfs)


def compendium_scores(adata, net: pd.DataFrame, parts: list[np.ndarray], *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The compendium fit through the public API: for each part, ``rd.tl.fit_decoder`` with the
    linear decoder (``gene_likelihood='normal'``, every other argument at its default: weights
    learned and shrunk toward the prior's signs, per-gene offsets) on the other experiments,
    then ``rd.tl.infer`` on the held-out ones with that model. Returns the held-out
    ``obsm[key]`` (marginal t on the learned weights) and ``obsm[key + '_z']`` (latents), and a
    diagnostic: the marginal t of each held-out profile minus the model's fitted offsets ``b``
    (``infer`` on ``x - b``; the package's t takes the linear decoder's profile as it is)."""
    out: dict[str, list[pd.DataFrame]] = {}
    for held in parts:
        train = np.setdiff1d(np.arange(adata.n_obs), held)
        fitted = adata[train].copy()
        model = rd.tl.fit_decoder(fitted, net=net, gene_likelihood="normal", seed=seed, key_added=KEY)
        groups = fitted.uns[KEY]["collinear"]
        test = adata[held].copy()
        rd.tl.infer(test, model, key_added=KEY)
        centred = adata[held].copy()
        centred.X = centred.X - model.decoder.get_bias().cpu().numpy()
        rd.tl.infer(centred, model, key_added=KEY)
        found = {**results(test, groups), OFFSETS_REMOVED: results(centred, groups)["marginal t"]}
        for stat, scores in found.items():
            out.setdefault(stat, []).append(scores)
    return {stat: pd.concat(parts_).loc[adata.obs_names] for stat, parts_ in out.items()}


def results(adata, groups: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A fit's or an inference's marginal t and latents (read by ``rd.get.activities``),
    experiments x TFs, one column per TF: a latent of merged identical regulons
    (``collinear='merge'``, e.g. ``'A|B'``; ``groups`` is the fit's ``uns[key]['collinear']``)
    gives its score to each member."""
    members = groups.groupby("latent")["tf"].apply(list).to_dict() if len(groups) else {}
    out = {}
    for stat, name in (("activity", "marginal t"), ("z", "latents")):
        df = rd.get.activities(adata, KEY, statistic=stat).to_df()
        cols = {c: members.get(c, [c]) for c in df.columns}
        wide = {tf: df[c] for c, tfs in cols.items() for tf in tfs}
        out[name] = pd.DataFrame(wide, index=df.index, dtype=np.float64)
    return out


def _dense(adata) -> np.ndarray:
    x = adata.X
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


# ----------------------------------------------------------------------------- run
def run(*, data: str | None, net_path: str | None, quick: bool, out: Path = RESULTS, seed: int = 0) -> pd.DataFrame:
    adata = load(data)
    net = real_markers.load_net(net_path)
    if quick:
        adata = adata[np.sort(np.random.default_rng(seed).permutation(adata.n_obs)[:80])]
    adata = prepare(adata, net)
    methods: dict[str, callable] = {
        "ulm": lambda: decoupler_scores("ulm", adata, net),
        "mlm": lambda: decoupler_scores("mlm", adata, net),
    }
    if not quick:
        methods.update({
            "zscore": lambda: decoupler_scores("zscore", adata, net),
            "waggr (wmean, no permutations)": lambda: decoupler_scores("waggr", adata, net, times=0),
            "aucell": lambda: decoupler_scores("aucell", adata, net),
            "viper": lambda: decoupler_scores("viper", adata, net),
            "diagnostic: targets changed, either direction (not an activity)": lambda: changed_fraction(adata, net),
        })  # fmt: skip
    kept: dict[str, pd.DataFrame] = {}
    rows = [_row(name, scorer, adata.obs, kept) for name, scorer in methods.items()]
    rows += _rows(
        "regdecoder prior, each experiment alone", lambda: prior_scores(adata, net, seed=seed), adata.obs, kept
    )
    if not quick:
        parts = folds(adata.obs, seed=seed)
        rows += _rows(f"regdecoder compendium, {len(parts)} folds, held out",
                      lambda: compendium_scores(adata, net, parts, seed=seed), adata.obs, kept)  # fmt: skip
    paired = versus_ulm(kept, adata.obs, seed=seed) if "ulm" in kept else {}
    table = pd.DataFrame([{**row, **paired.get(row["method"], {})} for row in rows])
    _save(table, out / f"perturbation{'_quick' if quick else ''}", quick=quick)
    return table


def _row(name: str, scorer, obs: pd.DataFrame, kept: dict) -> dict:
    """A decoupler method's row (its scores kept in ``kept``); a failing method is reported, the others still run."""
    t0 = time.perf_counter()
    try:
        scores = scorer()
    except Exception as err:  # noqa: BLE001
        return {"method": name, "error": f"{type(err).__name__}: {err}"}
    kept[name] = scores
    return {"method": name, **evaluate(scores, obs), "seconds": time.perf_counter() - t0}


def _rows(name: str, scorer, obs: pd.DataFrame, kept: dict) -> list[dict]:
    """One row per statistic of a regdecoder scorer (its ``seconds``: the whole scorer's); a failure is raised."""
    t0 = time.perf_counter()
    scores = {f"{name}: {stat}": df for stat, df in scorer().items()}
    seconds = time.perf_counter() - t0
    kept.update(scores)
    return [{"method": method, **evaluate(df, obs), "seconds": seconds} for method, df in scores.items()]


def _save(table: pd.DataFrame, stem: Path, *, quick: bool) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(f"{stem}.csv", index=False)
    meta = {"command": " ".join(["python", *sys.argv]), "quick": quick}
    Path(f"{stem}.json").write_text(json.dumps({"meta": meta, "results": table.to_dict(orient="records")}, indent=1))
    plot(table, Path(f"{stem}.png"))


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.dropna(subset=["auroc"]).sort_values("auroc")
    fig, axes = plt.subplots(1, 2, figsize=(16, 0.4 * len(t) + 2), sharey=True, width_ratios=(3, 2))
    axes[0].barh(t["method"], t["auroc"], color="tab:blue")
    axes[0].axvline(0.5, color="grey", lw=0.8)
    axes[0].set_xlim(0.45, max(0.75, t["auroc"].max() + 0.02))
    axes[0].set_xlabel("AUROC, all experiment x TF pairs\n(higher is better)")
    axes[1].barh(t["method"], t["median_rank"], color="tab:orange")
    axes[1].set_xlabel("median rank of the perturbed TF\n(lower is better)")
    fig.suptitle("GEO TF-perturbation signatures (ChEA3) with CollecTRI")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help=f"folder with the ChEA3 files (else ${DATA_ENV})")
    ap.add_argument("--net", default=None, help="CollecTRI TSV (else $REGDECODER_COLLECTRI)")
    ap.add_argument("--quick", action="store_true", help="80 experiments; ulm, mlm and regdecoder's prior fit")
    ap.add_argument("--out", default=str(RESULTS), help="folder for the CSV, JSON and PNG (default: %(default)s)")
    add_threads_option(ap)
    args = ap.parse_args(argv)
    if args.n_threads is not None:
        rd.settings.n_threads = args.n_threads
    table = run(data=args.data, net_path=args.net, quick=args.quick, out=Path(args.out))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
