"""rd.pl: figures built from what rd.tl wrote."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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
        np.testing.assert_allclose(xy[:, 1], inferred.obsm["regdecoder"][:, names.index(tf)], rtol=1e-6)


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
