"""Package-wide settings: ``rd.settings``."""

from __future__ import annotations

import logging

import torch

_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
_NAMES = {"error": 0, "warning": 1, "info": 2, "debug": 3}


class Settings:
    """Verbosity, threads, default device and progress bars of regdecoder.

    Attributes
    ----------
    verbosity
        0 ``'error'``, 1 ``'warning'`` (default), 2 ``'info'``, 3 ``'debug'``: the level of
        the ``'regdecoder'`` logger.
    n_threads
        torch's intra-op threads (``torch.set_num_threads``). On a small machine shared with
        other jobs, one thread can be several times faster than torch's default.
    device
        Default device of fits: ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``...
    progress
        Show progress bars.
    """

    def __init__(self) -> None:
        self.device = "auto"
        self.progress = True
        self._verbosity = 1
        logging.getLogger("regdecoder").setLevel(_LEVELS[self._verbosity])

    @property
    def verbosity(self) -> int:
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int | str) -> None:
        level = _NAMES.get(value, value) if isinstance(value, str) else value
        if level not in _LEVELS:
            msg = f"verbosity must be 0-3 or one of {list(_NAMES)}, got {value!r}."
            raise ValueError(msg)
        self._verbosity = int(level)
        logger = logging.getLogger("regdecoder")
        logger.setLevel(_LEVELS[self._verbosity])
        # Warnings reach the user through Python's last-resort handler; info and debug lines
        # need a handler of their own (added once, never to the root logger).
        if self._verbosity >= 2 and not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
            logger.addHandler(handler)

    @property
    def n_threads(self) -> int:
        return torch.get_num_threads()

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        if int(value) < 1:
            msg = f"n_threads must be a positive integer, got {value!r}."
            raise ValueError(msg)
        torch.set_num_threads(int(value))


settings = Settings()
