"""The memory estimate: exact for parameters, gradients and Adam state; too large is refused at once."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError
from adc_dist.model.network import ADC
from adc_dist.train import memory
from adc_dist.train.loop import fit
from adc_dist.train.optim import make_optimizer
from adc_dist.train.reporting import LocalReporter
from synthetic import make_task


@pytest.mark.parametrize("kw", [{"d": 16}, {"d": 24, "num_hidden_layers": 3},
                                {"d": 8, "num_hidden_layers": 1, "hidden_shape": "constant"},
                                {"d": 16, "sparse_tables": True},
                                {"d": 16, "interaction": "mlp", "sparse_tables": True}])
def test_the_estimate_is_the_bytes_of_parameters_gradients_and_adam_state_after_a_real_step(kw):
    cfg = TrainConfig(balancer="equal", **kw)
    n_users, n_items = 300, [200, 150]
    est = memory.estimate(cfg, n_users, n_items)
    model = ADC.from_config(cfg, n_users, n_items)
    opt = make_optimizer(model, cfg)
    users = [torch.randint(0, n_users, (32,)) for _ in n_items]
    items = [torch.randint(0, n, (32, 6)) for n in n_items]
    sum(x.sum() for x in model(users, items)).backward()
    opt.step()
    params = list(model.parameters())
    # A sparse table gradient holds the batch's rows only: bounded by the batch, left out.
    measured = sum(p.nbytes + (0 if p.grad.is_sparse else p.grad.nbytes) for p in params)
    states = [o.state for o in getattr(opt, "optimizers", [opt])]
    measured += sum(t.nbytes for state in states for st in state.values() for k, t in st.items() if k != "step")
    assert est.params == sum(p.numel() for p in params)
    assert est.device_bytes == measured
    assert est.host_bytes == sum(p.nbytes for p in params)  # the best-model copy


@pytest.mark.parametrize("interaction", ["mlp", "mlp+gmf", "gmf"])
def test_gradnorm_adds_its_per_domain_gradients_of_the_shared_weight(interaction):
    plain = memory.estimate(TrainConfig(d=16, balancer="equal", interaction=interaction), 300, [200, 150])
    gn = memory.estimate(TrainConfig(d=16, balancer="gradnorm", interaction=interaction), 300, [200, 150])
    w = ADC.from_config(TrainConfig(d=16, interaction=interaction), 300, [200, 150]).shared_weight.numel()
    # gmf's W is the user table: its per-domain gradients are the batch's rows (bounded by the batch).
    assert gn.device_bytes - plain.device_bytes == (0 if interaction == "gmf" else 2 * 2 * w * 4)


def test_a_model_too_large_for_this_machine_is_refused_on_the_command_line_in_one_line(tmp_path, data_root):
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "adc_dist.train", "--local", "--preset", "paper", "--d", "65536",
                           "--storage_path", str(tmp_path), "--name", "big"], capture_output=True, text=True,
                          timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and len(lines[0]) <= 300, proc.stderr[-2000:]
    # d 65,536 is within the config's limit; the paper MLP's first layer (2d x d) makes it ~1e10 parameters.
    assert lines[0].startswith("error: the model (1.16e+10 parameters") and "GB available: lower --d" in lines[0]
    assert not any(tmp_path.iterdir())
    assert time.time() - t0 < 240  # nothing was allocated: no swapping, no OOM kill


def test_the_worker_refuses_before_allocating_too(tmp_path):
    """What a worker on a cluster does (the driver there cannot see the workers' machines)."""
    task = make_task(n_users=120, n_items=(60, 40), per_user=(10, 6))
    with pytest.raises(AdcError, match=r"^the model \([0-9.e+]+ parameters, about [0-9.e+,]+ GB with gradients"):
        fit(TrainConfig(d=10**8, epochs=1), LocalReporter(None, quiet=True), task=task)


def test_many_workers_on_one_machine_count_once_each():
    cfg = TrainConfig(d=16)
    avail = memory.host_available_bytes()
    per = memory.estimate(cfg, 10**6, [10**6]).per_worker_on_cpu()
    workers = int(avail // per) + 1  # one more replica than fits
    with pytest.raises(AdcError, match=f"{workers} workers here"):
        memory.check_fits(cfg, 10**6, [10**6], workers_here=workers)
    memory.check_fits(cfg, 10**6, [10**6], workers_here=1)
