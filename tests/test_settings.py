"""rd.settings: verbosity, n_threads, device, progress; every test restores the state it changes."""

import logging

import pytest
import torch

import regdecoder as rd
from regdecoder._settings import Settings


@pytest.fixture
def restore():
    """Put back the logger's level and handlers, torch's thread count and the stored settings."""
    logger = logging.getLogger("regdecoder")
    level, handlers = logger.level, list(logger.handlers)
    threads, pinned = torch.get_num_threads(), rd.settings._threads
    device, progress = rd.settings.device, rd.settings.progress
    yield
    rd.settings._threads = pinned
    for h in logger.handlers:
        if h not in handlers:
            logger.removeHandler(h)
    logger.setLevel(level)
    torch.set_num_threads(threads)
    rd.settings.device, rd.settings.progress = device, progress


def test_settings_is_exposed():
    assert isinstance(rd.settings, Settings)
    assert "verbosity=" in repr(rd.settings)


def test_defaults(restore):
    # nothing is set at import: the logger inherits the root logger's default, WARNING
    root = logging.getLogger()
    root_level = root.level
    try:
        root.setLevel(logging.WARNING)
        logging.getLogger("regdecoder").setLevel(logging.NOTSET)
        assert Settings().verbosity == 1
    finally:
        root.setLevel(root_level)
    assert Settings().device == "auto"
    assert Settings().progress is True


@pytest.mark.parametrize(
    ("value", "level", "number"),
    [
        (0, logging.ERROR, 0),
        (1, logging.WARNING, 1),
        (2, logging.INFO, 2),
        (3, logging.DEBUG, 3),
        ("error", logging.ERROR, 0),
        ("warning", logging.WARNING, 1),
        ("INFO", logging.INFO, 2),
        ("debug", logging.DEBUG, 3),
    ],
)
def test_verbosity_sets_logger_level(restore, value, level, number):
    rd.settings.verbosity = value
    assert logging.getLogger("regdecoder").level == level
    assert rd.settings.verbosity == number


def test_verbosity_reads_the_logger(restore):
    logging.getLogger("regdecoder").setLevel(logging.DEBUG)
    assert rd.settings.verbosity == 3


@pytest.mark.parametrize("bad", [4, -1, "loud", 2.0, True, None])
def test_verbosity_rejects_bad_values(restore, bad):
    with pytest.raises(ValueError, match="verbosity"):
        rd.settings.verbosity = bad


def test_verbosity_attaches_a_handler_only_when_none_prints(restore):
    logger = logging.getLogger("regdecoder")
    root = logging.getLogger()
    saved_root = list(root.handlers)
    saved_own = list(logger.handlers)
    try:
        for h in saved_root:
            root.removeHandler(h)
        for h in saved_own:
            logger.removeHandler(h)
        rd.settings.verbosity = "info"
        assert len(logger.handlers) == 1
        rd.settings.verbosity = "debug"  # a second call adds no second handler
        assert len(logger.handlers) == 1
        logger.removeHandler(logger.handlers[0])
        # a handler on an ancestor (e.g. from the user's basicConfig) already prints: add none
        root.addHandler(logging.NullHandler())
        rd.settings.verbosity = "info"
        assert logger.handlers == []
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved_root:
            root.addHandler(h)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        for h in saved_own:
            logger.addHandler(h)


def test_verbosity_info_messages_reach_the_handler(restore, capsys):
    logger = logging.getLogger("regdecoder")
    root = logging.getLogger()
    saved_root = list(root.handlers)
    try:
        for h in saved_root:
            root.removeHandler(h)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        rd.settings.verbosity = "info"
        logger.info("hello from the test")
        logger.debug("not shown")
        logger.warning("careful")
        err = capsys.readouterr().err
        assert "hello from the test" in err
        assert "not shown" not in err
        assert "WARNING: careful" in err
    finally:
        for h in saved_root:
            root.addHandler(h)


def test_n_threads_calls_torch(restore):
    rd.settings.n_threads = 1
    assert torch.get_num_threads() == 1
    assert rd.settings.n_threads == 1


def test_n_threads_survives_numba(restore, small_grn):
    # numba's parallel OpenMP pool (decoupler's methods, scanpy's UMAP) resets the OpenMP threads
    # torch shares with it to one per core when it starts; regdecoder's tools put the user's number back
    rd.settings.n_threads = 1
    torch.set_num_threads(2)  # what numba's pool does to torch when it starts
    seen = []
    rd.tl.fit_decoder(small_grn, net=small_grn.uns["sim"]["net"],
                      recipe={"max_epochs": 2, "callback": lambda state: seen.append(torch.get_num_threads())})  # fmt: skip
    assert seen == [1, 1] and rd.settings.n_threads == 1
    model = rd.tl.fit_decoder(small_grn, net=small_grn.uns["sim"]["net"], recipe={"max_epochs": 2})
    torch.set_num_threads(2)
    rd.tl.infer(small_grn, model, key_added="new")
    assert torch.get_num_threads() == 1
    rd.settings.n_threads = None  # no longer re-applied
    torch.set_num_threads(2)
    rd.tl.fit_decoder(small_grn, net=small_grn.uns["sim"]["net"], recipe={"max_epochs": 1})
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_n_threads_rejects_bad_values(restore, bad):
    with pytest.raises(ValueError, match="n_threads"):
        rd.settings.n_threads = bad


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_is_stored(restore, value):
    rd.settings.device = value
    assert rd.settings.device == value


@pytest.mark.parametrize("bad", ["gpu0", 0, None])
def test_device_rejects_bad_values(restore, bad):
    with pytest.raises(ValueError, match="device"):
        rd.settings.device = bad


def test_progress_is_stored(restore):
    rd.settings.progress = False
    assert rd.settings.progress is False
    rd.settings.progress = True
    assert rd.settings.progress is True
    with pytest.raises(ValueError, match="progress"):
        rd.settings.progress = "yes"
