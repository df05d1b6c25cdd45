from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from ..tl._validate import check_key


def _latent_names(adata: AnnData, key: str, n: int) -> list[str]:
    names = adata.uns.get(key, {}).get("latent_names")
    return list(map(str, names)) if names is not None else [f"latent_{i}" for i in range(n)]


def activities(adata: AnnData, key: str = "regdecoder") -> AnnData:
    """The latents in ``obsm[key]`` as a new AnnData (cells x TFs), with ``adata.obs`` copied.

    Ready for ``sc.pl.matrixplot``, ``sc.tl.rank_genes_groups`` or a UMAP on activities.
    """
    check_key(adata, key)
    z = np.asarray(adata.obsm[key], dtype=np.float32)
    return AnnData(
        X=z.copy(),
        obs=adata.obs.copy(),
        var=pd.DataFrame(index=pd.Index(_latent_names(adata, key, z.shape[1]))),
    )


def weights(adata: AnnData, key: str = "regdecoder") -> pd.DataFrame:
    """Learned decoder weights as a tidy table (``source``, ``target``, ``weight``), non-zero edges only,
    sorted by decreasing absolute weight."""
    check_key(adata, key + "_weights", where="varm")
    w = np.asarray(adata.varm[key + "_weights"])
    genes, lat = np.nonzero(w)
    names = np.asarray(_latent_names(adata, key, w.shape[1]))
    df = pd.DataFrame({"source": names[lat], "target": adata.var_names[genes].to_numpy(), "weight": w[genes, lat]})
    return df.iloc[np.argsort(-np.abs(df["weight"].to_numpy()), kind="stable")].reset_index(drop=True)
