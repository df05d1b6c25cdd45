"""Time to reach a held-out recovery: the paper's recipe, the fast default and the gradient engine.

For each training size N and noise level, in one run: simulate the paper's GRN
setting (n=1000 genes, m=100 TFs, density 0.1), hold out 100 cells, and fit the
masked decoder with

* ``paper``: the paper's recipe (gradient engine, batch 32, Adam 1e-3 on weights,
  SGD 1e-2 momentum 0.9 on latents, summed squared error, weight decay 1e-5), and
* ``fast``: the default (censored alternating least squares, masked-PCA start), and
* ``gradient``: ``solver='gradient'`` (the gradient engine with the FAST recipe:
  batch 256, Adam on weights and latents) from the same masked-PCA start as ALS.

After every epoch the current decoder (oriented as at the end of a fit) infers the
held-out cells with ``rd.tl.infer``; the clock (training time only, evaluation
excluded) is read when the mean signed PCC against the true TF levels first
reaches the target. Training stops there or at the epoch cap.

    python benchmarks/speed.py                      # N = 1,000 and 10,000; noise 0 and 0.2
    python benchmarks/speed.py --quick              # a small smoke run

Writes ``benchmarks/results/speed.csv`` (or ``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import regdecoder as rd

METHODS = {
    "paper": {"preset": "paper"},  # the paper's recipe, random start
    "fast": {},  # the default: censored ALS
    "gradient": {"solver": "gradient"},  # gradient engine, FAST recipe, from the ALS start
}  # fit_decoder's `recipe` for each method


def time_to_target(train, test, *, method: str, target: float, max_epochs: int, seed: int, device: str) -> dict:
    trace = []

    def callback(state):
        rd.tl.infer(test, state["model"], key_added="_eval")
        pcc = float(rd.metrics.recovery(test, "_eval").pcc.mean())
        trace.append((state["epoch"], state["seconds"], pcc))
        return pcc >= target

    t0 = time.perf_counter()
    rd.tl.fit_decoder(
        train,
        net=train.uns["sim"]["net"],
        seed=seed,
        device=device,
        recipe={**METHODS[method], "max_epochs": max_epochs, "tol": 0.0, "callback": callback},
    )
    wall = time.perf_counter() - t0
    hit = next(((e, s, p) for e, s, p in trace if p >= target), None)
    return {
        "reached": hit is not None,
        "epochs_to_target": hit[0] if hit else np.nan,
        "seconds_to_target": hit[1] if hit else np.nan,
        "pcc_at_stop": trace[-1][2],
        "epochs_run": trace[-1][0],
        "train_seconds": trace[-1][1],
        "wall_seconds_with_eval": wall,
    }


def main(argv=None) -> pd.DataFrame:
    rd.settings.progress = False
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2])
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--paper-epochs", type=int, default=500, help="epoch cap of the paper recipe")
    parser.add_argument("--fast-epochs", type=int, default=50, help="epoch cap of the fast default")
    parser.add_argument("--gradient-epochs", type=int, default=200, help="epoch cap of solver='gradient'")
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--n-tfs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "speed.csv"))
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.noise, args.n_genes, args.n_tfs = [200], [0.1], 200, 10
        args.paper_epochs, args.gradient_epochs, args.target = 30, 30, 0.9
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for n_train in args.sizes:
        for noise in args.noise:
            adata = rd.sim.grn(
                n_obs=n_train + 100, n_genes=args.n_genes, n_tfs=args.n_tfs, density=0.1, noise=noise, seed=args.seed
            )
            train, test = rd.pp.split(adata, n_test=100, seed=args.seed)
            caps = {"paper": args.paper_epochs, "fast": args.fast_epochs, "gradient": args.gradient_epochs}
            for method, cap in caps.items():
                res = time_to_target(
                    train.copy(),
                    test.copy(),
                    method=method,
                    target=args.target,
                    max_epochs=cap,
                    seed=args.seed,
                    device=args.device,
                )
                row = {"n_train": n_train, "noise": noise, "method": method, "target": args.target, **res}
                rows.append(row)
                took = f"{res['seconds_to_target']:.2f} s" if res["reached"] else "not reached"
                print(
                    f"N={n_train:>6} noise={noise:.1f} {method:>8}: {took} "
                    f"({res['epochs_to_target']} epochs), PCC at stop {res['pcc_at_stop']:.4f}",
                    flush=True,
                )
    df = pd.DataFrame(rows)
    wide = df.pivot(index=["n_train", "noise"], columns="method", values="seconds_to_target")
    if {"paper", "fast"} <= set(wide.columns):
        wide["speedup"] = wide["paper"] / wide["fast"]
        df = df.merge(wide["speedup"].reset_index(), on=["n_train", "noise"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    meta = {
        "command": "python benchmarks/speed.py " + " ".join(argv if argv is not None else []),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "regdecoder": rd.__version__,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    print()
    print(f"seconds of training until mean signed PCC >= {args.target} on 100 held-out cells:")
    print(wide.round(3).to_string())
    return df


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
