"""Static weights given by the user (``--static_weights 1.0,0.5``), rescaled to sum K."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from adc_dist.balancing.base import Balancer
from adc_dist.errors import AdcError


class StaticWeights(Balancer):
    """w_k = K * s_k / sum_j s_j for the given positive s_k; never updated.

    Rescaled to sum K so that the total loss has the same scale as with equal weights
    (and as GradNorm, which keeps sum_k w_k = K): a learning rate tuned for one carries
    over to the others.
    """

    def __init__(self, weights: Sequence[float] | None, num_domains: int) -> None:
        super().__init__(num_domains)
        if weights is None or len(weights) != num_domains:
            got = "none" if weights is None else f"{len(weights)} ({', '.join(map(str, weights))})"
            raise AdcError(f"balancer=static needs static_weights with one weight per domain: "
                           f"the task has {num_domains} domains, got {got}")
        if not all(math.isfinite(x) and x > 0 for x in weights):
            raise AdcError(f"static_weights must all be finite and > 0 (got {list(weights)})")
        w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
        self.register_buffer("w", (num_domains * w / w.sum()).float())

    def weights(self) -> Tensor:
        return self.w.clone()

    def update(self, losses: Tensor, grads: Tensor | None = None) -> None:
        self._check_losses(losses)
