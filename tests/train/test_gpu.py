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


def _fit(task, **kw):
    cfg = TrainConfig(d=32, epochs=4, batch_size=256, lr=5e-3, topk=[10], early_stop_metric="ndcg@10",
                      patience=0, **kw).validate()
    return fit(cfg, LocalReporter(None, quiet=True), task=task)


@pytest.mark.parametrize("bf16", [False, True])
def test_training_on_gpu_matches_cpu_and_keeps_weights_valid(bf16):
    task = make_task(n_users=400, per_user=(25, 8), seed=8)
    gpu, cpu = _fit(task, use_gpu=True, bf16=bf16), _fit(task)
    w = np.array([[r["weight_d0"], r["weight_d1"]] for r in gpu["history"]])
    assert np.isfinite(w).all() and (w > 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 2.0, rtol=1e-3)
    # Same seeds, same batches: fp32 lands where the CPU run does; bf16 close to it.
    tol = 0.25 if bf16 else 0.05
    for key in ("test_ndcg10_d0", "test_ndcg10_d1"):
        assert gpu["final"][key] == pytest.approx(cpu["final"][key], rel=tol), key
