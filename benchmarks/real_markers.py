"""Real-data benchmark: TF activities on scanpy's pbmc68k_reduced with CollecTRI.

Data: ``sc.datasets.pbmc68k_reduced()`` (bundled with scanpy, no download), its
``.raw`` (log-normalised, 700 cells x 765 genes), cell types ``obs['bulk_labels']``.
Prior: CollecTRI in decoupler's long format (source, target, weight=+-1), from
``--net PATH`` or the environment variable ``REGDECODER_COLLECTRI``.

A *method* fits on cells and returns activities (cells x TFs DataFrame) of any
cells; see :class:`Method`. Built in: ``regdecoder`` (the public API:
``rd.tl.fit_decoder(adata, net=net, seed=s)``, ``rd.tl.infer``, ``Model.decode``),
decoupler 2.x ``ulm`` and ``mlm`` (mlm raises "Singular matrix" when two regulons
have identical target sets, as RFX5/RFXANK/RFXAP do: reported as failed, and run
again as ``mlm_merged`` on the net with identical regulons merged into one source).

Metrics (all on the 700 cells unless said):

* **Marker checks** (cell type x regulator): rank of the regulator among all the
  method's latents by AUROC of its activity, the cell type against all other cells
  (rank 1 = highest AUROC). A regulator inside a merged latent ("RFX5|RFXANK|RFXAP")
  takes that latent's rank. Cell types from ``bulk_labels``:

  - ``B``: 'CD19+ B'; ``Mono``: 'CD14+ Monocyte'; ``DC``: 'Dendritic';
  - ``APC`` (antigen-presenting): B + Mono + DC;
  - ``NK``: 'CD56+ NK';
  - ``T``: every label with a T-cell marker (CD4+/CD25 T Reg, CD8+ Cytotoxic T,
    CD8+/CD45RA+ Naive Cytotoxic, CD4+/CD45RO+ Memory, CD4+/CD45RA+/CD25- Naive T).
    ('CD34+' is in no group; it counts among "the rest".)

  Checks (19): RFX5, RFXANK, RFXAP, CIITA each in B, Mono, DC (12); SPI1, CEBPA,
  CEBPB in Mono (3); PAX5, EBF1 in B (2); TBX21 in NK (1); GATA3 in T (1).
  Reported: median rank, checks won (rank <= every other method's; ties win),
  and the headline APC checks: rank of the MHC-II latent (the one holding RFX5)
  in APC, and CIITA's AUROC / rank in APC.
* **Seed stability** (fit methods): per-TF Pearson correlation between fits with
  seeds 0 and 1 (median, 10th percentile, min).
* **Subset stability**: two different random 80% subsets, each fitted, all cells
  inferred with the fitted model; per-TF correlation (median, p10, min).
* **Sign agreement** with the prior: fraction of prior edges whose learned weight
  has the prior's sign (``varm['regdecoder_weights']``; zero weights count as disagreeing).
* **kNN label purity**: ``sc.pp.neighbors(use_rep=activities, n_neighbors=15)``,
  mean fraction of each cell's neighbours with its label (activities as stored,
  no rescaling). PCA on the same data (50 comps) is the reference row ``pca``.
* **Held-out reconstruction**: 560 train / 140 test cells (fixed seed), fit on
  train, infer test, MSE of ``decode`` over all 765 genes and over targeted genes,
  vs. the per-gene training mean.

Outputs ``benchmarks/results/real_markers{suffix}.csv`` (marker table),
``..._summary.csv``, ``.json`` and ``.png``.

    python benchmarks/real_markers.py --net /path/collectri_human.tsv
    python benchmarks/real_markers.py --quick     # regdecoder + ulm only, < 2 min (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"

GROUPS: dict[str, list[str]] = {
    "B": ["CD19+ B"],
    "Mono": ["CD14+ Monocyte"],
    "DC": ["Dendritic"],
    "APC": ["CD19+ B", "CD14+ Monocyte", "Dendritic"],
    "NK": ["CD56+ NK"],
    "T": [
        "CD4+/CD25 T Reg",
        "CD8+ Cytotoxic T",
        "CD8+/CD45RA+ Naive Cytotoxic",
        "CD4+/CD45RO+ Memory",
        "CD4+/CD45RA+/CD25- Naive T",
    ],
}
MHC2 = ["RFX5", "RFXANK", "RFXAP", "CIITA"]
CHECKS: list[tuple[str, str]] = (
    [(g, r) for r in MHC2 for g in ("B", "Mono", "DC")]
    + [("Mono", r) for r in ("SPI1", "CEBPA", "CEBPB")]
    + [("B", "PAX5"), ("B", "EBF1"), ("NK", "TBX21"), ("T", "GATA3")]
)
N_NEIGHBORS = 15


# ----------------------------------------------------------------------------- data
def load_data():
    """pbmc68k_reduced's ``.raw`` as a dense float32 AnnData with ``bulk_labels``, and its PCA."""
    import scanpy as sc
    from anndata import AnnData

    a = sc.datasets.pbmc68k_reduced()
    raw = a.raw.to_adata()
    x = raw.X.toarray() if hasattr(raw.X, "toarray") else np.asarray(raw.X)
    ad = AnnData(X=x.astype(np.float32), obs=a.obs[["bulk_labels"]].copy(), var=pd.DataFrame(index=raw.var_names))
    ad.obs["bulk_labels"] = ad.obs["bulk_labels"].astype(str)
    return ad


def load_net(path: str | None) -> pd.DataFrame:
    path = path or os.environ.get("REGDECODER_COLLECTRI")
    if not path:
        msg = (
            "No CollecTRI network given. Pass `--net /path/to/collectri_human.tsv` or set the environment "
            "variable REGDECODER_COLLECTRI to it (a TSV/CSV with columns source, target, weight; e.g. "
            "`decoupler.op.collectri(organism='human').to_csv('collectri_human.tsv', sep='\\t', index=False)` "
            "on a machine with internet)."
        )
        raise SystemExit(msg)
    if not Path(path).exists():
        raise SystemExit(f"CollecTRI network file {path!r} does not exist; fix `--net` / REGDECODER_COLLECTRI.")
    sep = "\t" if str(path).endswith((".tsv", ".tsv.gz", ".txt")) else ","
    net = pd.read_csv(path, sep=sep)
    missing = {"source", "target", "weight"} - set(net.columns)
    if missing:
        raise SystemExit(f"{path}: missing column(s) {sorted(missing)}; need source, target, weight.")
    return net[["source", "target", "weight"]]


def merge_identical(net: pd.DataFrame, genes) -> tuple[pd.DataFrame, dict[str, str]]:
    """Merge sources with identical (target, sign) sets among ``genes`` into one 'A|B|C' source."""
    sub = net[net["target"].isin(set(genes))]
    key = (
        sub.assign(s=np.sign(sub["weight"]))
        .groupby("source")
        .apply(lambda d: tuple(sorted(zip(d["target"], d["s"], strict=True))), include_groups=False)
    )
    groups: dict[tuple, list[str]] = {}
    for src, k in key.items():
        groups.setdefault(k, []).append(src)
    rename = {s: "|".join(sorted(v)) for v in groups.values() if len(v) > 1 for s in v}
    out = sub.assign(source=sub["source"].map(lambda s: rename.get(s, s)))
    out = out.drop_duplicates(["source", "target"]).reset_index(drop=True)
    return out, rename


# ----------------------------------------------------------------------------- methods
@dataclass
class Fitted:
    """What a method returns after fitting: activities of any cells, optionally a decoder and weights."""

    activities: callable  # AnnData -> DataFrame (cells x latents)
    train_activities: pd.DataFrame | None = None
    decode: callable | None = None  # AnnData of new cells -> ndarray (cells x genes), the model's prediction
    weights: pd.DataFrame | None = None  # genes x latents
    info: dict = field(default_factory=dict)


class Method:
    """A method: ``fit(adata, net, seed) -> Fitted``. ``stochastic``: seeds/subsets matter."""

    name = "method"
    stochastic = True
    has_decoder = True

    def fit(self, adata, net, seed: int) -> Fitted:  # pragma: no cover - interface
        raise NotImplementedError


def obsm_frame(adata, key: str) -> pd.DataFrame:
    """``adata.obsm[key]`` as a DataFrame, column names from a DataFrame or ``uns[key]['latent_names']``."""
    val = adata.obsm[key]
    if isinstance(val, pd.DataFrame):
        return val.copy()
    names = list(map(str, adata.uns[key]["latent_names"]))
    return pd.DataFrame(np.asarray(val), index=adata.obs_names, columns=names)


class RegDecoder(Method):
    """``rd.tl.fit_decoder`` with its defaults (public API only)."""

    def __init__(self, name: str = "regdecoder", **kwargs) -> None:
        self.name, self.kwargs = name, kwargs

    def fit(self, adata, net, seed: int) -> Fitted:
        import regdecoder as rd

        ad = adata.copy()
        rd.settings.progress = False
        model = rd.tl.fit_decoder(ad, net=net, seed=seed, **self.kwargs)
        z = obsm_frame(ad, "regdecoder")
        w = ad.varm.get("regdecoder_weights")
        weights = None if w is None else pd.DataFrame(np.asarray(w), index=ad.var_names, columns=z.columns)

        def activities(new):
            b = new.copy()
            rd.tl.infer(b, model)
            return obsm_frame(b, "regdecoder")

        def decode(new):
            # Latents in decoder space: obsm[key + '_z'] when the package stores a statistic
            # (e.g. a t-value) in obsm[key], else obsm[key] itself.
            b = new.copy()
            rd.tl.infer(b, model)
            key = "regdecoder_z" if "regdecoder_z" in b.obsm else "regdecoder"
            return model.decode(np.asarray(b.obsm[key], dtype=np.float32))

        hist = ad.uns["regdecoder"].get("history", {})
        info = {"epochs": len(hist.get("loss", [])) if isinstance(hist, dict) else None}
        return Fitted(activities, z, decode, weights, info)


class Decoupler(Method):
    """decoupler 2.x ``dc.mt.<method>`` (per-cell scores: no fit, no seed)."""

    stochastic = False
    has_decoder = False

    def __init__(self, method: str, merged: bool = False) -> None:
        self.method, self.merged = method, merged
        self.name = method + ("_merged" if merged else "")

    def fit(self, adata, net, seed: int) -> Fitted:
        import decoupler as dc

        use = merge_identical(net, adata.var_names)[0] if self.merged else net

        def activities(new):
            b = new.copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                getattr(dc.mt, self.method)(b, use, tmin=5, raw=False, verbose=False)
            return b.obsm[f"score_{self.method}"].copy()

        return Fitted(activities)


# ----------------------------------------------------------------------------- metrics
def auroc_matrix(z: pd.DataFrame, is_pos: np.ndarray) -> pd.Series:
    """AUROC of every column for ``is_pos`` vs the rest (Mann-Whitney, ties averaged)."""
    from scipy.stats import rankdata

    r = rankdata(z.to_numpy(), axis=0)
    n1, n0 = int(is_pos.sum()), int((~is_pos).sum())
    u = r[is_pos].sum(0) - n1 * (n1 + 1) / 2
    return pd.Series(u / (n1 * n0), index=z.columns)


def latent_of(names, regulator: str) -> str | None:
    for n in names:
        if regulator in str(n).split("|"):
            return n
    return None


def marker_table(z: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    rows = []
    aucs = {g: auroc_matrix(z, labels.isin(GROUPS[g]).to_numpy()) for g in GROUPS}
    checks = CHECKS + [("APC", "RFX5"), ("APC", "CIITA")]
    for g, reg in checks:
        lat = latent_of(z.columns, reg)
        if lat is None:
            rows.append({"group": g, "regulator": reg, "latent": None, "auroc": np.nan, "rank": np.nan})
            continue
        a = aucs[g]
        rank = int((a > a[lat]).sum()) + 1
        rows.append(
            {"group": g, "regulator": reg, "latent": lat, "auroc": float(a[lat]), "rank": rank, "n_latents": len(a)}
        )
    out = pd.DataFrame(rows)
    out["headline"] = out.index >= len(CHECKS)
    return out


def per_tf_corr(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    common = [c for c in a.columns if c in b.columns]
    x, y = a[common].to_numpy(float), b.loc[a.index, common].to_numpy(float)
    x, y = x - x.mean(0), y - y.mean(0)
    den = np.sqrt((x**2).sum(0) * (y**2).sum(0))
    return np.where(den > 0, (x * y).sum(0) / np.where(den > 0, den, 1), np.nan)


def corr_summary(c: np.ndarray) -> dict:
    c = c[np.isfinite(c)]
    return {"median": float(np.median(c)), "p10": float(np.percentile(c, 10)), "min": float(c.min()), "n": len(c)}


def sign_agreement(weights: pd.DataFrame, net: pd.DataFrame) -> dict:
    genes = set(weights.index)
    agree = total = 0
    for lat in weights.columns:
        members = str(lat).split("|")
        edges = net[net["source"].isin(members) & net["target"].isin(genes)]
        if len(edges) == 0:
            continue
        s = np.sign(edges.groupby("target")["weight"].sum())
        s = s[s != 0]
        w = weights.loc[s.index, lat].to_numpy()
        agree += int((np.sign(w) == s.to_numpy()).sum())
        total += len(s)
    return {"agree": agree / max(total, 1), "n_edges": total}


def knn_purity(rep: np.ndarray, labels: pd.Series) -> float:
    import scanpy as sc
    from anndata import AnnData

    obs = pd.DataFrame({"y": labels.to_numpy()}, index=[str(i) for i in range(rep.shape[0])])
    ad = AnnData(X=np.zeros((rep.shape[0], 1), np.float32), obs=obs)
    ad.obsm["rep"] = np.asarray(rep, np.float64)
    sc.pp.neighbors(ad, use_rep="rep", n_neighbors=N_NEIGHBORS, random_state=0)
    d = ad.obsp["distances"].tocsr()
    y = labels.to_numpy()
    pur = [np.mean(y[d.indices[d.indptr[i] : d.indptr[i + 1]]] == y[i]) for i in range(d.shape[0])]
    return float(np.mean(pur))


def split(n: int, frac: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[: int(round(frac * n))])


def evaluate(method: Method, adata, net: pd.DataFrame, *, quick: bool = False) -> dict:
    """Every metric for one method; returns a dict with 'summary' and 'markers'."""
    t0 = time.perf_counter()
    labels = adata.obs["bulk_labels"]
    out: dict = {"method": method.name}
    try:
        f0 = method.fit(adata, net, seed=0)
        z0 = f0.train_activities if f0.train_activities is not None else f0.activities(adata)
    except Exception as e:  # noqa: BLE001 - report any failure (e.g. mlm's singular matrix)
        out["error"] = f"{type(e).__name__}: {e}"
        return {"summary": out, "markers": pd.DataFrame()}
    out.update(f0.info)
    out["n_latents"] = z0.shape[1]
    mk = marker_table(z0, labels)
    mk.insert(0, "method", method.name)
    main = mk[~mk["headline"]]
    out["marker_median_rank"] = float(main["rank"].median())
    apc = mk[mk["headline"]].set_index("regulator")
    out["mhc2_rank_apc"] = apc.loc["RFX5", "rank"]
    out["ciita_auroc_apc"] = apc.loc["CIITA", "auroc"]
    out["ciita_rank_apc"] = apc.loc["CIITA", "rank"]
    out["knn_purity"] = knn_purity(z0.to_numpy(), labels)
    if method.stochastic:
        f1 = method.fit(adata, net, seed=1)
        z1 = f1.train_activities if f1.train_activities is not None else f1.activities(adata)
        out.update({f"seed_{k}": v for k, v in corr_summary(per_tf_corr(z0, z1)).items()})
        zs = []
        for s in (0, 1):
            idx = split(adata.n_obs, 0.8, seed=100 + s)
            fs = method.fit(adata[idx].copy(), net, seed=0)
            zs.append(fs.activities(adata))
        out.update({f"subset_{k}": v for k, v in corr_summary(per_tf_corr(zs[0], zs[1])).items()})
    if f0.weights is not None:
        out["sign_agree"] = sign_agreement(f0.weights, net)["agree"]
    if method.has_decoder:
        tr = split(adata.n_obs, 0.8, seed=7)
        te = np.setdiff1d(np.arange(adata.n_obs), tr)
        ft = method.fit(adata[tr].copy(), net, seed=0)
        pred = ft.decode(adata[te].copy())
        x_tr, x_te = adata.X[tr], adata.X[te]
        base = x_tr.mean(0)
        targeted = adata.var_names.isin(set(net["target"]))
        out["heldout_mse"] = float(((pred - x_te) ** 2).mean())
        out["heldout_mse_mean_baseline"] = float(((base - x_te) ** 2).mean())
        out["heldout_mse_targeted"] = float(((pred - x_te)[:, targeted] ** 2).mean())
        out["heldout_mse_targeted_baseline"] = float(((base - x_te)[:, targeted] ** 2).mean())
    out["seconds"] = time.perf_counter() - t0
    return {"summary": out, "markers": mk}


def add_wins(markers: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    m = markers[~markers["headline"]]
    if m.empty:
        summary["checks_won"] = np.nan
        return summary
    piv = m.pivot_table(index=["group", "regulator"], columns="method", values="rank")
    best = piv.min(axis=1)
    won = piv.le(best, axis=0).sum()
    summary["checks_won"] = summary["method"].map(won).astype(float)
    summary["n_checks"] = len(piv)
    return summary


def pca_row(adata) -> dict:
    import scanpy as sc

    b = adata.copy()
    sc.pp.pca(b, n_comps=50, random_state=0)
    return {"method": "pca(50)", "knn_purity": knn_purity(b.obsm["X_pca"], adata.obs["bulk_labels"])}


def plot(markers: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = markers[~markers["headline"]]
    if m.empty:
        return
    piv = m.pivot_table(index=["group", "regulator"], columns="method", values="rank")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1]})
    piv.plot.bar(ax=axes[0], logy=True)
    axes[0].set_ylabel("rank by AUROC (1 = best)")
    axes[0].set_title("marker checks (pbmc68k_reduced, CollecTRI)")
    s = summary.dropna(subset=["knn_purity"]).set_index("method")["knn_purity"]
    s.plot.barh(ax=axes[1])
    axes[1].set_xlabel(f"kNN({N_NEIGHBORS}) label purity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(methods: list[Method], *, net_path: str | None, quick: bool, suffix: str, out: Path = RESULTS) -> pd.DataFrame:
    adata = load_data()
    net = load_net(net_path)
    results = [evaluate(m, adata, net, quick=quick) for m in methods]
    summary = pd.DataFrame([r["summary"] for r in results] + [pca_row(adata)])
    markers = pd.concat([r["markers"] for r in results if not r["markers"].empty], ignore_index=True)
    summary = add_wins(markers, summary)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"real_markers{suffix}"
    markers.to_csv(f"{stem}.csv", index=False)
    summary.to_csv(f"{stem}_summary.csv", index=False)
    meta = {"command": " ".join(sys.argv), "groups": GROUPS, "checks": CHECKS, "quick": quick}
    Path(f"{stem}.json").write_text(
        json.dumps({"meta": meta, "summary": summary.to_dict(orient="records")}, indent=1, default=str)
    )
    plot(markers, summary, Path(f"{stem}.png"))
    return summary


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default=None, help="CollecTRI TSV (else $REGDECODER_COLLECTRI)")
    ap.add_argument("--quick", action="store_true", help="regdecoder + ulm only (< 2 min)")
    ap.add_argument("--suffix", default=None, help="output name suffix (default '' or '_quick')")
    ap.add_argument("--out", default=str(RESULTS), help="folder for the CSV, JSON and PNG (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    methods: list[Method] = [RegDecoder(), Decoupler("ulm")]
    if not args.quick:
        methods += [Decoupler("mlm"), Decoupler("mlm", merged=True)]
    suffix = args.suffix if args.suffix is not None else ("_quick" if args.quick else "")
    summary = run(methods, net_path=args.net, quick=args.quick, suffix=suffix, out=Path(args.out))
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(summary.T.to_string())
    return summary


if __name__ == "__main__":
    main()
