"""`ray job submit --working-dir . -- python -m adc_dist.train` against a head started here.

The test starts its own head on 127.0.0.1 (own ports, own temp dir, its own process
group) and stops only that group: never a global `ray stop`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from procs import free_port, ray_cli

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture
def ray_head(tmp_path):
    # Every port our own: another Ray on this machine (a user's, a parallel job) must not
    # take the job agent's default port, or the head has no agent to run jobs.
    gcs, dash = free_port(), free_port()
    # The job's `python` is looked up on the head's PATH: make it this interpreter's, as an
    # activated venv does (pytest may be run as .venv/bin/python -m pytest without one).
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": path}
    temp_dir = Path("/tmp") / f"rayjob{os.getpid()}"  # Ray wants a short socket path
    head = subprocess.Popen(
        ray_cli("start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2",
             "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
             "--object-store-memory", str(200 * 2**20), "--temp-dir", str(temp_dir), "--disable-usage-stats"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 90
        while True:  # the job API answers once the dashboard is up
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except OSError:
                if time.time() > deadline or head.poll() is not None:
                    pytest.fail("the Ray head did not come up within 90 s")
                time.sleep(1)
        yield address, env
    finally:
        # --block ties the head's processes to this process group: stop exactly those.
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(head.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_ray_job_submit_runs_a_training_job_into_a_run_directory(ray_head, tmp_path, data_root):
    address, env = ray_head
    storage = tmp_path / "runs"
    argv = ray_cli("job", "submit", "--address", address, "--working-dir", str(REPO), "--",
                   "python", "-m", "adc_dist.train", "--num_workers", "2", "--epochs", "1", "--d", "16",
                   "--batch_size", "4096", "--topk", "10", "--early_stop_metric", "ndcg@10",
                   "--storage_path", str(storage), "--name", "job")
    deadline = time.time() + 90
    while True:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
        # The dashboard answers before its job agent is registered (slowly, on a loaded
        # machine); Ray says "try again later" then, and so do we.
        if "No available agent" not in proc.stderr + proc.stdout or time.time() > deadline:
            break
        time.sleep(3)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout.lower()
    run_dir = storage / "job"
    info = json.loads((run_dir / "summary.json").read_text())
    assert info["backend"] == "ray-train" and info["world_size"] == 2 and info["epochs_run"] == 1
    hist = pd.read_parquet(run_dir / "history.parquet")
    assert len(hist) == 1 and hist["weight_rank_spread"].iloc[0] == 0
    assert "recall@10" in proc.stdout and "run directory:" in proc.stdout  # the job's log is streamed back
