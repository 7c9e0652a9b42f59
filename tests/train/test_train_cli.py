"""`python -m adc_dist.train`: bad input fails before Ray starts; local runs train, resume, record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from adc_dist.errors import AdcError
from adc_dist.train.launch import main


def _ray_started() -> bool:
    import ray

    return ray.is_initialized()


@pytest.mark.parametrize("argv, fragment", [
    (["--gama", "1"], "did you mean --gamma"),
    (["--d", "0"], "d must be > 0"),
    (["--gamma", "-0.5"], "gamma must be >= 0"),
    (["--negatives", "0"], "negatives must be >= 1"),
    (["--num_workers", "64"], "needs 64 CPUs"),
    (["--task", "amazon-book-musik"], "amazon-book-music"),
    (["--epochs", "two"], "expects int"),
])
def test_bad_config_fails_before_ray_starts_with_one_clear_message(argv, fragment, tmp_path):
    with pytest.raises(AdcError, match=fragment):
        main([*argv, "--storage_path", str(tmp_path)])
    assert not _ray_started()
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused run"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --use_gpu is valid here")
def test_use_gpu_without_a_gpu_is_refused_before_ray_starts(tmp_path):
    with pytest.raises(AdcError, match="no CUDA GPU"):
        main(["--use_gpu", "--storage_path", str(tmp_path)])
    assert not _ray_started()


def test_cli_prints_one_error_line_and_exits_2_without_traceback(tmp_path):
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "adc_dist.train", "--negatives", "0", "--storage_path", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: invalid config") and "negatives must be >= 1" in proc.stderr
    assert time.time() - t0 < 60


def _local(tmp_path, *extra):
    return ["--local", "--quiet", "--storage_path", str(tmp_path), "--name", "run", "--d", "32",
            "--batch_size", "2048", "--topk", "10,20", "--early_stop_metric", "ndcg@10", *extra]


def test_local_run_writes_the_run_directory_and_resumes(tmp_path, data_root):
    main(_local(tmp_path, "--epochs", "2"))
    run = tmp_path / "run"
    hist = pd.read_parquet(run / "history.parquet")
    assert list(hist["epoch"]) == [1, 2]
    for col in ["loss_book", "loss_music", "weight_book", "weight_music", "valid_ndcg10_book",
                "valid_recall20_music", "valid_ndcg10_mean", "samples_per_s", "weight_rank_spread"]:
        assert col in hist and hist[col].notna().all(), col
    np.testing.assert_allclose(hist["weight_book"] + hist["weight_music"], 2.0, rtol=1e-5)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["task"] == "amazon-book-music" and cfg["d"] == 32 and cfg["epochs"] == 2
    test = json.loads((run / "test_metrics.json").read_text())
    assert 0 < test["test_recall10_book"] <= 1 and test["epochs_run"] == 2
    assert (run / "checkpoints" / "state.pt").is_file()

    # The same name without --resume is refused; with --resume it continues at epoch 3.
    with pytest.raises(AdcError, match="--resume"):
        main(_local(tmp_path, "--epochs", "3"))
    main(_local(tmp_path, "--epochs", "3", "--resume"))
    hist = pd.read_parquet(run / "history.parquet")
    assert list(hist["epoch"]) == [1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 3


def test_resume_of_a_run_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(AdcError, match="no run directory"):
        main(_local(tmp_path, "--resume"))
