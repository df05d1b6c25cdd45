"""Where one ALS epoch's time goes on this machine, as a fraction of its matrix-multiply peak.

On a backed h5ad of ``benchmarks/scale.py`` (counts-like, 2,000 genes, 200 TFs), this
measures, in one run:

1. the machine's float32 matmul peak: the best of a few ``4096 x 4096`` products with
   the same thread count as the fit (``torch.get_num_threads()``);
2. one epoch of :func:`regdecoder.train.fit_als` on the cells (the gene-mean pass, the
   first least-squares pass, then ``--epochs`` epochs; a run with ``max_epochs=0`` is
   subtracted, so the numbers are per epoch), under ``torch.profiler`` with FLOP counting:
   time in the matrix products (``mm``, ``addmm``, ``bmm``) and their FLOPs, and the
   largest other kernels (element-wise, reductions, the reader's densifying).

It prints and saves ``epoch_profile.csv`` under ``--out``: seconds per epoch, GFLOP/s in the
products, the products' share of the epoch, and the epoch's achieved rate as a fraction of
the peak (the arithmetic an epoch must do, over the time it took).

    python benchmarks/epoch_profile.py --train /tmp/regdecoder_scale/train_n100000_g2000_t200_d0.05.h5ad
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

from scale import make_net  # noqa: E402

GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul")


def matmul_peak(n: int = 4096, reps: int = 5) -> float:
    """Best GFLOP/s of an ``n x n`` float32 product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def main(argv=None) -> pd.DataFrame:
    import anndata as ad

    from regdecoder import _anndata
    from regdecoder.nn import Decoder, DecoderConfig
    from regdecoder.train import fit_als

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="a backed-readable h5ad written by benchmarks/scale.py")
    p.add_argument("--epochs", type=int, default=2, help="epochs profiled (>= 2: per-epoch time from epochs 2 on)")
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args(argv)
    adata = ad.read_h5ad(a.train, backed="r")
    w, _ = make_net(adata.n_vars, 200, 0.05)
    mask = torch.from_numpy(w != 0)
    rows, cols = torch.nonzero(mask, as_tuple=True)
    peak = matmul_peak()
    rows_out = []
    for epochs in (0, a.epochs):  # 0: the gene-mean pass and the first least-squares pass only
        source = _anndata.read(adata, likelihood="mse")
        dec = Decoder(DecoderConfig(n_genes=w.shape[0], n_latent=w.shape[1], masked=True, bias=True), rows, cols)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
            _, hist = fit_als(dec, source, prior_sign=torch.from_numpy(np.sign(w)), max_epochs=epochs, tol=0.0,
                              start="prior", shrink=0.1, center=True, progress=False)  # fmt: skip
        ev = prof.key_averages()
        gemm_s = sum(e.self_cpu_time_total for e in ev if e.key in GEMM) / 1e6
        gemm_flops = sum(e.flops for e in ev if e.key in GEMM)
        ops = {e.key: e.self_cpu_time_total / 1e6 for e in ev}
        rows_out.append({"epochs": epochs, "gemm_s": gemm_s, "gemm_flops": gemm_flops, "ops": ops,
                         "epoch_seconds": list(hist["seconds"])})  # fmt: skip
    base, run = rows_out
    n_ep = max(1, a.epochs)
    # the epochs' own clock (training seconds after each epoch): never negative, unlike a difference of
    # two runs' wall times, which noise dominates on small data; the first epoch includes the start passes
    secs = run["epoch_seconds"]
    epoch_s = (secs[-1] - secs[0]) / (len(secs) - 1) if len(secs) > 1 else secs[0]
    gemm_s = (run["gemm_s"] - base["gemm_s"]) / n_ep
    flops = (run["gemm_flops"] - base["gemm_flops"]) / n_ep
    ops = {k: (v - base["ops"].get(k, 0.0)) / n_ep for k, v in run["ops"].items()}
    top = sorted(((v, k) for k, v in ops.items() if k not in GEMM), reverse=True)[:6]
    row = {
        "n_cells": adata.n_obs,
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": peak,
        "sec_per_epoch": epoch_s,
        "cells_per_s": adata.n_obs / epoch_s,
        "gemm_gflop_per_epoch": flops / 1e9,
        "gemm_seconds": gemm_s,
        "gemm_gflops": flops / gemm_s / 1e9 if gemm_s > 0 else float("nan"),
        "gemm_share_of_epoch": gemm_s / epoch_s,
        # the largest other kernels (self seconds per epoch, all threads: the chunk reader's too)
        "top_other_kernels": "; ".join(f"{k.removeprefix('aten::')} {v:.2f}s" for v, k in top),
        "fraction_of_peak": flops / epoch_s / 1e9 / peak,
    }
    df = pd.DataFrame([row])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "epoch_profile.csv"
    if path.exists():  # one row per size
        old = pd.read_csv(path)
        df = pd.concat([old[old.n_cells != row["n_cells"]], df]).sort_values("n_cells")
    df.to_csv(path, index=False)
    print(df.to_string(index=False))
    return df


if __name__ == "__main__":
    main()
