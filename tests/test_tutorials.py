"""Every tutorial notebook executes from top to bottom without an error."""

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))

# Appended to a copy of each notebook: the kernel must run the interpreter running the tests
# (jupyter_client replaces the kernel spec's "python" with sys.executable).
_CHECK_INTERPRETER = "import sys; print(sys.prefix)"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # inherited by the kernel: no window opens
    nb = nbformat.read(path, as_version=4)
    missing = [v for v in nb.metadata.get("regdecoder", {}).get("requires_env", []) if not os.environ.get(v)]
    if missing:  # e.g. the CollecTRI network: a local file named by REGDECODER_COLLECTRI (set in .ci/run)
        pytest.skip(f"set {missing} to run this tutorial offline (see the notebook's first cell)")
    nb.cells.append(nbformat.v4.new_code_cell(_CHECK_INTERPRETER))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError when a cell errors
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    assert out.strip() == sys.prefix, f"the kernel ran {out.strip()!r}, not the test's interpreter {sys.prefix!r}"


def test_there_are_tutorials():
    assert TUTORIALS, "no notebook found in tutorials/"
    assert os.path.basename(TUTORIALS[0]).startswith("01_")
