"""When a run's steps may replay from CUDA graphs (train/graphed.py), checked without a GPU.

The replays themselves need a GPU: tests/train/test_gpu.py compares them with eager steps
(benchmarks/device_check.sh runs it on a lent machine).
"""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from adc_dist.balancing import make_balancer
from adc_dist.config import from_mapping
from adc_dist.model.network import ADC
from adc_dist.train.graphed import why_eager
from adc_dist.train.loop import step_function
from adc_dist.train.optim import make_optimizer

CUDA = torch.device("cuda")  # only compared with: nothing is allocated there


def _parts(**fields):
    cfg = from_mapping({"d": 8, "sparse_tables": "false", **fields}, where="test")
    model = ADC.from_config(cfg, 50, (40, 30))
    return cfg, model, make_optimizer(model, cfg)


def test_one_gpu_with_dense_tables_replays():
    cfg, model, opt = _parts()
    assert why_eager(cfg, model, opt, CUDA, 1) is None
    cfg, model, opt = _parts(preset="paper")
    assert why_eager(cfg, model, opt, CUDA, 1) is None


@pytest.mark.parametrize("fields, device, world, reason", [
    ({"cuda_graphs": False}, CUDA, 1, "cuda_graphs is false"),
    ({}, torch.device("cpu"), 1, "not on a GPU"),
    ({}, CUDA, 2, "several ranks"),
    ({"sparse_tables": "true"}, CUDA, 1, "sparse tables"),
    ({"dropout": 0.1, "interaction": "mlp"}, CUDA, 1, "dropout"),
])
def test_a_run_that_cannot_replay_says_why(fields, device, world, reason):
    cfg, model, opt = _parts(**fields)
    assert reason in why_eager(cfg, model, opt, device, world)


def test_a_cpu_run_trains_with_the_eager_step():
    cfg, model, opt = _parts()
    bal = make_balancer(cfg, 2)
    logged = []

    class Log:
        def log(self, line):
            logged.append(line)

    step = step_function(model, model, bal, opt, cfg, 1, nullcontext(), torch.device("cpu"), reporter=Log())
    users = [torch.tensor([0, 1, 2]), torch.tensor([3, 4])]
    items = [torch.randint(0, 40, (3, 1 + cfg.negatives)), torch.randint(0, 30, (2, 1 + cfg.negatives))]
    before = model.item_embs[0].weight.detach().clone()
    losses, _ = step(users, items)
    assert losses.shape == (2,) and torch.isfinite(losses).all()
    assert logged == []  # nothing to say on a CPU: no GPU, no graphs
    assert not torch.equal(before, model.item_embs[0].weight)  # the step trained
