"""End-to-end demo on simulated data: ``python -m regdecoder.demo --out results_demo``.

Simulates the paper's GRN setting (1,000 genes, 100 TFs, density 0.1), fits the
masked decoder on 1,000 training cells without an encoder, infers 100 held-out
cells with the decoder frozen, prints the per-TF recovery (signed PCC) and writes
the AnnData objects, the model, a CSV and PNG plots to the output folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import regdecoder as rd  # noqa: E402
from regdecoder._settings import add_threads_option  # noqa: E402


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the demo's options to ``parser`` (shared with ``regdecoder demo``)."""
    parser.add_argument(
        "--out", default="results_demo", metavar="DIR", help="output folder, created if missing (default: %(default)s)"
    )
    parser.add_argument("--n-train", type=int, default=1000, metavar="N", help="training cells (default: %(default)s)")
    parser.add_argument(
        "--n-test",
        type=int,
        default=100,
        metavar="N",
        help="held-out cells, inferred with the decoder frozen (default: %(default)s)",
    )
    parser.add_argument("--n-genes", type=int, default=1000, metavar="N", help="simulated genes (default: %(default)s)")
    parser.add_argument("--n-tfs", type=int, default=100, metavar="N", help="simulated TFs (default: %(default)s)")
    parser.add_argument(
        "--density",
        type=float,
        default=0.1,
        metavar="P",
        help="probability of a TF -> gene edge in the simulated network (default: %(default)s)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.2,
        metavar="S",
        help="standard deviation of the Gaussian noise added before the ReLU (default: %(default)s)",
    )
    parser.add_argument(
        "--preset",
        choices=["fast", "paper"],
        default="fast",
        help="'fast': censored ALS (seconds); 'paper': the paper's gradient recipe, 500 epochs (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the simulation, the split and the fit (default: %(default)s)",
    )
    parser.add_argument(
        "--device", default="auto", metavar="D", help="torch device: auto, cpu, cuda, cuda:N (default: %(default)s)"
    )
    add_threads_option(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Run the demo with command-line arguments ``argv``; return the summary printed."""
    parser = argparse.ArgumentParser(
        prog="python -m regdecoder.demo",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.n_threads is not None and args.n_threads < 1:
        parser.error(f"argument --n-threads: must be at least 1, got {args.n_threads}")
    return run(args)


def run(args: argparse.Namespace) -> dict:
    """Run the demo with parsed arguments (see :func:`add_arguments`); return the summary printed."""
    if rd.settings.verbosity < 2:
        rd.settings.verbosity = "info"  # the demo tells what it does
    if getattr(args, "n_threads", None) is not None:
        rd.settings.n_threads = args.n_threads
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    adata = rd.sim.grn(
        n_obs=args.n_train + args.n_test,
        n_genes=args.n_genes,
        n_tfs=args.n_tfs,
        density=args.density,
        noise=args.noise,
        seed=args.seed,
    )
    train, test = rd.pp.split(adata, n_test=args.n_test, seed=args.seed)
    t0 = time.perf_counter()
    model = rd.tl.fit_decoder(
        train,
        net=train.uns["sim"]["net"],
        seed=args.seed,
        device=args.device,
        recipe={"preset": args.preset},
    )
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    rd.tl.infer(test, model)
    t_infer = time.perf_counter() - t0

    rec_train = rd.metrics.recovery(train)
    rec_test = rd.metrics.recovery(test)
    mse = rd.metrics.reconstruction_error(test, model)
    load = train.uns["regdecoder"]["load"]["alpha_d"]
    summary = {
        "n_train": train.n_obs,
        "n_test": test.n_obs,
        "alpha_d": float(load),
        "fit_seconds": t_fit,
        "infer_seconds": t_infer,
        "epochs": int(len(train.uns["regdecoder"]["history"]["loss"])),
        "train_pcc_mean": float(rec_train.pcc.mean()),
        "test_pcc_mean": float(rec_test.pcc.mean()),
        "test_pcc_min": float(rec_test.pcc.min()),
        "test_pcc_median": float(rec_test.pcc.median()),
        "test_reconstruction_mse": mse,
    }
    print(
        f"\nregdecoder demo: {train.n_obs} training cells, {test.n_obs} held-out cells, "
        f"{train.n_vars} genes, {len(model.latent_names)} TFs, decoder load alpha_d = {load:.2f}"
    )
    print(f"fit: {t_fit:.2f} s ({summary['epochs']} epochs, preset={args.preset!r}); infer: {t_infer:.3f} s")
    print("signed PCC between true and inferred TF activity, per TF:")
    print(f"  training cells: mean {rec_train.pcc.mean():.4f}")
    print(
        f"  held-out cells: mean {rec_test.pcc.mean():.4f}, median {rec_test.pcc.median():.4f}, "
        f"min {rec_test.pcc.min():.4f} ({rec_test.pcc.idxmin()})"
    )
    print(f"  held-out reconstruction MSE: {mse:.4f}")

    rec_test.to_csv(out / "recovery_test.csv")
    train.write_h5ad(out / "train.h5ad")
    test.write_h5ad(out / "test.h5ad")
    model.save(out / "model.pt")
    for name, fig in figures(train, test).items():
        fig.savefig(out / f"{name}.png", dpi=120)
        plt.close(fig)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}/")
    return summary


def figures(train, test) -> dict:
    """The demo's figures: ``recovery`` (true vs inferred activity of the held-out cells, and
    the per-TF PCC; the red line is their mean) and ``loss`` (the fit's loss per epoch)."""
    cells = f"the {test.n_obs} held-out cells (decoder frozen)"
    return {"recovery": rd.pl.recovery(test, cells=cells, return_fig=True), "loss": rd.pl.loss(train, return_fig=True)}


if __name__ == "__main__":
    main()
