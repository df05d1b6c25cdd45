"""A linear layer whose weights live only on the edges of a network."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.autograd.function import once_differentiable

#: Density below which :class:`SparseLinear` uses the sparse kernel when ``impl='auto'``.
#: Measured with ``benchmarks/sparse_linear.py`` (20,000 genes x 1,000 TFs, uniform random
#: masks, 2 CPU threads, torch 2.13; results in ``benchmarks/results/sparse_linear.csv``):
#: for a training step (forward + backward) at batch 256 the sparse kernel was faster at
#: every density up to 0.2 (8.2x at 0.01, 3.3x at 0.05, 2.1x at 0.1, 1.24x at 0.2), tied
#: at 0.25 (0.99x) and slower from 0.3 (0.65x); higher densities were run with
#: ``--densities 0.5 0.4 0.3 0.25 0.2 0.15 --batches 32 256``. The crossover moves down
#: for larger batches (batch 2048: sparse 1.3x faster at 0.1, 0.78x at 0.15) and up for
#: smaller ones (batch 32: faster up to 0.4); pass ``impl=`` to override.
SPARSE_DENSITY_THRESHOLD = 0.2

#: Smallest weight matrix (``out x in`` entries) for which ``impl='auto'`` considers the
#: sparse kernel. Below it the sparse kernel's fixed cost per call dominates. Measured
#: with ``benchmarks/sparse_linear.py --n-out N --n-in M --densities 0.1`` (2 threads):
#: at 1,000 x 100 (the paper's GRN) dense was 1.3x (batch 32) and 1.6x (batch 256)
#: faster per training step; at 2,000 x 200 sparse was 1.4x / 1.1x faster, at
#: 3,000 x 300 1.8x / 1.0x.
SPARSE_MIN_WEIGHTS = 250_000

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
    :data:`SPARSE_DENSITY_THRESHOLD` and the dense matrix would have at least
    :data:`SPARSE_MIN_WEIGHTS` entries.

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

    @classmethod
    def from_net(cls, prior, *, bias: bool = False, impl: str = "auto") -> SparseLinear:
        """A layer from a prior network matched to the genes (:func:`regdecoder.pp.prepare_net`).

        ``prior`` has ``latent_names``, ``n_genes``, the edges ``rows`` (gene index) and
        ``cols`` (latent index), and ``prior`` (sign per edge, or None). The TF names, in
        input order, are in ``layer.latent_names``; the prior's sign per edge (in the
        layer's edge order, or None) in ``layer.prior_sign``.
        """
        rows, cols = torch.as_tensor(prior.rows), torch.as_tensor(prior.cols)
        layer = cls(len(prior.latent_names), prior.n_genes, rows, cols, bias=bias, impl=impl)
        layer.latent_names = list(prior.latent_names)
        if prior.prior is None:
            layer.prior_sign = None
        else:  # the constructor sorts edges; put the signs in the same order
            sign = torch.zeros(prior.n_genes, len(prior.latent_names))
            sign[rows, cols] = torch.as_tensor(prior.prior, dtype=torch.float32)
            layer.prior_sign = sign[layer.rows, layer.cols]
        return layer

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
        big = self.in_features * self.out_features >= SPARSE_MIN_WEIGHTS
        return "sparse" if big and self.density < SPARSE_DENSITY_THRESHOLD else "dense"

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
            # The sparse product is 2-D: fold any leading batch dimensions, like ``z @ W.T`` does.
            z2 = z.reshape(-1, z.shape[-1])
            out = _SparseMatmul.apply(z2, self.values, self._csr_structure())
            out = out.reshape(*z.shape[:-1], self.out_features)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _csr_structure(self) -> dict[str, torch.Tensor | int]:
        """CSR index arrays of ``W`` and of ``W.T`` (cached; they depend on the mask only).

        The cache is rebuilt when the ``rows``/``cols`` buffers move to another device or
        are overwritten in place (e.g. by :meth:`load_state_dict`).
        """
        key = (self.rows.device, *_identity(self.rows), *_identity(self.cols))
        cache = getattr(self, "_csr_cache", None)
        if cache is None or cache["key"] != key:
            n_out, n_in = self.out_features, self.in_features
            t_order = torch.argsort(self.cols * n_out + self.rows)
            cache = {
                "key": key,
                "crow": _compress(self.rows, n_out),
                "col": self.cols,
                "t_crow": _compress(self.cols[t_order], n_in),
                "t_col": self.rows[t_order],
                "t_order": t_order,
                "rows": self.rows,
                "n_out": n_out,
                "n_in": n_in,
                "blocks": {},  # gene-blocked CSR pieces of W.T, per block size (see _input_grad)
            }
            self._csr_cache = cache
        return cache

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz}, density={self.density:.3g}, bias={self.bias is not None}, kernel={self.kernel!r}"
        )


def _identity(t: torch.Tensor) -> tuple[int, int | None]:
    """Storage address and in-place version of a tensor (inference tensors have no version)."""
    return t.data_ptr(), None if t.is_inference() else t._version


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
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        z, values = ctx.saved_tensors
        s = ctx.s
        grad_z = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_z = _input_grad(grad_out, values, s)
        if ctx.needs_input_grad[1]:
            grad_values = _edge_products(grad_out, z, s)
        return grad_z, grad_values, None


#: Bytes of ``grad_out`` that one block of the blocked ``W.T @ grad_out.T`` product reads.
#: Without blocking, every edge reads a ``batch``-long row scattered over all of
#: ``grad_out`` (``n_out x batch``), which falls out of cache for large batches: at
#: 20k genes x 1k TFs, density 0.1, batch 2048, the single product took ~7 s against
#: ~1 s blocked (2 CPU cores); of 4, 8 and 16 MiB slices, 4-8 MiB did best.
_GRAD_BLOCK_BYTES = 8 * 2**20
_MIN_GRAD_BLOCK = 256


def _input_grad(grad_out: torch.Tensor, values: torch.Tensor, s: dict) -> torch.Tensor:
    """``grad_out @ W`` (``batch x n_in``), as ``W.T @ grad_out.T`` in blocks of genes."""
    n_out, n_in = s["n_out"], s["n_in"]
    batch = grad_out.shape[0]
    block = max(_MIN_GRAD_BLOCK, _GRAD_BLOCK_BYTES // max(1, batch * grad_out.element_size()))
    if block >= n_out:
        wt = _csr(s["t_crow"], s["t_col"], values[s["t_order"]], (n_in, n_out))
        return torch.sparse.mm(wt, grad_out.T).T
    g_t = grad_out.T.contiguous()  # n_out x batch: each gene block is a contiguous slice
    acc = grad_out.new_zeros(n_in, batch)
    for start, stop, crow, col, order in _gene_blocks(s, block):
        acc.addmm_(_csr(crow, col, values[order], (n_in, stop - start)), g_t[start:stop])
    return acc.T


def _gene_blocks(s: dict, block: int) -> list[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """CSR pieces of ``W.T[:, start:stop]`` for consecutive gene blocks (cached per block size).

    Each piece is ``(start, stop, crow, col, order)``: ``values[order]`` are its CSR values.
    """
    pieces = s["blocks"].get(block)
    if pieces is None:
        n_out, n_in = s["n_out"], s["n_in"]
        rows, cols = s["rows"], s["col"]
        # Row-major order of W.T within each gene block: by (block, col, row).
        order = torch.argsort((rows // block) * (n_in * n_out) + cols * n_out + rows)
        counts = torch.bincount(rows[order] // block, minlength=-(-n_out // block)).tolist()
        pieces, offset = [], 0
        for i, count in enumerate(counts):
            start, stop = i * block, min((i + 1) * block, n_out)
            o = order[offset : offset + count]
            offset += count
            if count:  # a gene block without edges adds nothing
                pieces.append((start, stop, _compress(cols[o], n_in), rows[o] - start, o))
        s["blocks"][block] = pieces
    return pieces


def _edge_products(a: torch.Tensor, b: torch.Tensor, s: dict) -> torch.Tensor:
    """``sum_k a[k, rows[e]] * b[k, cols[e]]`` for every edge e, in CSR edge order.

    A sampled dense-dense product (SDDMM): ``(a.T @ b)`` evaluated on the mask only, with
    ``torch.sparse.sampled_addmm``; it needs no ``nnz x batch`` temporaries. (It replaced a
    chunked gather, ``(a[:, rows] * b[:, cols]).sum(0)``, that was ~60x slower.)
    """
    pattern = _csr(s["crow"], s["col"], a.new_zeros(s["col"].numel()), (s["n_out"], s["n_in"]))
    return torch.sparse.sampled_addmm(pattern, a.T, b, beta=0.0).values()
