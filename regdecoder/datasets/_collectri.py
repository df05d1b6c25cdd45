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

    A local table is never translated between organisms: its gene symbols must be
    written as ``organism``'s are (human: capitals, ``SPI1``; mouse, rat and others:
    not all capitals, ``Spi1``), otherwise it is refused, so that asking for the mouse
    network never returns the human table.

    Parameters
    ----------
    path
        Local file with the network.
    organism
        The organism the network is for: passed to decoupler's getter, and checked
        against the gene symbols of a local file.

    Returns
    -------
    DataFrame with ``source`` (TF), ``target`` (gene) and ``weight`` (+1 activation,
    -1 repression).

    Raises
    ------
    FileNotFoundError
        ``path`` or ``REGDECODER_COLLECTRI`` names no file.
    ValueError
        The local table's gene symbols are not written as ``organism``'s are (names the
        ways to get the right table).
    TypeError
        ``organism`` is not a non-empty string.
    RuntimeError
        No local file, and decoupler is missing or could not download the network.
    """
    if not isinstance(organism, str) or not organism:
        msg = f"`organism` must be a name such as 'human' or 'mouse', got {organism!r}."
        raise TypeError(msg)
    if path is not None:
        return _check_organism(read_net(path), organism, f"{str(path)!r}")
    env = os.environ.get(COLLECTRI_ENV)
    if env:
        if not Path(env).is_file():
            msg = f"The environment variable {COLLECTRI_ENV}={env!r} names no file; point it at a CollecTRI TSV."
            raise FileNotFoundError(msg)
        return _check_organism(read_net(env), organism, f"{env!r} (named by {COLLECTRI_ENV})")
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
                f"file: `rd.datasets.collectri(path='collectri_{organism}.tsv')` or set the environment variable "
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


def _capitals(net: pd.DataFrame) -> float:
    """Fraction of the target gene symbols (those with letters) written in capitals only."""
    genes = pd.Series(pd.unique(net["target"].astype(str)))
    lettered = genes[genes.str.contains(r"[A-Za-z]", regex=True)]
    return float((lettered == lettered.str.upper()).mean()) if len(lettered) else 1.0


def _check_organism(net: pd.DataFrame, organism: str, where: str) -> pd.DataFrame:
    """Refuse a local table whose gene symbols are not written as ``organism``'s (no silent translation)."""
    human = organism.lower() in ("human", "homo sapiens", "hsapiens", "9606")
    capitals = _capitals(net)
    if human == (capitals >= 0.5):
        return net
    looks = "human (gene symbols in capitals, e.g. SPI1)" if capitals >= 0.5 else "not human (e.g. Spi1)"
    msg = (
        f"The network in {where} looks {looks}: {capitals:.0%} of its target symbols are all capitals, but "
        f"organism={organism!r} was asked for. It is not translated: pass the path of a {organism} table with "
        f"`path=`, point {COLLECTRI_ENV} at one (or unset it to let decoupler download "
        f"`decoupler.op.collectri(organism={organism!r})`), or ask for the organism the file holds."
    )
    raise ValueError(msg)
