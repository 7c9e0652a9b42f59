"""The README's commands with a RELATIVE ``ADC_DATA_ROOT``, from another working directory,
with an empty download cache: train, tune and ``compare --quick`` through Ray.

Ray Train V2 runs each worker, and Tune each trial, in a directory of its own; a relative
path that reaches them unchanged points nowhere, the data is "missing" and a download is
attempted (no network here). Every entry point therefore resolves the paths first
(adc_dist.inputs.paths). These runs are small but real (Ray starts three times): the output is
also checked for being quiet -- our lines, no Ray tracebacks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def elsewhere(tmp_path, data_root):
    """A working directory that is not the checkout, the data root relative to it, an empty cache."""
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    env = {**os.environ, "ADC_DATA_ROOT": os.path.relpath(data_root, cwd), "ADC_CACHE_DIR": "cache",
           # The child must import this checkout even if it is not installed where it runs.
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    assert not Path(env["ADC_DATA_ROOT"]).is_absolute()
    return cwd, env


def _run(cwd: Path, env: dict, module: str, *argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{module} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _nothing_downloaded(cwd: Path) -> None:
    # The data was read from the data root; the download cache holds split caches only.
    assert (cwd / "cache" / "splits").is_dir()
    assert not (cwd / "cache" / "data").exists(), "the data was looked for in the download cache"


def test_train_with_a_relative_data_root_is_quiet_and_writes_under_the_working_directory(elsewhere):
    cwd, env = elsewhere
    proc = _run(cwd, env, "adc_dist.train", "--smoke-test", "--epochs", "1", "--name", "rel")
    out = proc.stdout
    run_dir = cwd / "runs" / "rel"
    assert f"run dir {run_dir}" in out and f"run directory: {run_dir}" in out
    assert (run_dir / "history.parquet").is_file()
    assert re.search(r"^epoch\s+1\b", out, re.M), out  # the per-epoch line reached the driver
    assert "recall@10" in out and "smoke test passed" in out
    # Quiet: our lines only -- no tracebacks, no Ray banners; a screenful at most.
    both = out + proc.stderr
    assert "Traceback" not in both and "Started a local Ray instance" not in both, both
    assert len(both.strip().splitlines()) <= 15, both
    _nothing_downloaded(cwd)


def test_tune_with_a_relative_data_root_and_space(elsewhere):
    cwd, env = elsewhere
    (cwd / "spaces").mkdir()
    (cwd / "spaces" / "tiny.yaml").write_text(yaml.safe_dump({
        "fixed": {"d": 8, "epochs": 2, "batch_size": 4096, "negatives": 1, "topk": [10],
                  "early_stop_metric": "ndcg@10"},
        "search": {"gamma": {"grid": [0.0, 1.5]}}, "tune": {"scheduler": "fifo"}}))
    proc = _run(cwd, env, "adc_dist.tune", "--space", "spaces/tiny.yaml", "--tasks", "amazon-music-video",
                "--set", "epochs=1", "--name", "rel", "--storage", "sw")
    trials = pd.read_parquet(cwd / "sw" / "rel" / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "ok").all(), trials[["status", "error"]]
    assert Path(trials["data_root"].iloc[0]).is_absolute()
    assert re.search(r"trials: 100%.*2/2 \[\d\d:\d\d<\d\d:\d\d", proc.stderr), proc.stderr  # the ETA bar
    assert "Traceback" not in proc.stdout + proc.stderr
    _nothing_downloaded(cwd)


def test_compare_quick_with_a_relative_data_root(elsewhere):
    cwd, env = elsewhere
    proc = _run(cwd, env, "adc_dist.compare", "--quick", "--methods", "popularity,adc_equal",
                "--no-balancing-study", "--seeds", "1", "--budget", "1", "--out", "res", timeout=800)
    results = pd.read_parquet(cwd / "res" / "results.parquet")
    assert set(results["method"]) >= {"popularity", "adc_equal"} or len(results) > 0
    assert re.search(r"\d+/\d+ \[\d\d:\d\d<\d\d:\d\d", proc.stderr), proc.stderr  # a bar with an ETA
    assert "Traceback" not in proc.stdout + proc.stderr
    _nothing_downloaded(cwd)


def test_verbose_shows_rays_own_lines(elsewhere):
    cwd, env = elsewhere
    proc = _run(cwd, env, "adc_dist.train", "--smoke-test", "--epochs", "1", "--name", "loud", "--verbose")
    both = proc.stdout + proc.stderr
    assert "Started a local Ray instance" in both, both[-3000:]  # Ray's start-up line, hidden by default
    assert re.search(r"^epoch\s+1\b", proc.stdout, re.M) and "smoke test passed" in proc.stdout
