"""Load sweep (the paper's Fig. 4): decoder vs encoder on a frozen decoder vs autoencoder.

The paper's simulated GRN (n=1000 genes, m=100 TFs, density 0.1, noise 0 unless
``--noise``). For each training size N and replicate (new data and seed each), 100
new test cells are simulated with the same network, and five models are fitted:

``decoder``
    rd.tl.fit_decoder at its defaults (a per-gene offset, latents centred; ``--no-bias``: the
    paper's eq. 6 without offsets), then test-time inference (rd.tl.infer) on the test cells.
``encoder_reconstruct`` / ``encoder_latent``
    rd.tl.fit_encoder on the frozen decoder, objective 'reconstruct' or 'latent', at its
    default ``output='auto'`` (linear on centred input with offsets, the paper's LeakyReLU
    without).
``encoder_latent_noisy``
    the paper's proposed variant: noisy inputs (sd ``--enc-noise``), clean latents.
``autoencoder``
    rd.tl.fit_autoencoder: same encoder and masked decoder trained jointly.

Recorded per model: the test reconstruction MSE and the mean signed PCC of the latents
against the true TF levels, on the test cells and on three out-of-distribution test
sets built from the same true TF levels and network: ``test_noisy`` (Gaussian noise of sd
``--ood-noise`` before the ReLU), ``test_scaled`` (all TF levels x ``--ood-scale``) and
``test_shifted`` (each TF level x an independent Uniform(1, ``--ood-scale``) factor).

Recipes (``--recipe``):

``fast`` (default)
    decoder: the toolkit's default (censored ALS). Encoders and autoencoder: Adam lr
    ``--lr`` (1e-3), batch 128, and a fixed budget of ``--steps`` optimiser steps
    (epochs = steps * 128 / N, at least 1 and at most ``--max-epochs``) instead of the
    paper's 500/1000 epochs at batch 32 and lr 1e-4, which take hours on a CPU.
``paper``
    decoder preset='paper' (batch 32, 500 epochs, Adam 1e-3 / SGD 1e-2 on z); encoders
    Adam lr 1e-4, batch 32, 500 epochs; autoencoder 1000 epochs.

    python benchmarks/load_sweep.py --quick                 # CPU: about 25 min of CPU time
    python benchmarks/load_sweep.py --device cuda           # full sizes, fast recipe
    python benchmarks/load_sweep.py --device cuda --recipe paper --sizes 100 500 2000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import regdecoder as rd  # noqa: E402

MODELS = ("decoder", "encoder_reconstruct", "encoder_latent", "encoder_latent_noisy", "autoencoder")
TEST_SETS = ("test", "test_noisy", "test_scaled", "test_shifted")


def _ood_sets(test, args, rng) -> dict:
    """Test sets with the same network and true TF levels, moved off the training distribution."""
    w = test.varm["true_weights"].to_numpy()
    z = test.obsm["tf_activity"]
    out = {"test": test}

    def make(zz: np.ndarray, noise: float):
        pre = zz @ w.T
        if noise > 0:
            pre = pre + rng.normal(0.0, noise, size=pre.shape)
        ad = test.copy()
        ad.X = np.maximum(pre, 0.0).astype(np.float32)
        ad.obsm["tf_activity"] = pd.DataFrame(zz, index=z.index, columns=z.columns)
        return ad

    z0 = z.to_numpy()
    out["test_noisy"] = make(z0, args.ood_noise)
    out["test_scaled"] = make(z0 * args.ood_scale, 0.0)
    out["test_shifted"] = make(z0 * rng.uniform(1.0, args.ood_scale, size=z0.shape), 0.0)
    return out


def _encoder_epochs(n_train: int, args) -> dict:
    if args.recipe == "paper":
        return {"preset": "paper"}
    epochs = int(np.clip(np.ceil(args.steps * args.batch_size / n_train), 1, args.max_epochs))
    return {"max_epochs": epochs, "batch_size": args.batch_size, "lr": args.lr}


def _score(sets: dict, model_name: str, decoder, encoder=None) -> list[dict]:
    rows = []
    key = "z_eval"
    for name, ad in sets.items():
        ad = ad.copy()
        if encoder is None:
            rd.tl.infer(ad, decoder, key_added=key)
        else:
            rd.tl.encode(ad, encoder, key_added=key)
        rec = rd.metrics.recovery(ad, key)
        rows.append(
            {
                "model": model_name,
                "test_set": name,
                "test_mse": rd.metrics.reconstruction_error(ad, decoder, key),
                "pcc": rec.pcc.mean(),
                "pcc_sd_over_tfs": rec.pcc.std(),
                "pcc_min": rec.pcc.min(),
            }
        )
    return rows


def run_one(n_train: int, rep: int, args) -> list[dict]:
    seed = args.seed + 1000 * rep + n_train
    adata = rd.sim.grn(
        n_obs=n_train + args.n_test,
        n_genes=args.n_genes,
        n_tfs=args.n_tfs,
        density=args.density,
        noise=args.noise,
        seed=seed,
    )
    train, test = rd.pp.split(adata, n_test=args.n_test, seed=seed)
    sets = _ood_sets(test, args, np.random.default_rng(seed))
    net = train.uns["sim"]["net"]
    common = {"seed": seed, "device": args.device}
    enc_kw = _encoder_epochs(n_train, args)
    rows = []

    def record(name, t0, fitted_rows, epochs, load):
        for r in fitted_rows:
            r.update(
                n_train=n_train,
                replicate=rep,
                seed=seed,
                fit_seconds=t0,
                epochs=epochs,
                alpha_d=load["alpha_d"],
                alpha_d_all_weights=load["alpha_d_all_weights"],
                alpha_e=load.get("alpha_e", np.nan),
            )
        rows.extend(fitted_rows)
        test_row = fitted_rows[0]
        print(
            f"N={n_train:>6} rep={rep} {name:<21} PCC {test_row['pcc']:.4f} MSE {test_row['test_mse']:.4g} "
            f"({epochs} epochs, {t0:.1f} s)",
            flush=True,
        )

    t0 = time.perf_counter()
    dec_kw = {"recipe": "paper"} if args.recipe == "paper" else {}
    model = rd.tl.fit_decoder(train, net=net, bias=not args.no_bias, **dec_kw, **common)
    fit_s = time.perf_counter() - t0
    load = rd.tl.load(train)
    if "decoder" in args.models:
        record("decoder", fit_s, _score(sets, "decoder", model), len(train.uns["regdecoder"]["history"]["loss"]), load)
    variants = {
        "encoder_reconstruct": {"objective": "reconstruct"},
        "encoder_latent": {"objective": "latent"},
        "encoder_latent_noisy": {"objective": "latent", "noise": args.enc_noise},
    }
    for name, kw in variants.items():
        if name not in args.models:
            continue
        t0 = time.perf_counter()
        enc = rd.tl.fit_encoder(train, model, **kw, **enc_kw, key_added=name, **common)
        fit_s = time.perf_counter() - t0
        record(name, fit_s, _score(sets, name, model, enc), len(enc.history["loss"]), rd.tl.load(train, key=name))
    if "autoencoder" in args.models:
        ae_kw = dict(enc_kw)
        if args.recipe == "fast":
            ae_kw["max_epochs"] = int(np.clip(np.ceil(args.ae_steps * args.batch_size / n_train), 1, args.max_epochs))
        t0 = time.perf_counter()
        ae = rd.tl.fit_autoencoder(train, net=net, **ae_kw, **common)
        fit_s = time.perf_counter() - t0
        record(
            "autoencoder",
            fit_s,
            _score(sets, "autoencoder", ae, ae),
            len(ae.history["loss"]),
            rd.tl.load(train, key="regdecoder_autoencoder"),
        )
    return rows


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["test_set", "model", "n_train"], sort=False)
    out = g.agg(
        alpha_d=("alpha_d", "first"),
        alpha_d_all_weights=("alpha_d_all_weights", "first"),
        pcc_mean=("pcc", "mean"),
        pcc_sd=("pcc", "std"),
        mse_mean=("test_mse", "mean"),
        mse_sd=("test_mse", "std"),
        fit_seconds=("fit_seconds", "mean"),
        replicates=("pcc", "size"),
    )
    return out.reset_index()


def main(argv=None) -> pd.DataFrame:
    rd.settings.progress = False
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000])
    parser.add_argument("--replicates", type=int, default=5)
    parser.add_argument("--recipe", choices=("fast", "paper"), default="fast")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--noise", type=float, default=0.0, help="simulation noise sd (paper: 0)")
    parser.add_argument("--no-bias", action="store_true", help="decoder without per-gene offsets (the paper's eq. 6)")
    parser.add_argument("--enc-noise", type=float, default=0.5, help="input noise sd of the noisy encoder")
    parser.add_argument("--ood-noise", type=float, default=1.0, help="noise sd of the noisy test set")
    parser.add_argument("--ood-scale", type=float, default=3.0, help="TF level factor of the scaled test sets")
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--n-tfs", type=int, default=100)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10000, help="fast recipe: encoder optimiser steps")
    parser.add_argument("--ae-steps", type=int, default=20000, help="fast recipe: autoencoder optimiser steps")
    parser.add_argument("--batch-size", type=int, default=128, help="fast recipe: encoder batch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="fast recipe: encoder Adam step")
    parser.add_argument("--max-epochs", type=int, default=2000, help="fast recipe: cap on encoder epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a shared machine)")
    parser.add_argument(
        "--quick", action="store_true", help="CPU run: sizes up to 10,000, 1,500 encoder / 3,000 autoencoder steps"
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny run for the test suite")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "load_sweep.csv"))
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [50, 100, 200, 500, 1000, 2000, 5000, 10000]
        args.steps, args.ae_steps = 1500, 3000
    if args.smoke:
        args.sizes, args.replicates, args.n_genes, args.n_tfs, args.density = [30, 120], 2, 60, 6, 0.3
        args.steps, args.ae_steps, args.n_test = 100, 100, 20
    torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    rows = []
    for n_train in args.sizes:
        for rep in range(args.replicates):
            rows.extend(run_one(n_train, rep, args))
    df = pd.DataFrame(rows)
    df.insert(0, "recipe", args.recipe)
    df.insert(1, "decoder_offsets", not args.no_bias)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    summary = summarise(df)
    summary.to_csv(out.with_name(out.stem + "_summary.csv"), index=False)

    fig = rd.pl.load_curve(
        df[df.test_set == "test"], x="alpha_d_all_weights", metrics=("test_mse", "pcc"), return_fig=True
    )
    fig.suptitle(
        f"n={args.n_genes}, m={args.n_tfs}, density {args.density}, noise {args.noise}; "
        f"{args.replicates} replicates, recipe {args.recipe}{', no offsets' if args.no_bias else ''}",
        fontsize=9,
    )
    fig.savefig(out.with_suffix(".png"), dpi=120)
    matplotlib.pyplot.close(fig)
    pd.set_option("display.width", 200)
    print(summary[summary.test_set == "test"].round(4).to_string(index=False))
    print(summary[summary.test_set != "test"].round(4).to_string(index=False))
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return df


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
