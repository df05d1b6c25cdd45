"""Exact censored least squares for the latents of a frozen one-layer ReLU decoder.

For one cell with expression ``x`` (genes), weights ``W`` (genes x k) and bias ``b``,
the latents minimise the censored loss plus a ridge,

    F(z) = f(z) + lam |z|^2,
    f(z) = sum_{x_g != 0} (x_g - p_g)^2 + sum_{x_g = 0} max(p_g, 0)^2,   p = W z + b,

``lam = ridge * mean_j |w_j|^2``. ``f`` is convex and piecewise quadratic; where the
active genes leave a direction of ``z`` flat (a TF whose targets are all censored, two
TFs with the same targets) ``f`` has no unique minimiser, and the ridge picks the one
nearest 0, so the solution is unique and does not depend on the path or on the other
cells of a batch. At any ``z`` the *active set* is ``A(z) = {g : x_g != 0 or p_g > 0}``;
on the piece where ``A`` is fixed, ``F`` is a ridge least-squares loss over the active
genes, with target ``x_g`` (0 for an active zero). The solver is a semismooth Newton
(primal active-set) method, batched over cells:

* start: ``z0`` given, or the uncensored ridge least-squares solution
  ``z0 = (W'W + lam I)^-1 W'(x - b)`` (one Cholesky factor shared by all cells);
* step: with ``r = 1_A (p - x)`` (residual on the active genes), the half gradient
  ``g = W' r + lam z`` and the curvature ``H_A = W_A' W_A = sum_{g in A} w_g w_g'``, the
  Newton step ``d = -(H_A + lam I)^-1 g`` lands exactly on the minimiser of ``F`` over
  the piece of ``A``;
* first step (when ``z0`` is not given): the Newton step for the guess ``A = P``
  (``P`` = observed, nonzero genes): least squares over the observed genes only. At
  the solution only a few zeros are active (~1% of the genes in the benchmarks), so
  this lands next to the final active set. Kept only where it lowers ``F``;
* curvature: ``H_P = W_P' W_P`` is assembled for a batch of cells as one sparse-dense
  product (the genes' outer products ``w_g w_g'`` are sparse when ``W`` is masked) and
  factorised once per cell: a Cholesky factor, or, when standard errors are asked, the
  explicit inverse (Schur-complement blocks, batched products). Since ``P`` is always
  active, ``H_A = H_P + U'U`` with ``U`` the rows of ``W`` at the cell's active zeros,
  and later steps solve with ``H_A`` through the Woodbury identity on that one factor
  (``r x r`` capacitance matrix, ``r`` = active zeros); a cell with ``r > k/2`` gets a
  new factor of its own (the choice is per cell, not per batch);
* globalisation: a backtracking (Armijo) line search ``t = 1, 1/2, ...`` per cell, so
  ``F`` never increases (beyond rounding: a few ulps);
* stop (per cell): (i) the active set did not change over a full step (``t = 1``): the
  new ``z`` minimises ``F`` on the piece it lies on, so it is the exact minimiser (KKT
  holds up to rounding); or (ii) a *full* step decreased ``F`` by at most ``tol`` times
  ``F`` (a step the line search cut short says nothing about the distance to the
  minimum and never stops a cell); or (iii) the line search cannot decrease ``F`` any
  more (rounding level); or ``max_iter`` steps (not converged). Converged cells leave
  the batch, so later steps cost only the cells still changing.

The optional standard errors use the curvature at the solution,
``se_j = sqrt(sigma^2 [(H_A + lam I)^-1]_jj)`` with ``sigma^2 = f / (|A| - k)``; NaN when
``|A| <= k``, when latent ``j`` has no active gene, or when the ridge gives more than
half of its precision (``lam [(H_A + lam I)^-1]_jj > 1/2``: the active genes do not
identify it).

Pure torch; no anndata or numpy.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

_CHUNK_ELEMENTS = 2**25  # bound on a temporary (cells x genes) block
_H_ELEMENTS = 2**24  # bound on the (cells x k x k) curvature stack of a chunk
_CHUNK_CELLS = 32  # on the CPU: a batch's k x k matrices stay in the cache (64-256 were 1.3-2x slower at k = 200)
_WOODBURY_RANK = 0.5  # active zeros (as a fraction of k) up to which a step reuses the observed factor
_RIDGE_SHARE = 0.5  # a latent whose variance is more than this share from the ridge is not identified
_ROUNDING = 8.0  # ulps of the objective a Newton step may rise and still count as a full step
_SPARSE_FRACTION = 0.3  # outer-product table denser than this: dense assembly


class _Curvature:
    """Assembles ``H_c = sum_g a[c, g] w_g w_g'`` for a batch of cells, both triangles.

    When ``W`` is sparse (masked), from a sparse table of the genes' outer products: one
    sparse-dense product per batch. Otherwise densely.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        n, k = weight.shape
        self.k = k
        nz = weight != 0
        deg = nz.sum(1)
        nnz = int((deg * deg).sum())
        self.sparse = nnz <= _SPARSE_FRACTION * n * k * k
        self.weight = weight
        if self.sparse:
            # Q (k*k x n): Q[i*k + j, g] = W[g, i] W[g, j] for i, j in the support of gene g.
            genes, cols = torch.nonzero(nz, as_tuple=True)
            starts = torch.cumsum(deg, 0) - deg
            # all ordered pairs of a gene's nonzero columns
            first = torch.repeat_interleave(torch.arange(genes.numel(), device=weight.device), deg[genes])
            # for entry e = (gene g, position u) pair it with every position v of the same gene
            offs = torch.arange(first.numel(), device=weight.device) - torch.repeat_interleave(
                (torch.cumsum(deg[genes], 0) - deg[genes]), deg[genes]
            )
            pair_gene = genes[first]
            second = starts[pair_gene] + offs
            ci, cj = cols[first], cols[second]
            vals = weight[pair_gene, ci] * weight[pair_gene, cj]
            rows = ci * k + cj
            with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice
                warnings.simplefilter("ignore", UserWarning)
                q = torch.sparse_coo_tensor(
                    torch.stack([rows, pair_gene]), vals, (k * k, n), device=weight.device, check_invariants=False
                )
                self.q = q.coalesce().to_sparse_csr()

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        a = active.to(self.weight.dtype)
        if self.sparse:
            return torch.sparse.mm(self.q, a.T.contiguous()).T.reshape(a.shape[0], self.k, self.k)
        return (a.unsqueeze(2) * self.weight).mT @ self.weight


def _cholesky(h: torch.Tensor, lam: float) -> torch.Tensor:
    """Lower Cholesky factors of ``h + lam I`` (batched; reads the lower triangle of
    ``h`` only, and adds ``lam`` to its diagonal in place). Matrices that rounding
    left indefinite are refactorised with more ridge."""
    diag = h.diagonal(dim1=-2, dim2=-1)
    diag.add_(lam)
    chol, info = torch.linalg.cholesky_ex(h)
    bad = info != 0
    jitter = lam
    if bool(bad.any()):  # rounding made a near-singular H indefinite: more ridge for those cells
        eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
        scale = float(diag.abs().mean().clamp(min=1e-12))
        while bool(bad.any()):
            extra = max(jitter * 100, 1e-6 * scale)
            chol_b, info_b = torch.linalg.cholesky_ex(h[bad] + (extra - lam) * eye)
            chol[bad] = chol_b
            bad_idx = torch.nonzero(bad).squeeze(1)
            bad = torch.zeros_like(bad)
            bad[bad_idx[info_b != 0]] = True
            jitter = extra
    return chol


def _schur_inverse(h: torch.Tensor) -> torch.Tensor:
    """Inverses of symmetric positive definite matrices (batched, both triangles read).

    Block inversion by Schur complements, ``[[A, B'], [B, C]]^-1`` from ``A^-1`` and
    ``S^-1`` with ``S = C - B A^-1 B'``, recursively: the work is batched matrix products
    (~``k^3`` flops at the speed of ``bmm``), where a Cholesky factor and its inverse take
    ~``2k^3/3`` flops at the speed of batched LAPACK, which on the CPU is several times
    slower. Leaves (``<= 32`` wide) are Cholesky-inverted (with more ridge where rounding
    left one indefinite, as :func:`_cholesky`).
    """
    n = h.shape[-1]
    if n <= 32:
        return torch.cholesky_inverse(_cholesky(h.clone(), 0.0))
    m = n // 2
    a_inv = _schur_inverse(h[..., :m, :m])
    b = h[..., m:, :m]
    ba = b @ a_inv  # B A^-1
    s_inv = _schur_inverse(h[..., m:, m:] - ba @ b.mT)
    off = -(s_inv @ ba)  # lower-left block of the inverse
    out = torch.empty_like(h)
    out[..., :m, :m] = a_inv - ba.mT @ off
    out[..., m:, :m] = off
    out[..., :m, m:] = off.mT
    out[..., m:, m:] = s_inv
    return out


class _Factor:
    """``H_P + lam I`` of a batch of cells (``H_P`` the curvature of the observed genes), and
    solves with it and with its low-rank updates ``H_P + U'U`` (Woodbury, ``U`` the rows of
    ``W`` at a cell's active zeros, padded with zero rows to ``r``).

    Held as a Cholesky factor (``inverse=False``: cheapest when only solves are needed) or
    as the explicit inverse (``inverse=True``: solves become matrix-vector products, and the
    diagonal of the inverse, for the standard errors, costs no more).
    """

    def __init__(self, h: torch.Tensor, lam: float, *, inverse: bool) -> None:
        self.inverse = inverse
        if inverse:
            h.diagonal(dim1=-2, dim2=-1).add_(lam)
            self.m = _schur_inverse(h)
        else:
            self.m = _cholesky(h, lam)

    def take(self, rows: torch.Tensor) -> _Factor:
        out = _Factor.__new__(_Factor)
        out.inverse, out.m = self.inverse, self.m[rows]
        return out

    def solve(self, g: torch.Tensor) -> torch.Tensor:
        """``H^-1 g`` (``g``: cells x k, or cells x k x r)."""
        vec = g.dim() == 2
        g = g.unsqueeze(-1) if vec else g
        out = self.m @ g if self.inverse else torch.cholesky_solve(g, self.m)
        return out.squeeze(-1) if vec else out

    def woodbury(self, weight: torch.Tensor, extra: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``V = H^-1 U'`` (cells x k x r) and the Cholesky factor of ``C = I + U V``."""
        vals, idx = extra.to(weight.dtype).topk(r, dim=1)
        u = weight[idx] * vals.unsqueeze(2)  # cells x r x k, zero rows for the padding
        v = self.solve(u.mT)
        cap = u @ v
        cap.diagonal(dim1=-2, dim2=-1).add_(1.0)
        return v, torch.linalg.cholesky(cap)

    def solve_updated(self, weight: torch.Tensor, extra: torch.Tensor, r: int, g: torch.Tensor) -> torch.Tensor:
        """``(H + U'U)^-1 g = H^-1 g - V C^-1 V' g``."""
        v, chol_c = self.woodbury(weight, extra, r)
        return self.solve(g) - (v @ torch.cholesky_solve(v.mT @ g.unsqueeze(-1), chol_c)).squeeze(-1)

    def inverse_diagonal(self, weight: torch.Tensor, extra: torch.Tensor, r: int) -> torch.Tensor:
        """``diag((H + U'U)^-1) = diag(H^-1) - rowsum(V * V C^-1)`` (``inverse=True`` only)."""
        base = self.m.diagonal(dim1=-2, dim2=-1)
        if r == 0:
            return base
        v, chol_c = self.woodbury(weight, extra, r)
        return base - (v * torch.cholesky_solve(v.mT, chol_c).mT).sum(-1)


def _sq(z: torch.Tensor) -> torch.Tensor:
    """Per-cell squared norm (float64)."""
    return (z * z).sum(1, dtype=torch.float64)


def _loss(xc: torch.Tensor, obs: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Active set and per-cell loss (accumulated in float64)."""
    active = obs | (p > 0)
    r = torch.where(active, p - xc, torch.zeros((), dtype=p.dtype, device=p.device))
    return active, (r * r).sum(1, dtype=torch.float64)


def _standard_errors(weight, curv, fac0, obs, active, f, lam):
    """Per cell, ``sqrt(sigma^2 [(H_A + lam I)^-1]_jj)`` at the solution (``active`` its active set,
    ``f`` its censored loss; ``fac0`` the explicit inverse of the observed genes' curvature, or None),
    NaN where not identified (see the module)."""
    nc, k = active.shape[0], weight.shape[1]
    dt = weight.dtype
    has = active.to(dt) @ (weight * weight) > 0  # latents with an active gene
    extra = active & ~obs
    r = extra.sum(1)
    few = r <= k * _WOODBURY_RANK if fac0 is not None else torch.zeros_like(r, dtype=torch.bool)
    diag_inv = torch.empty(nc, k, dtype=dt, device=weight.device)
    if bool(few.all()):
        diag_inv = fac0.inverse_diagonal(weight, extra, int(r.max()))
    else:  # cells with many active zeros (or no factor yet): a new inverse
        i, j = torch.nonzero(few).squeeze(1), torch.nonzero(~few).squeeze(1)
        if i.numel():
            diag_inv[i] = fac0.take(i).inverse_diagonal(weight, extra[i], int(r[i].max()))
        diag_inv[j] = _Factor(curv(active[j]), lam, inverse=True).m.diagonal(dim1=-2, dim2=-1)
    dof = (active.sum(1) - k).to(torch.float64)
    sigma2 = torch.where(dof > 0, f / dof.clamp(min=1), torch.full_like(f, float("nan"))).to(dt)
    se = (diag_inv * sigma2.unsqueeze(1)).sqrt()
    # identified: the active genes, not the ridge, give most of the latent's precision
    # (a direction the active genes leave flat has lam * [H^-1]_jj near 1)
    ident = has & (lam * diag_inv <= _RIDGE_SHARE)
    return torch.where(ident, se, torch.full_like(se, float("nan")))


@torch.no_grad()
def standard_errors(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    z: torch.Tensor,
    *,
    ridge: float,
    censor: bool = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Standard errors of the latents ``z`` (cells x k, the minimiser of the objective) from the
    curvature of the objective there: per cell one ``k x k`` inverse (Schur blocks) of the observed
    genes' curvature, updated for the active zeros (Woodbury) as :func:`solve_censored` does.

    ``x``: cells x genes; ``weight``, ``bias``: the frozen decoder; ``ridge``: as in
    :func:`solve_censored`; ``censor`` False: every entry is observed. Returns cells x k
    (``weight``'s dtype and device), NaN where a latent is not identified.
    """
    dev, dt = weight.device, weight.dtype
    n_cells, k = z.shape
    lam = ridge * float((weight * weight).sum(0).mean().clamp(min=1e-12))
    curv = _Curvature(weight)
    if chunk_size is None:
        cells = _CHUNK_CELLS if dev.type == "cpu" else n_cells
        chunk_size = max(1, min(cells, _CHUNK_ELEMENTS // max(1, x.shape[1]), _H_ELEMENTS // max(1, k * k)))
    out = torch.empty(n_cells, k, dtype=dt, device=dev)
    for s in range(0, n_cells, chunk_size):
        xc = x[s : s + chunk_size].to(device=dev, dtype=dt)
        obs = xc != 0 if censor else torch.ones_like(xc, dtype=torch.bool)
        p = z[s : s + chunk_size].to(device=dev, dtype=dt) @ weight.T
        if bias is not None:
            p = p + bias
        active, f = _loss(xc, obs, p)
        out[s : s + chunk_size] = _standard_errors(
            weight, curv, _Factor(curv(obs), lam, inverse=True), obs, active, f, lam
        )
    return out


@torch.no_grad()
def solve_censored(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    z0: torch.Tensor | None = None,
    max_iter: int = 50,
    tol: float = 1e-6,
    ridge: float = 1e-6,
    return_se: bool = False,
    chunk_size: int | None = None,
    censor: bool = True,
) -> tuple[torch.Tensor, int, dict]:
    """Per-cell minimiser of the censored loss for a frozen decoder (semismooth Newton).

    Parameters
    ----------
    x
        ``cells x genes`` data; zeros are censored (they only say ``p <= 0``).
    weight
        ``genes x k`` dense weights (zero off the mask).
    bias
        ``genes`` bias, or None.
    z0
        ``cells x k`` start. Default: the uncensored least-squares solution, then
        a first step to the least-squares solution over the observed genes.
    max_iter
        Newton steps at most (per cell).
    tol
        Stop a cell once a step decreases its loss by at most ``tol`` times the loss
        (in addition to the exact stop: the active set unchanged by a full step).
    ridge
        ``lam = ridge * mean(diag(W'W))``: the weight of the ridge ``lam |z|^2`` in the
        objective (and so on the diagonal of every curvature matrix).
    return_se
        Also return per-cell, per-latent standard errors in ``info['se']``.
    chunk_size
        Cells per batch (default: 32 on the CPU, else a bound on the temporaries'
        size). With ``torch.get_num_threads() > 1`` on the CPU, chunks run in
        parallel threads, each with one intra-op thread; the result does not depend
        on the thread count.
    censor
        False: every entry is observed (a linear output), and the solution is plain least
        squares.

    Returns
    -------
    ``(z, n_iter, info)``: latents (``cells x k``, weight's dtype and device), the
    largest number of Newton steps any cell took, and a dict of per-cell tensors:
    ``loss`` (float64), ``n_iter`` (steps taken, the observed-set step included), ``converged`` (bool: stopped by rule i-iii, not by
    ``max_iter``), ``n_active`` (genes in the final active set), and ``se`` when
    asked.
    """
    dev, dt = weight.device, weight.dtype
    n_cells, n_genes = x.shape
    k = weight.shape[1]
    gram = weight.T @ weight
    lam = ridge * float(gram.diagonal().mean().clamp(min=1e-12))
    chol_g = _cholesky(gram.unsqueeze(0).clone(), lam)[0]
    curv = _Curvature(weight)
    if chunk_size is None:
        cells = _CHUNK_CELLS if dev.type == "cpu" else n_cells
        chunk_size = max(1, min(cells, _CHUNK_ELEMENTS // max(1, n_genes), _H_ELEMENTS // max(1, k * k)))

    z_out = torch.empty(n_cells, k, dtype=dt, device=dev)
    loss_out = torch.empty(n_cells, dtype=torch.float64, device=dev)
    iters_out = torch.zeros(n_cells, dtype=torch.long, device=dev)
    conv_out = torch.zeros(n_cells, dtype=torch.bool, device=dev)
    nact_out = torch.zeros(n_cells, dtype=torch.long, device=dev)
    se_out = torch.full((n_cells, k), float("nan"), dtype=dt, device=dev) if return_se else None
    zero = torch.zeros((), dtype=dt, device=dev)

    def chunk(s: int) -> None:
        xc = x[s : s + chunk_size].to(device=dev, dtype=dt)
        nc = xc.shape[0]
        obs = xc != 0 if censor else torch.ones_like(xc, dtype=torch.bool)
        if z0 is None:
            xb = xc if bias is None else xc - bias
            z = torch.cholesky_solve((xb @ weight).T, chol_g).T.contiguous()
        else:
            z = z0[s : s + nc].to(device=dev, dtype=dt).clone()
        p = z @ weight.T
        if bias is not None:
            p = p + bias
        active, f = _loss(xc, obs, p)
        obj = f + lam * _sq(z)  # the objective: the censored loss plus the ridge
        iters = torch.zeros(nc, dtype=torch.long, device=dev)
        conv = torch.zeros(nc, dtype=torch.bool, device=dev)
        # Curvature of the observed genes (always active), factorised once per cell: later
        # steps add the few active zeros to it by a Woodbury update instead of a new factor.
        fac0 = _Factor(curv(obs), lam, inverse=return_se) if max_iter > 0 else None
        if z0 is None and max_iter > 0:
            # First step: least squares over the observed (nonzero) genes only, i.e. the
            # Newton step for the guess "no zero is active". At the solution only a few
            # zeros are active, so this lands next to the final active set. Kept only
            # where it lowers the loss.
            d = -fac0.solve(torch.where(obs, p - xc, zero) @ weight + lam * z)
            q = d @ weight.T
            a1, f1 = _loss(xc, obs, p + q)
            o1 = f1 + lam * _sq(z + d)
            better = o1 <= obj + _ROUNDING * torch.finfo(dt).eps * obj
            bc = better.unsqueeze(1)
            z = torch.where(bc, z + d, z)
            p = torch.where(bc, p + q, p)
            active, f, obj = torch.where(bc, a1, active), torch.where(better, f1, f), torch.where(better, o1, obj)
            iters += 1
            conv = better & ((a1 == obs).all(1) | (o1 <= 0))
        # Newton steps on the cells not done yet; the state is compacted to those cells. The
        # factors (k x k per cell) are compacted only when at most half of theirs are left:
        # ``pos`` are the live cells' rows in ``fac``, which may hold finished cells too.
        ids = torch.nonzero(~conv).squeeze(1)
        zl, pl, al, fl, ml, xl, ol = z[ids], p[ids], active[ids], f[ids], obj[ids], xc[ids], obs[ids]
        fac, pos = fac0, ids

        def padded(t: torch.Tensor) -> torch.Tensor:  # rows of the live cells -> rows of fac
            if pos.numel() == fac.m.shape[0]:
                return t
            out = torch.zeros((fac.m.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype, device=dev)
            out[pos] = t
            return out

        def live(t: torch.Tensor) -> torch.Tensor:
            return t if pos.numel() == fac.m.shape[0] else t[pos]

        for _ in range(max_iter - int(z0 is None)):
            if ids.numel() == 0:
                break
            if 2 * pos.numel() <= fac.m.shape[0]:
                fac, pos = fac.take(pos), torch.arange(pos.numel(), device=dev)
            grad = torch.where(al, pl - xl, zero) @ weight + lam * zl  # half the objective's gradient
            extra = al & ~ol  # active zeros
            r = extra.sum(1)
            few = r <= k * _WOODBURY_RANK  # per cell, so a cell's step does not depend on its batch
            if bool(few.all()):
                r_max = int(r.max())
                d = -live(
                    fac.solve(padded(grad))
                    if r_max == 0
                    else fac.solve_updated(weight, padded(extra), r_max, padded(grad))
                )
            else:  # cells with many active zeros: a new factor of their own curvature
                d = torch.empty_like(grad)
                i, j = torch.nonzero(few).squeeze(1), torch.nonzero(~few).squeeze(1)
                if i.numel():
                    sub = fac.take(pos[i])
                    r_i = int(r[i].max())
                    d[i] = -(sub.solve(grad[i]) if r_i == 0 else sub.solve_updated(weight, extra[i], r_i, grad[i]))
                d[j] = -_Factor(curv(al[j]), lam, inverse=False).solve(grad[j])
            q = d @ weight.T
            slope = 2.0 * (grad * d).sum(1, dtype=torch.float64)  # directional derivative (< 0)
            t = torch.ones(ids.numel(), dtype=torch.float64, device=dev)
            a_new, f_new = _loss(xl, ol, pl + q)
            m_new = f_new + lam * _sq(zl + d)
            slack = _ROUNDING * torch.finfo(dt).eps * ml  # a step at rounding level is not an ascent
            ok = m_new <= ml + 1e-4 * slope + slack
            stalled = torch.zeros_like(ok)
            for _bt in range(30):  # backtracking, only for the cells that need it
                todo = torch.nonzero(~ok & ~stalled).squeeze(1)
                if todo.numel() == 0:
                    break
                t[todo] *= 0.5
                tt = t[todo].to(dt).unsqueeze(1)
                ab, fb = _loss(xl[todo], ol[todo], pl[todo] + tt * q[todo])
                mb = fb + lam * _sq(zl[todo] + tt * d[todo])
                a_new[todo], f_new[todo], m_new[todo] = ab, fb, mb
                ok[todo] = mb <= ml[todo] + 1e-4 * t[todo] * slope[todo] + slack[todo]
                stalled[todo] = ~ok[todo] & (t[todo] < 2**-20)
            # A stalled cell (no decrease at rounding level) keeps its point.
            step = torch.where(stalled, torch.zeros_like(t), t).to(dt).unsqueeze(1)
            zl = zl + step * d
            pl = pl + step * q
            keep = stalled.unsqueeze(1)
            full = t == 1
            exact = full & (a_new == al).all(1)
            al = torch.where(keep, al, a_new)
            f_new = torch.where(stalled, fl, f_new)
            m_new = torch.where(stalled, ml, m_new)
            # a small decrease says "converged" only after a full Newton step: a step the line
            # search cut short says nothing about the distance to the minimum
            small = full & ((ml - m_new) <= tol * ml)
            fl, ml = f_new, m_new
            iters[ids] += 1
            done = exact | small | stalled | (m_new <= 0)
            if bool(done.any()):
                fin = ids[done]
                z[fin], p[fin], active[fin], f[fin] = zl[done], pl[done], al[done], fl[done]
                conv[fin] = True
                go = ~done
                ids, zl, pl, al, fl, ml, xl, ol, pos = (v[go] for v in (ids, zl, pl, al, fl, ml, xl, ol, pos))
        if ids.numel():  # max_iter reached
            z[ids], p[ids], active[ids], f[ids] = zl, pl, al, fl
        z_out[s : s + nc] = z
        loss_out[s : s + nc] = f
        iters_out[s : s + nc] = iters
        conv_out[s : s + nc] = conv
        nact_out[s : s + nc] = active.sum(1)
        if return_se:
            se_out[s : s + nc] = _standard_errors(weight, curv, fac0, obs, active, f, lam)

    starts = list(range(0, n_cells, chunk_size))
    n_threads = torch.get_num_threads() if dev.type == "cpu" else 1
    if n_threads > 1:
        # Each chunk on one intra-op thread, chunks in parallel: the steps are many
        # small batched ops, whose intra-op parallel regions cost more than they bring
        # (and are ruinous on a loaded machine).
        def work(s: int) -> None:
            torch.set_num_threads(1)
            chunk(s)

        torch.set_num_threads(1)
        try:
            if len(starts) > 1:
                with ThreadPoolExecutor(max_workers=n_threads) as pool:
                    list(pool.map(work, starts))
            else:
                for s in starts:
                    chunk(s)
        finally:
            torch.set_num_threads(n_threads)
    else:
        for s in starts:
            chunk(s)

    info = {"loss": loss_out, "n_iter": iters_out, "converged": conv_out, "n_active": nact_out}
    if return_se:
        info["se"] = se_out
    return z_out, int(iters_out.max()) if n_cells else 0, info
