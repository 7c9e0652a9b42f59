"""GradNorm across domains (Chen et al., ICML 2018, "task" = "domain"), closed form.

DESIGN.md section 2. W is the weight of the last shared hidden layer and g_k = dL_k/dW,
averaged across ranks by the caller. With weights w (sum K):

    G_k      = w_k * ||g_k||                      norm of the weighted domain gradient
    Gbar     = mean_k G_k
    r_k      = (L_k / L_k(0)) / mean_j (L_j / L_j(0))   relative inverse training rate
    target_k = Gbar * r_k ** gamma                held constant (no gradient through it)
    L_grad   = sum_k |G_k - target_k|

Because g_k does not depend on w (it is the gradient of the *unweighted* L_k) and the
target is a constant, dL_grad/dw_k = sign(G_k - target_k) * ||g_k|| exactly: no second
backward pass and no create_graph (which DDP does not support). Then

    w <- Adam(w, dL_grad/dw, lr);  w <- max(w, min_weight);  w <- K * w / sum(w)

L_k(0) is the loss of the first update (all-reduced, so the same on every rank).

Why Adam and not plain SGD: the raw gradient's size is ||g_k||, which varies by orders
of magnitude with the model, the data and the training phase; with SGD a fixed
``balancer_lr`` would either freeze the weights or throw them onto the floor. Adam
normalises the step to about ``lr`` weight units per step, and its first moment damps
the sign flips once G_k oscillates around its target. The moments live in buffers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from adc_dist.balancing.adam import adam_step_
from adc_dist.balancing.base import Balancer

MIN_WEIGHT = 1e-3  # floor of a domain weight: a domain is never switched off entirely


def gradnorm_weight_grad(w: Tensor, grad_norms: Tensor, loss_ratios: Tensor, gamma: float
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The closed-form dL_grad/dw: ([K] weights, [K] ||g_k||, [K] L_k/L_k(0), gamma)
    -> (dL_grad/dw [K], G [K], r [K], target [K])."""
    G = w * grad_norms
    r = loss_ratios / loss_ratios.mean()
    target = G.mean() * r.pow(gamma)
    return torch.sign(G - target) * grad_norms, G, r, target


class GradNorm(Balancer):
    """GradNorm domain weights, updated from all-reduced losses [K] and gradients [K, P].

    Args:
        num_domains: K.
        gamma: asymmetry (GradNorm's alpha); 0 equalises the weighted gradient norms.
        lr: learning rate of the weights (Adam).
        min_weight: floor applied before renormalising to sum K.
    """

    needs_grads = True

    def __init__(self, num_domains: int, gamma: float = 1.5, lr: float = 0.025,
                 min_weight: float = MIN_WEIGHT) -> None:
        super().__init__(num_domains)
        if gamma < 0 or lr <= 0 or not 0 < min_weight < 1:
            raise ValueError(f"GradNorm needs gamma >= 0, lr > 0 and 0 < min_weight < 1 "
                             f"(got gamma={gamma}, lr={lr}, min_weight={min_weight})")
        self.gamma, self.lr, self.min_weight = float(gamma), float(lr), float(min_weight)
        K = num_domains
        self.register_buffer("w", torch.ones(K))
        self.register_buffer("initial_losses", torch.zeros(K))  # L_k(0)
        self.register_buffer("has_initial", torch.zeros((), dtype=torch.bool))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))  # also Adam's t
        self.register_buffer("exp_avg", torch.zeros(K))
        self.register_buffer("exp_avg_sq", torch.zeros(K))
        # Diagnostics of the last update: moved by .to(), not checkpointed.
        for name in ("last_grad_norm", "last_G", "last_r", "last_target"):
            self.register_buffer(name, torch.zeros(K), persistent=False)

    def weights(self) -> Tensor:
        return self.w.clone()

    @torch.no_grad()
    def update(self, losses: Tensor, grads: Tensor | None = None) -> None:
        losses = self._check_losses(losses)
        grads = self._check_grads(grads)
        # The first update's losses become L_k(0); torch.where instead of an `if` on a
        # tensor keeps this free of GPU syncs.
        self.initial_losses.copy_(torch.where(self.has_initial, self.initial_losses, losses))
        self.has_initial.fill_(True)
        tiny = torch.finfo(losses.dtype).tiny  # a loss of exactly 0 must not divide by 0
        ratios = losses / self.initial_losses.clamp_min(tiny)
        norms = torch.linalg.vector_norm(grads, dim=1)
        dw, G, r, target = gradnorm_weight_grad(self.w, norms, ratios, self.gamma)
        adam_step_(self.w, dw, self.exp_avg, self.exp_avg_sq, self.step, self.lr)
        self.w.clamp_(min=self.min_weight)
        self.w.mul_(self.num_domains / self.w.sum())
        for name, value in (("last_grad_norm", norms), ("last_G", G), ("last_r", r), ("last_target", target)):
            getattr(self, name).copy_(value)

    def stats(self) -> dict[str, float]:
        """``grad_norm_k`` (||g_k||), ``G_k``, ``r_k``, ``target_k`` of the last update."""
        if int(self.step) == 0:
            return {}
        out = {}
        for key, buf in (("grad_norm", self.last_grad_norm), ("G", self.last_G), ("r", self.last_r),
                         ("target", self.last_target)):
            out.update({f"{key}_{k}": v for k, v in enumerate(buf.tolist())})
        return out

    def extra_repr(self) -> str:
        return f"num_domains={self.num_domains}, gamma={self.gamma}, lr={self.lr}, min_weight={self.min_weight}"
