"""How fast one pass of the one read loop (``regdecoder.train._source.stream``) gives the
cells, by where the data live: 100,000 cells x 2,000 genes, CSR, 17% nonzero (~34 M stored
values), generated here with numpy (seed 0).

Paths (``path`` column):

* ``none``: the dense chunks made beforehand, so a pass reads nothing: the ``work_s``
  of this row is the work alone;
* ``scipy_old``: what every pass did before data could live on the device: scipy's
  ``toarray`` of each chunk on the CPU, chunk after chunk, nothing overlapped
  (``ExpressionSource.read`` in a plain loop);
* ``scipy_old_reordered``: the same with the genes in another order than the file's (what
  ``rd.tl.infer`` reads when the AnnData's genes are shuffled), as the code did it before:
  the dense block's columns reordered after ``toarray`` (now: the stored column indices);
  timed reading only;
* ``scipy_read_ahead``: the same reads in ``stream``'s background thread, one chunk ahead;
* ``torch_csr``: the matrix moved once to the compute device as a torch CSR tensor
  (``CSRSource``), each chunk made dense there with torch ops (``setup_s``: the move);
* ``backed_read_ahead``: a backed h5ad (``anndata.read_h5ad(path, backed='r')``) read from
  disk every pass, checked once, in ``stream``'s background thread;
* ``backed_loaded``: the same file read (and checked) once into a torch CSR on the compute
  device, every pass then as ``torch_csr`` (``setup_s``: the load).

Columns (seconds of one pass, each the min of ``--repeats`` passes):

* ``read_s``: a pass that only reads;
* ``work_s``: a pass with a stand-in for the arithmetic on each chunk that needs the CPU
  (``X @ W``, W 2,000 x 32); ``work_exposed_s``: ``work_s`` minus the work alone (row
  ``none``), the reading the work did not hide;
* ``wait_s``: a pass whose caller waits 40 ms on each chunk, as a host thread waits for a
  GPU's arithmetic (the CPU is free meanwhile); ``wait_exposed_s`` as above. 40 ms is
  enough to hide a chunk's read; an ALS epoch's arithmetic on a chunk of 16,777 cells x
  2,000 genes should take a few ms on a large GPU (an estimate: ~50 GFLOP and a few GB of
  memory traffic for ~200 latents), so there most of a host read stays exposed even when
  read ahead, which is why sparse data that fit move to the GPU once;
* ``setup_s``: once per fit (moving or loading the data).

The chunks are those of ``fit_decoder`` (``default_chunk_size``: 16,777 cells, 6 chunks).

    python benchmarks/read_speed.py                   # the table, and results/read_speed.csv
    python benchmarks/read_speed.py --cells 20000     # quicker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import sparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the regdecoder of this checkout, not another installed one

import regdecoder._anndata as rda  # noqa: E402
from regdecoder.train import resolve_device  # noqa: E402
from regdecoder.train._source import chunks, stream  # noqa: E402

OUT = HERE / "results" / "read_speed.csv"
WAIT_S = 0.04  # per chunk: long enough to hide a chunk's read here (see the module's docstring)


def generate(n_cells: int, n_genes: int, density: float, seed: int = 0) -> sparse.csr_matrix:
    """A cells x genes CSR with ``density`` of its entries stored: log1p of 1 + Poisson(2) values."""
    rng = np.random.default_rng(seed)
    blocks = []
    for s in range(0, n_cells, 10_000):
        n = min(n_cells, s + 10_000) - s
        mask = rng.random((n, n_genes), dtype=np.float32) < density
        block = sparse.csr_matrix(mask, dtype=np.float32)
        block.data = np.log1p(1 + rng.poisson(2.0, block.nnz)).astype(np.float32)
        blocks.append(block)
    return sparse.vstack(blocks, format="csr")


def _source(adata, genes=None):
    return rda.read(adata, genes=genes, likelihood="mse")


def _work(x: torch.Tensor, w: torch.Tensor) -> float:
    """The stand-in for the arithmetic on a chunk: its product with 32 directions."""
    return float((x @ w).sum())


def _plain(source, device):
    """The read loop before this change: chunk after chunk, nothing ahead."""
    for s, e in chunks(source):
        yield s, e, source.read(s, e).to(device)


def _wait(x: torch.Tensor, w: torch.Tensor) -> None:
    """The stand-in for arithmetic that leaves the CPU free, as on a GPU: the caller waits."""
    _sync(x)
    time.sleep(WAIT_S)


MODES = {"read": None, "work": _work, "wait": _wait}
READ_ONLY = {"scipy_old_reordered"}  # its read is the point; passes with work would only add a minute


def _time_all(paths: dict, w, repeats: int) -> dict[str, dict[str, float]]:
    """Per path, seconds of one pass that only reads, that works on each chunk, that waits on
    each chunk; each the min over ``repeats`` rounds that take every path in turn (so that a
    busy moment of the machine does not fall on one path only)."""
    best = {k: dict.fromkeys(MODES, float("inf")) for k in paths}
    for rep in range(repeats):
        for path, passes in paths.items():
            for mode, fn in MODES.items():
                if mode != "read" and path in READ_ONLY:
                    continue
                t0 = time.perf_counter()
                last = None
                for _s, _e, x in passes():
                    if fn is not None:
                        fn(x, w)
                    last = x
                _sync(last)
                best[path][mode] = min(best[path][mode], time.perf_counter() - t0)
        print(f"  round {rep + 1}/{repeats} done", flush=True)
    return best


def _placed(src, device: torch.device, *, moves: bool):
    """``(a pass over src's chunks, seconds to place them)`` with the data moved to ``device`` once or not."""
    with _Moves(moves):
        t0 = time.perf_counter()
        src.resident(device)
        setup = time.perf_counter() - t0
    return (lambda: stream(src, device)), setup if moves else 0.0


def _sync(x: torch.Tensor | None) -> None:
    if x is not None and x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


class _Moves:
    """Force where the data live (``moves_to_device``'s answer) for one row of the table."""

    def __init__(self, answer: bool) -> None:
        self.answer, self.saved = answer, rda.moves_to_device

    def __enter__(self):
        rda.moves_to_device = lambda device, nbytes: self.answer
        return self

    def __exit__(self, *exc) -> None:
        rda.moves_to_device = self.saved


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the table (``argv``: the command line's arguments) and write it to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--density", type=float, default=0.17)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)

    t0 = time.perf_counter()
    x = generate(args.cells, args.genes, args.density)
    adata = ad.AnnData(x)
    adata.obs_names = [f"c{i}" for i in range(args.cells)]
    adata.var_names = [f"g{j}" for j in range(args.genes)]
    shuffled = list(np.random.default_rng(1).permutation(adata.var_names))
    print(
        f"{args.cells} x {args.genes} CSR, {x.nnz / np.prod(x.shape):.1%} nonzero, generated in {time.perf_counter() - t0:.1f}s"
    )
    w = torch.randn(args.genes, 32, generator=torch.Generator().manual_seed(0)).to(device) / args.genes**0.5
    paths = {}  # path -> (a pass over the chunks, seconds of setup)
    src = _source(adata)
    made = [(s, e, src.read(s, e).to(device)) for s, e in chunks(src)]
    paths["none"] = (lambda: iter(made), 0.0)
    paths["scipy_old"] = (lambda: _plain(src, device), 0.0)
    src_r = _source(adata, genes=shuffled)

    def old_reordered():  # the old ExpressionSource._dense: toarray, then the dense block's columns
        for s, e in chunks(src_r):
            block = src_r.mat[s:e].toarray().astype(np.float32)[:, src_r.cols]
            yield s, e, torch.from_numpy(np.ascontiguousarray(block)).to(device)

    paths["scipy_old_reordered"] = (old_reordered, 0.0)
    paths["scipy_read_ahead"] = _placed(_source(adata), device, moves=False)
    paths["torch_csr"] = _placed(_source(adata), device, moves=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.h5ad"
        adata.write_h5ad(path)
        backed = ad.read_h5ad(path, backed="r")
        paths["backed_read_ahead"] = _placed(_source(backed), device, moves=False)
        paths["backed_loaded"] = _placed(_source(backed), device, moves=True)
        best = _time_all({k: passes for k, (passes, _) in paths.items()}, w, args.repeats)
        backed.file.close()
    rows = [
        {"path": k, "device": str(device), **{f"{m}_s": v for m, v in best[k].items()}, "setup_s": setup}
        for k, (_, setup) in paths.items()
    ]

    table = pd.DataFrame(rows)
    for mode in ("work", "wait"):  # the reading that the work (the wait) did not hide
        at = table.columns.get_loc(f"{mode}_s") + 1
        table.insert(at, f"{mode}_exposed_s", table[f"{mode}_s"] - table[f"{mode}_s"].iloc[0])
    table = table.replace(float("inf"), float("nan"))  # passes not run
    table.insert(1, "cells", args.cells)
    table.insert(2, "genes", args.genes)
    table.insert(3, "nnz", x.nnz)
    table["threads"] = torch.get_num_threads()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out}")
    return table


if __name__ == "__main__":
    main()
