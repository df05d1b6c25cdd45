"""Count likelihoods against MSE on log-normalised counts, on simulated UMI counts.

``rd.sim.grn(..., counts=True)``: the paper's GRN (n=1000 genes, m=100 TFs, density
0.1, noise 0.2) gives each cell's expression; UMI counts are drawn from it with a
log-normal size factor (sd 0.3), a mean library size and a negative-binomial
dispersion. Each model is fit on the training cells and infers the held-out cells;
reported is the mean signed PCC per TF against the true activities, on both.

* ``mse_lognorm``: MSE (censored ALS, the default) on ``log1p(counts / total * 1e4)``;
* ``mse_norm``: MSE on ``counts / total * mean total`` (no log);
* ``poisson`` / ``nb``: the count likelihoods on the raw counts (softplus link,
  library size = the cell's total count).

    python benchmarks/counts.py             # N = 1,000 training cells, 100 held out
    python benchmarks/counts.py --quick     # a small smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import regdecoder as rd


def _normalise(adata, log: bool):
    x = np.asarray(adata.X, dtype=np.float64)
    tot = x.sum(1, keepdims=True)
    y = x / tot * (1e4 if log else tot.mean())
    return (np.log1p(y) if log else y).astype(np.float32)


def main(argv=None) -> pd.DataFrame:
    rd.settings.progress = False
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--n-tfs", type=int, default=100)
    parser.add_argument("--library-size", type=float, nargs="+", default=[1000.0, 5000.0])
    parser.add_argument("--dispersion", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-epochs", type=int, default=None, help="gradient epochs of the count losses")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "counts.csv"))
    args = parser.parse_args(argv)
    density = 0.1
    if args.quick:
        args.n_train, args.n_test, args.n_genes, args.n_tfs, density = 150, 30, 80, 4, 0.3
        args.library_size, args.max_epochs = [2000.0], 15

    rows = []
    for lib in args.library_size:
        adata = rd.sim.grn(
            n_obs=args.n_train + args.n_test,
            n_genes=args.n_genes,
            n_tfs=args.n_tfs,
            density=density,
            noise=0.2,
            counts=True,
            library_size=lib,
            dispersion=args.dispersion,
            seed=args.seed,
        )
        adata.layers["counts"] = adata.X.copy()
        adata.layers["lognorm"] = _normalise(adata, log=True)
        adata.layers["norm"] = _normalise(adata, log=False)
        train, test = rd.pp.split(adata, n_test=args.n_test, seed=args.seed)
        net = train.uns["sim"]["net"]
        settings = {
            "mse_lognorm": {"layer": "lognorm"},
            "mse_norm": {"layer": "norm"},
            "poisson": {"layer": "counts", "gene_likelihood": "poisson", "recipe": {"max_epochs": args.max_epochs}},
            "nb": {"layer": "counts", "gene_likelihood": "nb", "recipe": {"max_epochs": args.max_epochs}},
        }
        for name, kw in settings.items():
            t0 = time.perf_counter()
            model = rd.tl.fit_decoder(train, net=net, seed=args.seed, device=args.device, **kw)
            fit_s = time.perf_counter() - t0
            rd.tl.infer(test, model, layer=kw["layer"])
            row = {
                "library_size": lib,
                "dispersion": args.dispersion,
                "method": name,
                "pcc_train": float(rd.metrics.recovery(train)["pcc"].mean()),
                "pcc_test": float(rd.metrics.recovery(test)["pcc"].mean()),
                "fit_s": fit_s,
                "mean_umi": float(adata.layers["counts"].sum(1).mean()),
                "zero_frac": float((adata.layers["counts"] == 0).mean()),
            }
            rows.append(row)
            print(
                f"library {lib:6.0f}  {name:12s} PCC train {row['pcc_train']:.4f}  held-out {row['pcc_test']:.4f}  "
                f"fit {fit_s:6.1f} s",
                flush=True,
            )
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df


if __name__ == "__main__":
    main()
