"""Epochs and seconds the censored ALS needs to reach a training recovery, per variant.

On the counts-like data of ``benchmarks/scale.py`` (2,000 genes, 200 TFs, density 0.05,
Poisson counts at depth 50, ~17% nonzero), ``N`` cells held in memory, this runs
:func:`regdecoder.train.fit_als` for each variant below and records after every epoch
the training |PCC| (mean over TFs of |PCC| between the learned and true activities) and
the training seconds (the PCC computation excluded):

* ``v010``: the ALS of regdecoder 0.1.0 (masked-PCA start, no bias, no shrinkage,
  extrapolation);
* ``default``: the current default (prior-sign start, gene-mean bias, shrinkage 0.1 toward
  the prior's signs, extrapolation, centring);
* ``default_noextra``: the default without the extrapolated step;

and, as the ceiling, the exact censored least-squares latents given the *true* weights
(``oracle``): with Poisson noise no fit of the weights can recover the activities better.

Writes ``epochs.csv`` (one row per variant and epoch) and ``epochs_summary.csv`` (epochs and
seconds to |PCC| 0.98 and 0.99) under ``--out``.

    python benchmarks/epochs.py --n 100000           # data generated once, in --data-dir
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scale import _gen_block, make_net, mean_pcc  # noqa: E402

VARIANTS = {
    "v010": {"start": "pca", "shrink": 0.0, "bias": False, "extrapolate": True, "center": False},
    "default": {"start": "prior", "shrink": 0.1, "bias": True, "extrapolate": True, "center": True},
    "default_noextra": {"start": "prior", "shrink": 0.1, "bias": True, "extrapolate": False, "center": True},
}


def data(n: int, seed: int = 1):
    w, _ = make_net(2000, 200, 0.05)
    mats, zs = [], []
    for s in range(0, n, 20_000):
        m, z = _gen_block((w, s, min(n, s + 20_000), seed, 50.0))
        mats.append(m)
        zs.append(z)
    from scipy import sparse

    return w, sparse.vstack(mats).tocsr(), np.concatenate(zs)


def run(
    variant: str, x: torch.Tensor, w: np.ndarray, truth: np.ndarray, max_epochs: int, chunk: int | None
) -> list[dict]:
    from regdecoder.nn import Decoder, DecoderConfig
    from regdecoder.train import fit_als
    from regdecoder.train._source import TensorSource

    v = VARIANTS[variant]
    mask = torch.from_numpy(w != 0)
    rows, cols = torch.nonzero(mask, as_tuple=True)
    dec = Decoder(DecoderConfig(n_genes=w.shape[0], n_latent=w.shape[1], masked=True, bias=v["bias"]), rows, cols)
    dec = dec.to(x.device)
    rows_out: list[dict] = []
    paused = [0.0]
    t0 = time.perf_counter()

    def cb(state):
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        pcc = mean_pcc(state["z"].cpu().numpy(), truth, np.arange(w.shape[1]), signed=False)
        rows_out.append({"variant": variant, "epoch": state["epoch"], "seconds": t - t0 - paused[0],
                         "loss": state["loss"], "abs_pcc": pcc})  # fmt: skip
        paused[0] += time.perf_counter() - t

    fit_als(dec, TensorSource(x, chunk_size=chunk), prior_sign=torch.from_numpy(np.sign(w)).to(x.device), max_epochs=max_epochs,
            tol=0.0, start=v["start"], shrink=v["shrink"], extrapolate=v["extrapolate"], center=v["center"],
            seed=0, progress=False, callback=cb)  # fmt: skip
    return rows_out


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--chunk", type=int, default=16_777, help="cells per chunk (0: all at once)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args(argv)
    w, xs, truth = data(a.n)
    x = torch.from_numpy(xs.toarray()).to(a.device)
    rows = []
    for variant in a.variants:
        r = run(variant, x, w, truth, a.max_epochs, a.chunk or None)
        rows += r
        print(pd.DataFrame(r).to_string(index=False), flush=True)
    df = pd.DataFrame(rows)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "epochs.csv", index=False)
    summ = []
    for variant, g in df.groupby("variant", sort=False):
        row = {"variant": variant, "n_cells": a.n, "sec_per_epoch": float(np.diff(g.seconds).mean())}
        for target in (0.98, 0.99):
            hit = g[g.abs_pcc >= target]
            row[f"epochs_to_{target}"] = int(hit.epoch.iloc[0]) if len(hit) else np.nan
            row[f"seconds_to_{target}"] = float(hit.seconds.iloc[0]) if len(hit) else np.nan
        row["final_abs_pcc"] = float(g.abs_pcc.iloc[-1])
        summ.append(row)
    # The ceiling: the exact censored least-squares latents given the TRUE weights (no fit).
    from regdecoder.train._censored_ls import solve_censored

    z, _, _ = solve_censored(x, torch.from_numpy(w).to(x.device))
    summ.append({"variant": "oracle (true weights, exact latents)", "n_cells": a.n,
                 "final_abs_pcc": mean_pcc(z.cpu().numpy(), truth, np.arange(w.shape[1]), signed=False)})  # fmt: skip
    summ = pd.DataFrame(summ)
    summ.to_csv(out / "epochs_summary.csv", index=False)
    print(summ.to_string(index=False))
    return summ


if __name__ == "__main__":
    main()
