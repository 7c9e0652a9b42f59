"""Row-sparse gradients summed across ranks with all_gather, identically on every rank.

A step touches only the batch's rows of an embedding table, so its gradient is a few
thousand rows of an n x d table. Two places need those rows summed over the ranks:

- the tables' own gradients when ``sparse_tables`` is on (adc_dist.train.optim): DDP
  leaves the tables alone and :func:`all_reduce_sparse_grads` averages them here;
- GradNorm's per-domain gradients of the shared user table P (the ``gmf`` models):
  ``g_k`` is the rows of the domain's batch users (adc_dist.model.shared_grads).

Why not DDP's own sparse all-reduce: NCCL has none ("NCCL does not support all_reduce
with sparse tensors", ProcessGroupNCCL::allreduce_sparse in PyTorch; only gloo gathers
sparse tensors), so a GPU run could not use it; an all_gather of dense padded buffers
works on gloo and NCCL alike, and the code the CPU tests run is the code a GPU runs.

Why every rank gets *bitwise* the same sum: each rank first coalesces its own rows
(unique indices, locally summed; on a GPU that local sum may be ordered differently from
run to run, which does not matter because its result is what every rank receives), then
every rank adds the gathered contributions of rank 0, 1, ... in that order into the
sorted union of the indices. Within one rank's contribution the indices are unique, so
no addition races with another: the same inputs give the same bits on every rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

Rows = tuple[Tensor, Tensor]  # (indices [n] int64, values [n, *row_shape]) of one table


def sum_rows_across_ranks(tables: list[Rows], world: int) -> list[Rows]:
    """For every table, the sum over ranks of its rows (each input coalesced on this rank).

    Three all_gathers carry every table at once: the row counts per (rank, table), then
    the indices of all tables in one int64 buffer and their values in one buffer of the
    values' dtype (every table's values must share it), both padded to the longest rank's.
    Returns per table the sorted union of the indices and the summed values.
    """
    if world == 1:
        return tables
    device, dtype = tables[0][1].device, tables[0][1].dtype
    if any(v.dtype != dtype for _, v in tables):
        raise ValueError("sum_rows_across_ranks: every table's values must have one dtype")
    counts = torch.tensor([len(i) for i, _ in tables], dtype=torch.int64, device=device)
    gathered_counts = [torch.empty_like(counts) for _ in range(world)]
    dist.all_gather(gathered_counts, counts)
    all_counts = [c.tolist() for c in gathered_counts]  # [rank][table]
    widths = [int(torch.Size(v.shape[1:]).numel()) for _, v in tables]  # values per row
    n_idx = [sum(c) for c in all_counts]
    n_val = [sum(n * w for n, w in zip(c, widths)) for c in all_counts]

    def gather(parts: list[Tensor], length: int) -> list[Tensor]:
        # all_gather wants equal sizes: the parts go straight into one padded buffer (no
        # separate concatenation; only the padding is zeroed)
        buf = torch.empty(length, dtype=parts[0].dtype, device=device)
        n = sum(p.numel() for p in parts)
        torch.cat(parts, out=buf[:n])
        buf[n:].zero_()
        out = [torch.empty_like(buf) for _ in range(world)]
        dist.all_gather(out, buf)
        return out

    idx_of = gather([i for i, _ in tables], max(n_idx))
    val_of = gather([v.reshape(-1) for _, v in tables], max(n_val))
    per_rank: list[list[Rows]] = []
    for r in range(world):
        rows, i0, v0 = [], 0, 0
        for n, w, (_, v) in zip(all_counts[r], widths, tables):
            rows.append((idx_of[r][i0: i0 + n], val_of[r][v0: v0 + n * w].view(n, *v.shape[1:])))
            i0, v0 = i0 + n, v0 + n * w
        per_rank.append(rows)
    out = []
    for t, (_, v) in enumerate(tables):
        # one sort gives the union and every rank's positions in it (return_inverse)
        union, where = torch.unique(torch.cat([per_rank[r][t][0] for r in range(world)]), sorted=True,
                                    return_inverse=True)
        total = torch.zeros((len(union), *v.shape[1:]), dtype=dtype, device=device)
        start = 0
        for r in range(world):  # rank order, unique indices per call: the same bits everywhere
            idx, vals = per_rank[r][t]
            total.index_add_(0, where[start: start + len(idx)], vals)
            start += len(idx)
        out.append((union, total))
    return out


def all_reduce_sparse_grads(params: list[torch.nn.Parameter], world: int) -> None:
    """Replace each parameter's sparse .grad by its mean over the ranks (coalesced).

    A parameter without a gradient this step contributes no rows (its .grad stays None on
    a rank only if it is None on every rank: the loop uses every table every step).
    """
    if world == 1 or not params:
        return
    local = []
    for p in params:
        g = p.grad
        if g is None:
            local.append((torch.zeros(0, dtype=torch.int64, device=p.device),
                          torch.zeros((0, *p.shape[1:]), dtype=p.dtype, device=p.device)))
            continue
        g = g.coalesce()
        local.append((g.indices()[0], g.values()))
    for p, (idx, vals) in zip(params, sum_rows_across_ranks(local, world)):
        # in place: the sums are fresh buffers of sum_rows_across_ranks (world > 1), and a
        # copy of the union's values (79,000 rows x 128 at 10^6 users) is a step's cost
        p.grad = torch.sparse_coo_tensor(idx[None], vals.div_(world), p.shape, is_coalesced=True,
                                         check_invariants=False)


def rows_as_sparse(rows: list[Rows], shape: torch.Size, coalesced: bool = True) -> Tensor:
    """K tables' rows of one [n, d] weight as one sparse COO tensor [K, n, d] (for callers
    that compare with a dense gradient: ``.to_dense()``). ``coalesced``: each table's
    indices are sorted and distinct; else duplicates are summed by whoever coalesces it."""
    idx = torch.cat([torch.stack([torch.full_like(i, k), i]) for k, (i, _) in enumerate(rows)], 1)
    return torch.sparse_coo_tensor(idx, torch.cat([v for _, v in rows]), (len(rows), *shape),
                                   is_coalesced=coalesced, check_invariants=False)
