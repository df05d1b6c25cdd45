"""regdecoder: decoders trained without an encoder; TF activities as learned representations."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("regdecoder")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from . import datasets, get, metrics, nn, pl, pp, sim, tl, train  # noqa: E402
from ._settings import settings  # noqa: E402, F401  (rd.settings; not in __all__ until the core merge)

__all__ = ["__version__", "datasets", "get", "metrics", "nn", "pl", "pp", "sim", "tl", "train"]
