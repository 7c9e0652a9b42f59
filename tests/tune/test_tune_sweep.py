"""Ray Tune sweeps end to end on CPU: real data, real training, Parquet read back with pandas.

Three Ray-starting tests, kept small (1 epoch, d=8): a 2-task sweep on an offline S3
(moto) with one failing configuration; a sweep whose driver is killed and resumed; a
trial of 2 Ray Train workers. Run them under the shared lock:
``flock /tmp/adc_ray.lock python -m pytest tests/tune/test_tune_sweep.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from adc_dist.errors import AdcError
from adc_dist.tune import report
from adc_dist.tune import results as R
from adc_dist.tune.driver import run_sweep, sweep_status
from procs import kill_session

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
TINY = {"d": 8, "epochs": 1, "batch_size": 4096, "negatives": 1, "topk": [5, 10],
        "early_stop_metric": "ndcg@10", "patience": 0}
RAY_INIT = {"num_cpus": 2, "object_store_memory": 150 * 2**20}


def write_space(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, **RAY_INIT)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def s3():
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # before ray.init: Ray's processes inherit them
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"endpoint_override={host}:{port}&scheme=http&region=us-east-1&allow_bucket_creation=true"
    server.stop()
    for k, v in old.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_smoke_sweep_of_two_tasks_on_s3_reads_back_with_pandas(s3, ray_local, tmp_path, data_root, capsys):
    # one at a time around (2 layers, gradnorm): 3 trials per task; "static" with three
    # weights for two domains passes the config check but fails inside the trial.
    space = write_space(tmp_path / "sweep.yaml", f"""
        design: one_at_a_time
        fixed: {{{", ".join(f"{k}: {v}" for k, v in TINY.items())}, static_weights: [1.0, 1.0, 1.0]}}
        search:
          num_hidden_layers: [1, 2]
          balancer: [gradnorm, static]
    """)
    storage = f"s3://adc-sweeps/ci?{s3}"
    ctrl_c = signal.getsignal(signal.SIGINT)
    uri = run_sweep(space, "amazon-book-music,amazon-dvd-video", name="smoke", storage=storage, seed=3,
                    ray_init=RAY_INIT, flush_every_s=5, controller_failure_limit=0, per_user=True)
    # Tune's own Ctrl-C handler is gone again: the next Ctrl-C of a caller (compare) is its own
    assert signal.getsignal(signal.SIGINT) is ctrl_c
    assert uri.startswith("s3://adc-sweeps/ci/smoke?")
    # (the progress lines are checked in the resume test: under Tune, pytest's capsys misses them)
    assert sweep_status(uri, "smoke") == {"ok": 4, "error": 2}
    capsys.readouterr()

    res = R.load_results(uri)
    t = res.trials
    assert len(t) == 6 and t["trial_id"].is_unique and list(t.columns) == R.TRIALS_SCHEMA.names
    assert t.groupby("task").size().to_dict() == {"amazon-book-music": 3, "amazon-dvd-video": 3}
    assert t["d"].dtype == "int64" and t["gamma"].dtype == "float64" and t["use_gpu"].dtype == bool
    ok, bad = t[t["status"] == "ok"], t[t["status"] == "error"]
    assert len(ok) == 4 and set(bad["balancer"]) == {"static"}
    assert bad["error"].str.contains("static_weights").all()
    assert set(ok["num_hidden_layers"]) == {1, 2} and (ok["epochs_run"] == 1).all() and (ok["best_epoch"] == 1).all()
    assert ok["valid_score"].between(0, 1).all() and ok["test_score"].between(0, 1).all()
    assert (ok["wall_time_s"] >= ok["train_time_s"]).all() and (ok["train_time_s"] > 0).all()
    for _, row in ok.iterrows():
        assert row["test_score"] == pytest.approx(row["metrics"]["test_ndcg10_mean"])
        assert set(row["task_domains"]) == ({"book", "music"} if row["task"] == "amazon-book-music"
                                            else {"dvd", "video"})
        assert row["num_workers"] == 1 and row["name"] == row["trial_id"]
    for _, row in ok.iterrows():
        assert_per_user_is_the_trials_test(uri, row)
    with pytest.raises(AdcError, match="--per-user"):  # a failed trial wrote none
        R.load_per_user(uri, bad["trial_id"].iloc[0])
    m = res.metrics
    assert len(m) == 4 * 2 * 2 * 2 * 3  # ok trials x splits x metrics x N x (2 domains + mean)
    h = res.history
    assert len(h) == 4 and (h["epoch"] == 1).all()
    assert all(set(w) == set(d) for w, d in zip(h["weight"], h["loss"]))

    assert report.main([uri]) == 0
    printed = capsys.readouterr().out
    assert "amazon-book-music" in printed and "ndcg_vs_num_hidden_layers.png" in printed


def assert_per_user_is_the_trials_test(uri: str, row: pd.Series) -> None:
    """--per-user: the trial's file holds every test user of each domain, and its means are the
    trial's test metrics in trials.parquet."""
    pu = R.load_per_user(uri, row["trial_id"])
    assert set(pu["domain"]) == set(row["task_domains"]) and not pu.duplicated(["user", "domain"]).any()
    for dom, g in pu.groupby("domain"):
        for metric in ("ndcg@10", "recall@10"):
            name = metric.replace("@", "")
            assert g[metric].mean() == pytest.approx(row["metrics"][f"test_{name}_{dom}"], abs=1e-6), (dom, metric)


def _rows(results: Path) -> int:
    try:
        return len(pd.read_parquet(results / R.TRIALS_FILE))
    except (OSError, ValueError):
        return 0


def _refused(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and len(lines[0]) <= 300, proc.stderr[-2000:]
    return lines[0]


def test_a_killed_driver_resumes_and_every_trial_appears_once(ray_local, tmp_path, data_root):
    """Two drivers started at once with one --name: one runs, one is refused. A --resume of the
    live sweep is refused. The runner is killed, resumed, and ends as uninterrupted trials do."""
    space = write_space(tmp_path / "sweep.yaml", f"""
        fixed: {{{", ".join(f"{k}: {v}" for k, v in TINY.items())}}}
        search:
          gamma: [0.0, 1.5, 3.0]
    """)
    results = tmp_path / "sweeps" / "killed"
    cmd = [sys.executable, "-m", "adc_dist.tune", "--space", space, "--tasks", "amazon-dvd-video",
           "--storage", str(tmp_path / "sweeps"), "--name", "killed", "--max-concurrent", "1"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    logs = [open(tmp_path / f"driver{i}.log", "w+") for i in (0, 1)]
    # Their own sessions: killing a process group takes that driver's Ray with it.
    procs = [subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
             for log in logs]
    try:
        deadline = time.time() + 600
        while _rows(results) < 1 and all(p.poll() is None or p.returncode == 2 for p in procs) \
                and time.time() < deadline:
            time.sleep(0.5)
        codes = [p.poll() for p in procs]
        assert sorted(codes, key=str) == [2, None], [log.name for log in logs]
        loser, proc = (procs[0], procs[1]) if codes[0] == 2 else (procs[1], procs[0])
        os.killpg(proc.pid, signal.SIGSTOP)  # the sweep (driver and its Ray) paused, alive: checked below
        before = pd.read_parquet(results / R.TRIALS_FILE)
        # (the plan may be printed first: the lock is taken when the sweep starts writing)
        said = Path(logs[procs.index(loser)].name).read_text()
        refused = said.strip().splitlines()[-1]
        assert "Traceback" not in said and refused.startswith("error: sweep 'killed'") and len(refused) <= 300, said
        assert "in use by PID" in refused or "already exists" in refused or "another driver meanwhile" in refused
        live = _refused(subprocess.run([*cmd[:3], "--name", "killed", "--storage", str(tmp_path / "sweeps"),
                                        "--resume"], capture_output=True, text=True, env=env, timeout=300))
        assert f"sweep 'killed' is in use by PID {proc.pid}" in live
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        for p in procs:  # the drivers and every Ray process they started (their sessions)
            kill_session(p.pid)
            p.wait(30)
    assert 1 <= len(before) < 3
    printed = Path(logs[procs.index(proc)].name).read_text()
    assert "trials: 3 per task x 1 = 3" in printed  # the plan, then one line per finished trial
    assert f"1/3 ok      amazon-dvd-video {before['trial_id'].iloc[0]} gamma=" in printed
    assert (tmp_path / "sweeps" / ".killed.lock").exists()  # SIGKILL: stale, taken over below

    run_sweep(name="killed", storage=str(tmp_path / "sweeps"), resume=True, ray_init=RAY_INIT,
              controller_failure_limit=0, quiet=True)
    t = pd.read_parquet(results / R.TRIALS_FILE)
    assert len(t) == 3 and t["trial_id"].is_unique and sorted(t["gamma"]) == [0.0, 1.5, 3.0]
    assert (t["status"] == "ok").all()
    assert not (tmp_path / "sweeps" / ".killed.lock").exists()
    # what had finished before the kill was not run again
    kept = t.set_index("trial_id").loc[before["trial_id"], "started_at"]
    assert (kept.to_numpy() == before["started_at"].to_numpy()).all()
    h = pd.read_parquet(results / R.HISTORY_FILE)
    assert len(h) == 3 and not h.duplicated(["trial_id", "epoch"]).any()
    # Every trial ends exactly where an uninterrupted in-process run of its config ends.
    from adc_dist.config import TrainConfig
    from adc_dist.train.loop import fit
    from adc_dist.train.reporting import LocalReporter

    for _, row in t.iterrows():
        cfg = TrainConfig(task="amazon-dvd-video", gamma=float(row["gamma"]), num_workers=1,
                          data_root=os.environ["ADC_DATA_ROOT"], **TINY)
        final = fit(cfg, LocalReporter(None, quiet=True))["final"]
        assert dict(row["metrics"])["test_ndcg10_mean"] == final["test_ndcg10_mean"], row["gamma"]


def test_a_trial_of_two_ray_train_workers(ray_local, tmp_path, data_root):
    space = write_space(tmp_path / "sweep.yaml", f"""
        fixed: {{{", ".join(f"{k}: {v}" for k, v in TINY.items())}}}
        search:
          gamma: [1.5]
    """)
    uri = run_sweep(space, "amazon-dvd-video", name="ddp", storage=str(tmp_path), num_workers=2,
                    cpus_per_worker=0.5, ray_init=RAY_INIT, controller_failure_limit=0, quiet=True, per_user=True)
    res = R.load_results(uri)
    row = res.trials.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["num_workers"] == 2 and row["test_score"] > 0
    assert_per_user_is_the_trials_test(uri, row)  # gathered from both workers
    assert res.history["weight_rank_spread"].tolist() == [0.0]  # both ranks held the same weights
    assert not (tmp_path / "ddp" / "train" / row["trial_id"]).exists()  # its Ray Train run was freed
