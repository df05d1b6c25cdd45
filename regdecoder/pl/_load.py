from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ._common import finish

_LABELS = {
    "test_mse": "test reconstruction MSE",
    "pcc": "mean signed PCC (test)",
    "alpha_d": "decoder load $\\alpha_d$",
    "alpha_d_all_weights": "decoder load $\\alpha_d$ (all weights counted)",
}


def _log_ticks(axis, lo: float, hi: float) -> None:
    """Few, plainly written labels on a log axis (matplotlib's 4x10^0, 6x10^0 collide in narrow ranges)."""
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    subs = (1.0, 2.0, 3.0, 5.0) if decades < 1.2 else (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def load_curve(
    results: pd.DataFrame,
    *,
    x: str = "alpha_d",
    metrics: Sequence[str] = ("test_mse", "pcc"),
    model: str = "model",
    log_y: Sequence[str] = ("test_mse",),
    ax: plt.Axes | Sequence[plt.Axes] | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Test error and recovery against the load, one line per model (the paper's Fig. 4).

    Each point is the mean over the rows sharing a model and a value of ``x`` (the
    replicates), with a band of one standard deviation.

    Parameters
    ----------
    results
        A long table with one row per fit: the columns ``model``, ``x`` and each of
        ``metrics`` (e.g. ``benchmarks/results/load_sweep.csv``).
    x
        Column on the horizontal axis (log scale).
    metrics
        Columns to plot, one panel each.
    model
        Column naming the model of each row (one colour each, in order of appearance).
    log_y
        Metrics drawn on a log scale.
    ax
        One Axes per metric (a single Axes for one metric); None makes a new figure.
    show, return_fig
        Show the figure, or return it.
    """
    if not isinstance(results, pd.DataFrame):
        msg = f"`results` must be a pandas DataFrame, got {type(results).__name__}."
        raise TypeError(msg)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    missing = [c for c in [model, x, *metrics] if c not in results.columns]
    if missing:
        msg = f"`results` lacks the column(s) {missing}; it has {list(results.columns)}."
        raise KeyError(msg)
    if not len(results):
        msg = "`results` is empty: nothing to plot."
        raise ValueError(msg)
    if ax is None:
        fig, axes = plt.subplots(
            1, len(metrics), figsize=(4.2 * len(metrics), 3.4), layout="constrained", squeeze=False
        )
        axes = list(axes[0])
    else:
        axes = [ax] if isinstance(ax, plt.Axes) else list(ax)
        if len(axes) != len(metrics):
            msg = f"Give one Axes per metric: {len(metrics)} metric(s), {len(axes)} Axes."
            raise ValueError(msg)
        fig = axes[0].figure
    names = list(dict.fromkeys(results[model]))
    for i, name in enumerate(names):
        sub = results[results[model] == name]
        for a, metric in zip(axes, metrics, strict=True):
            g = sub.groupby(x)[metric].agg(["mean", "std"]).sort_index()
            xs, mean, sd = g.index.to_numpy(float), g["mean"].to_numpy(), np.nan_to_num(g["std"].to_numpy())
            colour = f"C{i % 10}"
            a.plot(xs, mean, marker="o", ms=3, color=colour, label=str(name))
            a.fill_between(xs, mean - sd, mean + sd, color=colour, alpha=0.2, linewidth=0)
    lo, hi = float(results[x].min()), float(results[x].max())
    for a, metric in zip(axes, metrics, strict=True):
        a.set_xscale("log")
        _log_ticks(a.xaxis, lo, hi)
        if metric in log_y:
            a.set_yscale("log")
        a.set_xlabel(_LABELS.get(x, x))
        a.set_ylabel(_LABELS.get(metric, metric))
    axes[-1].legend(fontsize=8, frameon=False)
    return finish(fig, show, return_fig)
