"""rd.pl: figures built from what rd.tl wrote."""

import matplotlib

matplotlib.use("Agg")

import logging  # noqa: E402

import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import regdecoder as rd  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def inferred(fitted):
    """The fitted model's test set with inferred activities in obsm['regdecoder']."""
    model, _, test = fitted
    rd.tl.infer(test, model)
    return test


# ---------------------------------------------------------------------- recovery


@pytest.mark.parametrize("n_examples", [1, 3, 5])
def test_recovery_figure_layout_and_mean_pcc(inferred, n_examples):
    fig = rd.pl.recovery(inferred, n_examples=n_examples, return_fig=True)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_examples + 1
    mean = rd.metrics.recovery(inferred).pcc.mean()
    hist_title = fig.axes[-1].get_title()
    assert f"mean {mean:.3f}" in hist_title
    # the histogram counts every TF once
    counts = sum(p.get_height() for p in fig.axes[-1].patches)
    assert counts == inferred.obsm["tf_activity"].shape[1]


def test_recovery_default_picks_best_median_worst(inferred):
    fig = rd.pl.recovery(inferred, return_fig=True)
    rec = rd.metrics.recovery(inferred).sort_values("pcc", ascending=False)
    titles = [ax.get_title() for ax in fig.axes[:-1]]
    assert titles[0].split()[0] == rec.index[0]  # best
    assert titles[-1].split()[0] == rec.index[-1]  # worst


def test_recovery_more_examples_than_factors(inferred):
    n_tfs = inferred.obsm["tf_activity"].shape[1]
    fig = rd.pl.recovery(inferred, n_examples=n_tfs + 5, return_fig=True)
    assert len(fig.axes) == n_tfs + 1
    shown = {ax.get_title().split()[0] for ax in fig.axes[:-1]}
    assert shown == set(inferred.obsm["tf_activity"].columns)


def test_recovery_tfs_picks_those_factors(inferred):
    tfs = ["TF5", "TF1"]
    fig = rd.pl.recovery(inferred, tfs=tfs, return_fig=True)
    assert len(fig.axes) == len(tfs) + 1
    rec = rd.metrics.recovery(inferred)
    truth = inferred.obsm["tf_activity"]
    names = list(inferred.uns["regdecoder"]["latent_names"])
    for ax, tf in zip(fig.axes[:-1], tfs, strict=True):
        title = ax.get_title()
        assert tf in title
        assert f"{rec.loc[tf, 'pcc']:.3f}" in title
        # the scatter shows (true activity, inferred activity) of that factor
        xy = np.asarray(ax.collections[0].get_offsets())
        np.testing.assert_allclose(xy[:, 0], truth[tf].to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(xy[:, 1], np.asarray(inferred.obsm["regdecoder_z"])[:, names.index(tf)], rtol=1e-6)


def test_recovery_unknown_tf_raises(inferred):
    with pytest.raises(KeyError, match="not_a_tf"):
        rd.pl.recovery(inferred, tfs=["TF0", "not_a_tf"], return_fig=True)


def test_recovery_missing_key_raises(inferred):
    with pytest.raises(KeyError) as err:
        rd.pl.recovery(inferred, "nothing_here", return_fig=True)
    assert "'nothing_here'" in err.value.args[0]


def test_recovery_without_return_fig_returns_none(inferred):
    assert rd.pl.recovery(inferred, show=False) is None
    assert plt.get_fignums()  # the figure was drawn


def test_recovery_histogram_only(inferred):
    fig = rd.pl.recovery(inferred, n_examples=0, return_fig=True)
    assert len(fig.axes) == 1


# -------------------------------------------------------------------------- loss


def test_loss_plots_history_per_epoch(fitted):
    _, train, _ = fitted
    hist = train.uns["regdecoder"]["history"]
    fig = rd.pl.loss(train, return_fig=True)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), np.asarray(hist["loss"]))
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(hist["loss"]) + 1))
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "epoch"


def test_loss_against_seconds(fitted):
    _, train, _ = fitted
    hist = train.uns["regdecoder"]["history"]
    fig = rd.pl.loss(train, x="seconds", return_fig=True)
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_array_equal(line.get_xdata(), np.asarray(hist["seconds"]))
    np.testing.assert_array_equal(line.get_ydata(), np.asarray(hist["loss"]))
    assert "seconds" in fig.axes[0].get_xlabel()


@pytest.mark.parametrize("x", ["time", "Epoch", ""])
def test_loss_bad_x_raises(fitted, x):
    _, train, _ = fitted
    with pytest.raises(ValueError, match="`x` must be"):
        rd.pl.loss(train, x=x, return_fig=True)


def test_loss_draws_into_given_axes(fitted):
    _, train, _ = fitted
    fig, axes = plt.subplots(1, 2)
    n_figs = len(plt.get_fignums())
    out = rd.pl.loss(train, ax=axes[1], show=False)
    assert out is None
    assert len(plt.get_fignums()) == n_figs  # no new figure
    assert len(axes[0].get_lines()) == 0
    (line,) = axes[1].get_lines()
    np.testing.assert_array_equal(line.get_ydata(), np.asarray(train.uns["regdecoder"]["history"]["loss"]))
    assert rd.pl.loss(train, ax=axes[0], return_fig=True) is fig


def test_loss_missing_key_raises(fitted):
    _, train, _ = fitted
    with pytest.raises(KeyError) as err:
        rd.pl.loss(train, "other_key", return_fig=True)
    assert "'other_key'" in err.value.args[0]


def test_loss_without_history_raises(fitted):
    model, _, test = fitted
    rd.tl.infer(test, model)  # writes uns['regdecoder'] without a history
    with pytest.raises(KeyError, match="history"):
        rd.pl.loss(test, return_fig=True)


# -------------------------------------------------- plots say what they show


def _crowded_labels(fig, axis, min_gap: float = 4.0) -> list[tuple[str, str, float]]:
    """Neighbouring tick labels of the x ``axis``, inside the axes, less than ``min_gap`` pixels apart."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = axis.axes.get_window_extent(renderer)
    boxes = sorted(
        (box.x0, box.x1, t.get_text())
        for t in axis.get_ticklabels(which="both")
        if t.get_visible() and t.get_text()
        for box in [t.get_window_extent(renderer)]
        if frame.x0 - 1 <= (box.x0 + box.x1) / 2 <= frame.x1 + 1
    )
    return [
        (a[2], b[2], round(b[0] - a[1], 1)) for a, b in zip(boxes, boxes[1:], strict=False) if b[0] - a[1] < min_gap
    ]


def test_recovery_title_states_the_default_choice(inferred):
    n = inferred.obsm["tf_activity"].shape[1]
    fig = rd.pl.recovery(inferred, return_fig=True)
    assert fig._suptitle.get_text().endswith(f"the best, the median and the worst of {n} TFs by signed PCC")
    fig = rd.pl.recovery(inferred, n_examples=5, return_fig=True)
    assert "5 of 8 TFs evenly spaced in the ranking by signed PCC" in fig._suptitle.get_text()
    fig = rd.pl.recovery(inferred, tfs=["TF5", "TF1"], return_fig=True)
    assert "2 TFs as given" in fig._suptitle.get_text()


def test_recovery_histogram_labels_do_not_overlap(inferred):
    # near-perfect recovery: the PCC axis spans ~0.999-1.000, whose default labels collide
    fig = rd.pl.recovery(inferred, return_fig=True)
    assert _crowded_labels(fig, fig.axes[-1].xaxis) == []


def test_group_smd_is_cohens_d(fitted):
    from regdecoder.pl._activities import group_smd

    _, train, _ = fitted
    rng = np.random.default_rng(0)
    train.obs["group"] = rng.choice(["a", "b", "c"], size=train.n_obs)
    smd = group_smd(train, "regdecoder", "group")
    z = train.obsm["regdecoder"].astype(np.float64)
    inside = (train.obs["group"] == "b").to_numpy()
    x, y = z[inside], z[~inside]
    n1, n2 = len(x), len(y)
    pooled = np.sqrt(((n1 - 1) * x.var(0, ddof=1) + (n2 - 1) * y.var(0, ddof=1)) / (n1 + n2 - 2))
    np.testing.assert_allclose(smd.loc["b"].to_numpy(), (x.mean(0) - y.mean(0)) / pooled, rtol=1e-10)
    assert list(smd.columns) == list(train.uns["regdecoder"]["latent_names"])
    assert sorted(smd.index) == ["a", "b", "c"]


def _planted(train):
    """Groups of cells chosen for a high true activity of TF2 or TF5 (the rest: 'other')."""
    t = train.obsm["tf_activity"]
    hi2 = t["TF2"] > t["TF2"].quantile(0.8)
    hi5 = (t["TF5"] > t["TF5"].quantile(0.8)) & ~hi2
    train.obs["group"] = pd.Categorical(np.select([hi2, hi5], ["TF2-high", "TF5-high"], "other"))
    return train


def _name(label: str) -> str:
    """'TF2 (30)' -> 'TF2'."""
    return label.split(" (")[0]


def _rendered(fig, path) -> np.ndarray:
    """The figure as an RGB image read back from a PNG: it must exist and show something."""
    fig.savefig(path, dpi=60)
    img = plt.imread(path)[..., :3]
    assert path.stat().st_size > 2000 and img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 0.05  # not a blank canvas
    return img


def test_activities_default_picks_the_planted_group_tfs(fitted):
    # cells chosen for a high true activity of one TF: that TF must be the group's top pick
    train = _planted(fitted[1])
    fig = rd.pl.activities(train, "group", n_top=1, return_fig=True)  # groupby positional, as in scanpy
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [_name(t.get_text()) for t in ax.get_xticklabels()]
    assert cols[rows.index("TF2-high")] == "TF2"
    assert cols[rows.index("TF5-high")] == "TF5"
    title = ax.get_title().replace("\n", " ")
    assert "by standardised mean difference vs the other cells" in title and f"{train.n_obs:,} cells by group" in title
    assert "scaled across groups" in fig.axes[-1].get_ylabel()  # the colour bar says what the colours are
    # given TFs: no claim about a ranking
    fig = rd.pl.activities(train, "group", tfs=["TF0"], return_fig=True)
    assert "as given" in fig.axes[0].get_title() and "standardised" not in fig.axes[0].get_title()


def test_activities_heatmap_is_the_group_means(fitted, tmp_path):
    from regdecoder.pl._activities import group_means

    train = _planted(fitted[1])
    means = group_means(train, "regdecoder", "group")
    z, g = np.asarray(train.obsm["regdecoder"]), train.obs["group"].to_numpy()
    np.testing.assert_allclose(means.loc["TF2-high"].to_numpy(), z[g == "TF2-high"].mean(0), rtol=1e-5)
    assert list(means.index) == list(train.obs["group"].cat.categories)
    assert list(means.columns) == list(train.uns["regdecoder"]["latent_names"])
    fig = rd.pl.activities(train, "group", tfs=["TF0", "TF3"], standard_scale=False, return_fig=True)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), means[["TF0", "TF3"]].to_numpy(), rtol=1e-6)
    assert [_name(t.get_text()) for t in ax.get_xticklabels()] == ["TF0", "TF3"]
    assert fig.axes[-1].get_ylabel() == "mean activity"
    _rendered(fig, tmp_path / "heatmap.png")
    with pytest.raises(KeyError, match="groupby"):
        rd.pl.activities(train, "cell_type")
    with pytest.raises(KeyError, match="not latents"):
        rd.pl.activities(train, "group", tfs=["NOPE"])


def test_regulon_sizes_are_the_targets_among_the_genes(fitted):
    from regdecoder.pl._common import regulon_sizes

    _, train, _ = fitted
    sizes = regulon_sizes(train, "regdecoder")
    names = list(train.uns["regdecoder"]["latent_names"])
    net = train.uns["sim"]["net"]
    expected = net[net["target"].isin(train.var_names)].groupby("source").size()
    assert sizes.loc[names].tolist() == expected.loc[names].tolist()
    # without the fit's record (e.g. copied weights), the non-zero learned weights say the same
    del train.uns["regdecoder"]["identifiability"]
    assert regulon_sizes(train, "regdecoder").loc[names].tolist() == expected.loc[names].tolist()


def test_small_regulons_are_flagged_in_labels_and_a_warning(fitted, caplog):
    train = _planted(fitted[1])
    table = train.uns["regdecoder"]["identifiability"]
    table.loc[table["source"] == "TF2", "n_targets"] = 4  # as if TF2 had 4 targets among the genes
    n5 = int(table.loc[table["source"] == "TF5", "n_targets"].iloc[0])
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        fig = rd.pl.activities(train, "group", n_top=1, return_fig=True)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "TF2 (4)*" in labels and f"TF5 ({n5})" in labels
    assert "fewer than 10" in fig.axes[0].get_xlabel()  # the footnote says what the star means
    assert "TF2 (4)" in caplog.text and "TF5" not in caplog.text and "identifiability" in caplog.text


def test_dotplot_colours_are_means_and_sizes_significant_cells(fitted, tmp_path):
    from regdecoder.pl._activities import group_means

    train = _planted(fitted[1])
    fig = rd.pl.dotplot(train, "group", tfs=["TF2", "TF5", "TF0"], alpha=0.05, return_fig=True)
    ax = fig.axes[0]
    dots = ax.collections[0]
    groups = [t.get_text() for t in ax.get_yticklabels()]
    assert groups == ["TF2-high", "TF5-high", "other"] and [_name(t.get_text()) for t in ax.get_xticklabels()] == [
        "TF2", "TF5", "TF0"]  # fmt: skip
    means = group_means(train, "regdecoder", "group").loc[groups, ["TF2", "TF5", "TF0"]]
    np.testing.assert_allclose(dots.get_array(), means.to_numpy().ravel(), rtol=1e-6)
    padj = train.obsm["regdecoder_padj"][["TF2", "TF5", "TF0"]].to_numpy()
    g = train.obs["group"].to_numpy()
    share = np.array([(padj[g == x] < 0.05).mean(0) for x in groups]).ravel()
    np.testing.assert_allclose(dots.get_sizes(), 4.0 + 150.0 * share)
    assert share[0] > 0.5  # TF2 is significant in most TF2-high cells
    assert "padj < 0.05" in ax.get_legend().get_title().get_text()
    assert fig.axes[-1].get_ylabel() == "mean activity in the group"
    assert "as given" in ax.get_title() and "cells by group" in ax.get_title()
    _rendered(fig, tmp_path / "dotplot.png")
    fig = rd.pl.dotplot(train, "group", n_top=1, return_fig=True)  # default picks: Welch's t per group
    top = [_name(t.get_text()) for t in fig.axes[0].get_xticklabels()]
    assert top[:2] == ["TF2", "TF5"] and "Welch" in fig.axes[0].get_title()
    del train.obsm["regdecoder_padj"]
    with pytest.raises(KeyError, match="regdecoder_padj"):
        rd.pl.dotplot(train, "group")


def test_volcano_shows_the_ranked_contrast(fitted, tmp_path):
    train = _planted(fitted[1])
    fig = rd.pl.volcano(train, "group", "TF2-high", n_labels=3, return_fig=True)
    ax = fig.axes[0]
    table = rd.tl.rank_activities(train, "group", groups=["TF2-high"])
    points = np.vstack([np.asarray(c.get_offsets()) for c in ax.collections if len(c.get_offsets())])
    expected = np.column_stack([table["meanchange"], -np.log10(table["padj"])])
    np.testing.assert_allclose(np.sort(points, axis=0), np.sort(expected, axis=0), rtol=1e-6)
    named = [_name(t.get_text()) for t in ax.texts]
    assert named == table["name"].astype(str).tolist()[:3] and named[0] == "TF2"
    n_in = int((train.obs["group"] == "TF2-high").sum())
    assert f"{n_in:,} TF2-high cells vs all other cells ({train.n_obs - n_in:,} cells)" in ax.get_title()
    assert "Welch" in ax.get_title() and "Benjamini-Hochberg" in ax.get_title()
    assert "mean activity difference" in ax.get_xlabel() and "adjusted p-value" in ax.get_ylabel()
    assert any("higher in TF2-high" in t.get_text() for t in ax.get_legend().get_texts())
    _rendered(fig, tmp_path / "volcano.png")
    fig = rd.pl.volcano(train, "group", "TF2-high", reference="TF5-high", method="wilcoxon", return_fig=True)
    assert "vs TF5-high" in fig.axes[0].get_title() and "Wilcoxon" in fig.axes[0].get_title()
    with pytest.raises(KeyError, match="not groups"):
        rd.pl.volcano(train, "group", "B cells")


def test_targets_shows_signs_weights_and_expression(fitted, tmp_path):
    train = _planted(fitted[1])
    net = train.uns["sim"]["net"]
    fig = rd.pl.targets(train, "TF2", "group", net=net, n_top=8, return_fig=True)
    left, right = fig.axes[0], fig.axes[1]
    bars = left.patches[:8]
    genes = [t.get_text() for t in left.get_yticklabels()]
    names = list(train.uns["regdecoder"]["latent_names"])
    w = pd.Series(train.varm["regdecoder_weights"][:, names.index("TF2")], index=train.var_names)
    top = w[w != 0].abs().sort_values(ascending=False).index[:8]
    assert set(genes) == set(top)
    np.testing.assert_allclose([b.get_width() for b in bars], w[genes].to_numpy(), rtol=1e-6)
    prior = net[net["source"] == "TF2"].set_index("target")["weight"]
    red, blue = matplotlib.colors.to_rgba("C3"), matplotlib.colors.to_rgba("C0")
    assert [b.get_facecolor() for b in bars] == [red if prior[gene] > 0 else blue for gene in genes]
    expr = pd.DataFrame(train.X, columns=train.var_names)[genes].groupby(train.obs["group"].to_numpy()).mean()
    np.testing.assert_allclose(right.images[0].get_array(), expr.loc[["TF2-high", "TF5-high", "other"]].T, rtol=1e-5)
    assert "TF2: 8 of its" in fig._suptitle.get_text() and "cells by group" in fig._suptitle.get_text()
    assert left.get_xlabel() == "learned weight" and "adata.X" in fig.axes[-1].get_ylabel()
    assert {t.get_text() for t in left.get_legend().get_texts()} <= {
        "activation in the prior",
        "repression in the prior",
    }
    _rendered(fig, tmp_path / "targets.png")
    fig = rd.pl.targets(train, "TF2", return_fig=True)  # no net: the legend says how to get the signs
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["prior sign unknown: pass net="]
    with pytest.raises(KeyError, match="'TF99' is not a latent"):
        rd.pl.targets(train, "TF99")


def test_targets_needs_the_fitted_weights(fitted):
    model, _, test = fitted
    rd.tl.infer(test, model)
    with pytest.raises(KeyError, match="regdecoder_weights"):
        rd.pl.targets(test, "TF2")


@pytest.mark.parametrize(("lo", "hi"), [(3.3, 9.9), (0.48, 9.1), (2.0, 20.0), (1.0, 15.0), (0.1, 100.0), (0.05, 500.0)])
def test_load_curve_x_labels_do_not_overlap(lo, hi):
    import pandas as pd

    xs = np.geomspace(lo, hi, 7)
    df = pd.DataFrame(
        [
            {"model": m, "alpha_d": a, "test_mse": 1.0 / a + i, "pcc": 1 - 0.1 / a}
            for i, m in enumerate("ab")
            for a in xs
        ]
    )
    fig = rd.pl.load_curve(df, return_fig=True)
    for ax in fig.axes:
        shown = [t.get_text() for t in ax.get_xticklabels(which="both") if t.get_text()]
        assert len(shown) >= 1
        assert _crowded_labels(fig, ax.xaxis) == [], shown


def test_recovery_title_says_which_cells(fitted, inferred):
    _, train, _ = fitted
    fig = rd.pl.recovery(train, return_fig=True)
    assert fig._suptitle.get_text().startswith(f"true vs inferred TF activity of {train.n_obs:,} training cells")
    fig = rd.pl.recovery(inferred, return_fig=True)
    assert f"of {inferred.n_obs} cells inferred with the decoder frozen:" in fig._suptitle.get_text()
    fig = rd.pl.recovery(inferred, cells="the 40 held-out cells", n_examples=0, return_fig=True)
    assert fig._suptitle.get_text() == "true vs inferred TF activity of the 40 held-out cells"
