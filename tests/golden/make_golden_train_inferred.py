"""0.1.0 reference for the training cells treated as new cells: fit each ALS and gradient path
(masked decoders) as make_golden.py did, then rd.tl.infer (0.1.0's: 100 rounds, tol 1e-5) on
the training cells.

Since then a fit solves its training cells' latents for the final weights exactly, as infer
solves new cells (the gradient paths too, since issue 17: what a masked decoder reports no
longer depends on the solver); these are what 0.1.0's infer gave on them. Run with regdecoder 0.1.0:

    git worktree add /tmp/v010 15c6fdf && git show 15c6fdf~0:tests/golden/make_golden.py > /tmp/mg_old.py
    PYTHONPATH=/tmp/v010 python tests/golden/make_golden_train_inferred.py /tmp/mg_old.py

(commit 15c6fdf predates make_golden.py; use the first version of it, from the commit that added it.)
"""

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import regdecoder as rd

torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("mg", sys.argv[1])
mg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mg)
out = {}
with tempfile.TemporaryDirectory() as t:
    tmp = Path(t)
    for name, fn in mg.paths().items():
        if not (name.startswith(("als", "gradient")) or name == "n_extra") or name == "als_gloo2":
            continue
        tr, te = mg.data()
        model = fn(tr, te, tmp)
        tr2, _ = mg.data()
        rd.tl.infer(tr2, model)
        out[f"{name}/train_inferred"] = np.asarray(tr2.obsm["regdecoder"])
        print(name, file=sys.stderr)
np.savez_compressed(Path(__file__).parent / "golden_train_inferred.npz", **out)
