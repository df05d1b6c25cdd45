"""Statistics of the activities: the marginal t-value of each TF's learned regulon in each
cell (what ``obsm[key]`` holds). The latents and their standard errors come from
:mod:`regdecoder.train._latents`.

The marginal t (per cell ``c`` and latent ``j``; ``x_c`` the cell's expression centred by
the training mean of each gene, ``w_j`` the latent's learned weights over all ``G`` genes):

    beta_cj = x_c . w_j / |w_j|^2,   RSS_cj = |x_c|^2 - beta_cj^2 |w_j|^2,
    se_cj = sqrt(RSS_cj / (G - 1) / |w_j|^2),   t_cj = beta_cj / se_cj,

the t-statistic of regressing the cell's centred expression on the regulon's weights
through the origin (``G - 1`` degrees of freedom), as decoupler's ulm does with the prior's
weights (Badia-i-Mompel et al. 2022), here with the weights the decoder learned. Unlike the
joint latents, it does not hand the signal of shared targets to one of two overlapping
regulons (on pbmc68k_reduced + CollecTRI, CIITA's regulon lies 70% inside RFX5's).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy import special

from ._source import as_source, stream


@torch.no_grad()
def marginal_t(data, weight: torch.Tensor, gene_mean: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The marginal t-values (cells x latents) and their two-sided p-values (t, ``G - 1`` d.f.).

    ``data``: a tensor or a source; ``weight``: genes x latents; ``gene_mean``: genes.
    A latent without weights, or a constant cell, gets t = 0 and p = 1; a cell without any
    expression gets NaN.
    """
    source = as_source(data)
    dev, dt = weight.device, weight.dtype
    gene_mean = gene_mean.to(dev, dt)
    nw = (weight**2).sum(0)
    out = np.empty((source.n_obs, weight.shape[1]), dtype=np.float32)
    df = max(1, source.n_vars - 1)
    for s, e, xc in stream(source, dev, dt):
        xc = xc - gene_mean
        beta = (xc @ weight) / nw.clamp(min=1e-30)
        rss = ((xc**2).sum(1, keepdim=True) - beta**2 * nw).clamp(min=0)
        se = (rss / df / nw.clamp(min=1e-30)).sqrt()
        t = torch.where((se > 0) & (nw > 0), beta / se.clamp(min=1e-30), torch.zeros_like(beta))
        empty = (xc + gene_mean == 0).all(1, keepdim=True)  # a cell with no expression: no activity to report
        t = torch.where(empty, torch.full_like(t, float("nan")), t)
        out[s:e] = t.cpu().numpy()
    return out, t_pvalues(out, df)


def t_pvalues(t: np.ndarray, df: int) -> np.ndarray:
    """Two-sided p-values of t-statistics with ``df`` degrees of freedom (float32; NaN stays NaN):
    ``2 * stdtr(df, -|t|)`` (scipy's Student t CDF), in row blocks on ``torch.get_num_threads()``
    threads (the ufunc releases the GIL)."""
    out = np.empty(t.shape, dtype=np.float32)

    def block(s: int) -> None:
        out[s : s + step] = 2 * special.stdtr(df, -np.abs(t[s : s + step]))

    step = max(1, -(-t.shape[0] // max(1, torch.get_num_threads())))
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        list(pool.map(block, range(0, t.shape[0], step)))
    return out
