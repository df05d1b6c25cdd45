"""benchmarks/scale.py runs end to end at tiny sizes, and its pieces are right."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # end-to-end runs of scripts (seconds to a minute each)


def test_generated_file_is_sparse_counts_of_the_model(tmp_path, bench):
    scale = bench("scale")
    path = tmp_path / "x.h5ad"
    nnz = scale.generate(path, 2_500, n_genes=40, n_tfs=4, density=0.3, seed=0)
    a = ad.read_h5ad(path, backed="r")
    assert a.shape == (2_500, 40) and type(a.X).__name__.endswith("CSRDataset")
    x = a.X[:]
    assert x.nnz == nnz and np.all(x.data == np.round(x.data)) and x.data.min() >= 1
    z = np.load(str(path) + ".z.npy")
    w, net = scale.make_net(40, 4, 0.3)
    expected = np.maximum(z @ w.T, 0) * scale.DEPTH  # Poisson mean
    assert np.all(x.toarray()[expected == 0] == 0)  # zeros of the ReLU stay zero
    ratio = x.toarray().sum() / expected.sum()
    assert 0.97 < ratio < 1.03
    a.file.close()


def test_mean_pcc_and_slope_against_numpy(bench):
    scale = bench("scale")
    rng = np.random.default_rng(0)
    z, t = rng.normal(size=(500, 3)), rng.normal(size=(500, 5))
    cols = np.array([4, 0, 2])
    ref = np.mean([np.corrcoef(z[:, j], t[:, c])[0, 1] for j, c in enumerate(cols)])
    assert abs(scale.mean_pcc(z, t, cols, signed=True, chunk=77) - ref) < 1e-10
    assert abs(scale.slope([10, 100, 1000], [2, 20, 200]) - 1) < 1e-12


def test_scale_quick(tmp_path, bench):
    df = bench("scale").main(["--quick", "--out", str(tmp_path), "--data-dir", str(tmp_path / "data")])
    assert (tmp_path / "scale_quick.csv").exists() and (tmp_path / "scale_quick.png").exists()
    saved = pd.read_csv(tmp_path / "scale_quick.csv")
    assert list(saved.n_cells) == [300, 900] == list(df.n_cells)
    for col in ("sec_per_epoch", "fit_cells_per_s", "infer_cells_per_s", "mlm_cells_per_s", "peak_rss_fit_infer_gib"):
        assert (saved[col] > 0).all(), col
