"""A two-node Ray cluster on one machine: a head and a second node joined with
``ray start --address``, both on 127.0.0.1, and a 2-worker training spread across them.

This is the path the cluster files set up (a head, worker nodes joining it, a driver that
connects with RAY_ADDRESS), minus the cloud. One CPU per node and ``--cpus_per_worker 1`` force
the two Ray Train workers onto different nodes; the run must then hold identical domain
weights on both ranks (``weight_rank_spread`` == 0 in history.parquet) and record both nodes.

The test starts every Ray process itself, on its own ports and its own --temp-dir, each node
in its own process group, and stops exactly those (process group, then anything still running
from its temp dir): never a global ``ray stop``, which would hit other users' Ray.
"""

from __future__ import annotations

import json
import os
import shutil
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
pytestmark = [pytest.mark.ray, pytest.mark.timeout(480)]

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25", "RAY_USAGE_STATS_ENABLED": "0"}
OBJECT_STORE = str(150 * 2**20)


def _alive_nodes(dashboard: str) -> list[dict]:
    """The cluster's alive nodes, from the State API of the head's dashboard."""
    with urllib.request.urlopen(f"{dashboard}/api/v0/nodes?limit=100", timeout=5) as r:
        nodes = json.load(r)["data"]["result"]["result"]
    return [n for n in nodes if n.get("state") == "ALIVE"]


def _pids_using(temp_dir: Path) -> list[int]:
    """Live processes of *this* cluster: their command line names our temp dir (raylet, GCS,
    agents), or they hold a file in it open (workers and actors: their logs; setproctitle has
    rewritten their command line to ``ray::...``)."""
    mark = str(temp_dir)
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie: already dead, only waiting for its parent to reap it
            if mark.encode() in (proc / "cmdline").read_bytes() or any(
                    os.readlink(fd).startswith(mark) for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _stop(procs: list[subprocess.Popen], temp_dir: Path) -> None:
    """Stop the nodes this test started: their process groups, then stragglers of its temp dir.

    A graceful ``ray start --block`` shutdown takes 30-50 s on a busy 2-core machine; these
    processes are this test's alone and the test is over, so after a short grace period (3 s,
    as the job test's head gets 5: 10 s was waited out in every run) they are killed.
    """
    for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        for p in procs:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and (any(p.poll() is None for p in procs) or _pids_using(temp_dir)):
            time.sleep(0.5)
        if all(p.poll() is not None for p in procs) and not _pids_using(temp_dir):
            break
    for pid in _pids_using(temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def two_nodes(tmp_path):
    """(GCS address, dashboard URL, env, node ids) of a head + one more node on 127.0.0.1."""
    gcs, dash = free_port(), free_port()
    temp_dir = Path("/tmp") / f"adcmn{os.getpid()}"  # short: Ray's socket paths have a length limit
    env = {**os.environ, **RAY_ENV}
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
              "--object-store-memory", OBJECT_STORE, "--min-worker-port", "0", "--max-worker-port", "0",
              "--disable-usage-stats"]
    logs = tmp_path / "ray-logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    dashboard = f"http://127.0.0.1:{dash}"
    try:
        procs.append(subprocess.Popen(
            ray_cli("start", "--head", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
                 "--dashboard-port", str(dash), "--dashboard-agent-listen-port", str(free_port()),
                 "--ray-client-server-port", str(free_port()), "--temp-dir", str(temp_dir), *common),
            env=env, stdout=open(logs / "head.out", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        _wait(lambda: len(_alive_nodes(dashboard)) == 1, procs, "the head", logs)
        procs.append(subprocess.Popen(
            ray_cli("start", "--address", f"127.0.0.1:{gcs}",
                 "--dashboard-agent-listen-port", str(free_port()), *common),
            env=env, stdout=open(logs / "node2.out", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        _wait(lambda: len(_alive_nodes(dashboard)) == 2, procs, "the second node", logs)
        node_ids = sorted(n["node_id"] for n in _alive_nodes(dashboard))
        yield f"127.0.0.1:{gcs}", dashboard, env, node_ids
    finally:
        _stop(procs, temp_dir)
        survivors = _pids_using(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)  # session logs; the test's own copy is in tmp_path
        assert not survivors, f"Ray processes of this test survived its teardown: {survivors}"


def _wait(ready, procs: list[subprocess.Popen], what: str, logs: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:  # the dashboard is not up yet
            pass
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.time() > deadline:
            tail = "\n".join(f.read_text()[-2000:] for f in sorted(logs.glob("*.out")))
            pytest.fail(f"{what} did not come up ({'a ray start exited' if dead else 'timeout'}):\n{tail}")
        time.sleep(1)


def test_two_workers_on_two_nodes_hold_identical_domain_weights(two_nodes, tmp_path, data_root):
    gcs_address, _, env, node_ids = two_nodes
    assert len(node_ids) == 2
    storage = tmp_path / "runs"  # one machine: both nodes see this directory
    env = {**env, "RAY_ADDRESS": gcs_address, "ADC_DATA_ROOT": str(data_root),
           "ADC_CACHE_DIR": str(tmp_path / "cache")}
    driver = subprocess.Popen(
        [sys.executable, "-m", "adc_dist.train", "--task", "amazon-book-music", "--num_workers", "2",
         "--cpus_per_worker", "1", "--epochs", "1", "--d", "16", "--batch_size", "4096", "--topk", "10",
         "--early_stop_metric", "ndcg@10", "--storage_path", str(storage), "--name", "two-nodes"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 0, out[-4000:]

    run_dir = storage / "two-nodes"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    # One worker per node: the run used both nodes, and they are the two this test started.
    assert sorted(set(summary["nodes"])) == node_ids, summary["nodes"]
    history = pd.read_parquet(run_dir / "history.parquet")
    assert len(history) == 1
    assert {"weight_book", "weight_music", "weight_rank_spread"} <= set(history.columns)
    # GradNorm ran after the all-reduce on both ranks: bit-identical weights across the nodes.
    assert (history["weight_rank_spread"] == 0).all(), history[["epoch", "weight_rank_spread"]]
