"""Domain-weight balancers: one method per module behind ``Balancer`` (base.py).

    gradnorm      GradNorm (Chen et al. 2018) in closed form on all-reduced gradients (default)
    equal         w_k = 1
    static        user-given weights, rescaled to sum K
    uncertainty   Kendall, Gal & Cipolla (2018) log-variance weighting

``make_balancer(cfg, num_domains)`` builds the one a TrainConfig names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adc_dist.balancing.base import Balancer
from adc_dist.balancing.equal import EqualWeights
from adc_dist.balancing.gradnorm import GradNorm
from adc_dist.balancing.static import StaticWeights
from adc_dist.balancing.uncertainty import UncertaintyWeights
from adc_dist.errors import AdcError

if TYPE_CHECKING:
    from adc_dist.config import TrainConfig

__all__ = ["Balancer", "EqualWeights", "GradNorm", "StaticWeights", "UncertaintyWeights", "make_balancer"]


def make_balancer(cfg: "TrainConfig", num_domains: int) -> Balancer:
    """The balancer ``cfg.balancer`` names, for ``num_domains`` domains (on CPU; move it
    to the training device with ``.to(device)``)."""
    name = cfg.balancer
    if name == "gradnorm":
        return GradNorm(num_domains, gamma=cfg.gamma, lr=cfg.balancer_lr)
    if name == "equal":
        return EqualWeights(num_domains)
    if name == "static":
        return StaticWeights(cfg.static_weights, num_domains)
    if name == "uncertainty":
        return UncertaintyWeights(num_domains, lr=cfg.balancer_lr)
    raise AdcError(f"unknown balancer {name!r}; expected one of gradnorm, equal, static, uncertainty")
