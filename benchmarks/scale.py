"""Scaling of the streamed ALS fit and of test-time inference with the number of cells.

For each size N (default 10^3 .. 10^6 cells; n = 2,000 genes, m = 200 TFs, density
0.05), simulated counts-like data are written chunk by chunk to a backed h5ad file
(CSR, float32 counts), never held dense. Then, each step in its own subprocess so that
the peak resident memory (``ru_maxrss``) of one size does not leak into the next:

1. ``fit``: ``rd.tl.fit_decoder`` on the file opened with ``backed='r'`` (cells read
   in chunks), recording per epoch the training recovery (mean over TFs of the PCC
   between learned and true activities; the sign of each latent is fixed by the
   signed prior at the end, so |PCC| is used during training; the final recovery is that of
   the decoder's latents, ``obsm['regdecoder_z']``, signed); then ``rd.tl.infer``
   on N *new* cells (another backed file drawn from the same network).
2. ``mlm``: on the first ``--mlm-cells`` new cells (in memory, sparse), ``rd.tl.infer``
   and decoupler's ``mlm`` given the TRUE network weights, timed side by side.

Data model (counts-like): z ~ Gamma(2, 1) per cell and TF; edges A ~ Bernoulli(0.05);
weights W ~ Uniform(-1, 0.65) on edges (more repression than activation, so ~18% of
the ReLU outputs are positive: that is the sparsity); expression ``x = ReLU(W z)``;
counts ``X ~ Poisson(depth * x)`` with ``depth = 50`` counts per unit of expression:
~18% nonzeros, mean nonzero count ~88 (at depth 1 the Poisson noise is so strong that
no method gets past PCC ~0.8). At 10^6 cells, X is ~3.6e8 nonzeros, ~2.9 GB as CSR
float32/int32.

Writes ``scale.csv``, ``scale.json`` (rows plus fitted log-log slopes) and ``scale.png``
under ``--out``. ``--quick`` runs tiny sizes (for the test suite).

    python benchmarks/scale.py                       # 1e3 .. 1e6 on the CPU
    python benchmarks/scale.py --device cuda --workers 16   # the same on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
NET_SEED = 12345
DEPTH = 50.0  # Poisson counts per unit of expression


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ----------------------------------------------------------------- data
def make_net(n_genes: int, n_tfs: int, density: float, seed: int = NET_SEED):
    """The true network: weights (genes x TFs, zero off the edges) and decoupler's long table."""
    rng = np.random.default_rng(seed)
    adj = rng.random((n_genes, n_tfs)) < density
    for j in np.flatnonzero(~adj.any(0)):
        adj[rng.integers(n_genes), j] = True
    w = (rng.uniform(-1.0, 0.65, size=(n_genes, n_tfs)) * adj).astype(np.float32)
    g, t = np.nonzero(adj)
    net = pd.DataFrame({"source": [f"TF{j:03d}" for j in t], "target": [f"G{i:04d}" for i in g], "weight": w[g, t]})
    return w, net


def _gen_block(args):
    w, start, stop, seed, depth = args
    from scipy import sparse

    rng = np.random.default_rng([seed, start])
    z = rng.gamma(2.0, 1.0, size=(stop - start, w.shape[1])).astype(np.float32)
    x = z @ w.T
    np.maximum(x, 0, out=x)
    rows, cols = np.nonzero(x)
    counts = rng.poisson(depth * x[rows, cols]).astype(np.float32)
    keep = counts > 0
    mat = sparse.csr_matrix((counts[keep], (rows[keep], cols[keep])), shape=x.shape, dtype=np.float32)
    return mat, z


def generate(path: Path, n_cells: int, *, n_genes: int, n_tfs: int, density: float, seed: int, workers: int = 1):
    """Write a backed-readable h5ad (CSR X) and ``<path>.z.npy`` (true activities), in chunks."""
    import h5py
    from anndata.io import sparse_dataset, write_elem

    w, _ = make_net(n_genes, n_tfs, density)
    chunk = 20_000
    blocks = [(w, s, min(n_cells, s + chunk), seed, DEPTH) for s in range(0, n_cells, chunk)]
    z_all = np.lib.format.open_memmap(str(path) + ".z.npy", mode="w+", dtype=np.float32, shape=(n_cells, n_tfs))
    tmp = Path(str(path) + ".tmp")
    if workers > 1:
        from multiprocessing import get_context

        pool = get_context("fork").Pool(workers)
        results = pool.imap(_gen_block, blocks)
    else:
        pool, results = None, map(_gen_block, blocks)
    with h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        write_elem(f, "obs", pd.DataFrame(index=pd.Index([f"c{i}" for i in range(n_cells)])))
        write_elem(f, "var", pd.DataFrame(index=pd.Index([f"G{i:04d}" for i in range(n_genes)])))
        x = None
        for (_, s, e, _, _), (mat, z) in zip(blocks, results, strict=True):
            z_all[s:e] = z
            if x is None:
                write_elem(f, "X", mat)
                x = sparse_dataset(f["X"])
            else:
                x.append(mat)
        nnz = int(x.group["indptr"][-1])
    if pool is not None:
        pool.close()
    z_all.flush()
    tmp.rename(path)
    return nnz


# ----------------------------------------------------------------- metrics
def mean_pcc(z, truth, cols, *, signed: bool, chunk: int = 100_000) -> float:
    """Mean over latents of the PCC between ``z[:, j]`` and ``truth[:, cols[j]]`` (chunked)."""
    n, m = z.shape
    s = np.zeros((5, m))
    for a in range(0, n, chunk):
        u = np.asarray(z[a : a + chunk], dtype=np.float64)
        v = np.asarray(truth[a : a + chunk], dtype=np.float64)[:, cols]
        s += [u.sum(0), v.sum(0), (u * u).sum(0), (v * v).sum(0), (u * v).sum(0)]
    mu, mv = s[0] / n, s[1] / n
    cov = s[4] / n - mu * mv
    r = cov / np.sqrt(np.maximum(s[2] / n - mu**2, 1e-30) * np.maximum(s[3] / n - mv**2, 1e-30))
    return float(np.mean(r if signed else np.abs(r)))


def _tf_cols(names) -> np.ndarray:
    return np.array([int(str(n)[2:]) for n in names])


# ----------------------------------------------------------------- workers
def work_fit(a) -> dict:
    import anndata as ad
    import torch

    import regdecoder as rd

    torch.manual_seed(0)
    _, net = make_net(a.genes, a.tfs, a.density)
    adata = ad.read_h5ad(a.train, backed="r")
    truth = np.load(a.train + ".z.npy", mmap_mode="r")
    curve: list[tuple[int, float, float]] = []
    paused = [0.0]
    t0 = time.perf_counter()

    def cb(state):
        t = time.perf_counter()
        names = state["model"].latent_names
        curve.append(
            (state["epoch"], t - t0 - paused[0], mean_pcc(state["z"].numpy(), truth, _tf_cols(names), signed=False))
        )
        paused[0] += time.perf_counter() - t
        return a.stop_pcc is not None and curve[-1][2] >= a.stop_pcc

    rd.settings.progress = a.progress
    model = rd.tl.fit_decoder(
        adata, net=net, seed=0, device=a.device, recipe={"max_epochs": a.max_epochs, "callback": cb}
    )
    fit_wall = time.perf_counter() - t0 - paused[0]
    rss_fit = _rss_gib()
    nnz = int(adata.X.group["indptr"][-1])
    secs = np.asarray(adata.uns["regdecoder"]["history"]["seconds"])
    epochs = len(secs)
    per_epoch = float(np.diff(secs).mean()) if epochs > 1 else float(secs[0])
    pcc_train = mean_pcc(adata.obsm["regdecoder_z"], truth, _tf_cols(model.latent_names), signed=True)
    reached = [t for (_, t, p) in curve if p >= 0.99]
    model.save(a.model)
    adata_shape = adata.shape
    adata.file.close()
    del adata

    new = ad.read_h5ad(a.new, backed="r")
    truth_new = np.load(a.new + ".z.npy", mmap_mode="r")
    t = time.perf_counter()
    rd.tl.infer(new, model, max_iter=a.infer_iter, tol=a.infer_tol)
    infer_s = time.perf_counter() - t
    pcc_new = mean_pcc(new.obsm["regdecoder_z"], truth_new, _tf_cols(model.latent_names), signed=True)
    pcc_new_t = mean_pcc(new.obsm["regdecoder"], truth_new, _tf_cols(model.latent_names), signed=True)
    return {
        "n_cells": int(new.n_obs),
        "nonzero_fraction": nnz / (adata_shape[0] * adata_shape[1]),
        "epochs": epochs,
        "sec_per_epoch": per_epoch if epochs > 1 else float("nan"),
        "first_epoch_seconds": float(secs[0]),  # the initial least-squares pass + epoch 1
        "fit_cells_per_s": new.n_obs / per_epoch,  # with one epoch: initial pass + epoch 1
        "fit_seconds": fit_wall,  # everything fit_decoder does, the exact latents of the training cells included
        "als_seconds": float(secs[-1]),  # the ALS epochs alone
        "seconds_to_pcc099": reached[0] if reached else float("nan"),
        "seconds_to_pcc098": next((t for (_, t, p) in curve if p >= 0.98), float("nan")),
        "epochs_to_pcc099": next((e for (e, _, p) in curve if p >= 0.99), -1),
        "pcc_train": pcc_train,
        "infer_seconds": infer_s,
        "infer_cells_per_s": new.n_obs / infer_s,
        "pcc_new": pcc_new,
        "pcc_new_marginal_t": pcc_new_t,
        "peak_rss_fit_gib": rss_fit,
        "peak_rss_fit_infer_gib": _rss_gib(),
        "curve": curve,
    }


def work_mlm(a) -> dict:
    import anndata as ad
    import decoupler as dc
    import torch

    import regdecoder as rd

    torch.manual_seed(0)
    # decoupler's numba methods reset the OpenMP threads torch shares to one per core; keep the
    # count this process started with (the environment's), so both methods get the same threads
    rd.settings.n_threads = torch.get_num_threads()
    _, net = make_net(a.genes, a.tfs, a.density)
    model = rd.tl.Model.load(a.model, device=a.device)
    backed = ad.read_h5ad(a.new, backed="r")
    n = min(a.mlm_cells, backed.n_obs)
    x = backed.X[:n]
    truth = np.asarray(np.load(a.new + ".z.npy", mmap_mode="r")[:n])
    var = pd.DataFrame(index=backed.var_names.copy())
    backed.file.close()
    warm = ad.AnnData(X=x[: min(n, 200)].copy(), var=var.copy())
    dc.mt.mlm(warm, net, tmin=5, verbose=False)  # numba compilation, not timed
    rd.tl.infer(warm, model)

    ours = ad.AnnData(X=x, var=var)
    t = time.perf_counter()
    rd.tl.infer(ours, model, max_iter=a.infer_iter, tol=a.infer_tol)
    t_ours = time.perf_counter() - t
    theirs = ad.AnnData(X=x, var=var)
    t = time.perf_counter()
    dc.mt.mlm(theirs, net, tmin=5, bsize=a.mlm_bsize, verbose=False)
    t_mlm = time.perf_counter() - t
    scores = theirs.obsm["score_mlm"]
    return {
        "mlm_cells": n,
        "infer_cells_per_s_same_cells": n / t_ours,
        "mlm_cells_per_s": n / t_mlm,
        "pcc_new_same_cells": mean_pcc(ours.obsm["regdecoder_z"], truth, _tf_cols(model.latent_names), signed=True),
        "pcc_mlm": mean_pcc(scores.to_numpy(), truth, _tf_cols(scores.columns), signed=True),
        "peak_rss_mlm_gib": _rss_gib(),
    }


# ----------------------------------------------------------------- driver
def _sub(args: list[str], timeout: float, script: str = __file__, env: dict | None = None) -> dict:
    """Run ``script`` (a benchmark) with ``args`` in a new process, this checkout first on the path
    and ``env`` added to the environment; its last line of output, JSON, is the result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])} | (
        env or {}
    )
    out = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if out.returncode != 0:
        msg = f"worker {args[:2]} failed:\n{out.stderr[-4000:]}"
        raise RuntimeError(msg)
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(n, y) -> float:
    """Least-squares slope of log(y) against log(n): the measured growth exponent."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(n[ok]), np.log(y[ok]), 1)[0])


def plot(df: pd.DataFrame, path: Path, slopes: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    ax.loglog(df.n_cells, df.sec_per_epoch, "o-", label=f"fit, s/epoch (slope {slopes['sec_per_epoch']:.2f})")
    ax.loglog(
        df.n_cells,
        df.first_epoch_seconds,
        "o:",
        label=f"fit, first pass + epoch (slope {slopes['first_epoch_seconds']:.2f})",
    )
    ax.loglog(df.n_cells, df.infer_seconds, "s-", label=f"infer, s (slope {slopes['infer_seconds']:.2f})")
    ax.set(xlabel="cells N", ylabel="seconds", title="time")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.loglog(df.n_cells, df.fit_cells_per_s, "o-", label="fit (one epoch)")
    ax.loglog(df.n_cells, df.infer_cells_per_s, "s-", label="infer (regdecoder)")
    ax.loglog(df.n_cells, df.mlm_cells_per_s, "^--", label="decoupler mlm (true weights)")
    ax.set(xlabel="cells N", ylabel="cells / s", title="throughput")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.loglog(df.n_cells, df.peak_rss_fit_infer_gib, "o-", label=f"fit + infer (slope {slopes['peak_rss']:.2f})")
    ax.loglog(df.n_cells, df.peak_rss_mlm_gib, "^--", label="mlm run")
    ax.set(xlabel="cells N", ylabel="peak RSS (GiB)", title="memory")
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    p.add_argument("--genes", type=int, default=2000)
    p.add_argument("--tfs", type=int, default=200)
    p.add_argument("--density", type=float, default=0.05)
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--cell-epochs", type=float, default=3e5, help="epoch cap per size: max(2, this / N)")
    p.add_argument("--infer-iter", type=int, default=None, help="inference max_iter (default: rd.tl.infer's)")
    p.add_argument("--infer-tol", type=float, default=None, help="inference tol (default: rd.tl.infer's)")
    p.add_argument("--stop-pcc", type=float, default=None, help="stop a fit once training |PCC| reaches this")
    p.add_argument("--mlm-cells", type=int, default=100_000)
    p.add_argument("--mlm-bsize", type=int, default=25_000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1, help="processes generating the data")
    p.add_argument("--data-dir", default=None, help="where the h5ad files go (default: <tmp>/regdecoder_scale, reused)")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--progress", action="store_true")
    p.add_argument("--timeout", type=float, default=4 * 3600)
    p.add_argument("--quick", action="store_true", help="tiny sizes (test suite)")
    p.add_argument("--combine", nargs="+", help="merge the scale.csv of earlier runs (other sizes) into --out")
    p.add_argument("--_work", choices=["gen", "fit", "mlm"], help=argparse.SUPPRESS)
    p.add_argument("--train", help=argparse.SUPPRESS)
    p.add_argument("--new", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._work:
        if a._work == "gen":
            t = time.perf_counter()
            nnz = generate(
                Path(a.train), a.n, n_genes=a.genes, n_tfs=a.tfs, density=a.density, seed=a.seed, workers=a.workers
            )
            res = {"nnz": nnz, "gen_seconds": time.perf_counter() - t, "peak_rss_gen_gib": _rss_gib()}
        else:
            res = (work_fit if a._work == "fit" else work_mlm)(a)
        print(json.dumps(res))
        return pd.DataFrame()

    if a.combine:
        frames = [pd.read_csv(Path(d) / "scale.csv") for d in a.combine]
        rows = pd.concat(frames).sort_values("n_cells").drop_duplicates("n_cells", keep="last").to_dict("records")
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        return _save(rows, a, out, "scale")
    if a.quick:
        a.sizes, a.genes, a.tfs, a.density, a.max_epochs, a.mlm_cells = [300, 900], 120, 8, 0.2, 6, 1000
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(a.data_dir) if a.data_dir else Path(tempfile.gettempdir()) / "regdecoder_scale"
    data.mkdir(parents=True, exist_ok=True)
    shape = ["--genes", str(a.genes), "--tfs", str(a.tfs), "--density", str(a.density)]
    stem = "scale_quick" if a.quick else "scale"
    rows, curves = [], {}
    for n in a.sizes:
        tag = f"n{n}_g{a.genes}_t{a.tfs}_d{a.density}"
        files = {}
        for which, seed in (("train", 1), ("new", 2)):
            path = data / f"{which}_{tag}.h5ad"
            files[which] = str(path)
            if not path.exists():
                if a.quick:  # no subprocess: its memory is not measured
                    t = time.perf_counter()
                    nnz = generate(path, n, n_genes=a.genes, n_tfs=a.tfs, density=a.density, seed=seed)
                    info = {"nnz": nnz, "gen_seconds": time.perf_counter() - t}
                else:
                    gen = ["--_work", "gen", "--train", str(path), "--n", str(n), "--seed", str(seed)]
                    info = _sub([*gen, "--workers", str(a.workers), *shape], a.timeout)
                print(
                    f"N={n}: generated {which} ({info['nnz'] / (n * a.genes):.1%} nonzero) in {info['gen_seconds']:.0f}s",
                    flush=True,
                )
        common = ["--train", files["train"], "--new", files["new"], "--model", str(data / f"model_{tag}.pt")]
        common += shape + ["--device", a.device]
        epochs = int(min(a.max_epochs, max(2, a.cell_epochs // n)))
        if a.infer_iter is not None:
            common += ["--infer-iter", str(a.infer_iter)]
        if a.infer_tol is not None:
            common += ["--infer-tol", str(a.infer_tol)]
        fit_args = ["--_work", "fit", "--max-epochs", str(epochs), *common]
        if a.stop_pcc is not None:
            fit_args += ["--stop-pcc", str(a.stop_pcc)]
        if a.progress:
            fit_args.append("--progress")
        row = _sub(fit_args, a.timeout)
        row.update(
            _sub(
                ["--_work", "mlm", "--mlm-cells", str(a.mlm_cells), "--mlm-bsize", str(a.mlm_bsize), *common], a.timeout
            )
        )
        curves[n] = row.pop("curve")
        rows.append(row)
        print(
            f"N={n}: {row['sec_per_epoch']:.2f} s/epoch ({row['fit_cells_per_s']:.0f} cells/s), "
            f"PCC 0.99 after {row['seconds_to_pcc099']:.1f}s, train PCC {row['pcc_train']:.4f}; "
            f"infer {row['infer_cells_per_s']:.0f} cells/s (PCC {row['pcc_new']:.4f}); "
            f"mlm {row['mlm_cells_per_s']:.0f} cells/s (PCC {row['pcc_mlm']:.4f}); peak RSS {row['peak_rss_fit_infer_gib']:.2f} GiB",
            flush=True,
        )
        df = _save(rows, a, out, stem, curves)
    return df


def _save(rows, a, out: Path, stem: str, curves: dict | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    big = df[df.n_cells >= min(10_000, df.n_cells.max())] if len(df) > 2 else df
    slopes = {
        "sec_per_epoch": slope(big.n_cells, big.sec_per_epoch),
        "first_epoch_seconds": slope(big.n_cells, big.first_epoch_seconds),
        "infer_seconds": slope(big.n_cells, big.infer_seconds),
        "peak_rss": slope(big.n_cells, big.peak_rss_fit_infer_gib),
        "fitted_on_sizes": [int(v) for v in big.n_cells],
    }
    df.to_csv(out / f"{stem}.csv", index=False)
    meta = {"args": {k: v for k, v in vars(a).items() if not k.startswith("_")}, "slopes": slopes}
    meta["rows"] = df.to_dict(orient="records")
    meta["curves"] = {str(k): v for k, v in (curves or {}).items()}  # (epoch, seconds, training |PCC|)
    (out / f"{stem}.json").write_text(json.dumps(meta, indent=1, default=float))
    plot(df, out / f"{stem}.png", slopes, f"regdecoder streamed ALS, {a.genes} genes, {a.tfs} TFs, device {a.device}")
    print(f"log-log slopes (sizes {slopes['fitted_on_sizes']}): {slopes}", flush=True)
    return df


if __name__ == "__main__":
    main()
