"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018), updated in closed form.

Each domain has a learnable log-variance s_k; the objective is

    sum_k exp(-s_k) L_k + s_k,      so   w_k = exp(-s_k)   multiplies L_k

and the network's gradient sees only w_k L_k (the s_k term has no network parameters).
The s_k are updated here, outside autograd, with their exact gradient

    d/ds_k = 1 - exp(-s_k) L_k

on the all-reduced losses (same on every rank), by plain SGD with ``lr``:
``s <- s - lr * (1 - exp(-s) * L)``. Its fixed point is s_k = log L_k (w_k = 1/L_k),
and near it the step contracts by (1 - lr): stable for lr < 1. SGD rather than Adam
because this gradient is already of order 1 whatever the model (unlike GradNorm's).

Constant-factor convention: Kendall et al. write 1/(2 sigma^2) L + log sigma for
regression; with s = log sigma^2 that is 0.5 * (exp(-s) L + s). We drop the 0.5 (as
LibMTL does): the fixed point s_k = log L_k is the same, the network loss is twice as
large. The weights are not renormalised (they start at 1 and follow 1/L_k).
"""

from __future__ import annotations

import torch
from torch import Tensor

from adc_dist.balancing.base import Balancer


class UncertaintyWeights(Balancer):
    """w_k = exp(-s_k), s updated by SGD on sum_k exp(-s_k) L_k + s_k."""

    def __init__(self, num_domains: int, lr: float = 0.025) -> None:
        super().__init__(num_domains)
        if lr <= 0:
            raise ValueError(f"UncertaintyWeights needs lr > 0 (got {lr})")
        self.lr = float(lr)
        self.register_buffer("log_var", torch.zeros(num_domains))  # s_k, start at w_k = 1

    def weights(self) -> Tensor:
        return torch.exp(-self.log_var)

    @staticmethod
    def log_var_grad(log_var: Tensor, losses: Tensor) -> Tensor:
        """d/ds of sum_k exp(-s_k) L_k + s_k: [K], [K] -> [K]."""
        return 1 - torch.exp(-log_var) * losses

    @torch.no_grad()
    def update(self, losses: Tensor, grads: Tensor | None = None) -> None:
        losses = self._check_losses(losses)
        self.log_var.sub_(self.lr * self.log_var_grad(self.log_var, losses))

    def stats(self) -> dict[str, float]:
        return {f"log_var_{k}": v for k, v in enumerate(self.log_var.tolist())}

    def extra_repr(self) -> str:
        return f"num_domains={self.num_domains}, lr={self.lr}"
