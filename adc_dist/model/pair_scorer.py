"""The inner loop of full ranking: ``h . MLP(relu(a_u + b_i)) + c`` for every (user, item).

``ADC.score_all`` (adc_dist.model) factorises the first layer into a per-user half
``a`` [U, w_1] and a per-item half ``b`` [I, w_1]; this module runs the rest of the
network on every pair, chunk by chunk, into preallocated buffers.

On CPU the users are split among ``torch.get_num_threads()`` Python threads that each
run *single-threaded* torch ops on cache-sized chunks (docs/model.md has the
measurements):

- cache-sized chunks (a few thousand pairs, a few MB of activations) keep the broadcast
  add, the ReLUs and the layer-2 GEMM in L2/L3 instead of streaming 26 MB per chunk
  through memory;
- but small chunks under OpenMP mean one fork/join barrier per op, and on a shared
  machine every barrier waits for whichever thread the OS descheduled. Threads that own
  whole blocks of users never wait for each other; they pull blocks from a shared
  queue, so a slowed thread simply takes fewer of them.

torch ops release the GIL, so the threads run in parallel; the Python between ops is a
few microseconds per chunk of ~0.1 ms of arithmetic.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import torch
from torch import Tensor

# Pairs per chunk. CPU: cache-sized (8k pairs x width 100 x 4 B = 3.3 MB of first-layer
# activations, inside L3), one thread per chunk; on the 2-core EPYC box 2k, 4k and 8k
# pairs were within 15 % of each other (8k best) and 64k pairs 40 % slower.
# GPU: large enough to fill the device, small enough (~0.4 GB at width 100 in fp32)
# to sit beside training.
CPU_CHUNK_PAIRS = 1 << 13
GPU_CHUNK_PAIRS = 1 << 20

Layers = list[tuple[Tensor, Tensor]]  # (W^T, bias) of every layer after the first


def default_chunk_pairs(device: torch.device) -> int:
    """score_all's chunk size on ``device`` (user x item pairs per chunk)."""
    return CPU_CHUNK_PAIRS if device.type == "cpu" else GPU_CHUNK_PAIRS


def default_threads(device: torch.device) -> int:
    """Scoring threads on ``device``: torch's intra-op thread count on CPU, else 1."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


def score_pairs(a: Tensor, b: Tensor, rest: Layers, h: Tensor, c: Tensor, *, chunk_pairs: int,
                threads: int = 1) -> Tensor:
    """h . MLP_rest(relu(a_u + b_i)) + c for every (u, i): [U, w_1], [I, w_1] -> [U, I].

    ``threads > 1`` (CPU only) scores blocks of users in that many threads, each with
    one intra-op thread; torch's thread count is restored afterwards. The result does
    not depend on ``threads`` or ``chunk_pairs`` beyond float rounding of the GEMMs.
    """
    U, I = a.shape[0], b.shape[0]
    out = torch.empty(U, I, dtype=a.dtype, device=a.device)
    ic = max(1, min(I, chunk_pairs))  # items per chunk (< I only for catalogues above chunk_pairs)
    uc = max(1, min(U, chunk_pairs // ic))  # users per chunk
    starts = range(0, U, uc)
    if threads <= 1 or len(starts) < 2 or a.device.type != "cpu":
        _score_blocks(a, b, rest, h, out, starts, uc, ic)
    else:
        _in_threads(min(threads, len(starts)), lambda shared: _score_blocks(a, b, rest, h, out, shared, uc, ic),
                    starts)
    return out.add_(c)


def _score_blocks(a: Tensor, b: Tensor, rest: Layers, h: Tensor, out: Tensor, starts: Iterable[int],
                  uc: int, ic: int) -> None:
    """Fill ``out[u0:u0 + uc]`` for every u0 in ``starts``, with buffers of its own.

    Every chunk reuses the same buffers: a fresh multi-MB tensor per chunk costs page
    faults that, on CPU, took longer than the matmuls themselves.
    """
    U, I = out.shape
    z1 = torch.empty(uc, ic, a.shape[1], dtype=a.dtype, device=a.device)
    bufs = [torch.empty(uc * ic, wt.shape[1], dtype=a.dtype, device=a.device) for wt, _ in rest]
    flat = torch.empty(uc * ic, dtype=a.dtype, device=a.device)
    for u0 in starts:
        nu = min(uc, U - u0)
        for i0 in range(0, I, ic):
            ni = min(ic, I - i0)
            z = z1[:nu, :ni]
            torch.add(a[u0:u0 + nu].unsqueeze(1), b[i0:i0 + ni].unsqueeze(0), out=z)
            z = z.relu_().reshape(nu * ni, -1)
            for (wt, bias), buf in zip(rest, bufs):
                z = torch.addmm(bias, z, wt, out=buf[:nu * ni]).relu_()
            if ni == I:  # whole rows: write straight into the output
                torch.mv(z, h, out=out[u0:u0 + nu].view(-1))
            else:
                out[u0:u0 + nu, i0:i0 + ni] = torch.mv(z, h, out=flat[:nu * ni]).view(nu, ni)


class _SharedIterator:
    """One iterator that several threads pull from; each item goes to exactly one thread."""

    def __init__(self, items: Iterable[int]) -> None:
        self._it = iter(items)
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        with self._lock:
            return next(self._it)


def _in_threads(n: int, work, starts: Iterable[int]) -> None:
    """Run ``work(shared_starts)`` in n threads, each with one intra-op thread and no grad.

    ``torch.set_num_threads`` is process-wide (and grad mode is per thread, so the caller's
    ``no_grad`` does not reach the workers): the caller's thread count is put back even
    when a worker raises.
    """
    before = torch.get_num_threads()
    shared = _SharedIterator(starts)

    def run() -> None:
        torch.set_num_threads(1)  # also this thread's OpenMP team size: no nested teams
        with torch.no_grad():
            work(shared)

    try:
        with ThreadPoolExecutor(n, thread_name_prefix="adc-score") as pool:
            for f in [pool.submit(run) for _ in range(n)]:
                f.result()
    finally:
        torch.set_num_threads(before)
