"""A linear layer whose weight gradient the training step may hand over instead of computing it.

GradNorm already forms g_k = dL_k/dW for the last shared layer W (adc_dist.model.shared_grads)
before the network's backward, and that backward's gradient of W is sum_k w_k g_k: the same
[w_L x N] @ [N x w_{L-1}] product again (docs/performance.md, "Batches on the device"). The loop puts
sum_k w_k g_k (this rank's g_k: DDP then averages it across ranks as it would its own) into
``holder.given_weight_grad``; the backward of :func:`linear` returns it as W's gradient and
computes only the input's and the bias's. Without a given gradient it is ``F.linear``'s
backward. Either way W's gradient arrives through autograd, so DDP's hooks fire as usual.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, holder) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.holder, ctx.dtypes = holder, (x.dtype, weight.dtype, bias.dtype)
        return F.linear(x, weight, bias)  # under autocast: in the autocast dtype, as nn.Linear

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ weight.to(grad.dtype)).to(x_dtype)
        if ctx.needs_input_grad[1]:
            given = ctx.holder.given_weight_grad
            grad_w = given.to(w_dtype) if given is not None else (grad.t() @ x.to(grad.dtype)).to(w_dtype)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(0).to(b_dtype)
        return grad_x, grad_w, grad_b, None


def linear(x: Tensor, weight: Tensor, bias: Tensor, holder) -> Tensor:
    """``F.linear(x, weight, bias)`` for 2-d ``x``; the backward takes ``weight``'s gradient
    from ``holder.given_weight_grad`` when that is set (a tensor of ``weight``'s shape)."""
    return _Linear.apply(x, weight, bias, holder)
