"""CIFAR10: test-loss curves of the decoder alone and the autoencoder (paper Fig. 3).

For each model (``1x1``: latent 256x1x1, capacity 64; ``4x4``: latent 64x4x4), training
size (images per class, class-balanced, drawn per seed), seed and kind:

* ``decoder``: the decoder trained alone with a free latent per image
  (``rd.train.fit_gradient(kind='decoder')``); at each evaluation epoch the test images'
  latents are inferred with the decoder frozen (Adam, from the latent of the nearest
  training image at the first evaluation, then warm-started from the previous one) and
  the test loss is the squared error per value;
* ``autoencoder``: the mirrored encoder + the same decoder trained jointly; test loss of
  ``decoder(encoder(x))``.

The recipe is the paper's (``rd.train.CIFAR_PAPER``: summed squared error, Adam 1e-4 wd
1e-5 on the weights, SGD 0.1 momentum 0.9 on the latents, batch 32), 100 epochs (Fig.
3a-c; ``--epochs`` shortens a run, and every row records its epoch). The test set is a
class-balanced tenth of the test split (100 images per class, drawn with ``--test-seed``),
the same for every run. ``--full`` is Fig. 3d-f: the whole training set (5,000 per
class), 400 epochs, reconstructions after 50, 200 and 400 epochs.

The reconstruction grids show 8 test images, the first test image of each of the classes
airplane ... horse (the official order of the test batch is lost in a class-sorted copy,
so "the first 8 test images" of the paper are not recoverable from it).

    python benchmarks/cifar10.py                                   # Fig. 3a-c: 4 sizes x 5 seeds, 100 epochs
    python benchmarks/cifar10.py --full --device cuda              # Fig. 3d-f
    python benchmarks/cifar10.py --sizes 50 100 --seeds 0 --epochs 20 --n-test 500   # a CPU run
    python benchmarks/cifar10.py --plot-only r/cifar_*.csv --out benchmarks/results/cifar10.csv

Data: ``--data`` (a CIFAR10 ``.npz``/``.npz.xz`` or the folder of python batches), by
default what ``REGDECODER_CIFAR10`` names. Writes ``--out`` (CSV, one row per run and
evaluation epoch), ``.json`` (settings and per-epoch training losses), ``.png`` (test-loss
curves, mean and sd over seeds) and ``<out stem>_recon_<model>_<kind>_<per class>.png``.
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

MODELS = {"1x1": "cifar_1x1", "4x4": "cifar_4x4"}
KINDS = ("decoder", "autoencoder")
PAPER_PER_CLASS = [50, 100, 500, 5000]
PAPER_SEEDS = [0, 1, 2, 3, 4]
FULL_GRID_EPOCHS = [50, 200, 400]
RESULTS = Path(__file__).resolve().parent / "results"


def eval_schedule(epochs: int, n_evals: int) -> list[int]:
    """About ``n_evals`` evaluation epochs from 1 to ``epochs`` (both included)."""
    return sorted({1, epochs, *np.linspace(1, epochs, n_evals).round().astype(int).tolist()})


def grid_images(labels: np.ndarray) -> np.ndarray:
    """Positions of the first image of each of the classes 0..7 in ``labels``."""
    return np.array([int(np.flatnonzero(labels == c)[0]) for c in range(8)])


def run_one(x_tr, x_te, grid_idx, *, model, kind, recipe, eval_epochs, grid_epochs, args, seed):
    """One training run; a result row per evaluation epoch, the grids and the training-loss history."""
    torch.manual_seed(seed)  # weight initialisation
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    dec, enc = (m.to(x_tr.device, memory_format=fmt) for m in rd.nn.image_model(MODELS[model]))
    if args.compile:
        dec, enc = torch.compile(dec), torch.compile(enc)
    n = x_tr.shape[0]
    loads = rd.nn.image_loads(dec, enc, n)
    rows, grids = [], {}
    state = {"z_te": None}

    def evaluate(epoch: int, train_loss: float, seconds: float, z) -> None:
        t0 = time.perf_counter()
        if kind == "decoder":
            if state["z_te"] is None:
                state["z_te"] = rd.train.nearest_start(x_tr, z, x_te)
            state["z_te"] = rd.train.infer_images(dec, x_te, state["z_te"], loss="mse", max_iter=args.infer_iters)
            xhat = rd.train.reconstruct(dec, z=state["z_te"])
        else:
            xhat = rd.train.reconstruct(dec, x=x_te, encoder=enc)
        if epoch in grid_epochs:
            grids[epoch] = xhat[grid_idx].cpu().numpy()
        rows.append(
            {
                "model": model, "kind": kind, "per_class": n // 10, "n_train": n, "seed": seed, "epoch": epoch,
                "epochs_planned": recipe.max_epochs, "train_loss": train_loss,
                "test_loss": rd.train.mean_loss(xhat, x_te, "mse"), "train_seconds": seconds,
                "eval_seconds": time.perf_counter() - t0, "alpha_d": loads["alpha_d"], "alpha_e": loads["alpha_e"],
            }
        )  # fmt: skip

    def callback(s: dict) -> bool:
        late = (args.max_seconds is not None and s["seconds"] >= args.max_seconds) or (
            args.stop_at is not None and time.time() >= args.stop_at
        )
        if s["epoch"] in eval_epochs or late:
            evaluate(s["epoch"], s["loss"], s["seconds"], s["z"])
        return late

    common = {"loss": "mse", "amp": args.amp, "seed": seed, "progress": False, "callback": callback}
    if kind == "decoder":
        z = rd.train.init_latents(n, dec.latent_shape, std=recipe.z_init_std, seed=seed, device=x_tr.device)
        _, hist = rd.train.fit_gradient(dec, x_tr, z, recipe, kind="decoder", **common)
    else:
        _, hist = rd.train.fit_gradient(dec, x_tr, None, recipe, kind="autoencoder", encoder=enc, **common)
    return rows, grids, hist["loss"]


def plot_curves(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted(set(df.model))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    sizes = sorted(set(df.per_class))
    for ax, model in zip(axes[0], models, strict=True):
        for i, pc in enumerate(sizes):
            for kind, style in (("decoder", "-"), ("autoencoder", "--")):
                d = df[(df.model == model) & (df.per_class == pc) & (df.kind == kind)]
                if d.empty:
                    continue
                g = d.groupby("epoch").test_loss.agg(["mean", "std", "size"]).reset_index()
                label = f"{kind} {pc}/class" + (f" ({int(g['size'].max())} seeds)" if g["size"].max() > 1 else "")
                ax.plot(g.epoch, g["mean"], style, color=f"C{i}", marker=".", label=label)
                if g["size"].max() > 1:
                    ax.fill_between(g.epoch, g["mean"] - g["std"], g["mean"] + g["std"], color=f"C{i}", alpha=0.15)
        ax.set_title(f"CIFAR10 {model} model")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test squared error per value")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_grid(original: np.ndarray, grids: dict[int, np.ndarray], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("original", original), *((f"epoch {e}", g) for e, g in sorted(grids.items()))]
    fig, axes = plt.subplots(len(rows), 8, figsize=(8 * 1.1, len(rows) * 1.2), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(8):
            ax = axes[r, c]
            if c < len(imgs):
                ax.imshow(np.clip(imgs[c].transpose(1, 2, 0), 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="CIFAR10 .npz(.xz) or folder of python batches; default REGDECODER_CIFAR10"
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--sizes", type=int, nargs="+", help=f"images per class; default {PAPER_PER_CLASS}")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"one run per seed (subset, start); default {PAPER_SEEDS}")
    parser.add_argument("--epochs", type=int, help="default 100 (400 with --full)")
    parser.add_argument(
        "--full", action="store_true", help="Fig. 3d-f: all 50,000 images, 400 epochs, grids at 50/200/400"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-evals", type=int, default=10, help="evaluation epochs along the curve")
    parser.add_argument("--grid-epochs", type=int, nargs="+", help="epochs shown in the reconstruction grids")
    parser.add_argument("--n-test", type=int, default=1000, help="class-balanced test images (1,000: a tenth)")
    parser.add_argument("--test-seed", type=int, default=0, help="seed of the class-balanced test set")
    parser.add_argument("--infer-iters", type=int, default=100, help="test-time Adam steps per evaluation")
    parser.add_argument("--max-seconds", type=float, help="stop each run after this much training (evaluated there)")
    parser.add_argument(
        "--stop-at", type=float, help="wall-clock deadline (Unix seconds): runs stop there, later ones are skipped"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 was fastest on a shared 2-core CPU)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="modules and images in channels-last memory format (1.2-2x faster per image for the 1x1 decoder on a CPU)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the modules (the 4x4 decoder: 1.6x per image on a CPU)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "cifar10.csv")
    parser.add_argument("--plot-only", nargs="+", type=Path, metavar="CSV", help="merge these CSVs into --out + plot")
    return parser


def main(argv=None) -> pd.DataFrame:
    parser = _parser()
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        df = pd.concat([pd.read_csv(p) for p in args.plot_only], ignore_index=True)
        df = df.sort_values(["model", "kind", "per_class", "seed", "epoch"]).reset_index(drop=True)
        df.to_csv(args.out, index=False)
        plot_curves(df, args.out.with_suffix(".png"))
        print(df.to_string(index=False))
        return df

    sizes = args.sizes or ([5000] if args.full else PAPER_PER_CLASS)
    seeds = args.seeds or ([0] if args.full else PAPER_SEEDS)
    epochs = args.epochs or (400 if args.full else 100)
    eval_epochs = eval_schedule(epochs, args.n_evals)
    grid_epochs = sorted(
        set(args.grid_epochs or (FULL_GRID_EPOCHS if args.full else [eval_epochs[len(eval_epochs) // 2], epochs]))
    )
    if not set(grid_epochs) <= set(range(1, epochs + 1)):
        parser.error(f"--grid-epochs must lie in 1..{epochs}, got {grid_epochs}")
    if args.n_test % 10:
        parser.error(f"--n-test must be a multiple of 10 (class-balanced), got {args.n_test}")
    eval_epochs = sorted(set(eval_epochs) | set(grid_epochs))
    recipe = replace(rd.train.CIFAR_PAPER, max_epochs=epochs, batch_size=args.batch_size)
    torch.set_num_threads(args.threads)
    device = rd.train.resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    x, y = rd.datasets.cifar10(args.data, split="train")
    xt, yt = rd.datasets.cifar10(args.data, split="test")
    test = rd.datasets.balanced_subset(yt, args.n_test // 10, seed=args.test_seed)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x_te = torch.as_tensor(xt[test], device=device).contiguous(memory_format=fmt)
    grid_idx = grid_images(yt[test])
    rows, histories = [], {}
    for pc in sizes:
        for seed in seeds:
            idx = rd.datasets.balanced_subset(y, pc, seed=seed)
            x_tr = torch.as_tensor(x[idx], device=device).contiguous(memory_format=fmt)
            for model in args.models:
                for kind in args.kinds:
                    if args.stop_at is not None and time.time() >= args.stop_at:
                        print(f"{model} {kind} {pc}/class seed {seed}: skipped, past --stop-at", flush=True)
                        continue
                    t0 = time.perf_counter()
                    r, grids, hist = run_one(
                        x_tr, x_te, grid_idx, model=model, kind=kind, recipe=recipe, eval_epochs=eval_epochs,
                        grid_epochs=grid_epochs, args=args, seed=seed,
                    )  # fmt: skip
                    rows.extend(r)
                    histories[f"{model}_{kind}_{pc}_{seed}"] = hist
                    pd.DataFrame(rows).to_csv(args.out, index=False)  # partial results survive an interrupted run
                    if seed == seeds[0]:
                        grid_path = args.out.with_name(f"{args.out.stem}_recon_{model}_{kind}_{pc}.png")
                        title = f"CIFAR10 {model} {kind}, {pc} images per class (seed {seed}), test images"
                        plot_grid(xt[test][grid_idx], grids, title, grid_path)
                    last = r[-1]
                    print(
                        f"{model} {kind:11s} {pc:5d}/class seed {seed}: test loss {last['test_loss']:.5f} at epoch "
                        f"{last['epoch']} (alpha_d {last['alpha_d']:.2f}, alpha_e {last['alpha_e']:.3f}) "
                        f"{time.perf_counter() - t0:.0f}s",
                        flush=True,
                    )
    if not rows:
        print("no run started before --stop-at; nothing written", flush=True)
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    df["device"] = str(device)
    df["threads"] = args.threads
    df.to_csv(args.out, index=False)
    meta = {
        "recipe": recipe.to_dict(), "eval_epochs": eval_epochs, "grid_epochs": grid_epochs,
        "infer": {"optimizer": "adam", "lr": 0.05, "iters_per_eval": args.infer_iters,
                  "start": "nearest training image, then the previous evaluation"},
        "n_test": args.n_test, "test_seed": args.test_seed, "sizes_per_class": sizes, "seeds": seeds,
        "max_seconds": args.max_seconds, "stop_at": args.stop_at, "amp": args.amp,
        "channels_last": args.channels_last, "compile": args.compile, "threads": args.threads, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__, "train_loss_history": histories,
    }  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    plot_curves(df, args.out.with_suffix(".png"))
    final = df.sort_values("epoch").groupby(["model", "kind", "per_class", "seed"]).tail(1)
    print(final.drop(columns=["device"]).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
