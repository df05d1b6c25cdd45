"""Running a fit on several processes with ``torch.distributed``.

Inside a process group (``torchrun``, or :func:`launch` from Python), the streamed ALS
shards the cells: each process reads only its block of cells and owns only their rows
of the latent table; the decoder's weights are replicated, and the per-gene sufficient
statistics (``Z.T Z``, ``Y.T Z``) and losses are summed with ``all_reduce`` once per
epoch (the distributed form of the weight step). ``gloo`` on CPU, ``nccl`` on GPU.

With ``torchrun`` (one process per GPU, or several on a CPU)::

    torchrun --standalone --nproc_per_node=2 my_fit.py

where ``my_fit.py`` calls ``init()`` (or ``torch.distributed.init_process_group``), then
``rd.tl.fit_decoder(adata, ...)`` on the same (typically ``backed='r'``) AnnData in
every process.
"""

from __future__ import annotations

import os
import queue
import socket
import time
import traceback
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["free_port", "init", "launch"]


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init(backend: str | None = None, *, timeout_s: float = 300.0) -> tuple[int, int]:
    """Join the process group described by the environment (as ``torchrun`` sets it).

    ``backend`` defaults to ``'nccl'`` when CUDA is available, else ``'gloo'``. Under
    ``nccl`` each process uses the GPU ``LOCAL_RANK``. Returns ``(rank, world_size)``.
    """
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def _worker(rank, world_size, backend, port, fn, args, results, timeout_s, threads):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    if threads:
        torch.set_num_threads(threads)
    try:
        init(backend, timeout_s=timeout_s)
        out = fn(*args)
        dist.barrier()
        results.put((rank, True, out))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(
    fn: Callable,
    *args,
    nprocs: int = 2,
    backend: str = "gloo",
    timeout_s: float = 600.0,
    threads_per_process: int | None = 1,
) -> list:
    """Run ``fn(*args)`` in ``nprocs`` new processes joined in one process group.

    The group meets on ``127.0.0.1`` at a free port, so no network is needed. ``fn``
    must be importable (defined at module level) and its result picklable. Returns the
    results in rank order. If any process fails, the others are stopped and a
    ``RuntimeError`` carries its traceback; after ``timeout_s`` a ``TimeoutError``.
    ``threads_per_process`` sets torch's intra-op threads in each process (None:
    torch's default), to avoid oversubscribing the cores.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(
            target=_worker,
            args=(rank, nprocs, backend, port, fn, args, results, timeout_s, threads_per_process),
            daemon=True,
        )
        for rank in range(nprocs)
    ]
    for p in procs:
        p.start()
    out: dict = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < nprocs:
            try:
                rank, ok, payload = results.get(timeout=0.5)
            except queue.Empty:
                dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0) and i not in out]
                if dead:
                    msg = f"distributed worker(s) {dead} exited with code {procs[dead[0]].exitcode} without a result."
                    raise RuntimeError(msg) from None
                if time.monotonic() > deadline:
                    msg = f"distributed run did not finish within {timeout_s:.0f} s."
                    raise TimeoutError(msg) from None
                continue
            if not ok:
                msg = f"distributed worker {rank} failed:\n{payload}"
                raise RuntimeError(msg)
            out[rank] = payload
        for p in procs:
            p.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
        results.close()
    return [out[r] for r in range(nprocs)]
