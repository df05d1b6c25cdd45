"""Golden outputs of every fit path, recorded before the "one house" refactor.

`tests/golden/make_golden.py` wrote `golden.npz` with the code as it was; every path must
still give the same latents (training and held-out cells) and weights, at the tolerances
of the streamed-vs-in-memory equivalence tests (latents within 1e-3 of their largest
magnitude, and so are the weights). Files saved by version 0.1.0 must still load.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import regdecoder as rd

GOLDEN = Path(__file__).parent / "golden"
spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
mg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mg)
REF = dict(np.load(GOLDEN / "golden.npz"))
# Fits now solve their training cells exactly for the final weights, as infer does; the
# reference for those paths is 0.1.0's infer on the training cells (make_golden_train_inferred.py).
TRAIN = {k.replace("/train_inferred", "/train"): v for k, v in np.load(GOLDEN / "golden_train_inferred.npz").items()}
TRAIN["als_gloo2/train"] = TRAIN["als_dense/train"]  # 2 processes give the one-process fit (tested in train/)


@pytest.fixture(autouse=True)
def _v010_latent_objective(monkeypatch):
    """0.1.0's latents minimise the censored loss without a ridge: pin the latents' ridge back to the
    solver's 1e-6 (as recipe='v010' pins the ALS), so the paths compare on one objective. The ridge
    of 0.2's statistic (EXACT_RIDGE) is tested against its closed form in tests/tl and tests/train.
    At that ridge the latent solver's default stop (relative KKT residual 1e-3) leaves directions the
    cell's genes barely determine up to 3% off (gradient_fast: 39 of 780 latents past 1e-3 of the
    largest magnitude), so it is solved to 1e-7 here."""
    monkeypatch.setattr(rd.train._latents, "EXACT_RIDGE", 1e-6)
    monkeypatch.setitem(rd.train._fit.INFER_ALS, "tol", 1e-7)


#: A path trained by the gradient engine (Adam) from 10 ALS epochs, whose epochs amplify rounding
#: differences of that start: when the ALS weight step moved from LU to Cholesky factors (issue 17:
#: the batched LU crashed on PBMC 3k), one soft_mask training latent of 780 moved by 2.0e-3 of the
#: largest (its held-out latents by 5.7e-5, its weights by 2.2e-4). Compared within 3e-3 of it.
_AMPLIFIED = {"soft_mask": 3e-3}


def _check(name, got: dict) -> None:
    for k, v in got.items():
        ref = TRAIN.get(k, REF[k])
        assert v.shape == ref.shape, k
        # weights, like latents, within 1e-3 of their largest magnitude: a fixed 1e-3 was tighter than
        # float32 rounding accumulated over a 200-epoch Adam run (gradient_fast: one weight of 3.11 off
        # by 0.00103 on another install of the same torch, 3.3e-4 relative). Count models infer new
        # cells by 500 Adam steps from the censored least-squares latents of the counts, which the latent
        # solver now gives converged (0.1.0: 20 imputation rounds); Adam stops before the optimum, so the
        # start shows: one of nb/test's 180 latents moved 1.1e-3 of the largest magnitude. Those paths'
        # new cells compare at 2e-3.
        rel = 2e-3 if name in COUNT_PATHS and k.endswith("/test") else 1e-3
        rel = max(rel, _AMPLIFIED.get(name, 0.0))
        np.testing.assert_allclose(v, ref, atol=rel * np.abs(ref).max(), err_msg=k)


COUNT_PATHS = set(mg.count_paths())


def _paths():
    return {**mg.paths(), **mg.count_paths(), **mg.encoder_paths()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_paths()))
def test_golden_path(name, tmp_path, monkeypatch):
    fn = _paths()[name]
    tr, te = mg.counts() if name in mg.count_paths() else mg.data()
    if name == "als_gloo2":  # the worker processes do not see the pinned ridge: their latents are 0.2's;
        # compare them with the one-process fit's under the same objective, the weights with 0.1.0's
        monkeypatch.undo()
        one_tr, one_te = mg.data()
        mg.paths()["als_dense"](one_tr, one_te, tmp_path / "one")
        one = mg.collect("als_dense", one_tr, one_te, "regdecoder")
        same = {"als_gloo2/train": one["als_dense/train"], "als_gloo2/test": one["als_dense/test"]}
        fn(tr, te, tmp_path)
        got = mg.collect(name, tr, te, "regdecoder")
        for k, ref in same.items():
            np.testing.assert_allclose(got[k], ref, atol=1e-3 * np.abs(ref).max(), err_msg=k)
        _check(name, {k: v for k, v in got.items() if k not in same})
        return
    result = fn(tr, te, tmp_path)
    key = result.key if name in mg.encoder_paths() else "regdecoder"
    _check(name, mg.collect(name, tr, te, key))


def test_model_file_of_v010_loads_and_infers():
    model = rd.tl.Model.load(GOLDEN / "model_v010.pt")
    _, te = mg.data()
    rd.tl.infer(te, model)  # a 0.1.0 model has no gene means: its latents are its activities
    assert te.uns["regdecoder"]["statistic"] == "z"
    _check("als_dense", {"als_dense/test": te.obsm["regdecoder"]})


def test_encoder_file_of_v010_loads_and_encodes():
    em = rd.tl.Model.load(GOLDEN / "encoder_v010.pt")
    _, te = mg.data()
    rd.tl.encode(te, em)
    _check("encoder", {"encoder/test": np.asarray(te.obsm[em.key])})
