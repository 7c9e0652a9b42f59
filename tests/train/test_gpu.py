"""GPU checks, for a machine with CUDA (benchmarks/device_check.sh runs them there).

On a CPU-only machine (CI) they are skipped: the same code paths run on CPU in the other
tests; these add what only a GPU can show (device placement, bf16 autocast, NCCL-free
in-process training on cuda:0).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adc_dist.config import TrainConfig
from adc_dist.data.torch_sampler import EpochBatches, samplers_for
from adc_dist.train.loop import fit
from adc_dist.model.network import ADC
from adc_dist.train.reporting import LocalReporter
from synthetic import make_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_score_all_on_gpu_equals_cpu():
    task = make_task(seed=7)
    torch.manual_seed(0)
    model = ADC(task.n_users, task.n_items, 32, [32, 16])
    users = torch.arange(task.n_users)
    cpu = model.score_all(users, 0)
    gpu = model.cuda().score_all(users.cuda(), 0).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)


def test_device_batches_on_gpu_are_exact_and_repeat_per_seed():
    task = make_task(n_users=400, per_user=(25, 8), seed=9)
    samplers = samplers_for(task, "cuda")
    runs = [list(EpochBatches(samplers, seed=1, epoch=2, rank=0, world=1, batch_size=512, negatives=5))
            for _ in range(2)]
    for (u1, i1), (u2, i2) in zip(*runs):
        assert all(torch.equal(a, b) and a.is_cuda for a, b in zip(u1 + i1, u2 + i2))
        for k, (u, cand) in enumerate(zip(u1, i1)):
            train = task.user_items("train", k)
            u_np, c_np = np.array(u.tolist()), np.array(cand.tolist())
            assert train[np.repeat(u_np, 5), c_np[:, 1:].reshape(-1)].sum() == 0


def _fit(task, **kw):
    cfg = TrainConfig(d=32, epochs=4, batch_size=256, lr=5e-3, topk=[10], early_stop_metric="ndcg@10",
                      patience=0, **kw).validate()
    return fit(cfg, LocalReporter(None, quiet=True), task=task)


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("sparse_tables", ["false", "true"])  # true: LazyAdam and sparse rows on cuda
def test_training_on_gpu_matches_cpu_and_keeps_weights_valid(bf16, sparse_tables):
    task = make_task(n_users=400, per_user=(25, 8), seed=8)
    gpu = _fit(task, use_gpu=True, bf16=bf16, sparse_tables=sparse_tables)
    cpu = _fit(task, sparse_tables=sparse_tables)
    w = np.array([[r["weight_d0"], r["weight_d1"]] for r in gpu["history"]])
    assert np.isfinite(w).all() and (w > 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 2.0, rtol=1e-3)
    # Same seeds, but the batches are drawn on the device (torch streams differ between CPU
    # and CUDA): equally valid batches, so the GPU run lands close to the CPU one, not on it.
    tol = 0.25
    for key in ("test_ndcg10_d0", "test_ndcg10_d1"):
        assert gpu["final"][key] == pytest.approx(cpu["final"][key], rel=tol), key


def _twin_runs(cfg: TrainConfig, task):
    """Two identical (model, step) pairs on cuda:0: one eager, one replayed from CUDA graphs."""
    from adc_dist.balancing import make_balancer
    from adc_dist.train.loop import autocast_for, step_function
    from adc_dist.train.optim import make_optimizer

    device = torch.device("cuda")
    runs = []
    for graphs in (False, True):
        torch.manual_seed(0)
        model = ADC.from_config(cfg, task.n_users, task.n_items).to(device)
        opt, bal = make_optimizer(model, cfg), make_balancer(cfg, task.num_domains).to(device)
        step = step_function(model, model, bal, opt, cfg, 1, autocast_for(cfg, device), device, graphs=graphs)
        runs.append((model, bal, step))
    return runs


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("preset", [None, "paper"])  # gmf (GradNorm on P's rows) and the paper's MLP
def test_steps_replayed_from_cuda_graphs_train_what_eager_steps_train(preset, bf16):
    from adc_dist.config import from_mapping
    from adc_dist.train.graphed import GraphedStep

    task = make_task(n_users=400, per_user=(25, 8), seed=11)
    cfg = from_mapping({"d": 32, "batch_size": 512, "use_gpu": True, "bf16": bf16, "sparse_tables": "false",
                        **({"preset": preset} if preset else {})}, where="test")
    samplers = samplers_for(task, "cuda")
    # Four epochs: every size tuple of an epoch comes back often enough to be captured and replayed.
    batches = [b for e in range(4) for b in EpochBatches(samplers, seed=0, epoch=e, rank=0, world=1,
                                                          batch_size=cfg.batch_size, negatives=cfg.negatives)]
    (eager_model, eager_bal, eager), (graph_model, graph_bal, graphed) = _twin_runs(cfg, task)
    assert isinstance(graphed, GraphedStep) and not isinstance(eager, GraphedStep)
    # The same kernels in the same order; only CUDA's atomic adds (index_add_) may order a sum
    # differently, and bf16 rounds such a difference up.
    tol = {"rtol": 1e-2, "atol": 1e-3} if bf16 else {"rtol": 1e-4, "atol": 1e-5}
    for users, items in batches:
        want, _ = eager(users, items)
        got, _ = graphed(users, items)
        torch.testing.assert_close(got, want, **tol)
    assert graphed.graphs and graphed.failed is None, graphed.failed
    replays = len(batches) - sum(graphed.seen.values())
    assert replays >= len(batches) // 2, (replays, len(batches))
    for (name, a), b in zip(eager_model.state_dict().items(), graph_model.state_dict().values()):
        torch.testing.assert_close(b, a, **tol, msg=name)
    torch.testing.assert_close(graph_bal.weights(), eager_bal.weights(), **tol)


def test_a_gpu_run_replays_cuda_graphs_and_lands_where_the_eager_run_lands():
    task = make_task(n_users=400, per_user=(25, 8), seed=8)
    graphed = _fit(task, use_gpu=True, sparse_tables="false")
    eager = _fit(task, use_gpu=True, sparse_tables="false", cuda_graphs=False)
    assert len(graphed["history"]) == len(eager["history"]) == 4
    for g, e in zip(graphed["history"], eager["history"]):
        for key in ("loss_d0", "loss_d1", "weight_d0", "weight_d1"):
            assert g[key] == pytest.approx(e[key], rel=1e-4), (g["epoch"], key)
        assert g["valid_ndcg10_mean"] == pytest.approx(e["valid_ndcg10_mean"], abs=2e-3), g["epoch"]
    for key in ("test_ndcg10_d0", "test_ndcg10_d1"):
        assert graphed["final"][key] == pytest.approx(eager["final"][key], abs=2e-3), key
