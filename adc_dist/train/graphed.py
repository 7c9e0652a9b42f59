"""Training steps replayed from CUDA graphs, so that a GPU no longer waits for Python.

On a GPU a step of the default model at batch 1,024 launches about 345 kernels of a few
microseconds each. Launching them from Python took 7.4 ms per step on an H200 while the
GPU worked for a fraction of that (84 % of the step was host time:
benchmarks/gpu_step_profile.py, docs/performance.md "The GPU"). A CUDA graph records
the kernels of one step once and replays them all with one launch.

What replaying needs, and so when :func:`why_eager` lets it happen:

- fixed shapes. A step's inputs are each domain's users [B_k] and candidates
  [B_k, 1 + rho]. An epoch cuts each domain into parts of two sizes (q and q + 1, first
  the larger), so a run meets at most K + 1 size tuples: one graph per tuple;
- no host sync inside the step. ``train_step`` on one rank has none (GradNorm's norms
  come from ``summed_row_norm``, the balancers are tensor ops). Sparse tables (LazyAdam
  over the step's distinct rows, whose count is data) and several ranks (DDP's reducer,
  the collectives) do, so those steps run eagerly;
- no dropout: a graph would replay one mask;
- a capturable optimizer: fused Adam is, with ``capturable`` set while it is captured.

Each size tuple trains eagerly for :data:`WARMUP` steps first (on a side stream, as
PyTorch's whole-network capture recipe says: autograd and the optimizer make their state
outside the graph's memory), then one step is captured. Capturing runs nothing, so that
step's graph is replayed at once. The replays train exactly what the eager steps would:
tests/train/test_gpu.py compares them step by step.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from adc_dist.train.optim import sparse_table_params

WARMUP = 2  # eager steps of a size tuple before it is captured


def why_eager(cfg: Any, model: torch.nn.Module, opt: Any, device: torch.device, world: int) -> str | None:
    """Why this run's steps cannot be replayed from CUDA graphs, or None when they can."""
    if not cfg.cuda_graphs:
        return "cuda_graphs is false"
    if device.type != "cuda":
        return "not on a GPU"
    if world > 1:
        return "several ranks (DDP)"
    if sparse_table_params(model):
        return "sparse tables (their rows are the batch's distinct ids: a size the GPU must report)"
    if cfg.dropout > 0:
        return "dropout (a graph would replay one mask)"
    if not isinstance(opt, torch.optim.Adam) or not all(g.get("fused") for g in opt.param_groups):
        return "the optimizer is not fused Adam"
    return None


class GraphedStep:
    """``step(users, items)``: ``eager(users, items)``'s training step, replayed from one CUDA
    graph per size tuple once that tuple has run :data:`WARMUP` times. Returns the step's
    mean losses [K] (a fresh tensor) and None for the per-domain gradients (the loop does
    not read them; ``train_step`` itself returns them)."""

    def __init__(self, eager: Callable[[list[torch.Tensor], list[torch.Tensor]], tuple], opt: torch.optim.Optimizer,
                 device: torch.device):
        self.eager, self.opt, self.device = eager, opt, device
        self.seen: dict[tuple[int, ...], int] = {}
        self.graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}
        self.side = torch.cuda.Stream(device)
        self.failed: str | None = None  # why a capture failed: then every step runs eagerly

    def __call__(self, users: list[torch.Tensor], items: list[torch.Tensor]) -> tuple[torch.Tensor, None]:
        key = tuple(int(u.shape[0]) for u in users)
        entry = self.graphs.get(key)
        if entry is None:
            if self.failed or self.seen.get(key, 0) < WARMUP:
                self.seen[key] = self.seen.get(key, 0) + 1
                return self._on_side_stream(users, items), None
            try:
                entry = self.graphs[key] = self._capture(users, items)
            except RuntimeError as e:
                # A step that waits for the host cannot be captured; capturing ran nothing,
                # so this step and every later one run eagerly and the run goes on.
                self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                warnings.warn(f"CUDA graph capture failed ({self.failed}); the run's steps run eagerly "
                              f"(--cuda_graphs false skips the attempt)", stacklevel=2)
                return self._on_side_stream(users, items), None
        else:
            for static, new in zip(entry[1], [*users, *items]):
                static.copy_(new)
        graph, _, losses = entry
        graph.replay()
        return losses.clone(), None

    def _on_side_stream(self, users: list[torch.Tensor], items: list[torch.Tensor]) -> torch.Tensor:
        main = torch.cuda.current_stream(self.device)
        self.side.wait_stream(main)
        with torch.cuda.stream(self.side):
            losses, _ = self.eager(users, items)
        main.wait_stream(self.side)
        return losses

    def _capture(self, users: list[torch.Tensor], items: list[torch.Tensor]):
        """Record one step on static copies of this batch (nothing runs until replay)."""
        static = [t.clone() for t in (*users, *items)]
        K = len(users)
        torch.cuda.current_stream(self.device).synchronize()  # the copies and earlier steps are done
        graph = torch.cuda.CUDAGraph()
        groups = self.opt.param_groups
        for g in groups:  # fused Adam refuses capture unless its groups say capturable
            g["capturable"] = True
        try:
            self.opt.zero_grad(set_to_none=True)  # the captured backward makes its own .grad
            with torch.cuda.graph(graph):
                losses, _ = self.eager(static[:K], static[K:])
        finally:
            for g in groups:  # uncaptured steps (the next tuple's warm-up) run the ordinary path
                g["capturable"] = False
        return graph, static, losses
