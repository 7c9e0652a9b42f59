"""The run directory is opened safely: names, locks, storage faults, nothing left behind, resumes.

Local (--local) runs only, on the smallest real task with a tiny model: a driver killed
after its first checkpoint and resumed, and a run stopped by a full disk and resumed,
both end identical to an uninterrupted run. Read-only and full file systems are made in
a private mount namespace (``unshare -m``, root only), so nothing outside the test sees them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError
from adc_dist.train.launch import main
from adc_dist.train.locks import DirLock
from adc_dist.train.run_dir import check_name
from adc_dist.train.run_guard import open_run
from adc_dist.tune.plan import plan_sweep

pytestmark = pytest.mark.timeout(600)

ARGS = ["--local", "--quiet", "--task", "amazon-dvd-video", "--d", "8", "--negatives", "1", "--batch_size", "4096",
        "--topk", "10", "--early_stop_metric", "ndcg@10", "--patience", "0"]
EPOCHS = 4
TIMING = ("samples_per_s", "pairs_per_s", "epoch_time_s", "eval_time_s", "peak_rss_mb")


def _argv(storage: Path, name: str, *extra: str) -> list[str]:
    return [*ARGS, "--epochs", str(EPOCHS), "--storage_path", str(storage), "--name", name, *extra]


def _cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return _clis([*argv], timeout=timeout)[0]


def _clis(*argvs: list[str], timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Each ``argv`` as ``python -m adc_dist.train``, all started at once: each command is a new
    interpreter that spends seconds importing torch on a busy 2-core box, so they overlap."""
    procs = [subprocess.Popen([sys.executable, "-m", "adc_dist.train", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
        return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(procs, outs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("note:")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and len(lines[0]) <= 300, lines[0]
    return lines[0]


def _results(run: Path) -> tuple[dict, pd.DataFrame]:
    hist = pd.read_parquet(run / "history.parquet").drop(columns=list(TIMING), errors="ignore")
    return json.loads((run / "test_metrics.json").read_text()), hist


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, data_root) -> Path:
    storage = tmp_path_factory.mktemp("plain")
    main(_argv(storage, "plain"))
    return storage / "plain"


@pytest.fixture(scope="module")
def uninterrupted(plain_run):
    return _results(plain_run)


# ---------------------------------------------------------------------------- names
BAD_NAMES = ["../x", "a/b", "/abs", ".hidden", "..", "a..b", "x" * 129, "", "a b", "n\u00e4me", "-dash"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_run_or_sweep_name_is_refused_by_one_rule(tmp_path, name):
    storage = tmp_path / "runs"
    with pytest.raises(AdcError, match="a name is 1-128 letters") as train_err:
        main([*ARGS, "--storage_path", str(storage), f"--name={name}"])
    with pytest.raises(AdcError, match="a name is 1-128 letters") as tune_err:
        plan_sweep(None, "amazon-dvd-video", name=name, storage=str(tmp_path / "sweeps"), prepare_data=False)
    assert str(train_err.value) == str(tune_err.value) and len(str(train_err.value)) <= 300
    assert not any(tmp_path.iterdir()), "nothing is written, inside the storage or beside it"


@pytest.mark.parametrize("name", ["run-1", "a.b_c", "X" * 128, "amazon-book-music-20260101-120000"])
def test_good_names_pass(name):
    assert check_name(name) == name


# ---------------------------------------------------------------------------- locks
def _holder(lock_dir: Path, name: str) -> subprocess.Popen:
    """Another live process holding the lock of run ``name``."""
    code = textwrap.dedent(f"""
        import sys, time
        from adc_dist.train.locks import DirLock
        DirLock({str(lock_dir)!r}, {name!r}).acquire()
        print("held", flush=True)
        time.sleep(300)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_lock_refuses_a_second_driver_before_anything_is_written(tmp_path):
    holder = _holder(tmp_path, "busy")
    try:
        with pytest.raises(AdcError, match=f"run 'busy' is in use by PID {holder.pid} on host"):
            main([*ARGS, "--storage_path", str(tmp_path), "--name", "busy"])
        assert [p.name for p in tmp_path.iterdir()] == [".busy.lock"]
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_message(tmp_path):
    holder = _holder(tmp_path, "gone")
    holder.kill()
    holder.wait()
    said = []
    with DirLock(str(tmp_path), "gone", log=said.append) as lock:
        assert json.loads(Path(lock.path).read_text())["pid"] == os.getpid()
    assert len(said) == 1 and f"stale lock of run 'gone' (PID {holder.pid} on" in said[0]
    assert not any(tmp_path.iterdir()), "released"


# ---------------------------------------------------------------------------- storage
def test_a_storage_path_under_a_file_is_one_line_and_leaves_nothing(tmp_path):
    (tmp_path / "afile").write_text("x")
    line = _one_error_line(_cli(*_argv(tmp_path / "afile" / "runs", "r")))
    assert f"{tmp_path}/afile/runs" in line and "is a file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def _namespace_ok() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_mounts = pytest.mark.skipif(not _namespace_ok(), reason="needs root and unshare -m for private mounts")


def _in_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (its tmpfs mounts vanish with it)."""
    path = tmp_path / "script.sh"
    path.write_text("set -u\n" + textwrap.dedent(script))
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", str(path)], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PY": sys.executable})


@needs_mounts
def test_a_read_only_storage_is_one_line_naming_it_and_the_run_starts_once_fixed(tmp_path, data_root):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = " ".join(_argv(mnt / "runs", "ro")).replace(f"--epochs {EPOCHS}", "--epochs 1")
    out = _in_namespace(f"""
        mount -t tmpfs -o size=16m,ro tmpfs {mnt}
        "$PY" -m adc_dist.train {args}
        echo "rc=$?" >&2
        ls -A {mnt} >&2
        mount -o remount,rw {mnt}
        "$PY" -m adc_dist.train {args} && ls {mnt}/runs/ro/test_metrics.json
    """, tmp_path)
    first, _, rest = out.stderr.partition("rc=")
    lines = first.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write to the storage path") \
        and "read-only file system" in lines[0] and "/mnt/runs" in lines[0], out.stderr
    assert rest.splitlines()[0] == "2" and rest.splitlines()[1:] == [], "nothing written to the mount"
    assert out.returncode == 0 and "test_metrics.json" in out.stdout, out.stderr[-2000:]


@needs_mounts
def test_a_full_disk_stops_the_run_with_one_line_and_it_resumes_identical(tmp_path, plain_run, uninterrupted,
                                                                           data_root):
    """A disk of 1.5 checkpoints holds the first checkpoint but not the second beside it (the
    new one is written next to the old, then renamed over it). Sized from the same run's
    checkpoint, so a change of the model's size does not change what the test checks."""
    ckpt_k = (plain_run / "checkpoints" / "state.pt").stat().st_size // 1024
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = " ".join(_argv(mnt / "runs", "full"))
    out = _in_namespace(f"""
        mount -t tmpfs -o size={ckpt_k * 3 // 2}k tmpfs {mnt}
        "$PY" -m adc_dist.train {args}
        echo "rc=$?" >&2
        mount -o remount,size={max(64 * 1024, ckpt_k * 8)}k {mnt}
        "$PY" -m adc_dist.train {args} --resume || exit 9
        cp -r {mnt}/runs/full {tmp_path}/full
    """, tmp_path)
    first, _, rest = out.stderr.partition("rc=")
    lines = first.strip().splitlines()
    assert len(lines) == 1 and "the disk is full" in lines[0] and "--resume" in lines[0] \
        and "/mnt/runs/full/checkpoints/state.pt" in lines[0], out.stderr
    assert rest.splitlines()[0] == "2"
    assert out.returncode == 0, out.stderr[-2000:]
    final, hist = _results(tmp_path / "full")
    assert final == uninterrupted[0]
    pd.testing.assert_frame_equal(hist, uninterrupted[1])


# ------------------------------------------------------------- early failure, kill, resume
def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name} appeared: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, f"no {path} after {timeout}s"
        time.sleep(0.05)


def test_a_run_stopped_before_its_first_checkpoint_leaves_nothing_and_the_name_is_free(tmp_path, data_root):
    # A larger model than the other tests' (d 64, 5 negatives): a first epoch of seconds, not a
    # fraction of one, so that on a loaded box the signal still lands before the first checkpoint.
    proc = subprocess.Popen([sys.executable, "-m", "adc_dist.train", *_argv(tmp_path, "early", "--d", "64",
                                                                          "--negatives", "5")],
                            stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "early" / "config.yaml", proc)
    proc.send_signal(signal.SIGINT)  # Ctrl-C during the first epoch
    assert proc.wait(120) == 130, proc.stderr.read()[-1000:]
    assert not any(tmp_path.iterdir()), "no run directory, no lock"
    # The same --name is free again: a new start gets past the lock and the directory checks.
    with open_run(TrainConfig(name="early", storage_path=str(tmp_path))) as run_dir:
        assert run_dir == f"{tmp_path}/early"


# ------------------------------------------------------ the run directory before the data
def _no_data(monkeypatch, tmp_path: Path) -> None:
    """Data that cannot be loaded: an empty data root, an empty split cache, a download mirror
    that refuses at once (no network touched)."""
    (tmp_path / "no-data").mkdir()
    monkeypatch.setenv("ADC_DATA_ROOT", str(tmp_path / "no-data"))
    monkeypatch.setenv("ADC_CACHE_DIR", str(tmp_path / "no-cache"))
    monkeypatch.setenv("ADC_DATA_MIRROR", "http://127.0.0.1:9/m")


def test_a_refused_command_is_refused_by_its_run_directory_before_any_data_is_loaded(tmp_path, monkeypatch):
    # open_run comes before prepare_task: a refused command costs no data load (about 9 s for
    # amazon-book-music). Here no data can be loaded at all, and each refusal is still its
    # own run-directory message, not the data error.
    _no_data(monkeypatch, tmp_path)
    storage = tmp_path / "runs"
    (storage / "done").mkdir(parents=True)
    (storage / "done" / "config.yaml").write_text("task: amazon-dvd-video\n")
    argv = [*ARGS, "--storage_path", str(storage)]
    with pytest.raises(AdcError, match="already exists: pass --resume"):
        main([*argv, "--name", "done"])
    with pytest.raises(AdcError, match="no run directory"):
        main([*argv, "--name", "never", "--resume"])
    holder = _holder(storage, "busy")
    try:
        with pytest.raises(AdcError, match=f"run 'busy' is in use by PID {holder.pid} on host"):
            main([*argv, "--name", "busy"])
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in storage.iterdir()) == [".busy.lock", "done"]
    assert [p.name for p in (storage / "done").iterdir()] == ["config.yaml"]
    assert not (tmp_path / "no-cache").exists(), "no data was prepared"


def test_a_data_error_is_one_line_and_leaves_no_run_directory_and_the_name_works_again(tmp_path, monkeypatch,
                                                                                      data_root):
    storage = tmp_path / "runs"
    argv = [*ARGS, "--epochs", "1", "--storage_path", str(storage), "--name", "fresh"]
    _no_data(monkeypatch, tmp_path)
    proc = _cli(*argv)  # the data error inside open_run: the run is removed again, the lock released
    line = _one_error_line(proc)
    assert proc.returncode == 2 and "is missing" in line and "ADC_DATA_ROOT" in line, line
    assert not storage.exists(), "no run directory, no lock, no storage folder left behind"
    monkeypatch.undo()  # the real data again
    main(argv)  # the same --name: no "already exists", no stale lock
    assert pd.read_parquet(storage / "fresh" / "history.parquet")["epoch"].tolist() == [1]
    assert sorted(p.name for p in storage.iterdir()) == ["fresh"]


def test_a_killed_driver_is_refused_while_alive_then_resumes_identical(tmp_path, uninterrupted, data_root):
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "adc_dist.train", *_argv(tmp_path, "killed")],
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "checkpoints" / "state.pt", proc)
        proc.send_signal(signal.SIGSTOP)  # paused, still alive: it cannot finish while we look
        config = (run / "config.yaml").read_bytes()
        # A --resume (and a plain start) of the live run: one line each, the live run untouched.
        for refused in _clis(_argv(tmp_path, "killed", "--resume"), _argv(tmp_path, "killed")):
            line = _one_error_line(refused)
            assert f"run 'killed' is in use by PID {proc.pid}" in line
        assert (run / "config.yaml").read_bytes() == config
        assert proc.poll() is None
        proc.kill()  # SIGKILL: no clean-up runs; the lock stays behind, stale
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / ".killed.lock").exists()
    resumed = _cli(*_argv(tmp_path, "killed"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"taking over the stale lock of run 'killed' (PID {proc.pid}" in resumed.stderr
    final, hist = _results(run)
    assert list(hist["epoch"]) == list(range(1, EPOCHS + 1))
    assert final == uninterrupted[0]  # difference 0.0: epochs depend only on (seed, epoch, rank)
    pd.testing.assert_frame_equal(hist, uninterrupted[1])
    assert not (tmp_path / ".killed.lock").exists()


def test_a_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_afresh(tmp_path, data_root):
    """What a SIGKILLed driver leaves before epoch 1 ends: config.yaml and a stale lock."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".early.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "config.yaml").write_text("task: amazon-dvd-video\n")
    argv = [*ARGS, "--epochs", "1", "--storage_path", str(tmp_path), "--name", "early"]
    with pytest.raises(AdcError, match="already exists: pass --resume"):
        main(argv)
    main([*argv, "--resume"])
    assert pd.read_parquet(tmp_path / "early" / "history.parquet")["epoch"].tolist() == [1]
    assert not (tmp_path / ".early.lock").exists()
