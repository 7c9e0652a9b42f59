"""The dense optimizer of a run: torch's Adam with its fused kernel (adc_dist.train.optim.dense_adam).

Fused Adam is the same update as the default for-loop Adam, rounded differently; these tests
pin that it is the one a run gets, that it trains what the for-loop Adam trains on real
batches to float32 rounding, and that an optimizer state written by the for-loop Adam (a
checkpoint from before the change) still loads and steps.
"""

from __future__ import annotations

import torch

from adc_dist.balancing import make_balancer
from adc_dist.config import from_mapping
from adc_dist.data import load_task
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.model.network import ADC
from adc_dist.train.loop import epoch_batches, train_step
from adc_dist.train.optim import make_optimizer


def _paper_run(data_root, fused: bool, steps: int) -> tuple[dict, dict]:
    """``steps`` steps of the paper preset (d 16) on amazon-book-music with the run's
    optimizer (``fused``) or the default for-loop Adam; the parameters before and after."""
    cfg = from_mapping({"task": "amazon-book-music", "preset": "paper", "d": 16, "batch_size": 512})
    task = load_task(cfg.task, data_root=str(data_root))
    torch.manual_seed(cfg.seed)
    model = ADC.from_config(cfg, task.n_users, task.n_items)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, cfg) if fused else torch.optim.Adam(model.parameters(), lr=cfg.lr)
    assert opt.param_groups[0]["fused"] is (True if fused else None)
    bal = make_balancer(cfg, task.num_domains)
    for users, items in list(epoch_batches(samplers_for(task), cfg, 0, 0, 1))[:steps]:
        train_step(model, model, bal, opt, users, items, 1, loss=cfg.loss, l2=cfg.l2)
    return init, {n: p.detach().clone() for n, p in model.named_parameters()}


def test_fused_adam_trains_what_the_for_loop_adam_trains_on_real_batches(data_root):
    (init, fused), (_, loop) = _paper_run(data_root, True, 20), _paper_run(data_root, False, 20)
    assert fused.keys() == loop.keys() == init.keys()
    for n in fused:
        # 20 steps of lr 1e-3 move a parameter by up to 2e-2; the two roundings stay ~1e-6 apart.
        torch.testing.assert_close(fused[n], loop[n], rtol=1e-4, atol=2e-6, msg=n)
    moved = max(float((fused[n] - init[n]).abs().max()) for n in fused)
    assert moved > 1e-3  # the steps did train: the agreement is not two unmoved models


def test_an_optimizer_state_of_the_for_loop_adam_loads_into_the_runs_and_keeps_stepping():
    cfg = from_mapping({"d": 8})
    torch.manual_seed(0)
    model = ADC.from_config(cfg, 40, [30, 20])
    old = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    old.step()
    opt = make_optimizer(model, cfg)
    assert opt.param_groups[0]["fused"] is True
    opt.load_state_dict(old.state_dict())  # a checkpoint written before fused Adam
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert all(s["step"] == 2 for s in opt.state.values())
