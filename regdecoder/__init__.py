"""regdecoder: decoders trained without an encoder; TF activities as learned representations."""

from . import datasets, get, metrics, nn, pl, pp, sim, tl, train
from ._settings import settings
from ._version import __version__

__all__ = ["__version__", "datasets", "get", "metrics", "nn", "pl", "pp", "settings", "sim", "tl", "train"]
