"""rd.datasets.collectri (regdecoder/datasets/_collectri.py): a local table is returned only
for the organism its gene symbols belong to; nothing is translated silently."""

import os
import sys

import pandas as pd
import pytest

import regdecoder as rd
from regdecoder.datasets._collectri import COLLECTRI_ENV

COLLECTRI = os.environ.get(COLLECTRI_ENV)


def _net(genes):
    tf = "SPI1" if genes is HUMAN else "Spi1"
    return pd.DataFrame({"source": [tf] * len(genes), "target": genes, "weight": 1.0})


HUMAN = ["CD14", "LYZ", "CSF1R", "C9orf72", "ITGAM"]  # one human symbol with small letters, as in CollecTRI
MOUSE = ["Cd14", "Lyz2", "Csf1r", "Itgam", "H2-Ab1"]


@pytest.fixture
def tables(tmp_path):
    paths = {}
    for name, genes in (("human", HUMAN), ("mouse", MOUSE)):
        paths[name] = tmp_path / f"collectri_{name}.tsv"
        _net(genes).to_csv(paths[name], sep="\t", index=False)
    return paths


def test_a_human_table_is_refused_for_mouse_from_the_environment(tables, monkeypatch):
    monkeypatch.setenv(COLLECTRI_ENV, str(tables["human"]))
    assert list(rd.datasets.collectri()["target"]) == HUMAN  # human is the default
    with pytest.raises(ValueError, match="organism='mouse'") as err:
        rd.datasets.collectri(organism="mouse")
    msg = str(err.value)
    assert COLLECTRI_ENV in msg and "path=" in msg and "not translated" in msg and "80%" in msg


def test_each_table_for_its_own_organism_by_path(tables, monkeypatch):
    monkeypatch.delenv(COLLECTRI_ENV, raising=False)
    pd.testing.assert_frame_equal(rd.datasets.collectri(tables["mouse"], organism="mouse"), _net(MOUSE))
    pd.testing.assert_frame_equal(rd.datasets.collectri(tables["human"], organism="human"), _net(HUMAN))
    with pytest.raises(ValueError, match="looks not human"):
        rd.datasets.collectri(tables["mouse"])  # organism='human' by default
    with pytest.raises(ValueError, match="looks human"):
        rd.datasets.collectri(tables["human"], organism="rat")


def test_mouse_from_a_mouse_table_in_the_environment(tables, monkeypatch):
    monkeypatch.setenv(COLLECTRI_ENV, str(tables["mouse"]))
    assert list(rd.datasets.collectri(organism="mouse")["target"]) == MOUSE


def test_the_download_asks_decoupler_for_the_organism(monkeypatch):
    dc = pytest.importorskip("decoupler")
    monkeypatch.delenv(COLLECTRI_ENV, raising=False)
    asked = []

    def getter(organism):
        asked.append(organism)
        return _net(MOUSE).assign(extra=0)

    monkeypatch.setattr(dc.op, "collectri", getter)
    pd.testing.assert_frame_equal(rd.datasets.collectri(organism="mouse"), _net(MOUSE))
    assert asked == ["mouse"]


def test_organism_must_be_a_name(monkeypatch):
    monkeypatch.setitem(sys.modules, "decoupler", None)
    with pytest.raises(TypeError, match="organism"):
        rd.datasets.collectri(organism=None)


@pytest.mark.skipif(not COLLECTRI, reason=f"set {COLLECTRI_ENV} to a local CollecTRI TSV to run this test")
def test_the_real_human_table_is_not_given_for_mouse():
    assert len(rd.datasets.collectri(organism="human")) == 43178
    with pytest.raises(ValueError, match="looks human"):
        rd.datasets.collectri(organism="mouse")
