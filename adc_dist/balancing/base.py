"""The interface every domain balancer offers the training loop.

A balancer owns the K domain weights w_k of the network loss ``sum_k w_k L_k``. The loop
calls, every step and on every rank:

    w = balancer.weights()                      # [K], detached
    balancer.update(losses, grads)              # inputs already all-reduced across ranks

Because the inputs are identical on every rank and the update is deterministic, every
rank holds bitwise the same weights (DESIGN.md section 2). State lives in buffers, so
``state_dict()`` checkpoints it with nothing else to save; ``.to(device)`` moves it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class Balancer(nn.Module, ABC):
    """Base class: K domain weights, updated from all-reduced losses (and gradients)."""

    #: True when ``update`` needs the per-domain gradients of the shared weight W.
    needs_grads: bool = False

    def __init__(self, num_domains: int) -> None:
        super().__init__()
        if not isinstance(num_domains, int) or num_domains < 1:
            raise ValueError(f"num_domains must be an int >= 1 (got {num_domains!r})")
        self.num_domains = num_domains

    @abstractmethod
    def weights(self) -> Tensor:
        """The current weights, [K] (a detached copy: safe to use in a graph that a later
        ``update`` would otherwise modify in place)."""

    @abstractmethod
    def update(self, losses: Tensor, grads: Tensor | None = None) -> None:
        """One balancing step from the losses [K] (and, if ``needs_grads``, the per-domain
        gradients of W flattened, [K, P]); both already averaged across ranks."""

    def stats(self) -> dict[str, float]:
        """Diagnostics of the last update (floats; reading them syncs with the device)."""
        return {}

    # ---------------------------------------------------------------- input checks
    def _state_ref(self) -> Tensor:
        """A buffer whose device and dtype the inputs are compared with / cast to."""
        return next(self.buffers())

    def _check_losses(self, losses: Tensor) -> Tensor:
        """Shape/dtype/device checks only (no data-dependent check: that would sync a GPU)."""
        name = type(self).__name__
        if not isinstance(losses, Tensor):
            raise TypeError(f"{name}.update: losses must be a Tensor of shape [{self.num_domains}]; "
                            f"got {type(losses).__name__}")
        if losses.shape != (self.num_domains,):
            raise ValueError(f"{name}.update: losses must have shape [{self.num_domains}] (one per domain); "
                             f"got {list(losses.shape)}")
        if not losses.dtype.is_floating_point:
            raise TypeError(f"{name}.update: losses must be floating point; got {losses.dtype}")
        ref = self._state_ref()
        if losses.device != ref.device:
            raise ValueError(f"{name}.update: losses are on {losses.device} but the balancer's state is on "
                             f"{ref.device}; move the balancer with .to(device)")
        return losses.detach().to(ref.dtype)

    def _check_grads(self, grads: Tensor | None) -> Tensor:
        name = type(self).__name__
        K = self.num_domains
        if grads is None:
            raise ValueError(f"{name}.update needs the per-domain gradients of the shared weight, "
                             f"a [{K}, P] tensor (needs_grads is True)")
        if not isinstance(grads, Tensor):
            raise TypeError(f"{name}.update: grads must be a Tensor of shape [{K}, P]; got {type(grads).__name__}")
        if grads.dim() != 2 or grads.shape[0] != K or grads.shape[1] == 0:
            raise ValueError(f"{name}.update: grads must have shape [{K}, P] (one flattened gradient of the "
                             f"shared weight per domain); got {list(grads.shape)}")
        if not grads.dtype.is_floating_point:
            raise TypeError(f"{name}.update: grads must be floating point; got {grads.dtype}")
        ref = self._state_ref()
        if grads.device != ref.device:
            raise ValueError(f"{name}.update: grads are on {grads.device} but the balancer's state is on "
                             f"{ref.device}; move the balancer with .to(device)")
        return grads.detach().to(ref.dtype)
