from __future__ import annotations

import numpy as np
from anndata import AnnData


def split(adata: AnnData, *, n_test: int | None = None, test_fraction: float | None = None, seed: int = 0):
    """Seeded random split of the cells into a training and a test AnnData (copies).

    Give ``n_test`` (number of test cells) or ``test_fraction``; by default 10% of the
    cells. Cells keep their order within each part.

    Returns
    -------
    ``(train, test)``, two new AnnData objects.
    """
    n = adata.n_obs
    if n_test is not None and test_fraction is not None:
        msg = "Give `n_test` or `test_fraction`, not both."
        raise ValueError(msg)
    if n_test is None:
        frac = 0.1 if test_fraction is None else test_fraction
        if not 0 < frac < 1:
            msg = f"`test_fraction` must be in (0, 1), got {frac}."
            raise ValueError(msg)
        n_test = max(1, round(n * frac))
    if not 0 < int(n_test) < n:
        msg = f"`n_test` must be between 1 and n_obs - 1 = {n - 1}, got {n_test}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    test = np.zeros(n, dtype=bool)
    test[rng.choice(n, size=int(n_test), replace=False)] = True
    return adata[~test].copy(), adata[test].copy()
