"""Package-wide settings: ``rd.settings`` (verbosity, threads, device, progress bars)."""

from __future__ import annotations

import argparse
import logging
import time

import torch

__all__ = ["Stages", "add_threads_option", "settings"]

_LOGGER_NAME = "regdecoder"
# verbosity level -> logging level
_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
_NAMES = {"error": 0, "warning": 1, "info": 2, "debug": 3}


class _Formatter(logging.Formatter):
    """Plain messages for info and debug; ``WARNING: ...`` / ``ERROR: ...`` above."""

    def format(self, record: logging.LogRecord) -> str:
        msg = super().format(record)
        return f"{record.levelname}: {msg}" if record.levelno >= logging.WARNING else msg


class Settings:
    """Settings of the whole package, shared as ``rd.settings``.

    Attributes are read and set like variables::

        import regdecoder as rd

        rd.settings.verbosity = "info"  # or 2: log what every tool does
        rd.settings.n_threads = 1  # see the thread advice below

    Thread advice: on a small machine shared with other work (a laptop, a CI runner,
    a 2-core VM), ``rd.settings.n_threads = 1`` can make fitting several times faster
    than torch's default of one thread per core, because the threads then compete
    for the same cores. Try 1 first on such machines; on a large machine of your own,
    leave the default or set the number of physical cores.
    """

    def __init__(self) -> None:
        self._device = "auto"
        self._progress = True
        self._threads: int | None = None  # the user's choice, re-applied by every fit

    # ----------------------------------------------------------------- verbosity
    @property
    def verbosity(self) -> int:
        """How much the ``'regdecoder'`` logger says, 0-3.

        0 (``'error'``): errors only; 1 (``'warning'``, the default): warnings too;
        2 (``'info'``): one line per step (what is fitted, for how long, what is
        written); 3 (``'debug'``): everything. Set an int or one of the names. Reading
        it gives the level the logger has now (also when it was set through
        :mod:`logging`). Setting it sets the level of ``logging.getLogger('regdecoder')``
        and, if no handler would print its records, attaches one that writes to
        stderr; ``logging.basicConfig`` is never called.
        """
        level = logging.getLogger(_LOGGER_NAME).getEffectiveLevel()
        if level <= logging.DEBUG:
            return 3
        if level <= logging.INFO:
            return 2
        if level <= logging.WARNING:
            return 1
        return 0

    @verbosity.setter
    def verbosity(self, value: int | str) -> None:
        if isinstance(value, str) and value.lower() in _NAMES:
            value = _NAMES[value.lower()]
        if isinstance(value, bool) or not isinstance(value, int) or value not in _LEVELS:
            msg = f"`verbosity` must be 0, 1, 2, 3 or one of {list(_NAMES)}, got {value!r}."
            raise ValueError(msg)
        logger = logging.getLogger(_LOGGER_NAME)
        logger.setLevel(_LEVELS[value])
        if not logger.hasHandlers():  # neither this logger nor an ancestor has one
            handler = logging.StreamHandler()
            handler.setFormatter(_Formatter("%(message)s"))
            logger.addHandler(handler)

    # ----------------------------------------------------------------- n_threads
    @property
    def n_threads(self) -> int:
        """Threads torch uses on the CPU (``torch.get_num_threads`` / ``torch.set_num_threads``).

        On a small or shared machine, 1 thread can be several times faster than the
        default (one per core): see the class docstring. A number set here is also
        re-applied at the start of every ``rd.tl.fit_decoder`` and ``rd.tl.infer``: tools
        that run numba in parallel (decoupler's methods, scanpy's UMAP) reset the OpenMP
        threads torch shares with them to one per core, which would silently undo it (and
        a fit on another number of threads differs in the last digits). ``None`` stops
        re-applying it.
        """
        return torch.get_num_threads()

    @n_threads.setter
    def n_threads(self, value: int | None) -> None:
        if value is None:
            self._threads = None
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"`n_threads` must be a positive int (or None), got {value!r}."
            raise ValueError(msg)
        self._threads = value
        torch.set_num_threads(value)

    def apply_threads(self) -> None:
        """Set torch's thread count back to the one set in ``n_threads``, if one was set."""
        if self._threads is not None and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)

    # -------------------------------------------------------------------- device
    @property
    def device(self) -> str:
        """Default device for fitting and inference.

        ``'auto'`` (the default: CUDA if available, else the CPU), ``'cpu'``,
        ``'cuda'``, ``'cuda:1'``...
        """
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        if not isinstance(value, str):
            msg = f"`device` must be a string such as 'auto', 'cpu' or 'cuda', got {value!r}."
            raise ValueError(msg)
        if value != "auto":
            try:
                torch.device(value)
            except (RuntimeError, ValueError) as err:
                msg = f"`device={value!r}` is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
                raise ValueError(msg) from err
        self._device = value

    # ------------------------------------------------------------------ progress
    @property
    def progress(self) -> bool:
        """Show progress bars (tqdm) during long fits (default True)."""
        return self._progress

    @progress.setter
    def progress(self, value: bool) -> None:
        if not isinstance(value, bool):
            msg = f"`progress` must be True or False, got {value!r}."
            raise ValueError(msg)
        self._progress = value

    def __repr__(self) -> str:
        return (
            f"regdecoder settings: verbosity={self.verbosity}, n_threads={self.n_threads}, "
            f"device={self.device!r}, progress={self.progress}"
        )


class Stages:
    """Info lines that say how long each stage of a tool took, one line per stage.

    ``clock = Stages()`` at the start; ``clock.done("read %d cells", n)`` after a stage logs
    ``read 700 cells in 0.2 s`` (the time since the last line); ``clock.total`` is the
    time since the start. Lines go to the ``'regdecoder'`` logger at info level
    (``rd.settings.verbosity = 'info'``, the command line's default).
    """

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()

    def done(self, msg: str, *args) -> None:
        now = time.perf_counter()
        logging.getLogger(_LOGGER_NAME).info(f"{msg} in %.1f s", *args, now - self.last)
        self.last = now

    @property
    def total(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """The ``--n-threads`` option every command takes (it sets :attr:`Settings.n_threads`)."""
    parser.add_argument(
        "--n-threads",
        metavar="N",
        type=int,
        default=None,
        help="CPU threads for torch; on a small or shared machine 1 can be several times faster "
        "(default: torch's choice, one per core)",
    )


#: The package's settings object (``rd.settings``).
settings = Settings()
