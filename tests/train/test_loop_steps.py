"""Pieces of one training step: the epoch's batches and the per-domain gradients of the shared layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adc_dist.config import TrainConfig, from_mapping
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.train.loop import epoch_batches, shared_layer_grads
from adc_dist.model.network import ADC, domain_losses
from synthetic import make_task


@pytest.mark.parametrize("widths", [[16], [16, 8], [32, 16, 8]])
def test_shared_layer_grads_equal_autograd_per_domain(widths):
    task = make_task(seed=4)
    torch.manual_seed(0)
    model = ADC(task.n_users, task.n_items, 16, widths, dropout=0.2)  # dropout masks included
    gen = torch.Generator().manual_seed(1)
    users = [torch.randint(0, task.n_users, (40 + 30 * k,), generator=gen) for k in range(2)]
    items = [torch.randint(0, n, (len(u), 6), generator=gen) for u, n in zip(users, task.n_items)]
    tap = len(widths) >= 2
    out = model(users, items, last_layer_io=True) if tap else model(users, items)
    logits, io = out if tap else (out, None)
    losses = domain_losses(logits)
    fast = shared_layer_grads(model, losses, io, [it.numel() for it in items])
    ref = torch.stack([torch.autograd.grad(losses[k], model.shared_weight, retain_graph=True)[0].reshape(-1)
                       for k in range(2)])
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-8)
    assert model.shared_weight.grad is None  # nothing accumulated: DDP's hooks would not fire


def _positives(batches, k):
    """Sorted (user, item) keys of the positives of domain k over a list of steps."""
    return sorted(torch.cat([u[k] * 10**6 + it[k][:, 0] for u, it in batches]).tolist())


def test_an_epoch_is_one_pass_over_every_domain_with_the_same_steps_on_every_rank():
    task = make_task(per_user=(20, 3), seed=5)  # domains of very different size
    cfg = TrainConfig(batch_size=500).validate()
    samplers = samplers_for(task)
    one = list(epoch_batches(samplers, cfg, epoch=0, rank=0, world=1))
    assert len(one) == int(np.ceil(len(task.train[0]) / 500))
    truth = [sorted((tr.users * 10**6 + tr.items).tolist()) for tr in task.train]
    for k in range(2):
        assert _positives(one, k) == truth[k]  # each positive exactly once
    ranks = [list(epoch_batches(samplers, cfg, epoch=3, rank=r, world=3)) for r in range(3)]
    assert len({len(r) for r in ranks}) == 1
    for k in range(2):
        assert len({tuple(len(step[0][k]) for step in r) for r in ranks}) == 1  # equal batch sizes: mean of means
        assert set(_positives([step for r in ranks for step in r], k)) == set(truth[k])


def test_a_gradnorm_step_hands_over_w_l_and_every_gradient_is_autograds_of_the_weighted_loss():
    # train_step forms W_L's gradient from GradNorm's g_k (sum_k w_k g_k) instead of the
    # backward's matmul; every parameter's gradient must still be what autograd gives for
    # sum_k w_k L_k with the weights of the step.
    import copy

    from adc_dist.balancing import make_balancer
    from adc_dist.train.loop import train_step

    task = make_task(seed=4)
    cfg = from_mapping({"preset": "paper", "batch_size": 300})
    torch.manual_seed(0)
    model = ADC(task.n_users, task.n_items, 16, [16, 8])
    ref = copy.deepcopy(model)
    bal = make_balancer(cfg, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen = {}
    opt.register_step_pre_hook(lambda *_: seen.update({n: p.grad.clone() for n, p in model.named_parameters()}))
    (users, items), = list(epoch_batches(samplers_for(task), cfg, 0, 0, 1))[:1]
    train_step(model, model, bal, opt, users, items, 1)  # the first step starts at w = 1
    ref.load_state_dict(model.state_dict())  # the parameters the second step differentiates at
    _, grads = train_step(model, model, bal, opt, users, items, 1)
    w = bal.weights()
    assert bal.needs_grads and not torch.equal(w, torch.ones(2))
    # W_L's gradient is the handed-over one, bitwise: the backward did not form it again
    assert torch.equal(seen["layers.1.weight"], (w[:, None] * grads).sum(0).view_as(model.shared_weight))
    assert model.given_weight_grad is None  # nothing left over for a later backward
    losses = domain_losses(ref(users, items))
    (w * losses).sum().backward()
    for n, p in ref.named_parameters():
        torch.testing.assert_close(seen[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)
    assert seen["layers.1.weight"].abs().max() > 1e-4
