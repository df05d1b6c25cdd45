"""Tests of :class:`regdecoder.nn._sparse.SparseLinear` against plain dense references."""

from __future__ import annotations

import pytest
import torch

import regdecoder.nn._sparse as sparse_mod
from regdecoder.nn._sparse import SPARSE_DENSITY_THRESHOLD, SPARSE_MIN_WEIGHTS, SparseLinear

pytestmark = pytest.mark.filterwarnings("error")

KERNELS = ("dense", "sparse")


def random_mask(n_out: int, n_in: int, nnz: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(n_out * n_in, generator=g)[:nnz]
    mask = torch.zeros(n_out * n_in, dtype=torch.bool)
    mask[flat] = True
    return mask.view(n_out, n_in)


def shuffled_edges(mask: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge list of ``mask`` in a random order (the layer must not depend on it)."""
    rows, cols = mask.nonzero(as_tuple=True)
    perm = torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(seed))
    return rows[perm], cols[perm]


def uses_sparse_kernel(out: torch.Tensor) -> bool:
    """Whether the autograd graph of ``out`` contains the custom sparse Function."""
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == "_SparseMatmulBackward":
            return True
        stack.extend(f for f, _ in fn.next_functions)
    return False


def check_against_masked_dense(layer: SparseLinear, mask: torch.Tensor, z: torch.Tensor, *, sum_loss: bool = False):
    """Output and gradients (z, values, bias) of ``layer`` vs ``z @ (W * mask).T + b``."""
    w_full = torch.randn(mask.shape, generator=torch.Generator().manual_seed(7), dtype=z.dtype)
    w_full = w_full.requires_grad_()
    bias = None
    layer.zero_grad(set_to_none=True)
    with torch.no_grad():
        layer.values.copy_(w_full[layer.rows, layer.cols])
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(mask.shape[0], dtype=z.dtype))
            bias = layer.bias.detach().clone().requires_grad_()

    z_ref = z.detach().clone().requires_grad_()
    ref = z_ref @ (w_full * mask).T
    if bias is not None:
        ref = ref + bias
    z_lay = z.detach().clone().requires_grad_()
    out = layer(z_lay)

    upstream = torch.ones_like(ref) if sum_loss else torch.randn(ref.shape, dtype=z.dtype)
    if sum_loss:  # ``.sum()`` hands the kernel an expanded (stride-0) gradient
        ref.sum().backward()
        out.sum().backward()
    else:
        ref.backward(upstream)
        out.backward(upstream)

    tol = {"rtol": 1e-5, "atol": 1e-5} if z.dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(z_lay.grad, z_ref.grad, **tol)
    # d/dW of (W * mask) is mask * grad: the edge gradient is the full gradient read at the edges.
    torch.testing.assert_close(layer.values.grad, w_full.grad[layer.rows, layer.cols], **tol)
    assert torch.all(w_full.grad[~mask] == 0)
    if bias is not None:
        torch.testing.assert_close(layer.bias.grad, bias.grad, **tol)
    return out


# ---------------------------------------------------------------- numerics
@pytest.mark.parametrize("impl", [*KERNELS, "auto"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("sum_loss", [False, True])
def test_matches_masked_dense_reference(impl, bias, sum_loss):
    torch.manual_seed(0)
    mask = random_mask(40, 12, nnz=90)
    rows, cols = shuffled_edges(mask)
    layer = SparseLinear(12, 40, rows, cols, bias=bias, impl=impl)
    check_against_masked_dense(layer, mask, torch.randn(9, 12), sum_loss=sum_loss)


@pytest.mark.parametrize("impl", KERNELS)
def test_matches_reference_in_float64(impl):
    mask = random_mask(30, 8, nnz=50, seed=3)
    layer = SparseLinear(8, 30, *shuffled_edges(mask), bias=True, impl=impl).double()
    check_against_masked_dense(layer, mask, torch.randn(5, 8, dtype=torch.float64))


@pytest.mark.parametrize("impl", KERNELS)
def test_gradcheck(impl):
    """Finite differences in float64, with respect to both the input and the edge values."""
    mask = random_mask(7, 5, nnz=12, seed=4)
    layer = SparseLinear(5, 7, *shuffled_edges(mask), impl=impl).double()
    z = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    values = layer.values.detach().clone().requires_grad_()

    def f(z, values):
        return torch.func.functional_call(layer, {"values": values}, (z,))

    assert torch.autograd.gradcheck(f, (z, values))


def test_sparse_blocked_input_gradient(monkeypatch):
    """The gene-blocked ``grad_out @ W`` (large batches) matches the reference, empty blocks included."""
    monkeypatch.setattr(sparse_mod, "_GRAD_BLOCK_BYTES", 64)
    monkeypatch.setattr(sparse_mod, "_MIN_GRAD_BLOCK", 16)
    mask = random_mask(100, 10, nnz=150, seed=5)
    mask[30:60] = False  # two gene blocks of 16 without any edge
    layer = SparseLinear(10, 100, *shuffled_edges(mask), bias=True, impl="sparse")
    check_against_masked_dense(layer, mask, torch.randn(6, 10))
    assert list(layer._csr_structure()["blocks"]) == [16]  # the blocked path did run
    check_against_masked_dense(layer, mask, torch.randn(6, 10), sum_loss=True)


def test_kernels_agree_on_batched_and_vector_inputs():
    mask = random_mask(20, 6, nnz=30, seed=6)
    rows, cols = shuffled_edges(mask)
    dense = SparseLinear(6, 20, rows, cols, bias=True, impl="dense")
    sparse = SparseLinear(6, 20, rows, cols, bias=True, impl="sparse")
    sparse.load_state_dict(dense.state_dict())
    for shape in [(2, 3, 6), (6,), (0, 6)]:
        z = torch.randn(shape)
        out_d, out_s = dense(z), sparse(z)
        assert out_s.shape == out_d.shape == (*shape[:-1], 20)
        torch.testing.assert_close(out_s, out_d)


# ----------------------------------------------------------------- weights
@pytest.mark.parametrize("impl", KERNELS)
def test_weight_and_mask_properties(impl):
    mask = random_mask(25, 9, nnz=40, seed=8)
    rows, cols = shuffled_edges(mask)
    layer = SparseLinear(9, 25, rows, cols, bias=True, impl=impl)
    assert layer.nnz == 40
    assert layer.density == pytest.approx(40 / (25 * 9))
    assert torch.equal(layer.mask, mask)
    w = layer.weight
    assert w.shape == (25, 9)
    assert torch.all(w[~mask] == 0)
    assert torch.equal(w[layer.rows, layer.cols], layer.values.detach())
    # The only trainable weights are one value per edge (plus the bias).
    assert {n: p.numel() for n, p in layer.named_parameters()} == {"values": 40, "bias": 25}


OPTIMISERS = {
    "adam_wd": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, weight_decay=0.1),
}


@pytest.mark.parametrize("impl", KERNELS)
@pytest.mark.parametrize("optimiser", list(OPTIMISERS))
def test_off_mask_weights_stay_zero_under_optimisers(impl, optimiser):
    torch.manual_seed(0)
    mask = random_mask(30, 10, nnz=60, seed=9)
    layer = SparseLinear(10, 30, *shuffled_edges(mask), bias=True, impl=impl)
    opt = OPTIMISERS[optimiser](layer.parameters())
    z, target = torch.randn(16, 10), torch.randn(16, 30)
    w0 = layer.weight.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        loss = ((layer(z) - target) ** 2).mean()
        loss.backward()
        opt.step()
    w = layer.weight.detach()
    assert torch.all(w[~mask] == 0)
    assert torch.all(w[mask] != w0[mask])  # the optimiser did move every edge


# ----------------------------------------------------------------- kernels
def test_auto_picks_kernel_by_density_and_size():
    n_out, n_in = 1000, 250  # exactly SPARSE_MIN_WEIGHTS entries
    assert n_out * n_in >= SPARSE_MIN_WEIGHTS
    cells = n_out * n_in
    low = max(1, int(SPARSE_DENSITY_THRESHOLD * cells) // 2)
    high = min(cells, int(SPARSE_DENSITY_THRESHOLD * cells) * 2 + 1)
    z = torch.randn(4, n_in)

    sparse_layer = SparseLinear(n_in, n_out, *shuffled_edges(random_mask(n_out, n_in, low)), impl="auto")
    assert sparse_layer.density < SPARSE_DENSITY_THRESHOLD
    assert sparse_layer.kernel == "sparse"
    assert uses_sparse_kernel(sparse_layer(z))

    dense_layer = SparseLinear(n_in, n_out, *shuffled_edges(random_mask(n_out, n_in, high)), impl="auto")
    assert dense_layer.density > SPARSE_DENSITY_THRESHOLD
    assert dense_layer.kernel == "dense"
    assert not uses_sparse_kernel(dense_layer(z))

    # a small layer stays dense whatever its density
    small = SparseLinear(50, 100, *shuffled_edges(random_mask(100, 50, 50)), impl="auto")
    assert small.density < SPARSE_DENSITY_THRESHOLD and small.kernel == "dense"


def test_explicit_impl_overrides_density():
    full = torch.ones(10, 4, dtype=torch.bool)  # density 1
    one = torch.zeros(10, 4, dtype=torch.bool)
    one[3, 2] = True  # density 1/40
    z = torch.randn(2, 4)
    assert SparseLinear(4, 10, *shuffled_edges(full), impl="sparse").kernel == "sparse"
    assert uses_sparse_kernel(SparseLinear(4, 10, *shuffled_edges(full), impl="sparse")(z))
    assert SparseLinear(4, 10, *shuffled_edges(one), impl="dense").kernel == "dense"
    assert not uses_sparse_kernel(SparseLinear(4, 10, *shuffled_edges(one), impl="dense")(z))


# -------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("rows", "cols", "kwargs", "match"),
    [
        ([0, 1, 0], [2, 0, 2], {}, "duplicate"),
        ([0, 5], [0, 1], {}, "out of range"),  # row == out_features
        ([0, 1], [0, 3], {}, "out of range"),  # col == in_features
        ([-1, 1], [0, 1], {}, "out of range"),
        ([0, 1], [-1, 1], {}, "out of range"),
        ([], [], {}, "no edges"),
        ([0, 1], [0, 1], {"impl": "csr"}, "impl"),
        ([0, 1, 2], [0, 1], {}, "same length"),
    ],
)
def test_bad_input_raises(rows, cols, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseLinear(3, 5, torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long), **kwargs)


# -------------------------------------------------------------- state dict
@pytest.mark.parametrize("impl", KERNELS)
def test_state_dict_round_trip(impl):
    mask = random_mask(30, 7, nnz=45, seed=10)
    z = torch.randn(5, 7)
    src = SparseLinear(7, 30, *shuffled_edges(mask, seed=1), bias=True, impl=impl)
    with torch.no_grad():
        src.bias.normal_()
    # A new layer on the same edges, listed in another order, with other initial values.
    torch.manual_seed(123)
    dst = SparseLinear(7, 30, *shuffled_edges(mask, seed=2), bias=True, impl=impl)
    assert not torch.equal(dst(z), src(z))
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst(z), src(z))
    assert torch.equal(dst.weight, src.weight)


def test_state_dict_across_kernels_and_masks():
    """Loading replaces the edges too, even into a layer that already ran on another mask."""
    z = torch.randn(5, 7)
    src = SparseLinear(7, 30, *shuffled_edges(random_mask(30, 7, nnz=45, seed=11)), bias=True, impl="dense")
    dst = SparseLinear(7, 30, *shuffled_edges(random_mask(30, 7, nnz=45, seed=12)), bias=True, impl="sparse")
    dst(z).sum().backward()  # builds the sparse kernel's index cache for the old mask
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.mask, src.mask)
    torch.testing.assert_close(dst(z), src(z))


def test_from_net_matches_the_network():
    import numpy as np

    import regdecoder as rd

    ad = rd.sim.grn(n_obs=5, n_genes=60, n_tfs=6, density=0.2, seed=4)
    net = ad.uns["sim"]["net"]
    layer = SparseLinear.from_net(rd.pp.prepare_net(net, ad.var_names, tmin=1))
    true_w = ad.varm["true_weights"]
    assert layer.latent_names == list(true_w.columns)
    np.testing.assert_array_equal(layer.mask.numpy(), true_w.to_numpy() != 0)
    expected_sign = np.sign(true_w.to_numpy()[layer.rows.numpy(), layer.cols.numpy()])
    np.testing.assert_array_equal(layer.prior_sign.numpy(), expected_sign)
    # genes outside the layer's var_names are ignored; TFs below tmin dropped
    counts = net.source.value_counts()
    layer = SparseLinear.from_net(rd.pp.prepare_net(net, ad.var_names, tmin=int(counts.max())))
    assert layer.latent_names == sorted(counts.index[counts >= counts.max()])
    unsigned = SparseLinear.from_net(rd.pp.prepare_net(net.drop(columns="weight"), ad.var_names, tmin=1))
    assert (unsigned.prior_sign == 1).all()  # a net without weights: every edge an activation, as ulm reads it
