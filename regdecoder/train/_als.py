"""Censored alternating least squares for a one-layer ReLU (or linear) decoder.

The model is ``x = ReLU(W z + b)`` with ``W`` restricted to a mask. A zero in ``x``
is a censored value: it only says the pre-activation was <= 0. The objective is

    L(W, b, Z) = sum_{x > 0} (x - p)^2 + sum_{x = 0} max(p, 0)^2,   p = W z + b,

which is convex in ``p`` and equals the ReLU-MSE wherever the fit is consistent with
the data's zeros. Writing ``max(p, 0)^2 = min_{y <= 0} (y - p)^2`` turns it into a
least-squares problem over ``(W, b, Z)`` and the imputed values ``y``: each block
(imputation, latents, weights) is solved exactly in turn, so the loss never goes up.

* Latent step: one ``m x m`` Cholesky factorisation shared by every cell; cells are
  independent, so it runs chunk by chunk. It is one majorise-minimise step of the latent
  objective (impute, then least squares), not the converged latents for the epoch's weights:
  those change every epoch, and two or three such steps per epoch left the epochs to a
  recovery unchanged (``benchmarks/epochs.py``). The fit's final latents, for the final
  weights, come from the one latent solver (:mod:`regdecoder.train._latents`).
* Weight step: one small ridge solve per gene over its own TFs (the mask), batched. It
  needs only ``Z.T Z`` and ``Y.T Z`` (``Y`` the imputed targets), sums over cells that
  are accumulated chunk by chunk in the same pass as the latent step, and summed over
  processes under ``torch.distributed``: one epoch reads the data once.
* Start: per TF, the first principal component of its targets (a masked power iteration
  on a subsample of cells drawn once), oriented by the prior signs when given.

The data come from a source (:mod:`regdecoder.train._source`): a tensor in memory is one
chunk; sparse or backed data are read in chunks; a process of a ``torch.distributed`` group
holds its block of cells. There is one implementation for all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm import tqdm

from ..nn import Decoder
from ._common import EpochLog
from ._source import (
    _CHUNK_ELEMENTS,
    all_reduce,
    all_reduce_floats,
    as_source,
    chunks,
    gather_rows,
    stream,
    world,
)


# ------------------------------------------------------------------ kernels
def censored_target(x: torch.Tensor, p: torch.Tensor, relu: bool) -> torch.Tensor:
    """Imputation step: zeros of ``x`` take ``min(p, 0)``; other entries stay ``x``."""
    if not relu:
        return x
    return torch.where(x == 0, p.clamp(max=0), x)


def censored_loss(x: torch.Tensor, p: torch.Tensor, relu: bool) -> torch.Tensor:
    """Sum of the censored squared error (the ALS objective)."""
    return ((censored_target(x, p, relu) - p) ** 2).sum()


def _ridge_factor(gram: torch.Tensor, ridge: float) -> torch.Tensor:
    lam = ridge * gram.diagonal().mean().clamp(min=1e-12)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.cholesky(gram + lam * eye)


def _predict(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return z @ weight.T if bias is None else torch.addmm(bias, z, weight.T)


def _impute_(
    x: torch.Tensor, obs: torch.Tensor | None, p: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`censored_target` with the observed entries ``obs = x != 0`` computed once per chunk,
    written into ``out`` (may be ``p`` itself): no temporaries of the chunk's size."""
    if obs is None:
        return x
    out = torch.clamp(p, max=0, out=out) if out is not None else p.clamp(max=0)
    return torch.where(obs, x, out, out=out)


def _sq_dist(y: torch.Tensor, p: torch.Tensor) -> float:
    """``sum((y - p)^2)``, overwriting ``y``."""
    y = y.sub_(p).view(-1)
    return float(torch.dot(y, y))


def _latents(y: torch.Tensor, weight: torch.Tensor, bias_w: torch.Tensor | None, chol: torch.Tensor) -> torch.Tensor:
    """Least-squares latents ``(W'W)^-1 W'(y - b)`` of a chunk; ``bias_w = W' b`` (a k-vector) is
    subtracted after the product, so ``y - b`` is never formed."""
    rhs = y @ weight if bias_w is None else (y @ weight).sub_(bias_w)
    return torch.cholesky_solve(rhs.T, chol).T


class _MaskIndex:
    """Per-gene padded lists of allowed latents, genes sorted by degree for tight chunks."""

    def __init__(self, mask: torch.Tensor, bias: bool) -> None:
        n_genes, n_latent = mask.shape
        if bias:  # the bias is one more always-allowed column
            mask = torch.cat([mask, torch.ones(n_genes, 1, dtype=torch.bool, device=mask.device)], dim=1)
        self.deg = mask.sum(1)
        self.order = torch.argsort(self.deg, stable=True)
        genes, cols = torch.nonzero(mask[self.order], as_tuple=True)
        start = torch.cumsum(self.deg[self.order], 0) - self.deg[self.order]
        self.pos = torch.arange(genes.numel(), device=mask.device) - start[genes]
        self.genes_sorted, self.cols = genes, cols
        self.k_max = int(self.deg.max()) if n_genes else 0
        self.n_cols = mask.shape[1]
        self.full = bool(mask.all())


def solve_weights(
    z: torch.Tensor, y: torch.Tensor, index: _MaskIndex, *, ridge: float = 1e-6, bias: bool
) -> torch.Tensor:
    """Per-gene ridge least squares of ``y`` on the gene's allowed latents (and bias).

    Returns a dense ``n_genes x (n_latent [+ 1])`` matrix, zero off the mask; the last
    column is the bias when ``bias``.
    """
    if bias:
        z = torch.cat([z, torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)], dim=1)
    return solve_weights_stats(z.T @ z, y.T @ z, index, ridge=ridge)


def solve_weights_stats(
    gram: torch.Tensor,
    rhs: torch.Tensor,
    index: _MaskIndex,
    *,
    ridge: float = 1e-6,
    shrink: float = 0.0,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`solve_weights` from its sufficient statistics over cells.

    ``gram = Z.T @ Z`` (latents, with a column of ones when there is a bias) and
    ``rhs = Y.T @ Z`` (genes x columns) are sums over cells, so they can be
    accumulated over chunks of cells (or over processes) before this solve.

    With ``shrink > 0`` each gene's weights are shrunk toward ``target`` (genes x
    latents, e.g. the prior's signs): the penalty ``shrink * ||w_g - target_g||^2`` on
    the gene's edges (not on the bias) adds ``shrink`` to the diagonal of its Gram and
    ``shrink * target_g`` to its right-hand side.
    """
    lam = ridge * gram.diagonal().mean().clamp(min=1e-12)
    n_genes = rhs.shape[0]
    n_cols = gram.shape[0]
    n_latent = target.shape[1] if target is not None else n_cols
    if shrink > 0 and target is not None:
        pad = torch.zeros(n_genes, n_cols - n_latent, dtype=rhs.dtype, device=rhs.device)
        rhs = rhs + shrink * torch.cat([target.to(rhs.dtype), pad], dim=1)
    diag = torch.zeros(n_cols, dtype=gram.dtype, device=gram.device)
    if shrink > 0:
        diag[:n_latent] = shrink
    if index.full:  # dense decoder: one shared solve
        eye = torch.eye(n_cols, dtype=gram.dtype, device=gram.device)
        return solve_spd((gram + lam * eye + torch.diag(diag))[None], rhs.T[None])[0].T
    # Padded index table in degree order.
    k = index.k_max
    idx = torch.zeros(n_genes, k, dtype=torch.long, device=gram.device)
    valid = torch.zeros(n_genes, k, dtype=torch.bool, device=gram.device)
    idx[index.genes_sorted, index.pos] = index.cols
    valid[index.genes_sorted, index.pos] = True
    deg_sorted = index.deg[index.order]
    rhs_sorted = rhs[index.order]
    solved = torch.zeros(n_genes, k, dtype=gram.dtype, device=gram.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, k * k))
    eye_full = torch.eye(k, dtype=gram.dtype, device=gram.device)
    for start in range(0, n_genes, step):
        stop = min(n_genes, start + step)
        kk = int(deg_sorted[stop - 1])  # degrees ascend: the chunk's largest
        if kk == 0:
            continue
        ii, vv = idx[start:stop, :kk], valid[start:stop, :kk]
        eye = eye_full[:kk, :kk]
        g = torch.where(vv.unsqueeze(2) & vv.unsqueeze(1), gram[ii.unsqueeze(2), ii.unsqueeze(1)], eye) + lam * eye
        if shrink > 0:
            g = g + torch.diag_embed(diag[ii] * vv)
        r = torch.gather(rhs_sorted[start:stop], 1, ii) * vv
        solved[start:stop, :kk] = solve_spd(g, r.unsqueeze(2)).squeeze(2) * vv
    out = torch.zeros(n_genes, index.n_cols, dtype=gram.dtype, device=gram.device)
    genes = index.order[index.genes_sorted]
    out[genes, index.cols] = solved[index.genes_sorted, index.pos]
    return out


def solve_spd(g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Solve a batch of symmetric positive semi-definite systems ``g x = r`` (``b x k x k``, ``b x k x m``).

    By Cholesky factors; a singular system (its factor fails, or its smallest pivot squared is
    at the rounding error of its largest diagonal entry, ``eps`` times it: e.g. a latent that is
    0 in every cell, or two latents equal in every cell, with no ridge to speak of) gets the
    minimum-norm solution from the pseudo-inverse instead. The ALS's own ridge (1e-6 of the
    mean diagonal) keeps its systems above that cut unless an entry dwarfs the others. No system goes to an LU solve: on
    PBMC 3k with all genes, ``torch.linalg.solve``'s batched LU failed inside oneMKL (``lu_solve``
    pivots < 1) and lost the fit.

    Raises
    ------
    FloatingPointError
        Non-finite statistics (the fit diverged): say so rather than solve garbage.
    """
    if not (torch.isfinite(g).all() and torch.isfinite(r).all()):
        msg = (
            "The weight step of the ALS met non-finite statistics (NaN or infinite Z'Z or Y'Z): the fit diverged. "
            "Check the data for extreme values, or raise the ridge."
        )
        raise FloatingPointError(msg)
    chol, info = torch.linalg.cholesky_ex(g)
    # singular: the factor failed, or its smallest pivot is at the rounding error of the largest entry
    cut = torch.finfo(g.dtype).eps * g.diagonal(dim1=-2, dim2=-1).amax(-1)
    bad = (info != 0) | (chol.diagonal(dim1=-2, dim2=-1).amin(-1) ** 2 <= cut)
    if bad.any():  # a factor that failed is not a factor: solve those systems apart
        chol = torch.where(bad[:, None, None], torch.eye(g.shape[-1], dtype=g.dtype, device=g.device), chol)
    x = torch.cholesky_solve(r, chol)
    if bad.any():
        x[bad] = torch.linalg.pinv(g[bad], hermitian=True) @ r[bad]
    return x


def edge_rms(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Root-mean-square of each latent's weights over its edges (1 where it has none)."""
    deg = mask.sum(0).clamp(min=1).to(weight.dtype)
    rms = (weight.pow(2).sum(0) / deg).sqrt()
    return torch.where(rms > 0, rms, torch.ones_like(rms))


def normalise_scale(weight: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescale each latent so its weights have root-mean-square 1 over its edges.

    ``z`` may live on another device than ``weight`` (a latent table paged on the host):
    it is scaled where it is.
    """
    rms = edge_rms(weight, mask.to(weight.device))
    return weight / rms, z * rms.to(z.device)


# ------------------------------------------------------------------ start
def subsample_rows(
    source, n_pick: int, generator: torch.Generator, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """At most ``n_pick`` cells drawn once at random over all processes (all of them when fewer),
    gathered on every process, dense on ``device``."""
    n_total = source.n_total
    if n_total > n_pick:
        pick = torch.randperm(n_total, generator=generator)[:n_pick].sort().values
    else:
        pick = torch.arange(n_total)
    lo, hi = source.offset, source.offset + source.n_obs
    local = pick[(pick >= lo) & (pick < hi)] - lo
    rows = (
        source.take(local).to(device=device, dtype=dtype)
        if local.numel()
        else torch.zeros(0, source.n_vars, device=device, dtype=dtype)
    )
    return gather_rows(rows, pick.numel()).to(device) if world()[1] > 1 else rows


def masked_pca_init(
    source,
    mask: torch.Tensor,
    *,
    prior_sign: torch.Tensor | None,
    n_iter: int,
    generator: torch.Generator,
    max_cells: int = 2000,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Initial weights: per latent, the leading principal direction of its targets.

    A masked power iteration ``v_j <- mask_j * (Xc.T Xc v_j)`` run for all latents at
    once, on at most ``max_cells`` cells drawn at random once (the directions are well
    estimated from a few thousand cells; the cost no longer grows with N). Each column
    is scaled to root-mean-square 1 over its edges and oriented to agree with
    ``prior_sign`` (n_genes x n_latent, +-1/0) when given. ``source`` is a tensor or a
    source; the result is on the mask's device.
    """
    source = as_source(source)
    dev = mask.device
    maskf = mask.to(dtype)
    v = torch.randn(mask.shape, generator=generator, dtype=dtype).to(dev) * maskf
    x = subsample_rows(source, max_cells, generator, dev, dtype)
    mean = x.mean(0)
    for _ in range(n_iter):
        u = x @ v - mean @ v  # centred data times v, without forming Xc
        v = (x.T @ u - torch.outer(mean, u.sum(0))) * maskf
        v = v / v.norm(dim=0).clamp(min=1e-12)
    if prior_sign is not None:
        s = torch.sign((v * prior_sign).sum(0))
        v = v * torch.where(s == 0, torch.ones_like(s), s)
    deg = maskf.sum(0).clamp(min=1)
    return v * deg.sqrt()


# ------------------------------------------------------------------ placement
def table_device(dev: torch.device, n_rows: int, n_latent: int, n_tables: int) -> torch.device:
    """Where the latent tables live: on the compute device when ``n_tables`` tables of
    ``n_rows x n_latent`` float32 take under a quarter of its free memory, else on the host
    (rows are then paged per chunk). The one place this is decided."""
    if dev.type != "cuda":
        return dev
    need = n_rows * n_latent * 4 * n_tables
    free, _ = torch.cuda.mem_get_info(dev)
    return dev if need < free / 4 else torch.device("cpu")


# ------------------------------------------------------------------ the solver
@torch.no_grad()
def fit_als(
    decoder: Decoder,
    data,
    *,
    prior_sign: torch.Tensor | None = None,
    max_epochs: int = 50,
    tol: float = 1e-3,
    ridge: float = 1e-6,
    init_iter: int = 10,
    extrapolate: bool = True,
    start: str = "pca",
    shrink: float = 0.0,
    fixed_weights: bool = False,
    center: bool = False,
    seed: int = 0,
    tables_on: str | torch.device | None = None,
    progress: bool = True,
    callback: Callable[[dict], bool | None] | None = None,
) -> tuple[torch.Tensor, dict]:
    """Fit a one-layer decoder and the training latents by censored ALS.

    Each epoch is one imputation, one weight step and one latent step over all cells.
    With ``extrapolate``, each epoch then tries a step further along the epoch's change,
    ``theta + beta * (theta - theta_prev)`` for weights, bias and latents together, and
    keeps it only if it lowers the loss (``beta`` grows by 1.5x after a success, halves
    after a failure): the loss still never increases, and its slow tail is cut.

    Parameters
    ----------
    decoder
        One-layer decoder; its weights are set to the fitted ones. Its device is the
        compute device (each chunk of cells is moved there).
    data
        Cells x genes: a tensor (one chunk) or a source (:mod:`regdecoder.train._source`);
        under ``torch.distributed``, this process's block of cells.
    prior_sign
        Genes x latents, +-1 on signed edges, 0 elsewhere; orients the start.
    max_epochs, tol
        Stops when an epoch lowers the loss by less than the fraction ``tol``, or after
        ``max_epochs`` epochs.
    ridge
        Ridge of the least-squares solves, relative to the mean diagonal of their Gram.
    init_iter
        Power iterations of the start.
    extrapolate
        Try the extrapolated step each epoch (see above).
    start
        ``'pca'``: per-TF principal directions (random start vectors, a random subsample
        of cells: depends on ``seed``). ``'prior'``: the prior's signed weights (latents
        without a signed edge start as with ``'pca'``) and, with a bias, the gene means;
        no randomness.
    shrink
        ``lambda``: each gene's weights are shrunk toward the prior's signs with the
        penalty ``lambda * N * ||w_g - s_g||^2`` (``N`` cells). This fixes each latent's
        scale and sign to the prior's, so the latents are not rescaled in the epochs.
    fixed_weights
        Keep the weights at the prior's signs (only the bias and the latents are fitted):
        the censored least squares with ``W`` fixed, for data with too few cells to
        determine the weights.
    center
        With a bias: centre the latents at the end (``z - m``, ``b + W m``, the same
        predictions), since their offset is not identified.
    seed
        Seed of the start (random directions and the subsample of cells).
    tables_on
        Where the latent tables live; default: :func:`table_device`.
    progress
        One progress bar counting cells (rank 0 only).
    callback
        Called after every epoch with ``epoch``, ``loss`` (per data entry),
        ``seconds`` (training time, callbacks excluded) and ``z`` (this process's
        table), the decoder's weights set to the current ones; True stops training.

    Returns
    -------
    This process's latents (``n_obs x n_latent`` float32, on the table device) and the
    history (``loss``, ``seconds``, ``epochs``, ``cells_per_second``, ``converged``,
    ``gene_mean``: each gene's mean over all cells, ``gene_detected``: the fraction of cells in which it
    is nonzero).
    """
    source = as_source(data)
    dev = next(decoder.parameters()).device
    dtype = next(decoder.parameters()).dtype
    relu = decoder.config.output == "relu"
    mask = decoder.get_mask().to(dev)
    has_bias = decoder.get_bias() is not None
    n_local, n_genes, n_total = source.n_obs, source.n_vars, source.n_total
    n_latent = mask.shape[1]
    tdev = (
        table_device(dev, n_local, n_latent, 2 if extrapolate else 1) if tables_on is None else torch.device(tables_on)
    )
    index = _MaskIndex(mask, has_bias)
    n_elem = n_total * n_genes
    rank, size = world()

    if (start == "prior" or shrink > 0 or fixed_weights) and prior_sign is None:
        msg = "start='prior', shrink > 0 and fixed weights need the prior's signs (`prior_sign`)."
        raise ValueError(msg)
    signs = None if prior_sign is None else prior_sign.to(dev, dtype) * mask
    gene_sum = torch.zeros(n_genes, device=dev, dtype=torch.float64)
    gene_nz = torch.zeros(n_genes, device=dev, dtype=torch.float64)
    for _, _, xc in stream(source, dev, dtype):  # the gene means (the bias's start; the marginal statistic's centre)
        gene_sum += xc.sum(0, dtype=torch.float64)
        gene_nz += (xc != 0).sum(0)  # and how often each gene is detected (the latent solver's preconditioner)
    all_reduce(gene_sum, gene_nz)
    gene_mean = (gene_sum / n_total).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    signed = None if signs is None else (signs != 0).any(0)
    if start == "prior" and bool(signed.all()):
        weight = signs.clone()
    else:
        weight = masked_pca_init(source, mask, prior_sign=prior_sign, n_iter=init_iter, generator=gen, dtype=dtype)
        if start == "prior":  # signed latents start at the prior, the others at their PCA direction
            weight = torch.where(signed, signs, weight)
    if fixed_weights:
        weight = signs.clone()
    bias = (
        (gene_mean.clone() if start == "prior" else torch.zeros(n_genes, device=dev, dtype=dtype)) if has_bias else None
    )
    shrink_n = float(shrink) * n_total

    z = torch.empty(n_local, n_latent, device=tdev, dtype=dtype)
    last = torch.empty_like(z) if extrapolate else None
    log = EpochLog(max_epochs, "", False, callback)
    bar = tqdm(
        total=max_epochs * n_total,
        desc="fit_decoder (ALS)",
        unit="cell",
        unit_scale=True,
        disable=not progress or rank != 0,
        leave=False,
        dynamic_ncols=True,
    )
    cols = n_latent + (1 if has_bias else 0)

    def stats(zc, y, gram, rhs):  # Z'Z and Y'Z, with a column of ones for the bias (never formed)
        gram[:n_latent, :n_latent] += zc.T @ zc
        rhs[:, :n_latent] += y.T @ zc
        if has_bias:
            zs = zc.sum(0)
            gram[:n_latent, -1] += zs
            gram[-1, :n_latent] += zs
            gram[-1, -1] += zc.shape[0]
            rhs[:, -1] += y.sum(0)

    def zeros():
        return torch.zeros(cols, cols, device=dev, dtype=dtype), torch.zeros(n_genes, cols, device=dev, dtype=dtype)

    def penalty(w):
        return shrink_n * float(((w - signs) ** 2 * mask).sum()) if shrink_n > 0 and not fixed_weights else 0.0

    # Pass 0: least-squares latents from the initial weights, and the first statistics.
    gram, rhs = zeros()
    chol = _ridge_factor(weight.T @ weight, ridge)
    for s, e, xc in stream(source, dev, dtype):
        zc = _latents(xc, weight, None if bias is None else bias @ weight, chol)
        z[s:e] = zc.to(tdev)
        p = _predict(zc, weight, bias)
        stats(zc, _impute_(xc, xc != 0 if relu else None, p, out=p), gram, rhs)
    all_reduce(gram, rhs)

    prev = None
    converged = False
    w_last = b_last = None
    have_last = False
    beta = 0.5
    for epoch in range(1, max_epochs + 1):
        if fixed_weights:  # only the bias: the mean over cells of Y - Z W'
            if has_bias:
                bias = (rhs[:, -1] - weight @ gram[:n_latent, -1]) / gram[-1, -1]
            rms = torch.ones(n_latent, device=dev, dtype=dtype)
        else:
            wb = solve_weights_stats(gram, rhs, index, ridge=ridge, shrink=shrink_n, target=signs)
            weight = wb[:, :n_latent]
            if has_bias:
                bias = wb[:, -1]
            # without shrinkage the scale is free: each latent's weights are scaled to RMS 1 and the
            # latents are scaled by rms as they are read; the penalty fixes it otherwise
            rms = edge_rms(weight, mask) if shrink_n == 0 else torch.ones(n_latent, device=dev, dtype=dtype)
            weight = weight / rms
        chol = _ridge_factor(weight.T @ weight, ridge)
        try_e = extrapolate and have_last and not fixed_weights
        if try_e:
            w_e = weight + beta * (weight - w_last)
            b_e = None if bias is None else bias + beta * (bias - b_last)
        gram, rhs = zeros()
        gram_e, rhs_e = zeros() if try_e else (None, None)
        loss = loss_e = 0.0
        bias_w = None if bias is None else bias @ weight
        for s, e, xc in stream(source, dev, dtype):
            obs = xc != 0 if relu else None
            zc = z[s:e].to(dev) * rms
            buf = _predict(zc, weight, bias)
            zc = _latents(_impute_(xc, obs, buf, out=buf), weight, bias_w, chol)
            p = _predict(zc, weight, bias)
            y = _impute_(xc, obs, p, out=buf) if relu else xc.clone()
            stats(zc, y, gram, rhs)
            loss += _sq_dist(y, p)
            if try_e:
                ze = zc + beta * (zc - last[s:e].to(dev))
                pe = _predict(ze, w_e, b_e)
                ye = _impute_(xc, obs, pe, out=buf) if relu else xc.clone()
                stats(ze, ye, gram_e, rhs_e)
                loss_e += _sq_dist(ye, pe)
            z[s:e] = zc.to(tdev)
            bar.update((e - s) * size)
        loss, loss_e = all_reduce_floats(loss, loss_e, device=dev)
        all_reduce(gram, rhs)
        if try_e:
            all_reduce(gram_e, rhs_e)
        loss = (loss + penalty(weight)) / n_elem
        loss_e = (loss_e + (penalty(w_e) if try_e else 0.0)) / n_elem
        if extrapolate:
            accept = try_e and loss_e < loss
            for s, e in chunks(source):  # tables only, no data
                zn = z[s:e].clone()
                if accept:
                    z[s:e] = zn + beta * (zn - last[s:e])
                last[s:e] = zn
            w_last, b_last, have_last = weight, bias, True
            if accept:
                weight, bias, loss, gram, rhs = w_e, b_e, loss_e, gram_e, rhs_e
                beta = min(1.5 * beta, 10.0)
            elif try_e:
                beta = max(0.5 * beta, 0.1)
        bar.set_postfix(epoch=epoch, loss=f"{loss:.4g}")
        stop = log.end_epoch(epoch, loss, z, before_callback=lambda w=weight, b=bias: decoder.set_weight(w, b))
        converged = prev is not None and (prev - loss) <= tol * prev
        if stop or converged:
            break
        prev = loss
    if has_bias and center:  # centre the latents (their offset is not identified with a bias)
        zsum = torch.zeros(n_latent, device=dev, dtype=torch.float64)
        for s, e in chunks(source):
            zsum += z[s:e].to(dev).sum(0, dtype=torch.float64)
        all_reduce(zsum)
        m = (zsum / n_total).to(dtype)
        for s, e in chunks(source):
            z[s:e] -= m.to(tdev)
        bias = bias + weight @ m
    decoder.set_weight(weight, bias)
    bar.total = bar.n  # stopped early (converged): the bar ends full, not at the cap's fraction
    bar.refresh()
    bar.close()
    history = log.close()
    history["converged"] = bool(converged)
    history["gene_mean"] = gene_mean
    history["gene_detected"] = gene_nz / n_total
    secs = history["seconds"][-1] if history["seconds"] else 0.0
    history["cells_per_second"] = history["epochs"] * n_total / secs if secs > 0 else float("nan")
    history["world_size"] = size
    return z, history
