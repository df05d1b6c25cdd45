"""Small pieces shared by the solvers: device choice, progress bars, row-wise optimisers."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm import tqdm


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` gives CUDA when available, else the CPU; anything else is passed to torch."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"device={device!r} was asked for but CUDA is not available; use device='cpu' or 'auto'."
        raise ValueError(msg)
    return dev


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    """One bar per fit; ``enabled=False`` gives a silent bar with the same methods."""
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


class EpochLog:
    """Per-epoch bookkeeping shared by the solvers: loss history, training clock, progress
    bar and the user's callback (whose time is not counted as training time)."""

    def __init__(self, max_epochs: int, desc: str, progress: bool, callback: Callable[[dict], bool | None] | None):
        self.history: dict = {"loss": [], "seconds": []}
        self.callback = callback
        self.bar = progress_bar(max_epochs, desc, progress)
        self._start = time.perf_counter()
        self._paused = 0.0

    def end_epoch(
        self, epoch: int, loss: float, z: torch.Tensor, before_callback: Callable[[], None] | None = None
    ) -> bool:
        """Record one epoch; returns True when the callback asks to stop."""
        seconds = time.perf_counter() - self._start - self._paused
        self.history["loss"].append(loss)
        self.history["seconds"].append(seconds)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4g}")
        if self.callback is None:
            return False
        t0 = time.perf_counter()
        if before_callback is not None:
            before_callback()
        stop = bool(self.callback({"epoch": epoch, "loss": loss, "seconds": seconds, "z": z}))
        self._paused += time.perf_counter() - t0
        return stop

    def close(self) -> dict:
        self.bar.total = self.bar.n  # an early stop ends the bar full
        self.bar.refresh()
        self.bar.close()
        self.history["epochs"] = len(self.history["loss"])
        return self.history


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-row vector shaped to broadcast against rows of ``like`` (any number of dims)."""
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


class RowSGD:
    """SGD with momentum and weight decay on the rows of a table, one batch of rows at a time.

    A row is ``table[i]``, of any shape (a latent vector, or a 64x4x4 latent image).

    Only the rows in ``idx`` are touched (their momentum buffers included), so a step
    costs O(batch), whatever the table's size. Same update rule as ``torch.optim.SGD``.
    """

    def __init__(self, table: torch.Tensor, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.table, self.lr, self.momentum, self.weight_decay = table, lr, momentum, weight_decay
        self.buf = torch.zeros_like(table) if momentum else None
        self.seen = torch.zeros(table.shape[0], dtype=torch.bool, device=table.device) if momentum else None

    @torch.no_grad()
    def step(self, idx: torch.Tensor, grad: torch.Tensor) -> None:
        if self.weight_decay:
            grad = grad + self.weight_decay * self.table[idx]
        if self.buf is not None:
            # torch.optim.SGD initialises the buffer with the first gradient.
            first = ~self.seen[idx]
            b = torch.where(_rows(first, grad), grad, self.momentum * self.buf[idx] + grad)
            self.buf[idx] = b
            self.seen[idx] = True
            grad = b
        self.table[idx] -= self.lr * grad


class RowAdam:
    """Adam on the rows of a table with per-row step counts (rows not in a batch are untouched)."""

    def __init__(
        self,
        table: torch.Tensor,
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.table, self.lr, self.betas, self.eps, self.weight_decay = table, lr, betas, eps, weight_decay
        self.m = torch.zeros_like(table)
        self.v = torch.zeros_like(table)
        self.t = torch.zeros((table.shape[0],) + (1,) * (table.dim() - 1), dtype=table.dtype, device=table.device)

    @torch.no_grad()
    def step(self, idx: torch.Tensor, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        if self.weight_decay:
            grad = grad + self.weight_decay * self.table[idx]
        m = b1 * self.m[idx] + (1 - b1) * grad
        v = b2 * self.v[idx] + (1 - b2) * grad * grad
        t = self.t[idx] + 1
        self.m[idx], self.v[idx], self.t[idx] = m, v, t
        mhat = m / (1 - b1**t)
        vhat = v / (1 - b2**t)
        self.table[idx] -= self.lr * mhat / (vhat.sqrt() + self.eps)


def make_row_optimizer(table: torch.Tensor, name: str, **kwargs) -> RowSGD | RowAdam:
    if name == "sgd":
        return RowSGD(table, **kwargs)
    if name == "adam":
        kwargs.pop("momentum", None)
        return RowAdam(table, **kwargs)
    msg = f"Unknown latent optimiser {name!r}; use 'sgd' or 'adam'."
    raise ValueError(msg)
