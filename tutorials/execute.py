"""Execute the tutorials in place, storing their outputs (figures and numbers) in the notebooks.

    python tutorials/execute.py                  # all of them
    python tutorials/execute.py 03_pbmc_tf_activities.ipynb

Run after changing the code the tutorials show, and commit the notebooks with their outputs.
Tutorial 03 needs the CollecTRI network: set REGDECODER_COLLECTRI to a local TSV. The test
suite executes each notebook again on a copy (tests/test_tutorials.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    missing = [v for v in nb.metadata.get("regdecoder", {}).get("requires_env", []) if not os.environ.get(v)]
    if missing:
        sys.exit(f"{path.name}: set {missing} first")
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    for cell in nb.cells:  # execution counts only: keep the stored notebooks stable across runs
        if cell.cell_type == "code":
            cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    print(f"executed {path.name}")


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.name for p in HERE.glob("*.ipynb"))
    for name in names:
        execute(HERE / name)
