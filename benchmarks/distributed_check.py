"""The sharded ALS against one process: same latents and weights, and the time of each.

Simulates counts-like data (``rd.sim.grn``), fits it with ``rd.tl.fit_decoder`` in this
process and with ``rd.tl.fit_decoder_distributed`` in ``--nprocs`` processes (``gloo`` on
CPU processes, or ``nccl`` with one process per GPU and ``--device cuda``: on one GPU,
one process), the same seed and epochs, and prints and saves (``distributed_check.csv``
under ``--out``) one row: backend, processes, device, seconds of each fit, the largest
difference of the latents (relative to their largest magnitude) and of the weights.

    python benchmarks/distributed_check.py                              # 2 gloo processes (CPU)
    python benchmarks/distributed_check.py --backend nccl --nprocs 1 --device cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

HERE = Path(__file__).resolve().parent


def main(argv=None) -> pd.DataFrame:
    import regdecoder as rd

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    p.add_argument("--nprocs", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-obs", type=int, default=20_000)
    p.add_argument("--genes", type=int, default=1000)
    p.add_argument("--tfs", type=int, default=100)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args(argv)
    data = rd.sim.grn(n_obs=a.n_obs, n_genes=a.genes, n_tfs=a.tfs, density=0.1, noise=0.2, seed=0)
    data.X = sparse.csr_matrix(data.X)
    net = data.uns["sim"]["net"]
    kw = {"net": net, "seed": 0, "recipe": {"max_epochs": a.epochs, "tol": 0.0}, "device": a.device}
    rd.settings.progress = False
    single = data.copy()
    t = time.perf_counter()
    rd.tl.fit_decoder(single, **kw)
    t_single = time.perf_counter() - t
    multi = data.copy()
    t = time.perf_counter()
    model = rd.tl.fit_decoder_distributed(multi, nprocs=a.nprocs, backend=a.backend, threads_per_process=None, **kw)
    t_multi = time.perf_counter() - t
    z1, z2 = np.asarray(single.obsm["regdecoder_z"]), np.asarray(multi.obsm["regdecoder_z"])
    row = {
        "backend": a.backend,
        "nprocs": a.nprocs,
        "device": a.device,
        "n_obs": a.n_obs,
        "epochs": a.epochs,
        "seconds_one_process": t_single,
        "seconds_sharded": t_multi,  # process start and the temporary h5ad included
        "latents_max_rel_diff": float(np.abs(z1 - z2).max() / np.abs(z1).max()),
        "weights_max_abs_diff": float(np.abs(model.weights - single.varm["regdecoder_weights"]).max()),
        "pcc_one_process": float(rd.metrics.recovery(single, "regdecoder_z", truth="tf_activity")["pcc"].mean()),
        "pcc_sharded": float(rd.metrics.recovery(multi, "regdecoder_z", truth="tf_activity")["pcc"].mean()),
    }
    df = pd.DataFrame([row])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"distributed_check_{a.backend}.csv", index=False)
    print(df.to_string(index=False))
    return df


if __name__ == "__main__":
    main()
