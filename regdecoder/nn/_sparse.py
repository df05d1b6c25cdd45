"""A linear layer whose weights live only on the edges of a network."""

from __future__ import annotations

import warnings

import torch
from torch import nn

#: Density below which :class:`SparseLinear` uses the sparse kernel when ``impl='auto'``.
#: Chosen from ``benchmarks/sparse_linear.py`` (see the README's benchmark section).
SPARSE_DENSITY_THRESHOLD = 0.05

_IMPLS = ("auto", "dense", "sparse")


class SparseLinear(nn.Module):
    """Linear map ``z -> z @ W.T + b`` with ``W`` non-zero only on a given set of edges.

    The trainable weights are a vector ``values`` with one entry per edge
    ``(rows[e], cols[e])``: weights off the mask do not exist as parameters, so they
    are exactly zero under every optimiser, weight decay and momentum.

    Two kernels compute the same map:

    ``'dense'``
        scatter the edge values into a dense ``out x in`` matrix and use one dense
        matrix product (fastest for dense masks and small layers);
    ``'sparse'``
        a ``torch.sparse`` CSR matrix product, whose cost grows with the number of
        edges instead of ``out x in``.

    ``impl='auto'`` takes the sparse kernel when the mask density is below
    :data:`SPARSE_DENSITY_THRESHOLD`.

    Parameters
    ----------
    in_features
        Number of inputs (latents, TFs).
    out_features
        Number of outputs (genes).
    rows, cols
        Edge list: output index and input index of each edge, 1-D integer tensors.
    bias
        Whether to learn an additive bias per output.
    impl
        ``'auto'``, ``'dense'`` or ``'sparse'``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rows: torch.Tensor,
        cols: torch.Tensor,
        *,
        bias: bool = False,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        rows = torch.as_tensor(rows, dtype=torch.long).flatten()
        cols = torch.as_tensor(cols, dtype=torch.long).flatten()
        if rows.shape != cols.shape:
            msg = f"`rows` and `cols` must have the same length, got {rows.numel()} and {cols.numel()}."
            raise ValueError(msg)
        if rows.numel() == 0:
            msg = "The mask has no edges: give at least one (row, col) pair."
            raise ValueError(msg)
        if rows.min() < 0 or rows.max() >= out_features or cols.min() < 0 or cols.max() >= in_features:
            msg = f"Edge indices out of range for a {out_features} x {in_features} weight matrix."
            raise ValueError(msg)
        if impl not in _IMPLS:
            msg = f"`impl` must be one of {_IMPLS}, got {impl!r}."
            raise ValueError(msg)
        # Sort edges row-major (CSR order) and refuse duplicates.
        key = rows * in_features + cols
        key, order = torch.sort(key)
        if (key[1:] == key[:-1]).any():
            msg = "The mask has duplicate edges; each (row, col) pair may appear once."
            raise ValueError(msg)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.register_buffer("rows", rows[order])
        self.register_buffer("cols", cols[order])
        self.values = nn.Parameter(torch.empty(rows.numel()))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.impl = impl
        self.reset_parameters()

    # ------------------------------------------------------------------ basics
    @property
    def nnz(self) -> int:
        """Number of edges (free weights, bias excluded)."""
        return self.values.numel()

    @property
    def density(self) -> float:
        """Fraction of the dense weight matrix that the mask allows."""
        return self.nnz / (self.in_features * self.out_features)

    @property
    def kernel(self) -> str:
        """The kernel actually used: ``'dense'`` or ``'sparse'``."""
        if self.impl != "auto":
            return self.impl
        return "sparse" if self.density < SPARSE_DENSITY_THRESHOLD else "dense"

    def reset_parameters(self) -> None:
        """Uniform init scaled by each output's number of inputs (Kaiming-like)."""
        fan_in = torch.bincount(self.rows, minlength=self.out_features).clamp(min=1).float()
        bound = 1.0 / torch.sqrt(fan_in[self.rows])
        with torch.no_grad():
            self.values.uniform_(-1.0, 1.0)
            self.values.mul_(bound.to(self.values.device))
            if self.bias is not None:
                self.bias.zero_()

    @property
    def weight(self) -> torch.Tensor:
        """Dense ``out_features x in_features`` weight matrix (zero off the mask)."""
        w = self.values.new_zeros(self.out_features, self.in_features)
        return w.index_put((self.rows, self.cols), self.values)

    @property
    def mask(self) -> torch.Tensor:
        """Boolean ``out_features x in_features`` adjacency."""
        m = torch.zeros(self.out_features, self.in_features, dtype=torch.bool, device=self.rows.device)
        m[self.rows, self.cols] = True
        return m

    # ----------------------------------------------------------------- forward
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.kernel == "dense":
            out = z @ self.weight.T
        else:
            out = _SparseMatmul.apply(z, self.values, self._csr_structure())
        if self.bias is not None:
            out = out + self.bias
        return out

    def _csr_structure(self) -> dict[str, torch.Tensor | int]:
        """CSR index arrays of ``W`` and of ``W.T`` (cached; they depend on the mask only)."""
        cache = getattr(self, "_csr_cache", None)
        if cache is None or cache["crow"].device != self.rows.device:
            n_out, n_in = self.out_features, self.in_features
            t_order = torch.argsort(self.cols * n_out + self.rows)
            cache = {
                "crow": _compress(self.rows, n_out),
                "col": self.cols,
                "t_crow": _compress(self.cols[t_order], n_in),
                "t_col": self.rows[t_order],
                "t_order": t_order,
                "rows": self.rows,
                "n_out": n_out,
                "n_in": n_in,
            }
            self._csr_cache = cache
        return cache

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz}, density={self.density:.3g}, bias={self.bias is not None}, kernel={self.kernel!r}"
        )


def _compress(sorted_index: torch.Tensor, size: int) -> torch.Tensor:
    counts = torch.bincount(sorted_index, minlength=size)
    crow = torch.zeros(size + 1, dtype=torch.long, device=sorted_index.device)
    crow[1:] = torch.cumsum(counts, 0)
    return crow


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


class _SparseMatmul(torch.autograd.Function):
    """``out = z @ W.T`` with ``W`` given as CSR edge values; gradients for z and values."""

    @staticmethod
    def forward(ctx, z, values, s):  # noqa: D102
        ctx.save_for_backward(z, values)
        ctx.s = s
        w = _csr(s["crow"], s["col"], values, (s["n_out"], s["n_in"]))
        return torch.sparse.mm(w, z.T).T

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        z, values = ctx.saved_tensors
        s = ctx.s
        grad_z = grad_values = None
        if ctx.needs_input_grad[0]:
            wt = _csr(s["t_crow"], s["t_col"], values[s["t_order"]], (s["n_in"], s["n_out"]))
            grad_z = torch.sparse.mm(wt, grad_out.T).T
        if ctx.needs_input_grad[1]:
            grad_values = _edge_products(grad_out, z, s["rows"], s["col"])
        return grad_z, grad_values, None


def _edge_products(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``sum_k a[k, rows[e]] * b[k, cols[e]]`` for every edge e, in bounded memory."""
    nnz = rows.numel()
    out = a.new_empty(nnz)
    chunk = max(1, int(2**24 // max(1, a.shape[0])))  # ~64 MB of float32 per chunk
    for s in range(0, nnz, chunk):
        r, c = rows[s : s + chunk], cols[s : s + chunk]
        out[s : s + chunk] = (a[:, r] * b[:, c]).sum(0)
    return out
