from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.ticker import MaxNLocator

from .._anndata import check_key, decoder_latents_key, latents
from ..metrics import recovery as _recovery
from ..metrics._recovery import _truth
from ._common import finish


def _choice_text(n_shown: int, n_total: int) -> str:
    """Which TFs the default of :func:`recovery` shows, in words."""
    if n_shown >= n_total:
        return f"all {n_total} TFs"
    if n_shown == 1:
        return f"the best of {n_total} TFs by signed PCC"
    if n_shown == 2:
        return f"the best and the worst of {n_total} TFs by signed PCC"
    if n_shown == 3:
        return f"the best, the median and the worst of {n_total} TFs by signed PCC"
    return f"{n_shown} of {n_total} TFs evenly spaced in the ranking by signed PCC, best to worst"


def recovery(
    adata: AnnData,
    key: str = "regdecoder",
    *,
    truth: str = "tf_activity",
    tfs: Sequence[str] | None = None,
    n_examples: int = 3,
    match: str = "auto",
    cells: str | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """True against inferred activity for a few TFs, and the distribution of per-TF PCC.

    Parameters
    ----------
    adata
        Cells with ``obsm[key]`` (from rd.tl) and ``obsm[truth]`` (from rd.sim).
    key
        Where rd.tl wrote the latents.
    truth
        Where the true activities are.
    tfs
        Factors to scatter; by default ``n_examples`` of them spread evenly over the
        ranking by signed PCC (the best, the median and the worst for 3), as the
        figure's title says.
    n_examples
        Number of factors to scatter when ``tfs`` is None.
    match
        As in :func:`regdecoder.metrics.recovery`.
    cells
        Which cells these are, for the title (e.g. ``'the 100 held-out cells'``); by
        default ``'N training cells'`` after a fit and ``'N cells inferred with the decoder
        frozen'`` after :func:`regdecoder.tl.infer`.
    show, return_fig
        Show the figure, or return it.

    The histogram's red line marks the mean per-TF PCC (its value is in the legend and
    the title).
    """
    table = _recovery(adata, key, truth=truth, match=match).dropna(subset=["pcc"])
    z = latents(adata, decoder_latents_key(adata, key))
    t = _truth(adata, truth)
    if tfs is None:
        ranked = table.sort_values("pcc", ascending=False).index
        picks = np.unique(np.linspace(0, len(ranked) - 1, min(n_examples, len(ranked))).round().astype(int))
        tfs = [ranked[i] for i in picks]
        choice = _choice_text(len(tfs), len(ranked))
    else:
        choice = f"{len(tfs)} TF{'s' if len(tfs) != 1 else ''} as given (tfs=)"
    missing = [f for f in tfs if f not in table.index]
    if missing:
        msg = f"Factors {missing} have no matched latent in obsm[{key!r}]."
        raise KeyError(msg)
    fig, axes = plt.subplots(1, len(tfs) + 1, figsize=(3.2 * (len(tfs) + 1), 3.2), layout="constrained", squeeze=False)
    axes = axes[0]
    for ax, f in zip(axes[:-1], tfs, strict=True):
        ax.scatter(t[f], z[table.loc[f, "latent"]], s=6, alpha=0.6, linewidths=0)
        ax.set_title(f"{f}  PCC {table.loc[f, 'pcc']:.3f}", fontsize=10)
        ax.set_xlabel("true activity (simulated)")
        ax.set_ylabel("inferred activity (latent)")
    ax = axes[-1]
    lo, mean = float(table["pcc"].min()), float(table["pcc"].mean())
    ax.hist(table["pcc"], bins=np.linspace(lo - 0.05 * (1.0 - lo) - 1e-4, 1.0, 31), color="0.3")
    if lo < 0:
        ax.axvline(0.0, color="0.6", lw=0.8, ls="--")
    ax.axvline(mean, color="C3", lw=1, label=f"mean {mean:.3f}")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.set_title(f"signed PCC of {len(table)} TFs, mean {mean:.3f}", fontsize=10)
    ax.set_xlabel("per-TF signed PCC (true vs inferred)")
    ax.set_ylabel("TFs")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # long labels such as 0.9994 must not touch
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    cells = _cells_text(adata, key) if cells is None else cells
    head = f"true vs inferred TF activity of {cells}"
    fig.suptitle(f"{head}: {choice}" if len(tfs) else head, fontsize=10)
    return finish(fig, show, return_fig)


def _cells_text(adata: AnnData, key: str) -> str:
    """The cells of a figure, in words: the training cells of a fit, or new cells inferred."""
    uns = adata.uns.get(key, {})
    n = f"{adata.n_obs:,}"
    if isinstance(uns, dict) and "history" not in uns and "n_iter" in uns:
        return f"{n} cells inferred with the decoder frozen"
    return f"{n} training cells"


def loss(
    adata: AnnData,
    key: str = "regdecoder",
    *,
    x: str = "epoch",
    ax: plt.Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Training loss per epoch (``x='epoch'``) or against training seconds (``x='seconds'``)."""
    check_key(adata, key, where="uns")
    hist = adata.uns[key].get("history")
    if hist is None or len(hist.get("loss", [])) == 0:
        msg = f"adata.uns[{key!r}] has no loss history; it is written by rd.tl.fit_decoder."
        raise KeyError(msg)
    y = np.asarray(hist["loss"])
    if x == "epoch":
        xs, xlabel = np.arange(1, len(y) + 1), "epoch"
    elif x == "seconds":
        xs, xlabel = np.asarray(hist["seconds"]), "training seconds"
    else:
        msg = f"`x` must be 'epoch' or 'seconds', got {x!r}."
        raise ValueError(msg)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.4, 3.2), layout="constrained")
    else:
        fig = ax.figure
    ax.plot(xs, y)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss per value (log scale)")
    params = adata.uns[key].get("params", {})
    solver = params.get("recipe", {}).get("solver", params.get("solver", ""))
    how = _SOLVERS.get(solver, solver)
    ax.set_title(f"training loss of the decoder on {adata.n_obs:,} cells" + (f"\n{how}" if how else ""), fontsize=9)
    return finish(fig, show, return_fig)


#: Solvers in words, for titles.
_SOLVERS = {
    "als": "solver: alternating least squares",
    "gradient": "solver: gradient steps",
}
