"""Final held-out recovery of complete fits: the default against the paper's recipe.

Paper setting (n=1000 genes, m=100 TFs, density 0.1), N training cells, 100 held-out
cells; each fit runs to its own end (default: ALS until its tolerance or 50 epochs;
paper: 500 epochs). Reports the mean / median / min signed PCC per TF on the held-out
cells after ``rd.tl.infer``, the held-out reconstruction MSE, and the fit time.

    python benchmarks/recovery.py            # N = 1,000; noise 0 and 0.2
    python benchmarks/recovery.py --quick    # a small smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import regdecoder as rd


def main(argv=None) -> pd.DataFrame:
    rd.settings.progress = False
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2])
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--n-tfs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "recovery.csv"))
    args = parser.parse_args(argv)
    paper_epochs = None
    if args.quick:
        args.sizes, args.noise, args.n_genes, args.n_tfs, paper_epochs = [200], [0.1], 200, 10, 20

    rows = []
    for n_train in args.sizes:
        for noise in args.noise:
            adata = rd.sim.grn(n_obs=n_train + 100, n_genes=args.n_genes, n_tfs=args.n_tfs, noise=noise, seed=args.seed)
            train, test = rd.pp.split(adata, n_test=100, seed=args.seed)
            for preset in ("fast", "paper"):
                t0 = time.perf_counter()
                model = rd.tl.fit_decoder(
                    train,
                    net=train.uns["sim"]["net"],
                    seed=args.seed,
                    device=args.device,
                    recipe={"preset": preset, "max_epochs": paper_epochs if preset == "paper" else None},
                )
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                rd.tl.infer(test, model)
                infer_s = time.perf_counter() - t0
                rec = rd.metrics.recovery(test)
                row = {
                    "n_train": n_train,
                    "noise": noise,
                    "preset": preset,
                    "alpha_d": float(train.uns["regdecoder"]["load"]["alpha_d"]),
                    "epochs": len(train.uns["regdecoder"]["history"]["loss"]),
                    "fit_seconds": fit_s,
                    "infer_seconds": infer_s,
                    "pcc_mean": rec.pcc.mean(),
                    "pcc_median": rec.pcc.median(),
                    "pcc_min": rec.pcc.min(),
                    "abs_pcc_mean": rec.abs_pcc.mean(),
                    "test_mse": rd.metrics.reconstruction_error(test, model),
                }
                rows.append(row)
                print(
                    f"N={n_train} noise={noise} {preset:>5}: signed PCC mean {row['pcc_mean']:.4f} "
                    f"min {row['pcc_min']:.4f}, MSE {row['test_mse']:.4f}, {row['epochs']} epochs, "
                    f"fit {fit_s:.1f} s",
                    flush=True,
                )
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(df.round(4).to_string(index=False))
    return df


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
