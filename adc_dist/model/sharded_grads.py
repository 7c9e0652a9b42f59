"""GradNorm's per-domain gradient norms when the shared user table P is sharded.

For the ``gmf`` model GradNorm balances at P (``ADC.shared_weight``, docs/model.md). The
replicated path gathers every rank's batch rows of every g_k on every rank
(adc_dist.train.sparse_rows); with sharded tables the rows go to owners instead, and only
norms come back. GradNorm needs only the norms ||g_k|| of the rank-averaged gradients
g_k = (1/world) sum_r g_k^r, and a row of g_k is non-zero only for users of the step's
batches. So (:func:`shared_row_grad_norms`):

  1. on each rank, dL_k/d(rows) of the batch's looked-up rows P[u] with the L2 term's
     share (``shared_row_grads``), summed per user;
  2. every (domain, user) row goes to one owner rank (one all-to-all of about
     B x d values per domain: the size of the lookup itself);
  3. each rank sums the rows of the same (domain, user) from all ranks, squares and adds;
     one all-reduce of K numbers gives sum_rows ||sum_r g_k^r[row]||^2 on every rank.

||g_k|| = sqrt(that) / world equals the replicated path's norm up to float summation
order, and every rank holds the same K numbers, so GradNorm's weights stay identical.
The result is shaped [K, 1]: a one-element "gradient" per domain whose norm is ||g_k||,
which is all ``GradNorm.update`` reads from its grads.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from adc_dist.model.shared_grads import coalesce_rows, shared_row_grads


def shared_row_grad_norms(model, losses: Tensor, io: tuple, world: int, l2: float = 0.0) -> Tensor:
    """||g_k|| of the rank-averaged gradient of L_k w.r.t. P, for every domain: [K, 1].

    ``io`` is the tap of ``ADC.forward(..., last_layer_io=True)`` for ``gmf``: the K
    gathered rows P[users[k]] (in the graph) and the K ``users`` tensors. A collective.
    """
    K = losses.shape[0]
    keys, vals = [], []
    for k, (u, delta) in enumerate(shared_row_grads(model, losses, io, l2)):
        uniq, summed = coalesce_rows(u, delta)
        keys.append(uniq * K + k)  # (user, domain) as one key; user = key // K
        vals.append(summed)
    key, val = torch.cat(keys), torch.cat(vals)
    if world > 1:
        key, val = _to_owners(key, val, world)
    uniq, total = coalesce_rows(key, val)
    sq = torch.zeros(K, dtype=torch.float64, device=val.device)
    sq.index_add_(0, uniq % K, total.double().pow(2).sum(1))
    if world > 1:
        dist.all_reduce(sq)
    return (sq.sqrt() / world).float().reshape(K, 1)


def _to_owners(key: Tensor, val: Tensor, world: int) -> tuple[Tensor, Tensor]:
    """Send every (key, row) to rank ``key % world``: any fixed owner per key works (the
    rows of one (user, domain) from all ranks must meet); the modulo spreads them evenly.
    Returns the keys and rows this rank owns."""
    owner = torch.remainder(key, world)
    order = torch.argsort(owner, stable=True)
    key, val, owner = key[order], val[order], owner[order]
    send = torch.bincount(owner, minlength=world)
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send)
    send_l, recv_l = send.tolist(), recv.tolist()
    key_out = torch.empty(sum(recv_l), dtype=key.dtype, device=key.device)
    val_out = torch.empty(sum(recv_l), val.shape[1], dtype=val.dtype, device=val.device)
    dist.all_to_all_single(key_out, key, recv_l, send_l)
    dist.all_to_all_single(val_out, val, recv_l, send_l)
    return key_out, val_out
