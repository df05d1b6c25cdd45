"""CIFAR10: test-loss curves of the decoder alone and the autoencoder (paper Fig. 3).

For each model (``1x1``: latent 256x1x1; ``4x4``: latent 64x4x4), each training size
(images per class, class-balanced) and each kind:

* ``decoder``: the decoder trained alone with a free latent per image
  (``rd.train.fit_gradient(kind='decoder')``); at each evaluation epoch the test images'
  latents are inferred with the decoder frozen (Adam, warm-started from the previous
  evaluation) and the test loss is the squared error per value;
* ``autoencoder``: the mirrored encoder + the same decoder trained jointly; test loss of
  ``decoder(encoder(x))``.

The recipe is the paper's (``rd.train.CIFAR_PAPER``: summed squared error, Adam 1e-4 wd
1e-5 on the weights, SGD 0.1 momentum 0.9 on the latents, batch 32). The test set is the
first ``--n-test`` images of ``test_batch``; the reconstruction grid shows the first 8
test images at the ``--grid-epochs``.

    python benchmarks/cifar10.py --data ~/data/cifar-10-batches-py --device cuda     # paper sizes
    python benchmarks/cifar10.py --data DIR --quick                                  # CPU
    python benchmarks/cifar10.py --plot-only r/cifar_*.csv --out benchmarks/results/cifar10.csv

Writes ``--out`` (CSV, one row per run and evaluation epoch), the same name with ``.json``
(settings) and ``.png`` (test-loss curves), and ``<out stem>_recon_<model>_<kind>_<per class>.png``.
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

MODELS = {"1x1": "cifar_1x1", "4x4": "cifar_4x4"}
KINDS = ("decoder", "autoencoder")
PAPER_PER_CLASS = [50, 100, 500, 5000]
RESULTS = Path(__file__).resolve().parent / "results"


def eval_schedule(epochs: int, n_evals: int) -> list[int]:
    """About ``n_evals`` evaluation epochs from 1 to ``epochs`` (both included)."""
    return sorted({1, epochs, *np.linspace(1, epochs, n_evals).round().astype(int).tolist()})


def run_one(
    x_tr: torch.Tensor,
    x_te: torch.Tensor,
    *,
    model: str,
    kind: str,
    recipe: rd.train.Recipe,
    eval_epochs: list[int],
    grid_epochs: list[int],
    infer_iters: int,
    amp: bool,
    seed: int,
) -> tuple[list[dict], dict[int, np.ndarray]]:
    torch.manual_seed(seed)  # weight initialisation
    dec, enc = rd.nn.image_model(MODELS[model])
    dev = x_tr.device
    dec, enc = dec.to(dev), enc.to(dev)
    n = x_tr.shape[0]
    loads = rd.nn.image_loads(dec, enc, n)
    rows, grids = [], {}
    state = {"z_te": None}

    def evaluate(epoch: int, train_loss: float, seconds: float, z) -> None:
        t0 = time.perf_counter()
        if kind == "decoder":
            if state["z_te"] is None:
                state["z_te"] = z.mean(0, keepdim=True).expand(x_te.shape[0], *dec.latent_shape).contiguous()
            state["z_te"] = rd.train.infer_images(dec, x_te, state["z_te"], loss="mse", max_iter=infer_iters)
            xhat = rd.train.reconstruct(dec, z=state["z_te"])
        else:
            xhat = rd.train.reconstruct(dec, x=x_te, encoder=enc)
        if epoch in grid_epochs:
            grids[epoch] = xhat[:8].cpu().numpy()
        rows.append(
            {
                "model": model,
                "kind": kind,
                "per_class": n // 10,
                "n_train": n,
                "epoch": epoch,
                "train_loss": train_loss,
                "test_loss": rd.train.mean_loss(xhat, x_te, "mse"),
                "train_seconds": seconds,
                "eval_seconds": time.perf_counter() - t0,
                "alpha_d": loads["alpha_d"],
                "alpha_e": loads["alpha_e"],
            }
        )

    def callback(s: dict) -> None:
        if s["epoch"] in eval_epochs:
            evaluate(s["epoch"], s["loss"], s["seconds"], s["z"])

    if kind == "decoder":
        z = rd.train.init_latents(n, dec.latent_shape, std=recipe.z_init_std, seed=seed, device=dev)
        rd.train.fit_gradient(
            dec, x_tr, z, recipe, kind="decoder", loss="mse", amp=amp, seed=seed, progress=False, callback=callback
        )
    else:
        rd.train.fit_gradient(
            dec,
            x_tr,
            None,
            recipe,
            kind="autoencoder",
            encoder=enc,
            loss="mse",
            amp=amp,
            seed=seed,
            progress=False,
            callback=callback,
        )
    return rows, grids


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
                d = df[(df.model == model) & (df.per_class == pc) & (df.kind == kind)].sort_values("epoch")
                if not d.empty:
                    ax.plot(d.epoch, d.test_loss, style, color=f"C{i}", marker=".", label=f"{kind} {pc}/class")
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
                ax.imshow(np.clip(imgs[c].transpose(1, 2, 0), 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="folder with the CIFAR10 python batches (data_batch_1..5, test_batch)"
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--sizes", type=int, nargs="+", help=f"images per class; default {PAPER_PER_CLASS}")
    parser.add_argument("--epochs", type=int, help="default 200, 10 with --quick")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-evals", type=int, help="evaluation epochs along the curve; default 10, 5 with --quick")
    parser.add_argument("--grid-epochs", type=int, nargs="+", help="epochs shown in the reconstruction grid")
    parser.add_argument("--n-test", type=int, help="first test images used; default 1000, 100 with --quick")
    parser.add_argument("--infer-iters", type=int, help="test-time Adam steps per evaluation; default 100, 20 --quick")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    parser.add_argument(
        "--quick", action="store_true", help="CPU run: 50 and 100 per class, 10 epochs, 100 test images"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "cifar10.csv")
    parser.add_argument("--plot-only", nargs="+", type=Path, metavar="CSV", help="merge these CSVs into --out + plot")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    if args.plot_only:
        df = pd.concat([pd.read_csv(p) for p in args.plot_only], ignore_index=True)
        df = df.sort_values(["model", "kind", "per_class", "epoch"]).reset_index(drop=True)
        df.to_csv(args.out, index=False)
        plot_curves(df, args.out.with_suffix(".png"))
        print(df.to_string(index=False))
        return df
    if args.data is None:
        parser.error("--data FOLDER is required (the CIFAR10 python batches), unless --plot-only")

    sizes = args.sizes or ([50, 100] if args.quick else PAPER_PER_CLASS)
    epochs = args.epochs or (10 if args.quick else 200)
    n_test = args.n_test or (100 if args.quick else 1000)
    infer_iters = args.infer_iters or (20 if args.quick else 100)
    eval_epochs = eval_schedule(epochs, args.n_evals or (5 if args.quick else 10))
    grid_epochs = sorted(set(args.grid_epochs or [1, eval_epochs[len(eval_epochs) // 2], epochs]))
    if not set(grid_epochs) <= set(range(1, epochs + 1)):
        parser.error(f"--grid-epochs must lie in 1..{epochs}, got {grid_epochs}")
    eval_epochs = sorted(set(eval_epochs) | set(grid_epochs))
    recipe = replace(rd.train.CIFAR_PAPER, max_epochs=epochs, batch_size=args.batch_size)
    device = rd.train.resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    x, y = rd.datasets.cifar10(args.data, split="train")
    xt, _ = rd.datasets.cifar10(args.data, split="test")
    if n_test > len(xt):
        parser.error(f"--n-test {n_test} but the test batch has {len(xt)} images")
    x_te = torch.as_tensor(xt[:n_test], device=device)
    rows = []
    for pc in sizes:
        idx = rd.datasets.balanced_subset(y, pc, seed=args.seed)
        x_tr = torch.as_tensor(x[idx], device=device)
        for model in args.models:
            for kind in args.kinds:
                t0 = time.perf_counter()
                r, grids = run_one(
                    x_tr,
                    x_te,
                    model=model,
                    kind=kind,
                    recipe=recipe,
                    eval_epochs=eval_epochs,
                    grid_epochs=grid_epochs,
                    infer_iters=infer_iters,
                    amp=args.amp,
                    seed=args.seed,
                )
                rows.extend(r)
                grid_path = args.out.with_name(f"{args.out.stem}_recon_{model}_{kind}_{pc}.png")
                plot_grid(xt[:8], grids, f"CIFAR10 {model} {kind}, {pc} images per class", grid_path)
                last = r[-1]
                print(
                    f"{model} {kind:11s} {pc:5d}/class: test loss {last['test_loss']:.5f} at epoch {last['epoch']} "
                    f"(alpha_d {last['alpha_d']:.2f}, alpha_e {last['alpha_e']:.3f}) {time.perf_counter() - t0:.0f}s",
                    flush=True,
                )
    df = pd.DataFrame(rows)
    df["device"] = str(device)
    df.to_csv(args.out, index=False)
    meta = {
        "recipe": recipe.to_dict(),
        "eval_epochs": eval_epochs,
        "grid_epochs": grid_epochs,
        "infer": {"optimizer": "adam", "lr": 0.05, "iters_per_eval": infer_iters, "start": "previous evaluation"},
        "n_test": n_test,
        "sizes_per_class": sizes,
        "seed": args.seed,
        "amp": args.amp,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    plot_curves(df, args.out.with_suffix(".png"))
    final = df.sort_values("epoch").groupby(["model", "kind", "per_class"]).tail(1)
    print(final.drop(columns=["device"]).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
