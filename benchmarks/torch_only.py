"""The image benchmarks' import of regdecoder on machines without its AnnData half.

The image experiments use only ``rd.nn``, ``rd.train`` and ``rd.datasets``: PyTorch,
numpy and pandas (``tests/test_architecture.py`` keeps ``nn`` and ``train`` free of
anndata). A GPU machine with PyTorch but without anndata or scanpy can run them: where
``import regdecoder`` fails for lack of one of those, this builds the package object from
those three subpackages alone, without running its ``__init__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

#: The packages whose absence is tolerated (the AnnData half of regdecoder needs them).
ANNDATA_HALF = ("anndata", "scanpy", "h5py", "natsort", "zarr")
TORCH_HALF = ("nn", "train", "datasets")


def import_regdecoder() -> types.ModuleType:
    """``import regdecoder``; without anndata/scanpy, a package object holding nn, train and datasets."""
    try:
        return importlib.import_module("regdecoder")
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in ANNDATA_HALF:
            raise
        missing = err.name
    spec = importlib.util.find_spec("regdecoder")
    pkg = types.ModuleType("regdecoder", "regdecoder's PyTorch half (nn, train, datasets); anndata is missing")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__file__ = spec.origin
    sys.modules["regdecoder"] = pkg
    for name in TORCH_HALF:
        setattr(pkg, name, importlib.import_module(f"regdecoder.{name}"))
    print(f"({missing} is not installed: using regdecoder's nn, train and datasets only)", file=sys.stderr)
    return pkg
