"""regdecoder's masked decoder against decoupler (ulm, mlm, viper) and PCA / NMF / FastICA.

Simulated GRN (paper setting: n=1000 genes, m=100 TFs, density 0.1, noise 0.2) with
known TF activities. regdecoder fits on the training cells and infers the held-out
cells with the decoder frozen; decoupler's methods score the held-out cells directly
from the network (they have no fit); PCA / NMF / FastICA (100 components) fit on the
training cells and transform the held-out ones, each component matched to one TF by
Hungarian assignment on |PCC| over the TRAINING cells (its sign taken there too: a
generous use of the truth). Networks given to the network methods:

* ``true``: the simulator's network with its weights;
* ``signs``: the same edges with weights +-1;
* ``corrupted``: the signed network with 20% of its edges removed and as many random
  non-edges (random sign) added.

Reported: mean / median signed PCC per TF on the held-out cells, fit time (training
cells) and inference time (held-out cells, 10,000 by default). regdecoder's rows: its
latents (``obsm['regdecoder_z']``, the decoder's estimate of the TF levels) and the
marginal t it reports as the activity (``obsm['regdecoder']``); one inference gives both.

    python benchmarks/peers.py                 # 1,000 training cells, 10,000 held out
    python benchmarks/peers.py --quick         # a small smoke run
    python benchmarks/peers.py --device cuda   # regdecoder on the GPU (peers stay on CPU)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import regdecoder as rd

NETWORKS = ("true", "signs", "corrupted")


def corrupt(net: pd.DataFrame, genes, *, frac: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Remove ``frac`` of the edges and add as many random non-edges with a random sign (+-1 weights)."""
    rng = np.random.default_rng(seed)
    signed = net.assign(weight=np.sign(net["weight"]).replace(0, 1.0))
    n_swap = int(round(frac * len(net)))
    keep = signed.drop(index=rng.choice(signed.index, n_swap, replace=False))
    existing = set(zip(net["source"], net["target"], strict=True))
    tfs = np.asarray(sorted(net["source"].unique()))
    genes = np.asarray(genes)
    added: list[tuple[str, str, float]] = []
    while len(added) < n_swap:
        s, t = tfs[rng.integers(len(tfs))], genes[rng.integers(len(genes))]
        if (s, t) not in existing:
            existing.add((s, t))
            added.append((s, t, float(rng.choice([-1.0, 1.0]))))
    new = pd.DataFrame(added, columns=["source", "target", "weight"])
    return pd.concat([keep, new], ignore_index=True)


def _pcc_by_name(truth: pd.DataFrame, est: pd.DataFrame) -> np.ndarray:
    common = [c for c in truth.columns if c in est.columns]
    return rd.metrics.pearson_columns(truth[common].to_numpy(), est[common].to_numpy())


def _decoupler(method: str, test, net: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    import decoupler as dc

    data = test.copy()
    t0 = time.perf_counter()
    getattr(dc.mt, method)(data, net, tmin=5, verbose=False)
    seconds = time.perf_counter() - t0
    return data.obsm[f"score_{method}"], seconds


def _factorisation(name: str, train, test, n_comp: int, seed: int):
    from sklearn.decomposition import NMF, PCA, FastICA

    make = {
        "PCA": lambda: PCA(n_components=n_comp, random_state=seed),
        "NMF": lambda: NMF(n_components=n_comp, init="nndsvda", max_iter=400, random_state=seed),
        "FastICA": lambda: FastICA(n_components=n_comp, max_iter=400, whiten="unit-variance", random_state=seed),
    }[name]()
    t0 = time.perf_counter()
    z_train = make.fit_transform(np.asarray(train.X))
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    z_test = make.transform(np.asarray(test.X))
    infer_s = time.perf_counter() - t0
    truth_train = train.obsm["tf_activity"].to_numpy()
    rows, cols = rd.metrics.match_factors(truth_train, z_train)  # Hungarian on |PCC|
    sign = np.sign(rd.metrics.pearson_columns(truth_train[:, rows], z_train[:, cols]))
    est = z_test[:, cols] * sign
    pcc = rd.metrics.pearson_columns(test.obsm["tf_activity"].to_numpy()[:, rows], est)
    return pcc, fit_s, infer_s


def main(argv=None) -> pd.DataFrame:
    rd.settings.progress = False
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--n-tfs", type=int, default=100)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-viper", action="store_true", help="skip decoupler's viper (the slowest peer)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "peers.csv"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.n_genes, args.n_tfs, args.density = 200, 100, 120, 6, 0.25

    adata = rd.sim.grn(
        n_obs=args.n_train + args.n_test,
        n_genes=args.n_genes,
        n_tfs=args.n_tfs,
        density=args.density,
        noise=args.noise,
        seed=args.seed,
    )
    train, test = rd.pp.split(adata, n_test=args.n_test, seed=args.seed)
    true_net = train.uns["sim"]["net"]
    nets = {
        "true": true_net,
        "signs": true_net.assign(weight=np.sign(true_net["weight"]).replace(0, 1.0)),
        "corrupted": corrupt(true_net, train.var_names, seed=args.seed),
    }
    truth = test.obsm["tf_activity"]
    try:
        import decoupler  # noqa: F401

        peers = ["ulm", "mlm"] + ([] if args.no_viper else ["viper"])
    except ImportError:
        peers = []
    # Warm-up (numba compilation of decoupler's kernels, torch's first calls), not timed.
    small = test[: min(50, test.n_obs)].copy()
    for method in peers:
        try:
            _decoupler(method, small, nets["signs"])
        except Exception:  # noqa: BLE001,S110 - a failing peer is reported below
            pass
    rd.tl.fit_decoder(small.copy(), net=nets["signs"], device=args.device, recipe={"max_epochs": 1})
    rows = []

    def add(method, network, pcc, fit_s, infer_s, note=""):
        pcc = np.asarray(pcc, dtype=float)
        row = {
            "method": method,
            "network": network,
            "pcc_mean": float(np.nanmean(pcc)) if pcc.size else np.nan,
            "pcc_median": float(np.nanmedian(pcc)) if pcc.size else np.nan,
            "n_tfs": int(np.isfinite(pcc).sum()),
            "fit_s": fit_s,
            "infer_s": infer_s,
            "n_train": train.n_obs,
            "n_test": test.n_obs,
            "note": note,
        }
        rows.append(row)
        print(
            f"{method:12s} {network:10s} signed PCC {row['pcc_mean']:.4f} (median {row['pcc_median']:.4f}, "
            f"{row['n_tfs']} TFs)  fit {fit_s:7.2f} s  infer {infer_s:7.2f} s {note}",
            flush=True,
        )

    for network, net in nets.items():
        t0 = time.perf_counter()
        model = rd.tl.fit_decoder(train, net=net, seed=args.seed, device=args.device)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rd.tl.infer(test, model)
        infer_s = time.perf_counter() - t0
        # the decoder's latents (its estimate of the TF levels), and the marginal t it reports as activity
        est = pd.DataFrame(test.obsm["regdecoder_z"], columns=model.latent_names, index=test.obs_names)
        add("regdecoder", network, _pcc_by_name(truth, est), fit_s, infer_s)
        est_t = pd.DataFrame(test.obsm["regdecoder"], columns=model.latent_names, index=test.obs_names)
        add("regdecoder (marginal t)", network, _pcc_by_name(truth, est_t), fit_s, infer_s)
        for method in peers:
            try:
                scores, seconds = _decoupler(method, test, net)
            except Exception as err:  # noqa: BLE001 - report a failing peer, keep going
                add(method, network, [], np.nan, np.nan, note=f"failed: {type(err).__name__}: {err}")
                continue
            add(method, network, _pcc_by_name(truth, scores), 0.0, seconds)
    try:
        for name in ("PCA", "NMF", "FastICA"):
            pcc, fit_s, infer_s = _factorisation(name, train, test, args.n_tfs, args.seed)
            add(name, "none (Hungarian)", pcc, fit_s, infer_s)
    except ImportError:
        print("scikit-learn is not installed: PCA/NMF/FastICA skipped")

    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    meta = {k: v for k, v in vars(args).items() if k != "out"}
    out.with_suffix(".json").write_text(json.dumps({"args": meta, "results": rows}, indent=1, default=str))
    _plot(df, out.with_suffix(".png"))
    return df


def _plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    methods = list(dict.fromkeys(df["method"]))
    networks = list(dict.fromkeys(df["network"]))
    width = 0.8 / len(networks)
    for k, network in enumerate(networks):
        sub = df[df["network"] == network].set_index("method")
        vals = [sub.loc[m, "pcc_mean"] if m in sub.index else np.nan for m in methods]
        axes[0].bar(np.arange(len(methods)) + (k - (len(networks) - 1) / 2) * width, vals, width, label=network)
    axes[0].set_xticks(range(len(methods)), methods, rotation=30)
    axes[0].set_ylabel("mean signed PCC (held-out cells)")
    axes[0].axhline(0, color="0.5", lw=0.8)
    axes[0].legend(title="network", fontsize=8)
    first = df.drop_duplicates("method").set_index("method").loc[methods]
    x = np.arange(len(methods))
    axes[1].bar(x - 0.2, first["fit_s"].fillna(0), 0.4, label="fit (training cells)")
    axes[1].bar(x + 0.2, first["infer_s"].fillna(0), 0.4, label=f"inference ({int(df['n_test'].iloc[0]):,} cells)")
    axes[1].set_xticks(x, methods, rotation=30)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("seconds (first network)")
    axes[1].legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
