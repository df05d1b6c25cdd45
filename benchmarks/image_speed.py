"""Training speed of the paper's image models on this machine, against its matmul peak.

For each image model (``mnist``, ``cifar_1x1``, ``cifar_4x4``), kind (``decoder``: the
decoder and its latent table; ``autoencoder``: encoder + decoder) and variant, one epoch of
the paper's recipe (batch 32) is timed through ``rd.train.fit_gradient`` itself, after one
warm-up epoch, and reported as images per second and GFLOP/s. The FLOPs of one training
step (forward and backward of a batch of 32) are counted by ``torch.utils.flop_counter``;
the float32 matmul peak (1024 x 1024 products) is measured in the same process just before
and just after each timing, so the fraction of the peak compares like with like on a
shared machine.

Variants: ``plain`` (the default modules, NCHW), ``channels_last`` (modules and images in
channels-last memory format) and ``compile`` (``torch.compile`` of the modules; its
compilation is not timed).

    python benchmarks/image_speed.py                              # 1 and 2 threads, every variant
    python benchmarks/image_speed.py --threads 1 --variants plain --steps 5   # a quick look

Writes ``--out`` (CSV, one row per threads x model x kind x round x variant; rounds alternate
the variants, so a change of the machine's load hits them alike) and prints each row.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_only import import_regdecoder  # noqa: E402

rd = import_regdecoder()  # without anndata (a GPU machine): its nn, train and datasets

MODELS = {
    "mnist": ("bce", rd.train.MNIST_PAPER),
    "cifar_1x1": ("mse", rd.train.CIFAR_PAPER),
    "cifar_4x4": ("mse", rd.train.CIFAR_PAPER),
}
KINDS = ("decoder", "autoencoder")
VARIANTS = ("plain", "channels_last", "compile")
RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 32


def matmul_peak(size: int = 1024, reps: int = 10) -> float:
    """float32 GFLOP/s of ``size x size`` products (best of three rounds of ``reps``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 * reps / best / 1e9


def step_flops(dec, enc, kind: str, x: torch.Tensor, loss: str) -> int:
    """FLOPs of one training step on a batch (forward, loss and backward)."""
    fn = rd.train.get_loss(loss)
    with FlopCounterMode(display=False) as counter:
        if kind == "decoder":
            out = dec(torch.randn(len(x), *dec.latent_shape, requires_grad=True))
        else:
            out = dec(enc(x))
        fn(out, x, None).backward()
    dec.zero_grad(set_to_none=True)
    enc.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_one(name: str, kind: str, variant: str, steps: int, seed: int) -> dict:
    loss, recipe = MODELS[name]
    torch.manual_seed(seed)
    dec, enc = rd.nn.image_model(name)
    n = steps * BATCH
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *dec.image_shape, generator=gen)
    flops = step_flops(dec, enc, kind, x[:BATCH], loss) / BATCH
    if variant == "channels_last":
        dec, enc = dec.to(memory_format=torch.channels_last), enc.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if variant == "compile":
        dec, enc = torch.compile(dec), torch.compile(enc)
    rec = replace(recipe, max_epochs=1, batch_size=BATCH)

    def epoch() -> None:
        z = rd.train.init_latents(n, dec.latent_shape, seed=seed) if kind == "decoder" else None
        rd.train.fit_gradient(dec, x, z, rec, kind=kind, encoder=enc, loss=loss, seed=seed, progress=False)

    epoch()  # warm-up (and, for 'compile', the compilation)
    peak_before = matmul_peak()
    t0 = time.perf_counter()
    epoch()
    seconds = time.perf_counter() - t0
    peak = (peak_before + matmul_peak()) / 2
    gflops = flops * n / seconds / 1e9
    return {
        "model": name,
        "kind": kind,
        "variant": variant,
        "images_per_s": n / seconds,
        "mflop_per_image": flops / 1e6,
        "gflop_per_s": gflops,
        "peak_gflop_per_s": peak,
        "fraction_of_peak": gflops / peak,
        "images_timed": n,
    }


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=20, help="timed batches of 32 per configuration")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; each round times every variant once, in turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "image_speed.csv")
    args = parser.parse_args(argv)
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.models:
            for kind in args.kinds:
                for rep in range(args.repeats):
                    for variant in args.variants:
                        load = os.getloadavg()[0]
                        row = {"threads": threads, "round": rep, **time_one(name, kind, variant, args.steps, args.seed)}
                        row.update(load_average_1min=load, torch=torch.__version__)
                        rows.append(row)
                        pd.DataFrame(rows).to_csv(args.out, index=False)  # every row survives an interrupted run
                        print(
                            f"threads {threads} {name:9s} {kind:11s} {variant:13s} {row['images_per_s']:7.1f} images/s "
                            f"{row['gflop_per_s']:6.2f} GFLOP/s = {row['fraction_of_peak']:.2f} of "
                            f"{row['peak_gflop_per_s']:.0f} (load {load:.1f})",
                            flush=True,
                        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
