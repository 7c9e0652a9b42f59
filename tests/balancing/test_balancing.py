"""Domain balancers: GradNorm's closed form against autograd, invariants, directions, state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adc_dist.balancing import (Balancer, EqualWeights, GradNorm, StaticWeights, UncertaintyWeights,
                                make_balancer)
from adc_dist.balancing.gradnorm import gradnorm_weight_grad
from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (tests/conftest.py)


class TinyMultiDomainNet(nn.Module):
    """A shared trunk (W = its last layer) and one head per domain."""

    def __init__(self, K: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(K))

    @property
    def shared_weight(self) -> nn.Parameter:
        return self.trunk[2].weight

    def losses(self, data) -> torch.Tensor:
        return torch.stack([nn.functional.binary_cross_entropy_with_logits(self.heads[k](self.trunk(x)).squeeze(1), y)
                            for k, (x, y) in enumerate(data)])


def _data(K: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    # Domains of different size and scale, so their gradient norms differ.
    return [(torch.randn(8 * (k + 1), 4, generator=g) * (1 + 2 * k),
             (torch.rand(8 * (k + 1), generator=g) < 0.3).float()) for k in range(K)]


def _autograd_weight_grad(net, data, w: torch.Tensor, initial: torch.Tensor, gamma: float) -> torch.Tensor:
    """dL_grad/dw by autograd: G_k = ||d(w_k L_k)/dW|| with create_graph, target detached."""
    w = w.detach().clone().requires_grad_(True)
    losses = net.losses(data)
    W = net.shared_weight
    G = torch.stack([torch.autograd.grad(w[k] * losses[k], W, create_graph=True, retain_graph=True)[0].norm()
                     for k in range(len(data))])
    ratios = losses.detach() / initial
    target = (G.mean() * (ratios / ratios.mean()) ** gamma).detach()
    (G - target).abs().sum().backward()
    return w.grad


def _per_domain_grads(net, data) -> tuple[torch.Tensor, torch.Tensor]:
    losses = net.losses(data)
    grads = torch.stack([torch.autograd.grad(losses[k], net.shared_weight, retain_graph=True)[0].flatten()
                         for k in range(len(data))])
    return losses.detach(), grads


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5])
def test_closed_form_weight_grad_equals_autograd_of_l_grad(gamma):
    torch.manual_seed(0)
    K = 3
    net, data = TinyMultiDomainNet(K), _data(K, seed=1)
    w = torch.tensor([0.5, 1.7, 0.8])
    initial = torch.tensor([0.9, 0.6, 1.1])  # L_k(0): different ratios per domain
    losses, grads = _per_domain_grads(net, data)
    closed, *_ = gradnorm_weight_grad(w, grads.norm(dim=1), losses / initial, gamma)
    torch.testing.assert_close(closed, _autograd_weight_grad(net, data, w, initial, gamma))


def test_gradnorm_follows_adam_on_the_autograd_gradient_while_the_network_trains():
    """The balancer end to end: same weights as autograd + torch.optim.Adam + clamp + renormalise."""
    torch.manual_seed(0)
    K, gamma, lr = 3, 1.5, 0.05
    net, data = TinyMultiDomainNet(K), _data(K, seed=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    bal = GradNorm(K, gamma=gamma, lr=lr)
    w_ref = torch.ones(K, requires_grad=True)
    ref_opt = torch.optim.Adam([w_ref], lr=lr)
    initial = None
    for _ in range(15):
        losses, grads = _per_domain_grads(net, data)
        initial = losses if initial is None else initial
        ref_opt.zero_grad()
        w_ref.grad = _autograd_weight_grad(net, data, w_ref, initial, gamma)
        ref_opt.step()
        with torch.no_grad():
            w_ref.clamp_(min=bal.min_weight).mul_(K / w_ref.sum())
        bal.update(losses, grads)
        torch.testing.assert_close(bal.weights(), w_ref.detach())
        opt.zero_grad()
        (bal.weights() * net.losses(data)).sum().backward()
        opt.step()
    with torch.no_grad():
        assert float(net.losses(data).sum()) < float(initial.sum())  # the network did learn


def test_gradnorm_keeps_weights_positive_finite_and_summing_to_k():
    g = torch.Generator().manual_seed(0)
    K = 4
    bal = GradNorm(K, gamma=1.5, lr=0.1)
    for t in range(500):
        scale = torch.tensor([1e-4, 1.0, 1e3, 10.0])  # wildly different gradient scales
        grads = torch.randn(K, 50, generator=g) * scale[:, None]
        losses = torch.rand(K, generator=g) * torch.tensor([1.0, 0.1, 5.0, 1e-3]) + 1e-6
        bal.update(losses, grads)
        w = bal.weights()
        assert torch.isfinite(w).all() and (w > 0).all()
        assert float(w.sum()) == pytest.approx(K, rel=1e-5)


def test_gradnorm_with_gamma_zero_equalises_weighted_gradient_norms():
    K = 2
    bal = GradNorm(K, gamma=0.0, lr=0.025)
    grads = torch.zeros(K, 10)
    grads[0, 0], grads[1, 0] = 10.0, 1.0  # domain 0 has 10x the gradient norm
    losses = torch.tensor([0.7, 0.7])
    bal.update(losses, grads)
    w = bal.weights()
    assert w[0] < 1 < w[1]  # the domain with the larger gradient loses weight at once
    for _ in range(400):
        bal.update(losses, grads)
    w = bal.weights()
    # Fixed point: w_0 * 10 = w_1 * 1 with w_0 + w_1 = 2, i.e. w = (2/11, 20/11).
    torch.testing.assert_close(w, torch.tensor([2 / 11, 20 / 11]), atol=0.05, rtol=0)
    stats = bal.stats()
    assert stats["G_0"] == pytest.approx(stats["G_1"], rel=0.3)


def test_gradnorm_gives_weight_to_the_domain_whose_loss_falls_slower():
    grads = torch.ones(2, 10)  # equal gradient norms: only the training rates differ
    runs = {}
    for gamma in (0.0, 1.5):
        bal = GradNorm(2, gamma=gamma, lr=0.025)
        bal.update(torch.tensor([0.7, 0.7]), grads)  # L_k(0)
        for _ in range(50):
            bal.update(torch.tensor([0.6, 0.3]), grads)  # domain 0: r_0 > 1
        runs[gamma] = bal.weights()
        assert bal.stats()["r_0"] > 1 > bal.stats()["r_1"]
    assert runs[1.5][0] > 1.2 and runs[1.5][1] < 0.8
    torch.testing.assert_close(runs[0.0], torch.ones(2), atol=0.05, rtol=0)


def test_gradnorm_first_update_stores_the_initial_losses():
    bal = GradNorm(2)
    assert bal.stats() == {}
    bal.update(torch.tensor([0.7, 0.5]), torch.ones(2, 3))
    torch.testing.assert_close(bal.initial_losses, torch.tensor([0.7, 0.5]))
    bal.update(torch.tensor([0.1, 0.1]), torch.ones(2, 3))
    torch.testing.assert_close(bal.initial_losses, torch.tensor([0.7, 0.5]))
    assert set(bal.stats()) == {f"{n}_{k}" for n in ("grad_norm", "G", "r", "target") for k in range(2)}


def test_gradnorm_rejects_bad_inputs_with_precise_messages():
    bal = GradNorm(3)
    with pytest.raises(ValueError, match=r"losses must have shape \[3\].*got \[2\]"):
        bal.update(torch.ones(2), torch.ones(3, 4))
    with pytest.raises(ValueError, match="needs the per-domain gradients"):
        bal.update(torch.ones(3), None)
    with pytest.raises(ValueError, match=r"grads must have shape \[3, P\].*got \[3\]"):
        bal.update(torch.ones(3), torch.ones(3))
    with pytest.raises(TypeError, match="floating point"):
        bal.update(torch.ones(3, dtype=torch.long), torch.ones(3, 4))
    with pytest.raises(TypeError, match="floating point"):
        bal.update(torch.ones(3), torch.ones(3, 4, dtype=torch.int32))


def test_uncertainty_closed_form_equals_autograd_of_its_objective():
    s = torch.tensor([0.3, -1.0, 0.0], requires_grad=True)
    losses = torch.tensor([0.7, 0.2, 1.3])
    (torch.exp(-s) * losses + s).sum().backward()
    torch.testing.assert_close(UncertaintyWeights.log_var_grad(s.detach(), losses), s.grad)


def test_uncertainty_weights_converge_to_inverse_losses():
    bal = UncertaintyWeights(2, lr=0.1)
    torch.testing.assert_close(bal.weights(), torch.ones(2))
    losses = torch.tensor([0.5, 2.0])
    for _ in range(300):
        bal.update(losses)
    torch.testing.assert_close(bal.weights(), 1 / losses, rtol=1e-3, atol=0)


def test_equal_and_static_give_the_documented_weights():
    torch.testing.assert_close(EqualWeights(3).weights(), torch.ones(3))
    torch.testing.assert_close(StaticWeights([1.0, 3.0], 2).weights(), torch.tensor([0.5, 1.5]))
    with pytest.raises(AdcError, match="one weight per domain.*3 domains, got 2"):
        StaticWeights([1.0, 3.0], 3)
    with pytest.raises(AdcError, match="> 0"):
        StaticWeights([1.0, -1.0], 2)


def test_make_balancer_builds_each_named_method():
    base = TrainConfig(static_weights=[2.0, 1.0], gamma=0.7, balancer_lr=0.01)
    kinds = {"gradnorm": GradNorm, "equal": EqualWeights, "static": StaticWeights, "uncertainty": UncertaintyWeights}
    for name, cls in kinds.items():
        bal = make_balancer(base.replace(balancer=name), 2)
        assert type(bal) is cls and isinstance(bal, Balancer)
        assert bal.needs_grads == (name == "gradnorm")
    gn = make_balancer(base, 2)
    assert (gn.gamma, gn.lr) == (0.7, 0.01)
    with pytest.raises(AdcError, match="3 domains"):
        make_balancer(base.replace(balancer="static"), 3)


def _all_balancers(K: int) -> list[Balancer]:
    return [GradNorm(K, gamma=1.0, lr=0.05), EqualWeights(K), StaticWeights([float(k + 1) for k in range(K)], K),
            UncertaintyWeights(K, lr=0.05)]


def _inputs(K: int, steps: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(K, generator=g) + 0.1, torch.randn(K, 7, generator=g) * torch.arange(1, K + 1)[:, None])
            for _ in range(steps)]


@pytest.mark.parametrize("index", range(4))
def test_state_dict_round_trip_resumes_bitwise(index):
    K = 3
    bal, fresh = _all_balancers(K)[index], _all_balancers(K)[index]
    inputs = _inputs(K, 20, seed=0)
    for losses, grads in inputs[:10]:
        bal.update(losses, grads)
    fresh.load_state_dict(bal.state_dict())
    assert torch.equal(fresh.weights(), bal.weights())
    for losses, grads in inputs[10:]:
        bal.update(losses, grads)
        fresh.update(losses, grads)
        assert torch.equal(fresh.weights(), bal.weights())


@pytest.mark.parametrize("K", [1, 2, 5])
def test_every_balancer_is_deterministic_for_any_k(K):
    for a, b in zip(_all_balancers(K), _all_balancers(K)):
        for losses, grads in _inputs(K, 15, seed=K):
            a.update(losses, grads)
            b.update(losses, grads)
        assert torch.equal(a.weights(), b.weights())
        assert torch.isfinite(a.weights()).all() and a.weights().shape == (K,)


def test_weights_are_a_copy_safe_from_later_updates():
    bal = GradNorm(2)
    w = bal.weights()
    bal.update(torch.tensor([0.7, 0.5]), torch.tensor([[3.0, 0.0], [1.0, 0.0]]))
    torch.testing.assert_close(w, torch.ones(2))
