"""The optimizer of a run, and how DDP wraps the model for it.

Dense tables (``sparse_tables`` false, or auto on small tables): one ``torch.optim.Adam``
(fused: :func:`dense_adam`) over every parameter (dense gradients, averaged by DDP). Each
step then reads and writes every row of every embedding table, touched or not, and DDP
all-reduces the whole tables: a step costs O(users + items), which made time per scored pair
grow 120x from 10^4 to 10^6 users (docs/performance.md).

Sparse tables (true, or auto from ``config.AUTO_SPARSE_ROWS`` rows on; ADC built with
``sparse=True``, its tables adc_dist.model.row_tables.RowTable): a step gathers each table's
unique rows once (``row_tables.step_rows``), so the tables' gradients are the batch's rows,
one per row; :class:`TableAdam` updates them with :class:`LazyAdam` (Adam's update, bias
correction and eps included, on the touched rows only: the moments of a row move only in
steps that touch it) and everything else with fused ``torch.optim.Adam``. DDP is told to
leave the tables alone (:func:`wrap_ddp`) and the loop averages their rows across ranks with one
all_gather (adc_dist.train.sparse_rows.all_reduce_sparse_grads): that works on NCCL, whose
process group has no sparse all-reduce, as well as on gloo. A step costs O(batch).

Why not ``torch.optim.SparseAdam``: it coalesces the gradient, reads the moments through
two ``sparse_mask`` and writes them and the parameter through three sparse adds per
table, which made it 40 % of a step at 10^5 users (docs/performance.md); and it adds eps
to the uncorrected sqrt(v) (31.6x Adam's eps at step 1). LazyAdam reads the rows once
(``index_select``), updates them with fused Adam's kernel, and writes them back once
(``index_copy_``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from adc_dist.config import TrainConfig
from adc_dist.model.network import ADC


def sparse_table_names(model: torch.nn.Module) -> list[str]:
    """Names of the parameters of the embedding tables built with sparse gradients."""
    return [f"{name}.weight" for name, m in model.named_modules()
            if isinstance(m, torch.nn.Embedding) and m.sparse]


def sparse_table_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    params = dict(model.named_parameters())
    return [params[n] for n in sparse_table_names(model)]


class LazyAdam(torch.optim.Optimizer):
    """Adam on the rows a row-sparse gradient holds; every other row and its moments stay.

    For each parameter with a sparse COO ``.grad`` (coalesced by RowTable's step; coalesced
    here otherwise), on its rows r: ``m_r = b1 m_r + (1 - b1) g_r``,
    ``v_r = b2 v_r + (1 - b2) g_r^2``, ``p_r -= lr / (1 - b1^t) * m_r / (sqrt(v_r) /
    sqrt(1 - b2^t) + eps)``, with t the parameter's step count (every step that gave it a
    gradient, as SparseAdam and TensorFlow's LazyAdam count). The rows are gathered once
    (``index_select``), updated by the kernel of ``torch.optim.Adam(fused=True)`` (one pass
    instead of about ten elementwise ops: the per-row cost of a step is these passes and
    the gathers), and written back once (``index_copy_``): bitwise what fused Adam does to
    those rows. State per parameter, named as Adam's: ``step`` (a float32 scalar tensor),
    ``exp_avg`` and ``exp_avg_sq`` (dense, the parameter's shape)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            todo, rows_of, ws, gs, ms, vs = [], [], [], [], [], []  # per parameter: its rows' values
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if p.grad.is_coalesced() else p.grad.coalesce()
                rows = grad._indices()[0]
                state = self.state[p]
                if not state:
                    state.update(step=torch.zeros((), dtype=torch.float32, device=p.device),
                                 exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                elif not torch.is_tensor(state["step"]) or state["step"].device != p.device:
                    # an int (SparseAdam's state, an older checkpoint) or a step loaded onto the CPU:
                    # the fused kernel reads it on the parameter's device
                    state["step"] = torch.tensor(float(state["step"]), dtype=torch.float32, device=p.device)
                state["step"] += 1
                todo.append(p)
                rows_of.append(rows)
                ws.append(p.index_select(0, rows))
                gs.append(grad._values().contiguous())
                ms.append(state["exp_avg"].index_select(0, rows))
                vs.append(state["exp_avg_sq"].index_select(0, rows))
            if not todo:
                continue
            beta1, beta2 = group["betas"]
            # The op torch.optim.Adam(fused=True) calls (private, torch is pinned): the test of
            # LazyAdam against Adam(fused=True) on the same rows fails if it ever changes.
            torch._fused_adam_(ws, gs, ms, vs, [], [self.state[p]["step"] for p in todo],
                               amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0,
                               eps=group["eps"], maximize=False)
            for p, rows, w, m, v in zip(todo, rows_of, ws, ms, vs):  # rows are unique: one write per row
                p.index_copy_(0, rows, w)
                self.state[p]["exp_avg"].index_copy_(0, rows, m)
                self.state[p]["exp_avg_sq"].index_copy_(0, rows, v)
        return None


class TableAdam:
    """LazyAdam on the sparse tables, Adam on the rest, behind one optimizer's interface
    (zero_grad, step, state_dict, load_state_dict, param_groups) so the loop and the
    checkpoint treat it like any other. Its state dict is two plain optimizer state
    dicts, tensors and numbers only: it round-trips through torch.load(weights_only=True)."""

    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        tables = sparse_table_params(model)
        ids = {id(p) for p in tables}
        dense = [p for p in model.parameters() if id(p) not in ids]
        self.tables = LazyAdam(tables, lr=lr)
        self.dense = dense_adam(dense, lr) if dense else None

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.tables, self.dense) if o is not None]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> dict[str, Any]:
        return {"tables": self.tables.state_dict(), "dense": self.dense.state_dict() if self.dense else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"tables", "dense"}:
            raise ValueError("this optimizer state is not a TableAdam state (sparse_tables differs from the run "
                             "that wrote it)")
        self.tables.load_state_dict(state["tables"])
        if self.dense is not None:
            self.dense.load_state_dict(state["dense"])


def dense_adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """``torch.optim.Adam`` with ``fused=True``: one kernel per step over all parameters.

    Why: the default (for-loop) Adam runs about seven elementwise passes and allocates two
    temporary tensors per parameter; with dense tables that is every row of every table,
    each step, and the largest share of a step after the matmuls (docs/performance.md,
    "Batches on the device"). Fused Adam is the same update in one pass, rounded
    differently (tests/train/test_optim.py), on CPU and GPU alike. A checkpoint keeps its
    optimizer's setting: a run resumed from one written before fused Adam continues unfused.
    """
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)


def make_optimizer(model: ADC, cfg: TrainConfig) -> torch.optim.Optimizer | TableAdam:
    """The run's optimizer: :class:`TableAdam` if the model has sparse tables, else fused Adam."""
    if sparse_table_names(model):
        return TableAdam(model, cfg.lr)  # weight_decay is 0: "true" refuses it, "auto" stays dense
    return dense_adam(model.parameters(), cfg.lr, cfg.weight_decay)


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> DDP:
    """DDP over ``model``, leaving its sparse tables to all_reduce_sparse_grads.

    Never static_graph=True (silently de-synchronises with autograd.grad); every head runs
    every step, so find_unused_parameters is not needed. The ignored tables are not
    broadcast from rank 0 at construction: every rank builds them from the same seed.
    """
    DDP._set_params_and_buffers_to_ignore_for_model(model, sparse_table_names(model))
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
