"""Speed and recovery of test-time inference with the TRUE weights, side by side.

All methods get the same cells and the same (true) network, in one process and one
run, for each thread count (torch, BLAS and numba limited alike):

* ``solver``: ``rd.train.solve_latents`` at its defaults (the latent solver of ``rd.tl.infer``:
  preconditioned conjugate gradients to a relative KKT residual of 1e-3, the minimiser of the
  censored loss plus the ridge ``EXACT_RIDGE``); ``solver_1e-2``: the same at ``tol=1e-2``;
* ``newton``: ``regdecoder.train._censored_ls.solve_censored`` with the same ridge (exact
  censored least squares by a semismooth Newton / active-set method, one ``k x k`` factor per
  cell: the method ``rd.tl.infer`` used before the solver);
* ``mlm``, ``ulm``: decoupler 2.x given the true weights (numba warm-up not timed).

Columns: seconds, cells per second, signed PCC vs the true activities (mean over TFs),
the objective (censored loss plus ridge) relative to the smallest of the regdecoder solvers
(``loss_rel``; 1.0 = the optimum), and the mean and max number of steps.

Data sets:

* ``grn``: ``rd.sim.grn(n_genes=1000, n_tfs=100, density=0.1, noise=0.2, seed=0)``
  (~50% nonzero);
* ``counts``: the counts-like data of ``benchmarks/scale.py`` (2,000 genes, 200 TFs,
  density 0.05, Poisson counts at depth 50, ~17% nonzero), given as dense counts.

    python benchmarks/inference_speed.py                      # 10,000 grn + 20,000 counts cells
    python benchmarks/inference_speed.py --grn-cells 2000 --counts-cells 0 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _limit_threads(n: int):
    import numba
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return threadpool_limits(n)


def _objective(x: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> float:
    from regdecoder.train._latents import EXACT_RIDGE

    total = EXACT_RIDGE * float((w * w).sum(0).mean()) * float((z.double() ** 2).sum())
    for s in range(0, x.shape[0], 4096):
        p = z[s : s + 4096] @ w.T
        xs = x[s : s + 4096]
        total += float(((torch.where(xs == 0, p.clamp(max=0), xs) - p) ** 2).sum(dtype=torch.float64))
    return total


def _pcc(est: np.ndarray, truth: np.ndarray) -> float:
    import regdecoder as rd

    return float(np.mean(rd.metrics.pearson_columns(truth, est)))


def data_grn(n: int):
    import regdecoder as rd

    ad = rd.sim.grn(n_obs=n, n_genes=1000, n_tfs=100, density=0.1, noise=0.2, seed=0)
    x = np.asarray(ad.X, dtype=np.float32)
    w = np.asarray(ad.varm["true_weights"], dtype=np.float32)
    truth = ad.obsm["tf_activity"]
    return x, w, truth.to_numpy(), list(truth.columns), list(ad.var_names)


def data_counts(n: int):
    from scale import DEPTH, _gen_block, make_net

    w, _ = make_net(2000, 200, 0.05)
    mat, z = _gen_block((w, 0, n, 7, DEPTH))
    return (
        mat.toarray().astype(np.float32),
        w,
        z,
        [f"TF{j:03d}" for j in range(w.shape[1])],
        [f"G{i:04d}" for i in range(w.shape[0])],
    )


def run(name: str, x, w, truth, tfs, genes, threads: int) -> list[dict]:
    import anndata as ad
    import decoupler as dc

    import regdecoder as rd
    from regdecoder.train._censored_ls import solve_censored
    from regdecoder.train._latents import EXACT_RIDGE

    g, t = np.nonzero(w)
    net = pd.DataFrame({"source": np.asarray(tfs)[t], "target": np.asarray(genes)[g], "weight": w[g, t]})
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    rows = []
    with _limit_threads(threads):
        # warm-up: numba compilation of decoupler's kernels, torch's first calls
        small = ad.AnnData(X=x[:200].copy(), var=pd.DataFrame(index=genes))
        for m in ("mlm", "ulm"):
            getattr(dc.mt, m)(small, net, tmin=5, verbose=False)
        solve_censored(xt[:200], wt, ridge=EXACT_RIDGE)
        rd.train.solve_latents(xt[:200], wt)

        results = {}
        for label, fn in [
            ("solver", lambda: rd.train.solve_latents(xt, wt)),
            ("solver_1e-2", lambda: rd.train.solve_latents(xt, wt, tol=1e-2)),
            ("newton", lambda: solve_censored(xt, wt, ridge=EXACT_RIDGE)),
        ]:
            t0 = time.perf_counter()
            out = fn()
            sec = time.perf_counter() - t0
            results[label] = (out, sec)
        for m in ("mlm", "ulm"):
            data = ad.AnnData(X=x, var=pd.DataFrame(index=genes))
            t0 = time.perf_counter()
            getattr(dc.mt, m)(data, net, tmin=5, verbose=False)
            sec = time.perf_counter() - t0
            score = data.obsm[f"score_{m}"]
            results[m] = (score.reindex(columns=tfs).to_numpy(), sec)

    ours = ("solver", "solver_1e-2", "newton")
    losses = {k: _objective(xt, wt, results[k][0][0]) for k in ours}
    best = min(losses.values())
    for label, (out, sec) in results.items():
        row = {"data": name, "n_cells": x.shape[0], "threads": threads, "method": label, "seconds": sec}
        row["cells_per_s"] = x.shape[0] / sec
        est = out if label in ("mlm", "ulm") else out[0].numpy()
        row["pcc"] = _pcc(np.nan_to_num(est), truth)
        row["loss_rel"] = losses[label] / best if label in losses else np.nan
        if label.startswith("newton"):
            row["steps_mean"] = float(out[2]["n_iter"].float().mean())
            row["steps_max"] = int(out[1])
        elif label.startswith("solver"):
            row["steps_mean"] = float(out[1]["n_iter"].float().mean())
            row["steps_max"] = int(out[1]["n_iter"].max())
            row["exact_cells"] = int(out[1]["exact"].sum())
        rows.append(row)
    return rows


def main() -> None:
    warnings.simplefilter("ignore")  # torch's sparse-CSR beta notice, numba
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grn-cells", type=int, default=10_000)
    p.add_argument("--counts-cells", type=int, default=20_000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", default=str(HERE / "results" / "inference_speed.csv"))
    a = p.parse_args()
    rows = []
    sets = []
    if a.grn_cells:
        sets.append(("grn", data_grn(a.grn_cells)))
    if a.counts_cells:
        sets.append(("counts", data_counts(a.counts_cells)))
    for name, d in sets:
        for th in a.threads:
            rows += run(name, *d, threads=th)
            df = pd.DataFrame(rows)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(a.out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
