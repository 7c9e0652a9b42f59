"""Per-domain gradients of the shared weight GradNorm balances, without touching .grad.

``g_k = dL_k/dW`` for every domain k, on this rank's batch, as a [K, |W|] tensor that the
training loop all-reduces once (adc_dist.train.loop). W is ``ADC.shared_weight``: the last
shared hidden layer W_L when the model has an MLP, the shared user table P for ``gmf``.

No DDP reducer hook fires: the gradients come from autograd.grad, never into .grad.
"""

from __future__ import annotations

import torch

from adc_dist.model.network import ADC


def shared_layer_grads(model: ADC, losses: torch.Tensor, io: tuple | None, sizes: list[int],
                       l2: float = 0.0) -> torch.Tensor:
    """g_k = dL_k/dW for every domain: [K, |W|].

    ``io`` is the tap of ``ADC.forward(..., last_layer_io=True)`` (None: not tapped).

    - MLP, tapped with (z, pre) of the last shared layer: one small backward gives
      delta = dL/d(pre) for sum_k L_k; the rows of domain k reach only L_k, so
      g_k = delta_k^T z_k exactly (one [w_L x N_k] @ [N_k x w_{L-1}] matmul per domain),
      about a tenth of a training step. ``sizes`` are the N_k.
    - GMF, tapped with (rows, users): the gathered rows P[users[k]] reach only L_k, so
      g_k is dL/d(rows_k) (:func:`shared_row_grads`) scattered into an [n_users, d] zero
      table, plus the gradient of the L2 term ``l2 * mean_b ||P[u_b]||^2`` that
      ``ADC.embedding_sq_norms`` adds to L_k (not through the tapped rows): 2 l2 P[u_b] / B_k
      per row (2 l2 g_k^2 P[u_b] / B_k for ``shared+gated``, whose L2 is on g_k * P[u]).
    - Not tapped (one hidden layer): all K gradients from one vmapped backward onto W
      (rows of eye(K) pick L_k).
    """
    K = losses.shape[0]
    W = model.shared_weight
    if io is None:
        (g,) = torch.autograd.grad(losses, W, grad_outputs=torch.eye(K, device=losses.device),
                                   is_grads_batched=True, retain_graph=True)
        return g.reshape(K, -1)
    if not model.has_mlp:
        out = torch.zeros(K, *W.shape, dtype=torch.float32, device=W.device)
        for k, (u, delta) in enumerate(shared_row_grads(model, losses, io, l2)):
            out[k].index_add_(0, u, delta)
        return out.reshape(K, -1)
    z, pre = io
    (delta,) = torch.autograd.grad(losses.sum(), pre, retain_graph=True)
    z = z.detach()  # a value here: no graph may grow from the balancer's inputs
    return torch.stack([(dk.float().T @ zk.float()).reshape(-1)
                        for dk, zk in zip(delta.split(sizes), z.split(sizes))])


def l2_row_grad(model, k: int, rows: torch.Tensor, batch: int, l2: float) -> torch.Tensor:
    """The gradient at the batch's rows P[u] of domain k's L2 term ``l2 * mean ||P[u]||^2``
    (``ADC.embedding_sq_norms``, outside the forward: in a step it reads a view of its own of
    the forward's rows (``ADC.step_lookups``), so autograd at the tapped rows misses it):
    2 l2 P[u] / B_k, times g_k^2 for ``shared+gated``, whose L2 is on g_k * P[u]."""
    scale = model.gate(k).detach() ** 2 if model.user_gate is not None else 1.0
    return (2.0 * l2 / batch) * scale * rows.detach()


def shared_row_grads(model: ADC, losses: torch.Tensor, io: tuple, l2: float = 0.0,
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """GMF's g_k = dL_k/dP as rows: per domain (the batch's users [B_k], the gradient of
    each one's row [B_k, d] float32; a user seen twice has two rows, summed when they are
    scattered or coalesced). Every other row of g_k is zero, so this is all of it in
    O(batch) instead of an [n_users, d] table per domain (the loop sums these rows across
    ranks: adc_dist.train.sparse_rows). ``io`` is the gmf tap (rows, users)."""
    rows, users = io
    deltas = torch.autograd.grad(losses.sum(), rows, retain_graph=True)
    out = []
    for k, (delta, r, u) in enumerate(zip(deltas, rows, users)):
        if l2:
            delta = delta + l2_row_grad(model, k, r, len(u), l2)
        out.append((u, delta.float()))
    return out


def coalesce_rows(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the rows of duplicate indices: (sorted unique indices [m], summed values [m, ...])."""
    uniq, inverse = torch.unique(indices, sorted=True, return_inverse=True)
    out = torch.zeros((len(uniq), *values.shape[1:]), dtype=values.dtype, device=values.device)
    return uniq, out.index_add_(0, inverse, values)


def summed_row_norm(indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """||coalesce_rows(indices, values)|| (the norm of the rows summed per index), with no host
    sync: a stable sort lines duplicates up and one index_add sums each run of them into a
    buffer of the input's size (rows past the number of distinct indices stay zero and add
    nothing). ``torch.unique`` would make the GPU wait for the host once per domain and step
    (its output size is data), and a step that waits cannot be replayed from a CUDA graph."""
    order = torch.argsort(indices, stable=True)  # stable: each run adds in the input's order, as index_add did
    sorted_idx = indices[order]
    starts = torch.ones_like(sorted_idx, dtype=torch.bool)
    starts[1:] = sorted_idx[1:] != sorted_idx[:-1]
    run = torch.cumsum(starts, 0) - 1
    summed = torch.zeros_like(values).index_add_(0, run, values[order])
    return torch.linalg.vector_norm(summed)
