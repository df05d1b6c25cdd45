"""Candidate activity statistics for issue 20: numpy **prototypes** (research code for the
benchmarks, not the package's statistics).

Every prototype scores cells with a prior network's weights ``S`` (genes x TFs: the signed
prior, or weights a decoder learned) and data centred by each gene's offset ``b`` (the
training cells' mean, or the censored model's fitted offset): ``x~ = x - b``. They are
all *linear estimators* ``z = B S'P x~`` with a ``k x k`` matrix ``B`` shared by every cell
(``P = diag(p)`` per-gene precision weights, 1 when unweighted):

* ridge: ``B = (S'PS + lam * s I)^-1``, ``s = mean(diag(S'PS))`` (the issue's relative lambda):
  the joint least-squares answer at ``lam -> 0`` (mlm's coefficients), the marginal one
  (each TF's ``S_j'x``, ulm's direction) at ``lam -> inf``;
* shrinkage toward the marginal slopes ``m = D^-1 S'P x~`` (``D = diag(S'PS)``):
  ``argmin |x~ - S z|_P^2 + lam * s |z - m|^2``, ``B = (S'PS + lam s I)^-1 (I + lam s D^-1)``;
* the marginal slopes themselves, ``B = D^-1``.

Reported as the coefficient ``z`` or as ``t = z / se``, ``se_cj = sigma_c sqrt((B G B')_jj)``
with ``G = S'PS`` (the estimator's sandwich variance under ``x~ ~ N(S z, sigma_c^2 P^-1)``),
``sigma_c^2 = |x~_c - S z_c|_P^2 / (n_genes - df)`` over every gene of the data, ``df = tr(B G)``
For ``kind='marginal'`` each TF's t uses its own residual instead, ``sigma_cj^2 = (|x~_c|_P^2 -
u_cj^2 / d_j) / (n_genes - 1)``: regdecoder's marginal t (``regdecoder/train/_score.py``),
decoupler's ulm without the intercept. The ridge's t at ``lam -> inf`` approaches it where one
TF explains a small part of a cell's variance.

``lam`` may be chosen per data set by **held-out-gene reconstruction** (:func:`choose_lambda`,
the issue's measurement): the targeted genes are split into 5 folds, latents are solved from
the other genes, and the held-out genes are predicted from them; the ``lam`` with the lowest
error (relative to the held-out genes' centred sum of squares) wins.

Cost per cell: one product with ``S`` (its edges) and one ``k x k`` matrix-vector product;
``B`` and ``diag(B G B')`` once per data set (``O(k^3)``), the held-out-gene choice of ``lam``
five ``k x k`` eigendecompositions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import cho_factor, cho_solve

LAMBDAS = (1e-3, 1e-2, 1e-1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1e4)
PRECISION_FLOOR = 0.1  # per-gene residual variances are floored at this fraction of their median
CONTAINMENT = 0.8  # a regulon nested at least this much in another joins its complex


# ----------------------------------------------------------------------------- the prior
def prior_matrix(net: pd.DataFrame, genes, *, tmin: int = 5) -> tuple[sp.csr_matrix, list[str]]:
    """The prior's weights as a sparse genes x TFs matrix over ``genes`` and the TF names.

    TFs with fewer than ``tmin`` targets among ``genes`` are dropped (decoupler's ``tmin``);
    duplicate edges are summed. Columns are sorted by TF name.
    """
    genes = pd.Index(genes)
    sub = net[net["target"].isin(genes)]
    sub = sub.groupby(["source", "target"], as_index=False)["weight"].sum()
    size = sub.groupby("source").size()
    tfs = sorted(size[size >= tmin].index)
    sub = sub[sub["source"].isin(tfs)]
    rows = genes.get_indexer(sub["target"])
    cols = pd.Index(tfs).get_indexer(sub["source"])
    mat = sp.csr_matrix((sub["weight"].to_numpy(float), (rows, cols)), shape=(len(genes), len(tfs)))
    return mat, list(tfs)


def weights_matrix(weights: pd.DataFrame, genes) -> tuple[sp.csr_matrix, list[str]]:
    """A genes x TFs weight table (e.g. a decoder's learned weights) as a sparse matrix over ``genes``."""
    w = weights.reindex(pd.Index(genes)).fillna(0.0)
    return sp.csr_matrix(w.to_numpy(float)), [str(c) for c in w.columns]


def complexes(s: sp.csr_matrix, names: list[str], *, containment: float = CONTAINMENT) -> np.ndarray:
    """Group TFs whose regulons are nested: ``|T_i & T_j| / min(|T_i|, |T_j|) >= containment``
    (identical ones included), closed transitively. Returns a group index per TF."""
    a = (s != 0).astype(np.float64).tocsc()
    inter = (a.T @ a).toarray()
    size = np.diag(inter)
    nested = inter / np.maximum(np.minimum.outer(size, size), 1) >= containment
    np.fill_diagonal(nested, True)
    n, labels = sp.csgraph.connected_components(sp.csr_matrix(nested), directed=False)
    return labels


def group_columns(s: sp.csr_matrix, labels: np.ndarray) -> sp.csr_matrix:
    """One column per group: the sum of its members' weights (a complex: members share one activity)."""
    member = sp.csr_matrix(
        (np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), labels.max() + 1)
    )
    return (s @ member).tocsr()


# ----------------------------------------------------------------------------- linear estimators
@dataclass
class Linear:
    """A linear estimator ``z = B S'P x~`` on fixed weights: everything shared by the cells."""

    s: sp.csr_matrix  # genes x k
    p: np.ndarray  # genes (precision weights)
    b_mat: np.ndarray  # k x k
    var_diag: np.ndarray  # diag(B G B')
    df: float
    kind: str = "ridge"

    def coef(self, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (cells x k) and ``u = x~ P S`` of centred data ``xc`` (cells x genes)."""
        u = np.asarray(self.s.T @ (xc * self.p).T).T
        return u @ self.b_mat.T, u

    def t(self, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients and their t-values (see the module docstring)."""
        z, u = self.coef(xc)
        ss = ((xc**2) * self.p).sum(1)
        if self.kind == "marginal":  # each TF's own residual
            d = np.diag(self.b_mat)
            rss = ss[:, None] - u * z
            sigma2 = np.clip(rss, 0, None) / max(xc.shape[1] - 1, 1)
            se = np.sqrt(sigma2 * d)
        else:
            g = gram(self.s, self.p)
            rss = ss - 2 * (z * u).sum(1) + ((z @ g) * z).sum(1)
            sigma2 = np.clip(rss, 0, None) / max(xc.shape[1] - self.df, 1.0)
            se = np.sqrt(np.outer(sigma2, np.clip(self.var_diag, 0, None)))
        t = np.divide(z, se, out=np.zeros_like(z), where=se > 0)
        return z, t


def gram(s: sp.csr_matrix, p: np.ndarray) -> np.ndarray:
    return np.asarray((s.T @ sp.diags(p) @ s).todense())


def linear(s: sp.csr_matrix, lam: float, *, p: np.ndarray | None = None, kind: str = "ridge") -> Linear:
    """The estimator of ``kind`` ('ridge', 'shrink' toward the marginal slopes, 'marginal') at relative ``lam``."""
    p = np.ones(s.shape[0]) if p is None else np.asarray(p, float)
    g = gram(s, p)
    d = np.diag(g).copy()
    d_safe = np.where(d > 0, d, 1.0)
    scale = float(np.mean(d))
    if kind == "marginal":
        b = np.diag(np.where(d > 0, 1.0 / d_safe, 0.0))
    else:
        a = g + lam * scale * np.eye(len(g))
        b = cho_solve(cho_factor(a), np.eye(len(g)))
        if kind == "shrink":
            b = b @ np.diag(1.0 + lam * scale / d_safe)
        elif kind != "ridge":
            raise ValueError(f"unknown kind {kind!r}")
    var_diag = ((b @ g) * b).sum(1)
    return Linear(s, p, b, var_diag, float(np.trace(b @ g)), kind)


def choose_lambda(
    xc: np.ndarray, s: sp.csr_matrix, *, p: np.ndarray | None = None, lambdas=LAMBDAS, kind: str = "ridge",
    n_folds: int = 5, seed: int = 0, rule: str = "min",
) -> tuple[float, dict[float, float]]:  # fmt: skip
    """``lam`` chosen by held-out-gene reconstruction on centred data ``xc`` (cells x genes), and
    the error of every ``lam`` (over all folds, relative to the held-out genes' sum of squares;
    weighted by ``p``). Folds: the targeted genes in ``n_folds`` seeded parts. ``rule='min'``:
    the lowest error; ``'1se'``: the largest ``lam`` whose error is within one standard error
    (over folds) of the lowest (Hastie, Tibshirani & Friedman 2009, sec. 7.10; glmnet's
    ``lambda.1se``). One eigendecomposition of ``S'PS`` per fold gives every ``lam``."""
    p = np.ones(s.shape[0]) if p is None else np.asarray(p, float)

    def fold(keep: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, float]:
        x_out = xc[:, held]
        g = gram(s[keep], p[keep])
        d = np.diag(g)
        scale = float(np.mean(d))
        u = np.asarray(s[keep].T @ (xc[:, keep] * p[keep]).T).T  # cells x k
        vals, vecs = np.linalg.eigh(g)
        uv = u @ vecs
        shrink_to = (u / np.where(d > 0, d, 1.0)) @ vecs if kind == "shrink" else 0.0
        err = np.empty(len(lambdas))
        for i, lam in enumerate(lambdas):
            z = ((uv + lam * scale * shrink_to) / (vals + lam * scale)) @ vecs.T
            err[i] = float((((x_out - np.asarray(s[held] @ z.T).T) ** 2) * p[held]).sum())
        return err, float(((x_out**2) * p[held]).sum())

    return _held_out_genes(s, lambdas, n_folds, seed, rule, fold)


def _held_out_genes(s, lambdas, n_folds: int, seed: int, rule: str, fold) -> tuple[float, dict[float, float]]:
    """The targeted genes in ``n_folds`` seeded folds; ``fold(keep, held)`` gives a fold's error
    per ``lam`` and its baseline; the pooled relative error picks ``lam`` by ``rule``."""
    if rule not in ("min", "1se"):
        raise ValueError(f"unknown rule {rule!r}")
    targeted = np.flatnonzero(np.asarray(abs(s).sum(1)).ravel() > 0)
    folds = np.array_split(np.random.default_rng(seed).permutation(targeted), n_folds)
    per_fold, base = np.zeros((n_folds, len(lambdas))), np.zeros(n_folds)
    for f, held in enumerate(folds):
        keep = np.ones(s.shape[0], bool)
        keep[held] = False
        err, base[f] = fold(keep, held)
        per_fold[f] = err / max(base[f], 1e-300)
    rel = (per_fold * base[:, None]).sum(0) / max(base.sum(), 1e-300)
    best = int(np.argmin(rel))
    if rule == "1se":
        se = per_fold[:, best].std(ddof=1) / np.sqrt(n_folds)
        best = int(np.flatnonzero(rel <= rel[best] + se).max())
    return float(lambdas[best]), dict(zip(map(float, lambdas), map(float, rel), strict=True))


def precision(xc: np.ndarray, s: sp.csr_matrix, lam: float, *, floor: float = PRECISION_FLOOR) -> np.ndarray:
    """Per-gene precision weights ``1 / sigma_g^2``: residual variances of the ridge fit at ``lam``
    over the cells of ``xc``, floored at ``floor`` x their median (a gene fitted exactly, or
    never expressed, must not take all the weight)."""
    z, _ = linear(s, lam).coef(xc)
    pred = np.asarray(s @ z.T).T
    var = ((xc - pred) ** 2).mean(0)
    var = np.maximum(var, floor * np.median(var[var > 0]) if (var > 0).any() else 1.0)
    return 1.0 / var


# ----------------------------------------------------------------------------- the censored model
def censored_ridge(
    x: np.ndarray, s: sp.csr_matrix, lam: float, *, offset: np.ndarray | None = None, p: np.ndarray | None = None,
    rounds: int = 50, tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The censored model ``x = ReLU(S z + b)`` with the ridge ``lam * s |z|^2`` (weighted by
    ``p`` if given), solved by imputation rounds: censored entries (``x <= 0``) are imputed at
    ``min(prediction, 0)``, then one least-squares solve for every cell with one shared factor
    (the issue-18 prototype; each round lowers the censored loss). ``offset`` None: fit the
    offsets ``b`` too (training cells). Stops after ``rounds`` or when no imputed value moved by
    more than ``tol`` x the data's largest value. Returns ``z``, the t-values of the last
    round's linear solve on the imputed data, and ``b``."""
    est = linear(s, lam, p=p)
    fit_b = offset is None
    b = x.mean(0) if fit_b else np.asarray(offset, float)
    censored = x <= 0
    y = x.astype(np.float64, copy=True)
    step = tol * max(float(np.abs(x).max()), 1e-300)
    for _ in range(rounds):
        z, _ = est.coef(y - b)
        pred = np.asarray(s @ z.T).T + b
        if fit_b:
            b = b + (y - pred).mean(0)
            pred = np.asarray(s @ z.T).T + b
        new = np.where(censored, np.minimum(pred, 0.0), x)
        moved = float(np.abs(new - y).max())
        y = new
        if moved <= step:
            break
    z, t = est.t(y - b)
    return z, t, b


def choose_lambda_censored(
    x: np.ndarray, s: sp.csr_matrix, offset: np.ndarray, *, p: np.ndarray | None = None, lambdas=LAMBDAS,
    n_folds: int = 5, seed: int = 0, max_cells: int = 300, rule: str = "min",
) -> tuple[float, dict[float, float]]:  # fmt: skip
    """:func:`choose_lambda` under the censored model: latents from the other genes by
    :func:`censored_ridge` (offsets fixed), the held-out genes predicted as ``ReLU(S z + b)`` and
    scored by the censored loss (``(x - pred)^2`` where ``x > 0``, ``max(pred, 0)^2`` where
    ``x = 0``), relative to the same loss of the offsets alone. On at most ``max_cells`` seeded
    cells (the choice of one number needs no more)."""
    p = np.ones(s.shape[0]) if p is None else np.asarray(p, float)
    if x.shape[0] > max_cells:
        x = x[np.sort(np.random.default_rng(seed).permutation(x.shape[0])[:max_cells])]

    def loss(obs, pred, w):
        return float((np.where(obs > 0, (obs - pred) ** 2, np.maximum(pred, 0.0) ** 2) * w).sum())

    def fold(keep: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, float]:
        x_out, b_out = x[:, held], offset[held]
        err = np.empty(len(lambdas))
        for i, lam in enumerate(lambdas):
            z, _, _ = censored_ridge(x[:, keep], s[keep], lam, offset=offset[keep], p=p[keep])
            err[i] = loss(x_out, np.asarray(s[held] @ z.T).T + b_out, p[held])
        return err, loss(x_out, np.broadcast_to(b_out, x_out.shape), p[held])

    return _held_out_genes(s, lambdas, n_folds, seed, rule, fold)


# ----------------------------------------------------------------------------- a linear decoder fit
def fit_linear_decoder(x: np.ndarray, s: sp.csr_matrix, *, shrink: float = 0.1, epochs: int = 10, ridge: float = 1e-3):
    """Prototype of the linear (uncensored) decoder fit by regdecoder's ALS recipe (for signed
    data, until the package has one): ``x ~ W z + b``, ``W`` on the prior's edges, starting at
    the prior's weights; each epoch solves every cell's latents (a small ridge: ``ridge`` x the
    mean squared weight norm), then every gene's weights (:func:`weight_step`), then the offsets
    (the residual means). Returns ``W`` (sparse, genes x k) and ``b``."""
    w = s.tocsr().astype(np.float64)
    b = x.mean(0)
    for _ in range(epochs):
        z, _ = linear(w, ridge).coef(x - b)
        w = weight_step(z, x - b, s, shrink)
        b = x.mean(0) - np.asarray(w @ z.mean(0)).ravel()
    return w, b


def weight_step(z: np.ndarray, xc: np.ndarray, s: sp.csr_matrix, shrink: float) -> sp.csr_matrix:
    """Every gene's weights on its prior edges given the latents ``z`` (cells x k):
    ``argmin_w |xc_g - Z_g w|^2 + shrink * N * |w - s_g|^2`` (``Z_g`` the latents of the gene's
    regulators, ``s_g`` its prior weights, ``N`` cells), batched over genes with equally many
    regulators."""
    n = z.shape[0]
    s = s.tocsr()
    w = s.astype(np.float64).copy()
    zz = z.T @ z
    sizes = np.diff(s.indptr)
    for r in np.unique(sizes[sizes > 0]):
        genes = np.flatnonzero(sizes == r)
        pos = s.indptr[genes][:, None] + np.arange(r)  # n_g x r positions in s.data / s.indices
        cols, prior = s.indices[pos], s.data[pos]
        lhs = zz[cols[:, :, None], cols[:, None, :]] + shrink * n * np.eye(r)
        rhs = np.einsum("cgr,cg->gr", z[:, cols], xc[:, genes]) + shrink * n * prior
        w.data[pos] = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    return w
