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
