"""Real networks at real size: regdecoder's fit and inference against decoupler's ulm and mlm.

Settings, each simulated by ``rd.sim.grn`` (the paper's eq. 6: Gamma(2, 1) TF levels, noise
sd 0.2 before the ReLU):

* ``paper``: the paper's setting, 1,000 genes, 100 TFs, density 0.1, weights U(-1, 1);
* ``collectri``: CollecTRI's topology (``--net``, default ``$REGDECODER_COLLECTRI``), the TFs with
  >= 5 targets (772 TFs, 6,652 genes, 42,308 edges), CollecTRI's signs with |w| ~ U(0.5, 1),
  per-gene offsets N(0, 1) (~11% zeros);
* ``net1e5``: a random network of 10^5 edges (10,000 genes, 1,000 TFs, density 0.01, weights
  U(-1, 1)), per-gene offsets N(0, 1).

For each setting and size N: N training cells (or ``--fit-cells``) and N new cells from the same
network. In one
process per setting and size (its peak RSS, ``ru_maxrss``, is reported), with ``--threads``
threads for torch, BLAS and numba alike:

1. ``fit``: ``rd.tl.fit_decoder`` on the training cells given the network's **signs** only (the
   default recipe; what a user with CollecTRI has);
2. ``infer``: ``rd.tl.infer`` on the new cells (latents, marginal t and its p-values, written to
   the AnnData), and the latent solver alone (``rd.train.solve_latents`` on the same cells);
3. ``mlm``, ``ulm``: decoupler 2.x on the same new cells (or the first ``--decoupler-cells`` of
   them) given the **true** weights (numba's compilation not timed), in blocks of ``--block`` cells
   (as its ``bsize`` does for sparse data; one dense block of 10^5 x 6,652 would need ~11 GB in
   float64);
4. recovery: mean over TFs of the signed PCC between each method's activities and the true TF
   levels of the new cells: regdecoder's latents (``obsm['regdecoder_z']``), its default activity
   (the marginal t, ``obsm['regdecoder']``), mlm's and ulm's scores;
5. arithmetic: the solver's floating-point operations (counted: per step two products with W,
   two with the shared k x k inverse, per cell three more products with W at the start) over its
   seconds, against the float32 matmul peak measured in the same process; and the latents' largest
   relative error against the exact per-cell Newton solution on ``--exact-cells`` new cells.

Writes ``realnet.csv``, ``realnet.json`` and ``realnet.png`` under ``--out``::

    python benchmarks/realnet.py --sizes 10000 --settings paper collectri net1e5
    python benchmarks/realnet.py --sizes 100000 --fit-cells 10000 --decoupler-cells 20000 --settings collectri net1e5 --out B
    python benchmarks/realnet.py --combine benchmarks/results B     # merge the rows
    python benchmarks/realnet.py --device cuda --threads 16 --decoupler-cells 20000 ...   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scale import _sub as run_worker  # noqa: E402  (one way to run a benchmark's worker process)


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def simulate(setting: str, n: int, seed: int, net_path: str | None):
    import regdecoder as rd

    common = {"n_obs": n, "noise": 0.2, "seed": seed}
    if setting == "paper":
        return rd.sim.grn(n_genes=1000, n_tfs=100, density=0.1, **common)
    if setting == "collectri":
        return rd.sim.grn(net=rd.datasets.collectri(net_path), tmin=5, offset_sd=1.0, **common)
    if setting == "net1e5":
        return rd.sim.grn(n_genes=10_000, n_tfs=1_000, density=0.01, offset_sd=1.0, **common)
    msg = f"unknown setting {setting!r}"
    raise ValueError(msg)


def halves(adata, n: int):
    """The first ``n`` cells and the rest as AnnData objects over views of one X (no copy of the data)."""
    import anndata as ad

    def part(rows):
        return ad.AnnData(
            X=adata.X[rows], obs=adata.obs.iloc[rows], var=adata.var,
            obsm={"tf_activity": adata.obsm["tf_activity"].iloc[rows]}, uns={"sim": adata.uns["sim"]},
        )  # fmt: skip

    return part(slice(0, n)), part(slice(n, None))


def matmul_peak(device: str, size: int = 2048, reps: int = 5) -> float:
    """Float32 GFLOP/s of a square matrix product on ``device`` (best of ``reps``)."""
    import torch

    size = size if device == "cpu" else 8192
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def _sync(device: str) -> None:
    import torch

    if device != "cpu":
        torch.cuda.synchronize()


def mean_pcc(est, truth) -> float:
    import regdecoder as rd

    return float(np.nanmean(rd.metrics.pearson_columns(np.asarray(truth), np.nan_to_num(np.asarray(est)))))


def _decoupler(method: str, x: np.ndarray, genes, net, block: int):
    """decoupler's method on ``x`` in blocks of cells; scores (cells x TFs, DataFrame) and seconds."""
    import anndata as ad
    import decoupler as dc

    parts, secs = [], 0.0
    for s in range(0, x.shape[0], block):
        a = ad.AnnData(X=x[s : s + block], var=pd.DataFrame(index=genes))
        t = time.perf_counter()
        getattr(dc.mt, method)(a, net, tmin=1, verbose=False)
        secs += time.perf_counter() - t
        parts.append(a.obsm[f"score_{method}"])
    return pd.concat(parts), secs


def _solver_flops(model, info) -> float:
    """Floating-point operations of the latent solver's run (per step: two products with W and two
    with the k x k inverse; per cell at the start: three products with W and two with the inverse)."""
    import regdecoder.train._latents as lat

    op = lat.Frozen(model.decoder.get_weight(), model.decoder.get_bias(), relu=True, ridge=lat.EXACT_RIDGE)
    per_w = 2 * (int((model.decoder.get_weight() != 0).sum()) if op.sparse else op.n * op.k)
    per_h = 2 * op.k * op.k
    steps = float(info["n_iter"].double().sum())
    cells = len(info["n_iter"])
    return steps * (2 * per_w + 2 * per_h) + cells * (3 * per_w + 2 * per_h)


def work(a) -> dict:
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    import regdecoder as rd
    from regdecoder.train._censored_ls import solve_censored

    warnings.simplefilter("ignore")  # numba, torch's sparse beta notices
    torch.set_num_threads(a.threads)
    numba.set_num_threads(min(a.threads, numba.config.NUMBA_NUM_THREADS))
    rd.settings.progress = False
    row = {"setting": a.setting, "n_cells": a.n, "threads": a.threads}
    with threadpool_limits(a.threads):
        row["device"] = a.device
        row["matmul_peak_gflops"] = matmul_peak(a.device)
        n_fit = a.fit_cells or a.n
        train, new = halves(simulate(a.setting, n_fit + a.n, 1, a.net), n_fit)  # one network, two sets of cells
        row["fit_cells"] = n_fit
        true_net = train.uns["sim"]["net"]
        signs = true_net.assign(weight=np.sign(true_net.weight))
        p = train.uns["sim"]["params"]
        row.update(n_genes=p["n_genes"], n_tfs=p["n_tfs"], n_edges=p["n_edges"], zeros=float((train.X == 0).mean()))
        t = time.perf_counter()
        model = rd.tl.fit_decoder(train, net=signs, device=a.device)
        row["fit_seconds"] = time.perf_counter() - t
        hist = train.uns["regdecoder"]["history"]
        row["fit_epochs"] = len(hist["loss"])
        row["fit_als_seconds"] = float(hist["seconds"][-1])
        # TFs with identical regulons (same targets and signs) are merged into one latent ('A|B') by the
        # fit; recovery is scored over the latents that are one TF, for every method alike
        names = [n for n in model.latent_names if n in train.obsm["tf_activity"].columns]
        row["scored_tfs"] = len(names)
        row["pcc_train_latents"] = mean_pcc(train.obsm["regdecoder_z"][names], train.obsm["tf_activity"][names])
        row["peak_rss_fit_gib"] = _rss_gib()
        del train

        truth = new.obsm["tf_activity"]
        x = np.asarray(new.X)
        genes = new.var_names
        rd.tl.infer(new[:50].copy(), model)  # first-call costs, not timed
        t = time.perf_counter()
        rd.tl.infer(new, model)
        row["infer_seconds"] = time.perf_counter() - t
        row["infer_cells_per_s"] = a.n / row["infer_seconds"]
        row["pcc_latents"] = mean_pcc(new.obsm["regdecoder_z"][names], truth[names])
        row["pcc_activity_t"] = mean_pcc(new.obsm["regdecoder"][names], truth[names])
        w, b = model.decoder.get_weight(), model.decoder.get_bias()
        xt = torch.from_numpy(x)
        _sync(a.device)
        z, info = rd.train.solve_latents(xt.to(a.device), w, b, detected=model.gene_detected)
        _sync(a.device)
        z, w, b = z.cpu(), w.cpu(), b.cpu()
        row["solver_seconds"] = info["seconds"]
        row["solver_cells_per_s"] = a.n / info["seconds"]
        steps = info["n_iter"].double()
        row.update(steps_mean=float(steps.mean()), steps_p99=float(steps.quantile(0.99)), steps_max=int(steps.max()))
        row["exact_finished"] = int((~info["converged"]).sum())
        row["solver_gflops"] = _solver_flops(model, info) / info["seconds"] / 1e9
        row["solver_fraction_of_peak"] = row["solver_gflops"] / row["matmul_peak_gflops"]
        m = min(a.exact_cells, a.n)
        ref, _, _ = solve_censored(xt[:m].double(), w.double(), b.double(), ridge=rd.train._latents.EXACT_RIDGE,
                                   tol=1e-12, max_iter=500)  # fmt: skip
        err = (z[:m].double() - ref).norm(dim=1) / ref.norm(dim=1).clamp(min=1e-12)
        row["max_rel_error_vs_exact"] = float(err.max())
        row["peak_rss_gib"] = _rss_gib()
        del new

        m = min(a.n, a.decoupler_cells or a.n)  # decoupler on the first m new cells
        row["decoupler_cells"] = m
        for method in ("mlm", "ulm"):
            warm = max(50, min(200, a.n))
            _decoupler(method, x[:warm], genes, true_net, a.block)  # numba compilation
            scores, secs = _decoupler(method, x[:m], genes, true_net, a.block)
            row[f"{method}_seconds"] = secs
            row[f"{method}_cells_per_s"] = m / secs
            row[f"pcc_{method}"] = mean_pcc(scores.reindex(columns=names).to_numpy(), truth[names].iloc[:m])
        row["infer_vs_mlm"] = row["infer_cells_per_s"] / row["mlm_cells_per_s"]
        row["solver_vs_mlm"] = row["solver_cells_per_s"] / row["mlm_cells_per_s"]
        row["peak_rss_with_decoupler_gib"] = _rss_gib()
    row["load_average"] = os.getloadavg()[0]
    return row


def _sub(args: list[str], timeout: float) -> dict:
    threads = args[args.index("--threads") + 1]
    return run_worker(args, timeout, script=__file__, env={"OMP_NUM_THREADS": threads})


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    labels = [f"{s}\n{n:,}" for s, n in zip(df.setting, df.n_cells, strict=True)]
    pos = np.arange(len(df))
    for i, (col, name) in enumerate(
        [
            ("infer_cells_per_s", "regdecoder infer"),
            ("solver_cells_per_s", "latent solver"),
            ("mlm_cells_per_s", "mlm"),
            ("ulm_cells_per_s", "ulm"),
        ]  # fmt: skip
    ):
        axes[0].bar(pos + (i - 1.5) * 0.2, df[col], 0.2, label=name)
    axes[0].set(xticks=pos, xticklabels=labels, yscale="log", ylabel="new cells / s", title="inference speed")
    axes[0].legend(fontsize=8)
    for i, (col, name) in enumerate(
        [
            ("pcc_latents", "regdecoder latents"),
            ("pcc_activity_t", "regdecoder marginal t"),
            ("pcc_mlm", "mlm (true weights)"),
            ("pcc_ulm", "ulm (true weights)"),
        ]  # fmt: skip
    ):
        axes[1].bar(pos + (i - 1.5) * 0.2, df[col], 0.2, label=name)
    axes[1].set(xticks=pos, xticklabels=labels, ylim=(0, 1), ylabel="signed PCC, new cells", title="recovery")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(rows: list[dict], out: Path, args: dict) -> pd.DataFrame:
    df = pd.DataFrame(rows).sort_values(["setting", "n_cells"], ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "realnet.csv", index=False)
    (out / "realnet.json").write_text(json.dumps({"args": args, "rows": df.to_dict("records")}, indent=1))
    plot(df, out / "realnet.png")
    return df


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    p.add_argument("--settings", nargs="+", default=["paper", "collectri", "net1e5"])
    p.add_argument("--net", default=None, help="CollecTRI TSV (default: $REGDECODER_COLLECTRI)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--block", type=int, default=10_000, help="cells per call of decoupler's methods")
    p.add_argument("--decoupler-cells", type=int, default=None, help="run mlm and ulm on the first this many new cells")
    p.add_argument("--device", default="cpu", help="regdecoder's device (decoupler runs on the CPU)")
    p.add_argument("--fit-cells", type=int, default=None, help="training cells (default: as many as new cells)")
    p.add_argument("--exact-cells", type=int, default=200, help="new cells checked against the exact solution")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--timeout", type=float, default=6 * 3600)
    p.add_argument("--combine", nargs="+", help="merge the realnet.csv of these directories into --out")
    p.add_argument("--_work", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--setting", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._work:
        print(json.dumps(work(a)))
        return pd.DataFrame()
    out = Path(a.out)
    if a.combine:
        frames = [pd.read_csv(Path(d) / "realnet.csv") for d in a.combine]
        rows = pd.concat(frames).drop_duplicates(["setting", "n_cells"], keep="last").to_dict("records")
        return save(rows, out, vars(a))
    rows = []
    for n in a.sizes:
        for setting in a.settings:
            args = ["--_work", "--setting", setting, "--n", str(n), "--threads", str(a.threads)]
            args += ["--block", str(a.block), "--exact-cells", str(a.exact_cells), "--device", a.device]
            if a.decoupler_cells:
                args += ["--decoupler-cells", str(a.decoupler_cells)]
            if a.fit_cells:
                args += ["--fit-cells", str(a.fit_cells)]
            if a.net:
                args += ["--net", a.net]
            row = _sub(args, a.timeout)
            rows.append(row)
            print(
                f"{setting} N={n:,}: fit {row['fit_seconds']:.1f}s ({row['fit_epochs']} epochs); infer "
                f"{row['infer_cells_per_s']:.0f} cells/s (solver {row['solver_cells_per_s']:.0f}, {row['steps_mean']:.1f} "
                f"steps, {row['solver_gflops']:.1f} GFLOP/s = {row['solver_fraction_of_peak']:.2f} of the peak); mlm "
                f"{row['mlm_cells_per_s']:.0f}, ulm {row['ulm_cells_per_s']:.0f} cells/s; PCC latents "
                f"{row['pcc_latents']:.4f}, t {row['pcc_activity_t']:.3f}, mlm {row['pcc_mlm']:.3f}, ulm "
                f"{row['pcc_ulm']:.3f}; peak RSS {row['peak_rss_with_decoupler_gib']:.2f} GiB; load {row['load_average']:.1f}",
                flush=True,
            )
            save(rows, out, {k: v for k, v in vars(a).items() if not k.startswith("_")})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
