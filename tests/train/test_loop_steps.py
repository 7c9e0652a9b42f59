"""Pieces of one training step: the epoch plan and the per-domain gradients of the shared layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adc_dist.config import TrainConfig
from adc_dist.train.loop import _epoch_plan, shared_layer_grads
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


def test_an_epoch_is_one_pass_over_every_domain_with_the_same_steps_on_every_rank():
    task = make_task(per_user=(20, 3), seed=5)  # domains of very different size
    cfg = TrainConfig(batch_size=500).validate()
    plan = _epoch_plan(task, cfg, epoch=0, rank=0, world=1)
    assert len(plan[0]) == len(plan[1]) == int(np.ceil(len(task.train[0]) / 500))
    for k in range(2):
        seen = np.concatenate(plan[k])
        assert sorted(seen) == list(range(len(task.train[k])))  # each positive exactly once
    plans = [_epoch_plan(task, cfg, epoch=3, rank=r, world=3) for r in range(3)]
    for k in range(2):
        assert len({len(p[k]) for p in plans}) == 1
        assert len({tuple(len(b) for b in p[k]) for p in plans}) == 1  # equal batch sizes: mean of means
        union = np.concatenate([np.concatenate(p[k]) for p in plans])
        assert set(union) == set(range(len(task.train[k])))
