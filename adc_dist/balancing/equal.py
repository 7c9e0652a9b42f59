"""Equal weights, w_k = 1: the plain sum of the domain losses (the no-balancing ablation)."""

from __future__ import annotations

import torch
from torch import Tensor

from adc_dist.balancing.base import Balancer


class EqualWeights(Balancer):
    """w_k = 1 for every domain, never updated."""

    def __init__(self, num_domains: int) -> None:
        super().__init__(num_domains)
        self.register_buffer("w", torch.ones(num_domains))

    def weights(self) -> Tensor:
        return self.w.clone()

    def update(self, losses: Tensor, grads: Tensor | None = None) -> None:
        self._check_losses(losses)  # still validated: a wrong call is a bug whatever the method
