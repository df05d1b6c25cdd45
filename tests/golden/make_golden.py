"""Write the golden outputs of every fit path (run once, before a refactor; see tests/test_golden.py).

    python tests/golden/make_golden.py            # writes tests/golden/golden.npz and *_v010.pt

`golden.npz`, `model_v010.pt` and `encoder_v010.pt` were written by regdecoder 0.1.0 (commit
15c6fdf) with the 0.1.0 spelling of these calls (`progress=False`, `max_epochs=N`,
`solver='gradient'`, `preset='paper'`, `loss='nb'`); the calls below are the same fits in
today's API (`rd.settings.progress`, `recipe={...}`, `gene_likelihood=`), with 0.1.0's defaults
spelled out where they changed since (`bias=False`, `collinear='keep'`, `weights='fit'`, and the
ALS recipe `'v010'`: a seeded masked-PCA start, no shrinkage). Where a fit now also writes the
decoder's latents beside other activities (`obsm[key + '_z']`), those latents are compared.

Each path fits a small simulated data set with a fixed seed and records the latents of the
training cells, the weights (one-layer decoders) and the latents inferred for held-out cells.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
from scipy import sparse

import regdecoder as rd

HERE = Path(__file__).parent


def data():
    adata = rd.sim.grn(n_obs=160, n_genes=60, n_tfs=6, density=0.3, noise=0.1, seed=1)
    return rd.pp.split(adata, n_test=30, seed=0)


def counts():
    rng = np.random.default_rng(0)
    train, test = data()
    for a in (train, test):
        lam = 20 * np.asarray(a.X)
        a.X = rng.poisson(lam).astype(np.float32)
    return train, test


def paths():
    """name -> function(train, test, tmp) returning (train, test) after fitting and inferring."""

    def run(train, test, **kw):
        net = kw.pop("net", train.uns["sim"]["net"])
        kw.setdefault("recipe", "v010")
        if net is not None:
            kw.update(collinear="keep", weights="fit")
        model = rd.tl.fit_decoder(train, net=net, seed=0, bias=kw.pop("bias", False), **kw)
        rd.tl.infer(test, model)
        return model

    out = {}
    out["als_dense"] = lambda tr, te, tmp: run(tr, te)
    out["als_bias"] = lambda tr, te, tmp: run(tr, te, bias=True)

    def als_sparse(tr, te, tmp):
        tr.X = sparse.csr_matrix(tr.X)
        te.X = sparse.csr_matrix(te.X)
        return run(tr, te)

    out["als_sparse"] = als_sparse

    def als_backed(tr, te, tmp):
        tr.X = sparse.csr_matrix(tr.X)
        te.X = sparse.csr_matrix(te.X)
        net = tr.uns["sim"]["net"]
        del tr.uns["sim"], te.uns["sim"]
        tr.write_h5ad(tmp / "tr.h5ad")
        te.write_h5ad(tmp / "te.h5ad")
        btr = ad.read_h5ad(tmp / "tr.h5ad", backed="r")
        bte = ad.read_h5ad(tmp / "te.h5ad", backed="r")
        model = rd.tl.fit_decoder(btr, net=net, seed=0, bias=False, recipe="v010")
        rd.tl.infer(bte, model)
        tr.obsm["regdecoder"] = btr.obsm["regdecoder"]
        tr.varm["regdecoder_weights"] = btr.varm["regdecoder_weights"]
        te.obsm["regdecoder"] = bte.obsm["regdecoder"]
        for k in ("regdecoder_z",):
            tr.obsm[k], te.obsm[k] = btr.obsm[k], bte.obsm[k]
        btr.file.close()
        bte.file.close()
        return model

    out["als_backed"] = als_backed

    def als_gloo(tr, te, tmp):
        net = tr.uns["sim"]["net"]
        model = rd.tl.fit_decoder_distributed(tr, net=net, nprocs=2, seed=0, bias=False, recipe="v010")
        rd.tl.infer(te, model)
        return model

    out["als_gloo2"] = als_gloo
    out["gradient_fast"] = lambda tr, te, tmp: run(tr, te, recipe={"solver": "gradient", "max_epochs": 20})
    out["gradient_paper"] = lambda tr, te, tmp: run(tr, te, recipe={"preset": "paper", "max_epochs": 5})
    out["mlp"] = lambda tr, te, tmp: run(tr, te, net=None, n_latent=4, hidden=(8,), recipe={"max_epochs": 10})
    out["n_extra"] = lambda tr, te, tmp: run(tr, te, n_extra=1)
    out["soft_mask"] = lambda tr, te, tmp: run(tr, te, soft_mask=True, recipe={"max_epochs": 10})
    return out


def count_paths():
    def run(train, test, **kw):
        model = rd.tl.fit_decoder(
            train, net=train.uns["sim"]["net"], seed=0, bias=False, recipe={"max_epochs": 10}, **kw
        )
        rd.tl.infer(test, model)
        return model

    return {
        "poisson": lambda tr, te, tmp: run(tr, te, gene_likelihood="poisson"),
        "nb": lambda tr, te, tmp: run(tr, te, gene_likelihood="nb"),
    }


def encoder_paths():
    def enc(tr, te, tmp):
        model = rd.tl.fit_decoder(tr, net=tr.uns["sim"]["net"], seed=0, bias=False, recipe="v010")
        em = rd.tl.fit_encoder(tr, model, max_epochs=10, seed=0)
        rd.tl.encode(te, em)
        return em

    def ae(tr, te, tmp):
        em = rd.tl.fit_autoencoder(tr, net=tr.uns["sim"]["net"], max_epochs=10, seed=0)
        rd.tl.encode(te, em)
        return em

    return {"encoder": enc, "autoencoder": ae}


def collect(name, tr, te, key):
    zkey = key + "_z" if key + "_z" in tr.obsm else key  # the decoder's latents
    rec = {f"{name}/train": np.asarray(tr.obsm[zkey]), f"{name}/test": np.asarray(te.obsm[zkey])}
    wkey = key + "_weights"
    if wkey in tr.varm:
        rec[f"{name}/weights"] = np.asarray(tr.varm[wkey])
    return rec


def main() -> None:
    import torch

    torch.set_num_threads(1)
    rd.settings.progress = False
    out: dict = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name, fn in paths().items():
            tr, te = data()
            model = fn(tr, te, tmp)
            out.update(collect(name, tr, te, "regdecoder"))
            if name == "als_dense":
                model.save(HERE / "model_v010.pt")
            print(name, "done", file=sys.stderr)
        for name, fn in count_paths().items():
            tr, te = counts()
            fn(tr, te, tmp)
            out.update(collect(name, tr, te, "regdecoder"))
            print(name, "done", file=sys.stderr)
        for name, fn in encoder_paths().items():
            tr, te = data()
            em = fn(tr, te, tmp)
            key = em.key
            out.update(collect(name, tr, te, key))
            if name == "encoder":
                em.save(HERE / "encoder_v010.pt")
            print(name, "done", file=sys.stderr)
    np.savez_compressed(HERE / "golden.npz", **out)


if __name__ == "__main__":
    main()
