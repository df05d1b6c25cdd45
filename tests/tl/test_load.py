"""rd.tl.load (regdecoder/tl/_load.py): the loads of a saved model, given by its path."""

from pathlib import Path

import pytest

import regdecoder as rd


def test_load_of_a_saved_model_from_its_path(fitted, tmp_path):
    model, train, _ = fitted
    path = tmp_path / "model.pt"
    model.save(path)
    expected = rd.tl.load(model)
    assert rd.tl.load(str(path)) == expected  # a str, as typed at a prompt
    assert rd.tl.load(Path(path)) == expected
    # the model file knows its training cells: the same numbers the fit stored in the AnnData
    assert rd.tl.load(str(path))["alpha_d"] == pytest.approx(rd.tl.load(train)["alpha_d"])
    assert rd.tl.load(str(path), n_obs=10)["n_cells"] == 10


def test_load_of_a_path_that_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        rd.tl.load(str(tmp_path / "nothing.pt"))
    (tmp_path / "notes.pt").write_text("not a model")
    with pytest.raises(ValueError, match="notes.pt"):
        rd.tl.load(tmp_path / "notes.pt")
