"""Recovery of the ground truth from what rd.tl wrote into an AnnData."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._anndata import check_key, decoder_latents_key, latents, read
from ._pcc import match_factors, mse, pearson_columns


def _truth(adata: AnnData, truth: str) -> pd.DataFrame:
    check_key(adata, truth, hint="rd.sim.grn (ground truth lives in obsm['tf_activity'])")
    t = adata.obsm[truth]
    if not isinstance(t, pd.DataFrame):
        t = pd.DataFrame(np.asarray(t), index=adata.obs_names, columns=[f"factor_{i}" for i in range(t.shape[1])])
    return t


def recovery(
    adata: AnnData, key: str = "regdecoder", *, truth: str = "tf_activity", match: str = "auto", use: str = "latents"
) -> pd.DataFrame:
    """Per-factor recovery of the true activities by the learned latents.

    Parameters
    ----------
    adata
        Cells with learned latents in ``obsm[key]`` and true activities in
        ``obsm[truth]`` (a DataFrame with factor names as columns, as rd.sim writes).
    key
        Where rd.tl wrote the latents.
    truth
        Where the true activities are.
    match
        ``'name'``: latent j is the factor of the same name (masked decoders, whose
        latents are TFs). ``'hungarian'``: one-to-one assignment maximising |PCC|,
        sign allowed (unmasked decoders). ``'auto'``: by name when every latent name
        is a factor name, else Hungarian.
    use
        ``'latents'`` (default): the decoder's latents, ``obsm[key + '_z']`` where the fit
        wrote them beside other activities (else ``obsm[key]``); ``'activities'``:
        ``obsm[key]`` itself (e.g. the marginal t-values).

    Returns
    -------
    A DataFrame indexed by true factor with ``latent`` (matched latent), ``pcc``
    (signed Pearson correlation), ``abs_pcc``. Factors without a latent (e.g. TFs
    dropped by ``tmin``) get NaN. Summary: ``df.pcc.mean()``.
    """
    if use not in ("latents", "activities"):
        msg = f"`use` must be 'latents' or 'activities', got {use!r}."
        raise ValueError(msg)
    z = latents(adata, decoder_latents_key(adata, key) if use == "latents" else key, unnamed=True)
    t = _truth(adata, truth)
    if match == "auto":
        match = "name" if set(z.columns) <= set(t.columns) else "hungarian"
    out = pd.DataFrame(index=pd.Index(t.columns, name="factor"), columns=["latent", "pcc", "abs_pcc"])
    out["latent"] = None
    if match == "name":
        common = [c for c in t.columns if c in set(z.columns)]
        if not common:
            msg = f"No latent of obsm[{key!r}] is named like a factor of obsm[{truth!r}]; use match='hungarian'."
            raise ValueError(msg)
        r = pearson_columns(t[common].to_numpy(), z[common].to_numpy())
        out.loc[common, "latent"] = common
        out.loc[common, "pcc"] = r
    elif match == "hungarian":
        ti, zi = match_factors(t.to_numpy(), z.to_numpy())
        r = pearson_columns(t.to_numpy()[:, ti], z.to_numpy()[:, zi])
        out.iloc[ti, 0] = z.columns[zi].to_numpy()
        out.iloc[ti, 1] = r
    else:
        msg = f"`match` must be 'auto', 'name' or 'hungarian', got {match!r}."
        raise ValueError(msg)
    out["pcc"] = out["pcc"].astype(float)
    out["abs_pcc"] = out["pcc"].abs()
    return out


def reconstruction_error(
    adata: AnnData, model, key: str = "regdecoder", *, layer: str | None = None, use_raw: bool = False
) -> float:
    """Mean squared error between the expression (in the model's gene order) and the
    model's decoding (a :class:`~regdecoder.tl.Model`) of the latents under ``key``
    (``obsm[key + '_z']`` where written, else ``obsm[key]``)."""
    check_key(adata, key)
    x = read(adata, layer=layer, use_raw=use_raw, genes=model.var_names).dense().numpy()
    return mse(x, model.decode(np.asarray(adata.obsm[decoder_latents_key(adata, key)])))
