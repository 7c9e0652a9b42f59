"""Adam on a small buffer, with its moments in buffers (so they checkpoint with the balancer).

``torch.optim.Adam`` would keep its state in an optimizer object outside the module's
``state_dict``; the balancer weights are K numbers, so the update is written out here.
Pure tensor ops (no ``.item()``): no GPU sync.
"""

from __future__ import annotations

import torch
from torch import Tensor

BETAS = (0.9, 0.999)
EPS = 1e-8


def adam_step_(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: Tensor,
               lr: float, betas: tuple[float, float] = BETAS, eps: float = EPS) -> None:
    """One in-place Adam step (Kingma & Ba, with bias correction) of ``param``.

    ``step`` is the 0-d count of steps taken *before* this one; it is incremented here.
    """
    b1, b2 = betas
    step.add_(1)
    t = step.to(param.dtype)
    exp_avg.mul_(b1).add_(grad, alpha=1 - b1)
    exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    m_hat = exp_avg / (1 - b1**t)
    v_hat = exp_avg_sq / (1 - b2**t)
    param.sub_(lr * m_hat / (v_hat.sqrt() + eps))
