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
from adc_dist.loop import fit
from adc_dist.model import ADC
from adc_dist.reporting import LocalReporter
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


@pytest.mark.parametrize("bf16", [False, True])
def test_training_on_gpu_learns_and_keeps_weights_valid(bf16):
    task = make_task(n_users=400, per_user=(25, 8), seed=8)
    cfg = TrainConfig(d=32, epochs=4, batch_size=256, lr=5e-3, use_gpu=True, bf16=bf16, topk=[10],
                      early_stop_metric="ndcg@10", patience=0).validate()
    out = fit(cfg, LocalReporter(None, quiet=True), task=task)
    hist = out["history"]
    w = np.array([[r["weight_d0"], r["weight_d1"]] for r in hist])
    assert np.isfinite(w).all() and (w > 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 2.0, rtol=1e-3)
    assert hist[-1]["loss_d0"] < hist[0]["loss_d0"]
    assert out["final"]["test_ndcg10_d0"] > 10 / 200 * 0.5  # well above random ranking on planted data
