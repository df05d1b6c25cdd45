"""Benchmark the two kernels of :class:`regdecoder.nn._sparse.SparseLinear`.

For a gene x TF layer (default 20,000 genes x 1,000 TFs) with a random mask of a given
density, it times, side by side in one process, ``impl='dense'`` and ``impl='sparse'``:

* ``fwd_bwd``: one forward + backward pass, with the gradient to both the input ``z``
  and the edge ``values`` (what a training step costs, optimiser excluded);
* ``fwd``: one forward pass under ``torch.no_grad()`` (inference).

Each cell is warmed up, then the two kernels are timed in alternation (so that both see
the same machine load) and the median wall time is reported, with the ratio
dense / sparse (> 1: the sparse kernel is faster) and the largest relative difference
between the two kernels' outputs and gradients. The table is printed and saved as CSV.

The random masks are uniform: every (gene, TF) pair is an edge with the same probability.

Usage::

    python benchmarks/sparse_linear.py            # full run, a few minutes on 2 cores
    python benchmarks/sparse_linear.py --quick    # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    from regdecoder.nn._sparse import SparseLinear
except ModuleNotFoundError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from regdecoder.nn._sparse import SparseLinear

FULL = {"n_out": 20_000, "n_in": 1_000, "batches": (32, 256, 2048), "repeats": 5}
QUICK = {"n_out": 2_000, "n_in": 100, "batches": (32, 256), "repeats": 3}
DENSITIES = (0.1, 0.05, 0.02, 0.01)

COLUMNS = (
    "n_out",
    "n_in",
    "density",
    "nnz",
    "batch",
    "dense_fwd_bwd_ms",
    "sparse_fwd_bwd_ms",
    "ratio_fwd_bwd",
    "dense_fwd_ms",
    "sparse_fwd_ms",
    "ratio_fwd",
    "max_rel_diff",
    "threads",
    "repeats",
    "torch",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (2,000 x 100, batches 32 and 256) for a smoke run")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="CSV file to write; default benchmarks/results/sparse_linear.csv "
        "(sparse_linear_quick.csv with --quick, so that a smoke run keeps the full results)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--n-out", type=int, default=None, help="genes (outputs); default 20,000 (2,000 with --quick)")
    p.add_argument("--n-in", type=int, default=None, help="TFs (inputs); default 1,000 (100 with --quick)")
    p.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES), help="mask densities")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes; default 32 256 2048")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per cell (median); default 5 (3 quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per kernel before timing")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.n_out = args.n_out or preset["n_out"]
    args.n_in = args.n_in or preset["n_in"]
    args.batches = args.batches or list(preset["batches"])
    args.repeats = args.repeats or preset["repeats"]
    if args.out is None:
        name = "sparse_linear_quick.csv" if args.quick else "sparse_linear.csv"
        args.out = Path("benchmarks/results") / name
    for d in args.densities:
        if not 0 < d <= 1:
            p.error(f"densities must be in (0, 1], got {d}")
    return args


def random_mask(n_out: int, n_in: int, density: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random edge list with ``round(density * n_out * n_in)`` distinct edges."""
    nnz = max(1, round(density * n_out * n_in))
    flat = torch.randperm(n_out * n_in, generator=generator)[:nnz]
    return flat // n_in, flat % n_in


def interleaved_medians(fns: dict[str, callable], repeats: int, warmup: int) -> dict[str, float]:
    """Median wall time (s) of each callable, timed in alternation after a warm-up."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_cell(rows, cols, n_out: int, n_in: int, batch: int, args: argparse.Namespace) -> dict:
    layers = {impl: SparseLinear(n_in, n_out, rows, cols, impl=impl) for impl in ("dense", "sparse")}
    layers["sparse"].load_state_dict(layers["dense"].state_dict())  # identical weights
    z = torch.randn(batch, n_in, requires_grad=True)
    grad_out = torch.randn(batch, n_out)

    def fwd_bwd(layer):
        def step():
            layer.values.grad = None
            z.grad = None
            layer(z).backward(grad_out)

        return step

    def fwd(layer):
        def step():
            with torch.no_grad():
                layer(z)

        return step

    # Both kernels must agree (outputs and both gradients) before their times mean anything.
    results = {}
    for impl, layer in layers.items():
        z.grad = None
        out = layer(z)
        out.backward(grad_out)
        results[impl] = (out.detach(), z.grad.clone(), layer.values.grad.clone())
        layer.values.grad = None
    z.grad = None
    max_rel = max(
        ((a - b).abs().max() / a.abs().max().clamp(min=1e-30)).item()
        for a, b in zip(results["dense"], results["sparse"], strict=True)
    )
    del results, out

    t_train = interleaved_medians({k: fwd_bwd(v) for k, v in layers.items()}, args.repeats, args.warmup)
    t_infer = interleaved_medians({k: fwd(v) for k, v in layers.items()}, args.repeats, args.warmup)
    nnz = layers["dense"].nnz
    return {
        "n_out": n_out,
        "n_in": n_in,
        "nnz": nnz,
        "batch": batch,
        "dense_fwd_bwd_ms": 1e3 * t_train["dense"],
        "sparse_fwd_bwd_ms": 1e3 * t_train["sparse"],
        "ratio_fwd_bwd": t_train["dense"] / t_train["sparse"],
        "dense_fwd_ms": 1e3 * t_infer["dense"],
        "sparse_fwd_ms": 1e3 * t_infer["sparse"],
        "ratio_fwd": t_infer["dense"] / t_infer["sparse"],
        "max_rel_diff": max_rel,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch": torch.__version__,
    }


def fmt_row(r: dict) -> str:
    return (
        f"{r['density']:>7.3g} {r['nnz']:>9d} {r['batch']:>6d} | "
        f"{r['dense_fwd_bwd_ms']:>9.1f} {r['sparse_fwd_bwd_ms']:>9.1f} {r['ratio_fwd_bwd']:>6.2f} | "
        f"{r['dense_fwd_ms']:>9.1f} {r['sparse_fwd_ms']:>9.1f} {r['ratio_fwd']:>6.2f} | {r['max_rel_diff']:>8.1e}"
    )


HEADER = (
    f"{'density':>7} {'nnz':>9} {'batch':>6} | {'dense':>9} {'sparse':>9} {'d/s':>6} | "
    f"{'dense':>9} {'sparse':>9} {'d/s':>6} | {'rel.diff':>8}\n"
    f"{'':>24} | {'fwd+bwd (ms, median)':^26} | {'fwd, no_grad (ms)':^26} |"
)


def crossover(rows: list[dict], key: str) -> dict[int, float | None]:
    """Per batch: the largest measured density at which the sparse kernel is faster."""
    out = {}
    for b in sorted({r["batch"] for r in rows}):
        wins = [r["density"] for r in rows if r["batch"] == b and r[key] > 1.0]
        out[b] = max(wins) if wins else None
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t_start = time.perf_counter()
    print(
        f"SparseLinear dense vs sparse kernel | {args.n_out} genes x {args.n_in} TFs | "
        f"torch {torch.__version__} | {torch.get_num_threads()} threads | {platform.processor() or platform.machine()} | "
        f"median of {args.repeats} (warm-up {args.warmup}) | load avg {os.getloadavg()[0]:.2f}"
    )
    print(HEADER)
    rows = []
    for density in args.densities:
        edge_rows, edge_cols = random_mask(args.n_out, args.n_in, density, gen)
        for batch in args.batches:
            r = {"density": density, **bench_cell(edge_rows, edge_cols, args.n_out, args.n_in, batch, args)}
            rows.append(r)
            print(fmt_row(r), flush=True)

    for key, label in (("ratio_fwd_bwd", "fwd+bwd"), ("ratio_fwd", "fwd")):
        best = crossover(rows, key)
        text = ", ".join(f"batch {b}: {'none' if d is None else f'<= {d:g}'}" for b, d in best.items())
        print(f"sparse faster ({label}) up to density -> {text}")
    print(f"total {time.perf_counter() - t_start:.1f} s | load avg {os.getloadavg()[0]:.2f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
