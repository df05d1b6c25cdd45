"""Prior TF -> target networks in decoupler's long format (``source``, ``target``, ``weight``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

logger = logging.getLogger("regdecoder")

#: Environment variable naming a local CollecTRI table (TSV or CSV with source/target/weight).
COLLECTRI_ENV = "REGDECODER_COLLECTRI"


def read_net(path: str | os.PathLike, *, sep: str | None = None) -> pd.DataFrame:
    """Read a network table (CSV or TSV) in decoupler's long format.

    Parameters
    ----------
    path
        File with at least the columns ``source`` and ``target`` (and usually
        ``weight``; a negative weight marks a repression).
    sep
        Column separator; by default a tab for ``.tsv``/``.tab``/``.txt`` files and a
        comma otherwise.

    Returns
    -------
    The network as a DataFrame (source and target as strings).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"No network file at {str(path)!r}."
        raise FileNotFoundError(msg)
    if sep is None:
        sep = "\t" if path.suffix.lower() in {".tsv", ".tab", ".txt"} or path.name.endswith(".tsv.gz") else ","
    net = pd.read_csv(path, sep=sep)
    missing = [c for c in ("source", "target") if c not in net.columns]
    if missing:
        msg = (
            f"{str(path)!r} has no column(s) {missing} (columns: {list(net.columns)}). A network table needs "
            "`source` (TF), `target` (gene) and optionally `weight`; rename the columns or pass `sep=` if the "
            "separator was not detected."
        )
        raise ValueError(msg)
    net["source"] = net["source"].astype(str)
    net["target"] = net["target"].astype(str)
    return net


def collectri(path: str | os.PathLike | None = None, *, organism: str = "human") -> pd.DataFrame:
    """The CollecTRI TF -> target network (Mueller-Dott et al. 2023) in decoupler's format.

    Looked up in this order:

    1. ``path``, a local CSV/TSV file with ``source``, ``target``, ``weight``;
    2. the file named by the environment variable ``REGDECODER_COLLECTRI``;
    3. decoupler's own getter (``decoupler.op.collectri``), which needs decoupler and
       an internet connection.

    Parameters
    ----------
    path
        Local file with the network.
    organism
        Passed to decoupler's getter (ignored for local files).

    Returns
    -------
    DataFrame with ``source`` (TF), ``target`` (gene) and ``weight`` (+1 activation,
    -1 repression).
    """
    if path is not None:
        return read_net(path)
    env = os.environ.get(COLLECTRI_ENV)
    if env:
        if not Path(env).is_file():
            msg = f"The environment variable {COLLECTRI_ENV}={env!r} names no file; point it at a CollecTRI TSV."
            raise FileNotFoundError(msg)
        return read_net(env)
    try:
        import decoupler as dc
    except ImportError:
        dc = None
    if dc is not None:
        try:
            net = dc.op.collectri(organism=organism)
        except Exception as err:  # noqa: BLE001 - any network failure: say what to do instead
            msg = (
                f"decoupler could not download CollecTRI ({type(err).__name__}: {err}). Offline, give a local "
                f"file: `rd.datasets.collectri(path='collectri_human.tsv')` or set the environment variable "
                f"{COLLECTRI_ENV} to its path."
            )
            raise RuntimeError(msg) from err
        return net[["source", "target", "weight"]].reset_index(drop=True)
    msg = (
        "No CollecTRI network available: pass a local file with `rd.datasets.collectri(path=...)` (or set the "
        f"environment variable {COLLECTRI_ENV} to its path), or install decoupler (`pip install decoupler`) "
        "and go online so its getter can download it."
    )
    raise RuntimeError(msg)
