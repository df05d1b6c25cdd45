"""Statistics of the activities: the marginal t-value of each TF's learned regulon in each
cell (what ``obsm[key]`` holds). The latents and their standard errors come from
:mod:`regdecoder.train._latents`.

The marginal t (per cell ``c`` and latent ``j``) is decoupler's ulm statistic (Badia-i-Mompel
et al. 2022) on the weights the decoder learned: the t-value of the slope of the simple linear
regression, with an intercept, of the cell's profile over all ``G`` genes of the model on the
latent's weights (zero off its regulon). With ``y_c = x_c - m`` (``m`` the model's centre, see
:func:`marginal_t`) and bars for means over genes:

    beta_cj = (y_c - ybar_c) . (w_j - wbar_j) / |w_j - wbar_j|^2,
    RSS_cj = |y_c - ybar_c|^2 - beta_cj^2 |w_j - wbar_j|^2,
    t_cj = beta_cj / sqrt(RSS_cj / (G - 2) / |w_j - wbar_j|^2),

with ``G - 2`` degrees of freedom (``decoupler.mt.ulm`` gives the same numbers given ``y`` and
these weights as its ``net``). Unlike the joint latents, it does not hand the signal of shared
targets to one of two overlapping regulons (on pbmc68k_reduced + CollecTRI, CIITA's regulon lies
70% inside RFX5's).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy import special

from ._source import as_source, stream


@torch.no_grad()
def marginal_t(data, weight: torch.Tensor, gene_mean: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The marginal t-values (cells x latents) and their two-sided p-values (t, ``G - 2`` d.f.).

    ``data``: a tensor or a source; ``weight``: genes x latents; ``gene_mean``: the centre ``m``
    subtracted from every cell first (genes; zeros for ulm on the data as they are). A latent
    whose weights are constant, or a constant cell, gets t = 0 and p = 1; a cell without any
    expression gets NaN.
    """
    source = as_source(data)
    dev, dt = weight.device, weight.dtype
    center = gene_mean.to(dev, dt)
    wc = weight - weight.mean(0)  # the intercept: weights centred over the genes
    nw = (wc**2).sum(0)
    out = np.empty((source.n_obs, weight.shape[1]), dtype=np.float32)
    df = max(1, source.n_vars - 2)
    for s, e, x in stream(source, dev, dt):
        y = x - center
        y = y - y.mean(1, keepdim=True)
        beta = (y @ wc) / nw.clamp(min=1e-30)
        rss = ((y**2).sum(1, keepdim=True) - beta**2 * nw).clamp(min=0)
        se = (rss / df / nw.clamp(min=1e-30)).sqrt()
        t = torch.where((se > 0) & (nw > 0), beta / se.clamp(min=1e-30), torch.zeros_like(beta))
        empty = (x == 0).all(1, keepdim=True)  # a cell with no expression: no activity to report
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
