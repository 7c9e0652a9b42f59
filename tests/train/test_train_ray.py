"""Ray Train end to end: two workers agree on the domain weights; a killed worker is survived;
a resume removes torn checkpoints and refuses a crafted one before any worker starts.

These start a real (small) Ray runtime, so they are few: one uninterrupted 2-worker run,
the same run with one worker killed by SIGKILL after the first checkpoint, a sharded run
with one worker killed (its uninterrupted twin under torchrun, beside it), and one resumed
copy of the uninterrupted run (one more epoch).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError
from adc_dist.train.launch import run
from malicious import write_malicious_checkpoint
from procs import descendants, free_port, kill_session

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

# Three epochs of a small model (d 16, batches of 4096: about a second an epoch on 2 cores):
# the killed run loses a worker in epoch 2 and still has an epoch to run after its restart.
EPOCHS = 3


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, object_store_memory=150 * 2**20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(tmp_path: Path, name: str, **kw) -> TrainConfig:
    return TrainConfig(task="amazon-book-music", d=16, batch_size=4096, epochs=EPOCHS, topk=[10, 20],
                       early_stop_metric="ndcg@10", patience=0, num_workers=2, storage_path=str(tmp_path),
                       name=name, **kw).validate()


def _train_worker_pids() -> list[int]:
    pids = []
    for pid in descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "RayTrainWorker" in cmd:
            pids.append(pid)
    return pids


@pytest.fixture(scope="module")
def plain_run(ray_cluster, tmp_path_factory, data_root):
    """The uninterrupted 2-worker run: checked on its own and as the twin of the killed one."""
    return run(_cfg(tmp_path_factory.mktemp("plain"), "plain"), quiet=True)


def test_two_ray_workers_hold_identical_weights_and_write_the_run_directory(plain_run):
    summary = plain_run
    run_dir = Path(summary.run_dir)
    hist = pd.read_parquet(run_dir / "history.parquet")
    assert list(hist["epoch"]) == list(range(1, EPOCHS + 1))
    assert (hist["weight_rank_spread"] == 0).all() and (hist["param_rank_spread"] == 0).all()
    info = json.loads((run_dir / "summary.json").read_text())
    assert info["world_size"] == 2 and info["backend"] == "ray-train"
    assert sorted(p.name for p in run_dir.glob("checkpoint_*"))  # Ray Train's checkpoints


def _run_killing_one_worker(cfg: TrainConfig):
    """``run(cfg)`` with one Ray Train worker SIGKILLed once the first checkpoint exists."""
    killed: list[int] = []

    def kill_after_first_checkpoint():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            if list((Path(cfg.storage_path) / cfg.name).glob("checkpoint_*")):
                pids = _train_worker_pids()
                if pids:
                    os.kill(pids[-1], signal.SIGKILL)
                    killed.append(pids[-1])
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    summary = run(cfg, quiet=True)
    killer.join(timeout=1)
    assert killed, "no Ray Train worker was found to kill"
    return summary


def test_a_killed_worker_restarts_from_the_last_checkpoint_and_finishes(plain_run, tmp_path):
    summary = _run_killing_one_worker(_cfg(tmp_path, "killed", max_failures=2))
    hist = pd.read_parquet(Path(summary.run_dir) / "history.parquet")
    assert list(hist["epoch"]) == list(range(1, EPOCHS + 1)), "every epoch exactly once in the history"
    assert summary.final["epochs_run"] == EPOCHS
    # Epochs are deterministic in (seed, epoch, rank) and restart from the exact saved state,
    # so the restarted run lands exactly where the uninterrupted one did (difference 0.0).
    assert summary.final == plain_run.final
    plain_hist = pd.read_parquet(Path(plain_run.run_dir) / "history.parquet")
    for col in ("loss_book", "loss_music", "weight_book", "weight_music", "valid_ndcg10_mean"):
        assert hist[col].tolist() == plain_hist[col].tolist(), col


def _torchrun(cfg: TrainConfig) -> subprocess.Popen:
    """``cfg`` as two ranks under torchrun (``--local``: no Ray), started now, awaited by the caller."""
    argv = ["--local", "--quiet", "--task", cfg.task, "--d", str(cfg.d), "--batch_size", str(cfg.batch_size),
            "--epochs", str(cfg.epochs), "--topk", ",".join(map(str, cfg.topk)), "--early_stop_metric",
            cfg.early_stop_metric, "--patience", str(cfg.patience), "--embedding_sharding", cfg.embedding_sharding,
            "--storage_path", cfg.storage_path, "--name", cfg.name]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    # One thread per rank, as a one-CPU Ray Train worker has (OMP_NUM_THREADS=1).
    return subprocess.Popen([torchrun, "--nproc-per-node=2", f"--master-port={free_port()}", "-m", "adc_dist.train",
                             "--", *argv], env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_a_killed_worker_of_a_sharded_run_restarts_from_the_sharded_checkpoint(ray_cluster, tmp_path):
    """The uninterrupted twin runs under torchrun, beside the Ray run (the same two ranks' sums: a
    torchrun and a Ray Train run of one config end bit-identical), instead of as a third Ray fit."""
    sharded = {"embedding_sharding": "row_wise", "epochs": 2}
    twin = _torchrun(_cfg(tmp_path, "whole").replace(**sharded))
    try:
        killed = _run_killing_one_worker(_cfg(tmp_path, "killed", max_failures=2).replace(**sharded))
        out, _ = twin.communicate(timeout=300)
    finally:
        if twin.poll() is None:  # the Ray run failed: torchrun and its ranks (its session) go too
            kill_session(twin.pid)
            twin.wait()
    assert twin.returncode == 0, out[-3000:]
    hist = pd.read_parquet(Path(killed.run_dir) / "history.parquet")
    assert list(hist["epoch"]) == [1, 2] and killed.final["epochs_run"] == 2
    # Each rank took its rows of the gathered tables and their Adagrad state back: the
    # restarted run ends where the uninterrupted one does.
    whole = json.loads((tmp_path / "whole" / "test_metrics.json").read_text())
    assert killed.final == pytest.approx(whole, rel=1e-6)
    whole_hist = pd.read_parquet(tmp_path / "whole" / "history.parquet")
    for col in ("loss_book", "loss_music", "weight_book", "weight_music", "valid_ndcg10_mean"):
        assert hist[col].tolist() == pytest.approx(whole_hist[col].tolist(), rel=1e-6), col


def _copy_of(plain_run, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the uninterrupted run (same name, another storage) and its latest checkpoint."""
    run_dir = tmp_path / "plain"
    shutil.copytree(plain_run.run_dir, run_dir)
    snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    return run_dir, snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]


def test_a_resume_refuses_a_crafted_ray_checkpoint_before_any_worker_starts(plain_run, tmp_path):
    run_dir, latest = _copy_of(plain_run, tmp_path)
    canary = tmp_path / "CANARY"
    write_malicious_checkpoint(run_dir / latest / "state.pt", canary)
    with pytest.raises(AdcError, match="was refused and nothing in it was run") as err:
        run(_cfg(tmp_path, "plain").replace(epochs=EPOCHS + 1, resume=True), quiet=True)
    assert len(str(err.value)) <= 300 and not canary.exists()
    assert not (tmp_path / ".plain.lock").exists()


def test_a_resume_removes_torn_checkpoints_and_continues_from_the_latest(plain_run, tmp_path):
    run_dir, latest = _copy_of(plain_run, tmp_path)
    # What a worker killed while writing leaves: an empty and a half-written directory,
    # newer than the registered ones and unknown to Ray's snapshot.
    (run_dir / "checkpoint_2099-01-01_00-00-00.000000").mkdir()
    half = run_dir / "checkpoint_2099-01-01_00-00-01.000000"
    half.mkdir()
    data = (run_dir / latest / "state.pt").read_bytes()
    (half / "state.pt").write_bytes(data[: len(data) // 2])
    summary = run(_cfg(tmp_path, "plain").replace(epochs=EPOCHS + 1, resume=True), quiet=True)
    assert not (run_dir / "checkpoint_2099-01-01_00-00-00.000000").exists() and not half.exists()
    hist = pd.read_parquet(run_dir / "history.parquet")
    assert list(hist["epoch"]) == list(range(1, EPOCHS + 2)) and summary.final["epochs_run"] == EPOCHS + 1
    before = pd.read_parquet(Path(plain_run.run_dir) / "history.parquet")
    # The first EPOCHS epochs come from the checkpoint, unchanged.
    assert hist["loss_book"].iloc[:EPOCHS].tolist() == before["loss_book"].tolist()
