"""The latents of a frozen one-layer decoder: the one solver behind ``fit_decoder``'s final pass,
``rd.tl.infer`` and ``Model.infer_latents``.

For one cell with expression ``x`` (genes), weights ``W`` (genes x k) and offsets ``b``, the
latents minimise the censored loss plus a ridge (the objective of
:mod:`regdecoder.train._censored_ls`),

    F(z) = sum_{x_g != 0} (x_g - p_g)^2 + sum_{x_g = 0} max(p_g, 0)^2 + lam |z|^2,   p = W z + b,

``lam = ridge * mean_j |w_j|^2``; with a linear output every gene counts as observed (ridge
least squares). ``F`` is convex and piecewise quadratic, and the ridge makes its minimiser
unique. Genes without an edge do not depend on ``z`` and are left out.

**Method**: nonlinear preconditioned conjugate gradients, batched over cells (each cell its
own problem, run as one column of a genes x cells block):

* start: ``z0 = M^-1 W'(1_P (x - b))`` (``P`` the cell's observed, nonzero genes), the
  least-squares solution over the observed genes as the preconditioner sees it;
* direction: ``d = -M^-1 g + beta d_prev`` (``g = W'r + lam z`` half the gradient, ``r`` the
  residual on the active genes, Polak-Ribiere+ ``beta``; steepest descent whenever that is not
  a descent direction);
* step: the exact minimiser of ``F`` along ``d`` (a piecewise quadratic in the step length,
  minimised by a safeguarded semismooth Newton iteration that ends when the active set no
  longer changes), so ``F`` never increases;
* preconditioner: ``M = S Hbar S``, ``Hbar = W' diag(d) W + lam I`` with ``d_g`` the fraction
  of cells in which gene ``g`` is nonzero (one inverse shared by every cell), and per cell
  ``S = diag(sqrt(diag(Hbar) / diag(W_P'W_P + lam I)))``, which gives each latent the
  curvature its observed targets give it (a TF whose targets are all zero in a cell has
  almost none). On a linear output ``M`` is the exact curvature: one step solves it;
* stop (per cell): the relative KKT residual ``sqrt(g' M^-1 g / F) <= tol``; a cell still
  above it after ``max_iter`` steps is finished by the exact active-set Newton method
  (:func:`~regdecoder.train._censored_ls.solve_censored`).

Cost per step and cell: two products with ``W`` (sparse, i.e. two multiply-adds per edge,
when ``W`` is sparse enough), one ``k x k`` product with the shared inverse and a few passes
over the genes; none of it ``k^3`` per cell. Measured against the exact Newton solution
(``benchmarks/realnet.py``, ``tests/train/test_latents.py``): with ``tol = 1e-3`` the latents'
relative error ``|z - z*| / |z*|`` stayed below ``tol`` in every cell.

Pure torch; no anndata or numpy.
"""

from __future__ import annotations

import logging
import time
import warnings

import torch
from tqdm import tqdm

from ._censored_ls import solve_censored, standard_errors
from ._source import as_source, csr_tensor, stream

logger = logging.getLogger("regdecoder")

#: Ridge of the latents (relative to the mean squared norm of a TF's weights): it picks the
#: solution nearest 0 where the active genes leave a latent undetermined. On pbmc68k_reduced +
#: CollecTRI, 1e-6 left latents up to 205 in magnitude along such flat directions and stops
#: that depended on rounding; 1e-3: at most 15 in magnitude.
EXACT_RIDGE = 1e-3
#: Default relative KKT tolerance and step cap of the solver.
TOL = 1e-3
MAX_ITER = 100
#: ``W`` is used as a sparse (CSR) matrix below this fraction of nonzero entries (products cost
#: two multiply-adds per edge); measured on 2 CPU cores: at 10% (the paper's 1,000 x 100 layer)
#: the dense product was as fast, at 5% the sparse one 1.1-1.5x faster, at 0.8% (CollecTRI) 3-4x.
SPARSE_DENSITY = {"cpu": 0.07, "cuda": 0.01}
_BLOCK = 2**19  # genes x cells values of one block of cells (each of ~8 such temporaries)
_LINE_STEPS = 8  # secant steps of a line search at most (1-2 in practice)


class Frozen:
    """A frozen one-layer decoder as the solver uses it: the genes ``z`` reaches, products with
    ``W`` (dense or CSR), the ridge and the shared preconditioner.

    Parameters
    ----------
    weight
        Genes x k weights (zero off the mask); its device and dtype are the solver's.
    bias
        Genes offsets, or None.
    relu
        Zeros of the data are censored (ReLU output); False: every entry is observed.
    ridge
        ``lam = ridge * mean_j |w_j|^2``.
    detected
        Per gene, the fraction of cells in which it is nonzero (the preconditioner's ``d``);
        None: 1 (the uncensored curvature).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        relu: bool,
        ridge: float,
        detected: torch.Tensor | None = None,
    ) -> None:
        weight = weight.detach()
        dev, dt = weight.device, weight.dtype
        reach = (weight != 0).any(1)
        self.genes = None if bool(reach.all()) else torch.nonzero(reach).squeeze(1)
        w = weight if self.genes is None else weight[self.genes]
        self.n, self.k = w.shape
        self.relu, self.dtype, self.device, self.ridge = relu, dt, dev, float(ridge)
        b = torch.zeros(self.n, dtype=dt, device=dev) if bias is None else self._rows(bias.detach().to(dt))
        self.b = b.reshape(-1, 1)
        norms = (w * w).sum(0)
        self.lam = float(ridge) * float(norms.mean().clamp(min=1e-12)) if self.k else 0.0
        density = float((w != 0).sum()) / max(1, self.n * self.k)
        self.sparse = density <= SPARSE_DENSITY.get(dev.type, SPARSE_DENSITY["cuda"])
        if self.sparse:  # CSR matrices built from the edges (converting dense matrices costs seconds at 10^6 entries)
            rows, cols = torch.nonzero(w, as_tuple=True)
            vals = w[rows, cols]
            self.edges = (rows, cols, vals)
            self.w = _csr(rows, cols, vals, (self.n, self.k))
            order = torch.argsort(cols * self.n + rows)
            self.wt = _csr(cols[order], rows[order], vals[order], (self.k, self.n))
            self.w2t = _csr(cols[order], rows[order], vals[order].square(), (self.k, self.n))
        else:
            self.w, self.wt, self.w2t = w, w.T.contiguous(), (w * w).T.contiguous()
        d = None if detected is None or not relu else self._rows(detected.to(dev, torch.float64))
        h = self._gram(w, None)
        h.diagonal().add_(self.lam)
        self.h = h.to(dt)  # W'W + lam I: the curvature of the objective with nothing censored
        hbar = h if d is None else self._gram(w, d)
        if d is not None:
            hbar.diagonal().add_(self.lam)
        chol, info = torch.linalg.cholesky_ex(hbar)
        if int(info) != 0:  # only with lam = 0 and a rank-deficient W: a little ridge for the preconditioner
            hbar.diagonal().add_(1e-10 * float(hbar.diagonal().mean().clamp(min=1e-30)))
            chol = torch.linalg.cholesky(hbar)
        self.hinv = torch.cholesky_inverse(chol).to(dt)
        self.hdiag = hbar.diagonal().to(dt).reshape(-1, 1)

    def _gram(self, w: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor:
        """``W' diag(d) W`` in float64 (``d`` None: 1), from the edges when ``W`` is sparse."""
        w64 = w.to(torch.float64)
        if not self.sparse:
            return (w64.T if d is None else w64.T * d) @ w64
        rows, cols, vals = self.edges
        vals = vals.to(torch.float64) if d is None else vals.to(torch.float64) * d[rows]
        order = torch.argsort(cols * self.n + rows)
        return torch.sparse.mm(_csr(cols[order], rows[order], vals[order], (self.k, self.n)), w64)

    def dense_weight(self) -> torch.Tensor:
        """``W`` (reached genes x k), dense."""
        if not self.sparse:
            return self.w
        rows, cols, vals = self.edges
        dense = torch.zeros(self.n, self.k, dtype=self.dtype, device=self.device)
        dense[rows, cols] = vals
        return dense

    def _rows(self, v: torch.Tensor) -> torch.Tensor:
        return v if self.genes is None else v[self.genes]

    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """Cells x all genes -> the genes ``z`` reaches x cells (a contiguous copy)."""
        x = x if self.genes is None else x.index_select(1, self.genes)
        return x.T.contiguous()

    def fwd(self, z: torch.Tensor) -> torch.Tensor:
        """``W z`` (genes x cells) of latents ``z`` (k x cells)."""
        return torch.sparse.mm(self.w, z) if self.sparse else self.w @ z

    def bwd(self, r: torch.Tensor) -> torch.Tensor:
        """``W' r`` (k x cells) of ``r`` (genes x cells)."""
        return torch.sparse.mm(self.wt, r) if self.sparse else self.wt @ r

    def scaling(self, obs: torch.Tensor) -> torch.Tensor:
        """Per cell, ``S = sqrt(diag(Hbar) / diag(W_P'W_P + lam I))`` (k x cells; ``obs``: float mask of
        the observed genes, genes x cells)."""
        dp = torch.sparse.mm(self.w2t, obs) if self.sparse else self.w2t @ obs
        return (self.hdiag / dp.add_(self.lam).clamp_(min=1e-30)).sqrt_()


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix from entries sorted by row."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=vals.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    return csr_tensor(crow, cols, vals, shape)


def _precondition(op: Frozen, s: torch.Tensor | None, g: torch.Tensor) -> torch.Tensor:
    if s is None:
        return op.hinv @ g
    return (op.hinv @ (s * g)).mul_(s)


class _Block:
    """The state of one block of cells (columns): data, latents and the pieces of the objective.

    With ``c = W'(b - x)`` and ``e = |b - x|^2`` fixed per cell, ``m = 1_Z min(p, 0)`` (``Z`` the
    censored genes) and ``H = W'W + lam I``, the objective and half its gradient are
    ``F = z'Hz + 2 z'c + e - |m|^2`` and ``g = Hz + c - W'm``: of the genes x cells arrays only
    ``p`` and ``m`` change with ``z``.
    """

    def __init__(self, op: Frozen, x: torch.Tensor) -> None:
        # masks as floats: on the CPU, products with bool masks (and where, masked_fill) are ~10x slower
        self.op = op
        self.zeros = (x == 0).to(op.dtype) if op.relu else None
        self.bx = op.b - x
        self.c = op.bwd(self.bx)
        self.e = torch.linalg.vecdot(self.bx, self.bx, dim=0).to(torch.float64)
        self.s = None if self.zeros is None else op.scaling(1.0 - self.zeros)

    def set(self, z: torch.Tensor) -> None:
        self.z, self.hz = z, self.op.h @ z
        self.p = self.op.fwd(z).add_(self.op.b)
        self.censor()

    def censor(self) -> None:
        if self.zeros is None:
            self.m, self.wm = None, torch.zeros_like(self.z)
        else:
            self.m = self.p.clamp(max=0).mul_(self.zeros)
            self.wm = self.op.bwd(self.m)

    def gradient(self) -> torch.Tensor:
        return self.hz + self.c - self.wm

    def objective(self) -> torch.Tensor:
        f = torch.linalg.vecdot(self.z, self.hz + 2 * self.c, dim=0).to(torch.float64) + self.e
        if self.m is not None:
            f -= torch.linalg.vecdot(self.m, self.m, dim=0).to(torch.float64)
        return f.clamp_(min=0)

    def take(self, keep: torch.Tensor) -> None:
        """Keep only the columns ``keep``."""
        for name in ("bx", "zeros", "c", "s", "z", "hz", "p", "m", "wm", "e"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, v[keep] if v.dim() == 1 else v.index_select(1, keep))

    def move(self, d: torch.Tensor, hd: torch.Tensor, q: torch.Tensor, t: torch.Tensor) -> None:
        self.z.addcmul_(d, t)
        self.hz.addcmul_(hd, t)
        self.p.addcmul_(q, t)
        self.censor()


def _step(blk: _Block, d: torch.Tensor, gd: torch.Tensor) -> None:
    """Move every cell to the minimiser of ``F`` along ``d`` (``gd = g'd < 0``).

    The first step is the minimiser on the current piece (exact when no gene changes between
    active and inactive on the way); where the slope at the new point shows an overshoot
    beyond the Wolfe bound ``|phi'(t)| <= 0.1 |phi'(0)|``, bracketed secant steps on those cells
    bring it back. ``F`` decreases in every step."""
    op = blk.op
    hd = op.h @ d
    q = op.fwd(d)
    curv = torch.linalg.vecdot(d, hd, dim=0)
    if blk.m is not None:  # less the censored genes predicted below 0 (m < 0), whose curvature is 0
        qi = q * blk.m.sign()
        curv -= torch.linalg.vecdot(qi, qi, dim=0)
    t = -gd / curv.clamp(min=1e-30)
    blk.move(d, hd, q, t)
    if blk.m is None:
        return
    slope = torch.linalg.vecdot(blk.gradient(), d, dim=0)
    lo, hi, s_lo, s_hi = torch.zeros_like(t), t.clone(), gd, slope
    for _ in range(_LINE_STEPS):
        over = torch.nonzero(slope > -0.1 * gd).squeeze(1)  # overshoot: go back for those cells only
        if over.numel() == 0:
            return
        # secant in the bracket [lo, hi] of the slope's sign change
        a, b, sa, sb = lo[over], hi[over], s_lo[over], s_hi[over]
        tn = a - sa * (b - a) / (sb - sa).clamp(min=1e-30)
        delta = tn - t[over]
        dc, hdc, qc = d.index_select(1, over), hd.index_select(1, over), q.index_select(1, over)
        z, hz, p = blk.z.index_select(1, over), blk.hz.index_select(1, over), blk.p.index_select(1, over)
        z.addcmul_(dc, delta), hz.addcmul_(hdc, delta), p.addcmul_(qc, delta)
        m = p.clamp(max=0).mul_(blk.zeros.index_select(1, over))
        wm = op.bwd(m)
        sn = torch.linalg.vecdot(hz + blk.c.index_select(1, over) - wm, dc, dim=0)
        for name, v in (("z", z), ("hz", hz), ("p", p), ("m", m), ("wm", wm)):
            getattr(blk, name).index_copy_(1, over, v)
        t[over] = tn
        slope[over] = sn
        neg = sn < 0
        lo[over], s_lo[over] = torch.where(neg, tn, a), torch.where(neg, sn, sa)
        hi[over], s_hi[over] = torch.where(neg, b, tn), torch.where(neg, sb, sn)
        slope[over] = torch.where(neg, torch.zeros_like(sn), sn)  # an undershoot is accepted


def _solve_block(op: Frozen, x: torch.Tensor, z0: torch.Tensor | None, tol: float, max_iter: int):
    """Solve one block: ``x`` genes (reached) x cells. Returns ``z`` (k x cells), steps taken,
    converged flags and the objective per cell (float64)."""
    n_cells = x.shape[1]
    blk = _Block(op, x)
    if z0 is None:  # least squares over the observed genes, as the preconditioner sees it
        rhs = -blk.c if blk.zeros is None else -op.bwd(blk.bx - blk.bx * blk.zeros)
        z0 = _precondition(op, blk.s, rhs)
    blk.set(z0.to(op.dtype).contiguous())
    z_out = torch.empty_like(blk.z)
    steps = torch.zeros(n_cells, dtype=torch.long, device=x.device)
    conv = torch.zeros(n_cells, dtype=torch.bool, device=x.device)
    f_out = torch.zeros(n_cells, dtype=torch.float64, device=x.device)
    ids = torch.arange(n_cells, device=x.device)  # the block's columns of the cells still solved
    live = torch.ones(n_cells, dtype=torch.bool, device=x.device)  # among them, not finished
    d = g_old = gs_old = None
    for it in range(max_iter + 1):
        g = blk.gradient()
        f = blk.objective()
        sg = _precondition(op, blk.s, g)
        gs = torch.linalg.vecdot(g, sg, dim=0)
        done = gs.to(torch.float64) <= (tol * tol) * f
        finish = live & (done | (gs <= 0) | (it == max_iter))  # gs = 0: stationary (e.g. a cell without data)
        if bool(finish.any()):
            out = ids[finish]
            z_out[:, out], f_out[out], conv[out] = blk.z[:, finish], f[finish], (done | (gs <= 0))[finish]
            steps[out] = it
            live &= ~finish
            n_live = int(live.sum())
            if n_live == 0:
                break
            if 4 * n_live <= 3 * live.numel():  # compact once a quarter of the columns are finished
                keep = torch.nonzero(live).squeeze(1)
                ids, live, g, sg, gs = ids[keep], live[keep], g[:, keep], sg[:, keep], gs[keep]
                blk.take(keep)
                if d is not None:
                    d, g_old, gs_old = d[:, keep], g_old[:, keep], gs_old[keep]
        if d is None:
            d = -sg
        else:
            beta = (torch.linalg.vecdot(g - g_old, sg, dim=0) / gs_old.clamp(min=1e-30)).clamp_(min=0)
            d = torch.addcmul(-sg, d, beta)
        gd = torch.linalg.vecdot(g, d, dim=0)
        uphill = gd >= 0  # not a descent direction (rounding): restart with steepest descent
        if bool(uphill.any()):
            d[:, uphill] = -sg[:, uphill]
            gd = torch.where(uphill, -gs, gd)
        d.mul_(live)  # finished cells (not yet compacted away) stay where they are
        gd = torch.where(live, gd, -1.0)
        _step(blk, d, gd)
        g_old, gs_old = g, gs
    return z_out, steps, conv, f_out


@torch.no_grad()
def solve_latents(
    data,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    relu: bool = True,
    z0: torch.Tensor | None = None,
    ridge: float | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    detected: torch.Tensor | None = None,
    progress: bool = False,
    z: torch.Tensor | None = None,
    n_iter: int | None = None,
) -> tuple[torch.Tensor, dict]:
    """Latents minimising the censored loss plus the ridge for a frozen one-layer decoder.

    Parameters
    ----------
    data
        Cells x genes: a tensor, or a source (:mod:`regdecoder.train._source`) read chunk by
        chunk.
    weight, bias
        The frozen decoder: ``genes x k`` (zero off the mask) and ``genes`` (or None), on the
        compute device; their dtype is the solver's.
    relu
        Zeros are censored (a ReLU output); False: plain ridge least squares.
    z0
        Start of the gradients (cells x k), e.g. the fit's last latents; None: least squares
        over each cell's observed genes (see the module). Results from the same start do not
        depend on how the cells are batched.
    ridge
        ``lam = ridge * mean_j |w_j|^2``, part of the objective; default :data:`EXACT_RIDGE`.
    tol
        Per cell, stop once ``sqrt(g' M^-1 g / F) <= tol`` (the relative KKT residual); default
        :data:`TOL`.
    max_iter
        Steps at most per cell (default :data:`MAX_ITER`); cells still above ``tol`` are then
        finished by the exact active-set Newton method, which also solves the cells that observe
        fewer genes than there are latents (see the module).
    detected
        Per gene (``genes``), the fraction of cells in which it is nonzero, for the
        preconditioner only (the training cells' for a fitted model); None: computed from
        ``data`` in a first pass.
    progress
        A progress bar counting cells.
    z, n_iter
        Deprecated names of ``z0`` and ``max_iter`` (before 0.3, ``n_iter`` imputation rounds).

    Returns
    -------
    ``(z, info)``: the latents (``cells x k``, the weight's dtype, on ``data``'s device when it
    is a tensor, else on the CPU) and a dict of per-cell tensors on the CPU: ``n_iter`` (steps of
    the gradients), ``exact`` (solved by the exact Newton method: the cells observing fewer genes
    than there are latents, and those still above ``tol`` after ``max_iter`` steps), ``converged``
    (reached ``tol``, or the exact method's own stop), ``loss`` (``F`` over the genes ``z``
    reaches, float64), and ``seconds`` (a float).
    """
    if z is not None or n_iter is not None:
        warnings.warn(
            "solve_latents: `z` and `n_iter` are renamed `z0` and `max_iter` (and the solver now converges to "
            "`tol`); the old names go in 0.4.",
            FutureWarning,
            stacklevel=2,
        )
        z0 = z if z0 is None else z0
        max_iter = n_iter if n_iter is not None else max_iter
    ridge = EXACT_RIDGE if ridge is None else float(ridge)
    tol = TOL if tol is None else float(tol)
    max_iter = MAX_ITER if max_iter is None else int(max_iter)
    t0 = time.perf_counter()
    source = as_source(data)
    out_device = data.device if isinstance(data, torch.Tensor) else torch.device("cpu")
    dev, dt = weight.device, weight.dtype
    if detected is None and relu:
        detected = detection_rate(source, dev)
    op = Frozen(weight, bias, relu=relu, ridge=ridge, detected=detected)
    n_obs = source.n_obs
    z_all = torch.empty(n_obs, op.k, dtype=dt, device=out_device)
    steps = torch.zeros(n_obs, dtype=torch.long)
    exact = torch.zeros(n_obs, dtype=torch.bool)
    conv = torch.zeros(n_obs, dtype=torch.bool)
    loss = torch.zeros(n_obs, dtype=torch.float64)
    block = max(1, _BLOCK // max(1, op.n))
    bar = tqdm(total=n_obs, desc="latents", unit="cell", unit_scale=True, disable=not progress, leave=False)
    for s0, e0, xc in stream(source, dev, dt):
        for s in range(0, e0 - s0, block):
            e = min(e0 - s0, s + block)
            xb = xc[s:e]
            start = None if z0 is None else z0[s0 + s : s0 + e].to(dev, dt)
            zb, nb, xb_exact, cb, fb = _solve_cells(op, xb, start, tol, max_iter)
            z_all[s0 + s : s0 + e] = zb.to(out_device)
            rows = slice(s0 + s, s0 + e)
            steps[rows], exact[rows], conv[rows], loss[rows] = nb.cpu(), xb_exact.cpu(), cb.cpu(), fb.cpu()
            bar.update(e - s)
    bar.close()
    info = {"n_iter": steps, "exact": exact, "converged": conv, "loss": loss, "seconds": time.perf_counter() - t0}
    return z_all, info


def _solve_cells(op: Frozen, xb: torch.Tensor, z0: torch.Tensor | None, tol: float, max_iter: int):
    """One block of cells (cells x all genes): the conjugate gradients for the cells that observe at
    least as many genes as there are latents, the exact active-set Newton method for the others and
    for the cells still above ``tol`` after ``max_iter`` steps. Returns ``z`` (cells x k), the
    gradients' steps, which cells the exact method solved, whether each converged, and the objective."""
    n_cells = xb.shape[0]
    x = op.columns(xb)  # reached genes x cells
    observed = (x != 0).sum(0) if op.relu else torch.full((n_cells,), op.n, device=x.device)
    # Fewer observed genes than latents: the data leave most latent directions to the ridge, the
    # curvature of the cell is far from any shared preconditioner's, and the gradients crawl there
    # (on pbmc3k with CollecTRI, ~380 of 4,587 genes for 637 latents: 100 steps left errors of 25%).
    few = observed < op.k
    z = torch.zeros(n_cells, op.k, dtype=op.dtype, device=x.device)
    steps = torch.zeros(n_cells, dtype=torch.long, device=x.device)
    conv = torch.zeros(n_cells, dtype=torch.bool, device=x.device)
    f = torch.zeros(n_cells, dtype=torch.float64, device=x.device)
    cg = torch.nonzero(~few).squeeze(1)
    if cg.numel():
        start = None if z0 is None else z0[cg].T
        zc, steps[cg], conv[cg], f[cg] = _solve_block(op, x.index_select(1, cg), start, tol, max_iter)
        z[cg] = zc.T
    exact = ~conv
    rest = torch.nonzero(exact).squeeze(1)
    if rest.numel():  # exactly: from the gradients' last point, or (few genes) from the method's own start
        z[rest], f[rest], conv[rest] = _exact(op, x.index_select(1, rest).T.contiguous(), z[rest], few[rest])
    return z, steps, exact, conv, f


def _exact(op: Frozen, x: torch.Tensor, start: torch.Tensor, cold: torch.Tensor):
    """The exact active-set Newton method (:func:`~regdecoder.train._censored_ls.solve_censored`) on
    cells x reached genes, from ``start`` (``cold`` cells: from the method's own start, least squares
    over the observed genes). Returns ``z``, the objective and the method's convergence flags."""
    w, b = op.dense_weight(), op.b.squeeze(1)
    z = torch.empty_like(start)
    f = torch.zeros(start.shape[0], dtype=torch.float64, device=start.device)
    conv = torch.zeros(start.shape[0], dtype=torch.bool, device=start.device)
    for rows, z0 in ((torch.nonzero(cold).squeeze(1), None), (torch.nonzero(~cold).squeeze(1), start)):
        if rows.numel():
            z0 = None if z0 is None else z0[rows]
            zr, _, info = solve_censored(x[rows], w, b, z0=z0, ridge=op.ridge, censor=op.relu, tol=1e-9, max_iter=200)
            z[rows], conv[rows] = zr, info["converged"]
            f[rows] = info["loss"] + op.lam * zr.double().square().sum(1)
    return z, f, conv


def detection_rate(data, device: torch.device | str) -> torch.Tensor:
    """Per gene, the fraction of cells in which it is nonzero (float64, on ``device``)."""
    source = as_source(data)
    count = torch.zeros(source.n_vars, dtype=torch.float64, device=device)
    for _, _, xc in stream(source, device):
        count += (xc != 0).sum(0)
    return count / max(1, source.n_obs)


@torch.no_grad()
def latent_standard_errors(
    data,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    z: torch.Tensor,
    *,
    relu: bool = True,
    ridge: float | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Standard errors of the latents ``z`` (the solver's solution, cells x k) from the curvature of
    the objective at the solution: ``se_j = sqrt(sigma^2 [(W_A'W_A + lam I)^-1]_jj)`` (``A`` the
    active genes, ``sigma^2`` the residual variance over them), NaN where a latent is not identified
    (:func:`~regdecoder.train._censored_ls.standard_errors`). This costs one ``k x k`` inverse per
    cell (``k^3``), which is why the solver does not compute them unless asked.

    Returns cells x k on the CPU (``weight``'s dtype).
    """
    ridge = EXACT_RIDGE if ridge is None else float(ridge)
    source = as_source(data)
    out = torch.empty(source.n_obs, weight.shape[1], dtype=weight.dtype)
    bar = tqdm(
        total=source.n_obs, desc="standard errors", unit="cell", unit_scale=True, disable=not progress, leave=False
    )
    w = weight.detach()
    b = None if bias is None else bias.detach()
    for s, e, xc in stream(source, w.device, w.dtype):
        out[s:e] = standard_errors(xc, w, b, z[s:e].to(w.device, w.dtype), ridge=ridge, censor=relu).cpu()
        bar.update(e - s)
    bar.close()
    return out
