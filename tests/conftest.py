import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import regdecoder as rd  # noqa: E402

rd.settings.progress = False  # no progress bars in the test log


@pytest.fixture(autouse=True)
def _torch_threads():
    """Every test leaves torch's thread count (and rd.settings' choice) as it found it. The benchmark scripts the tests
    run set it (sparse_linear.py to 2), and every later test then ran with 2 threads: on a
    busy 2-core machine 10-30x slower (a 3 s test took 84 s in the whole suite)."""
    n, pinned = torch.get_num_threads(), rd.settings._threads
    yield
    rd.settings._threads = pinned
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.fixture(scope="session")
def _small_grn():
    # ~30 targets per TF, decoder load alpha_d ~ 13: recovery should be near perfect.
    return rd.sim.grn(n_obs=340, n_genes=120, n_tfs=8, density=0.25, noise=0.1, seed=3)


@pytest.fixture
def small_grn(_small_grn):
    """A fresh copy of a small simulated GRN data set."""
    return _small_grn.copy()


@pytest.fixture
def split_grn(small_grn):
    return rd.pp.split(small_grn, n_test=40, seed=0)


@pytest.fixture(scope="session")
def _fitted(_small_grn):
    train, test = rd.pp.split(_small_grn, n_test=40, seed=0)
    # the paper's model (eq. 6) has no per-gene offset
    model = rd.tl.fit_decoder(train, net=train.uns["sim"]["net"], seed=0, bias=False)
    return model, train, test


@pytest.fixture
def fitted(_fitted):
    """(model, train, test): a masked decoder fitted on the small GRN (train has results)."""
    model, train, test = _fitted
    return model, train.copy(), test.copy()


@pytest.fixture
def fit_before_training():
    """``rd.tl.fit_decoder`` for calls that must fail before training: a callback counts the
    epochs, and none may have run when the call returns or raises."""

    def fit(adata, **kw):
        epochs = []
        recipe = {**kw.pop("recipe", {}), "callback": lambda s: epochs.append(s["epoch"])}
        try:
            return rd.tl.fit_decoder(adata, recipe=recipe, **kw)
        finally:
            assert epochs == [], f"the error came after {len(epochs)} epoch(s) of training"

    return fit
